"""What a validation produces: one metric's gate, one graph's validation, the whole report.

Kept apart from `validate` (which produces them) and `report` (which renders them), so that
neither imports the other.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, computed_field

from graphops._models import StrictModel
from graphops.validation.parity import ParityResult

Status = Literal["passed", "failed", "error"]

TIMED_PARTS = {
    "ray_start": "Ray start",
    "model_resolve": "model resolve",
    "data_run": "Data run",
    "conversion_proof": "conversion proof",
    "parity_serve": "parity serve",
    "mlflow_record": "MLflow record",
    "other": "other",
}
"""The parts of a validation's wall time (`GraphValidation.timings`), as reports name them."""


class MetricGate(StrictModel):
    """One metric, its gate and (when pinned somewhere) its comparison with the baseline."""

    metric: Annotated[str, Field(description="Metric name.")]
    column: Annotated[str, Field(description="Predicted column.")]
    value: Annotated[float, Field(description="Computed value.")]
    gate: Annotated[str, Field(description='The gate, e.g. ">= 0.95"; empty when informative.')]
    passed: Annotated[bool, Field(description="Gate held and no regression against the baseline.")]
    gate_passed: Annotated[bool, Field(description="The gate itself held.")]
    regressed: Annotated[
        bool, Field(description="Worse than the baseline beyond the tolerance.")
    ] = False
    baseline: Annotated[float | None, Field(description="Value of the pinned version.")] = None
    tolerance: Annotated[float, Field(description="Allowed regression against the baseline.")] = 0.0


class ConversionParity(StrictModel):
    """A converted model (e.g. torch -> ONNX) against its original on the validation data."""

    node: Annotated[str, Field(description="The model node both versions were run as.")]
    original: Annotated[str, Field(description="The original version, models:/name/N.")]
    converted: Annotated[str, Field(description="The converted version, models:/name/N.")]
    rows: Annotated[int, Field(description="Validation rows both models answered.")]
    max_abs_diff: Annotated[
        float, Field(description="Largest absolute difference over all output elements.")
    ]
    mean_abs_diff: Annotated[
        float, Field(description="Mean absolute difference over all output elements.")
    ]
    label_agreement: Annotated[
        float,
        Field(
            description="Share of rows whose label agrees (argmax over the last axis for 2-D "
            "outputs; values equal within the tolerance for 1-D ones)."
        ),
    ]
    tolerance_max_abs_diff: Annotated[float, Field(description="The declared max_abs_diff.")]
    min_label_agreement: Annotated[float, Field(description="The declared min_label_agreement.")]
    run_id: Annotated[str | None, Field(description="MLflow run recording the proof.")] = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        """Both figures within the declared tolerance."""
        return (
            self.max_abs_diff <= self.tolerance_max_abs_diff
            and self.label_agreement >= self.min_label_agreement
        )

    def why(self) -> str:
        """What failed, with the figures and the tolerance ("" when it passed)."""
        failed = []
        if self.max_abs_diff > self.tolerance_max_abs_diff:
            failed.append(f"max abs diff {self.max_abs_diff:.3g} > {self.tolerance_max_abs_diff:g}")
        if self.label_agreement < self.min_label_agreement:
            failed.append(
                f"label agreement {self.label_agreement:.4f} < {self.min_label_agreement:g}"
            )
        return "; ".join(failed)


class GraphValidation(StrictModel):
    """The outcome of validating one graph."""

    graph: Annotated[str, Field(description="Graph name.")]
    status: Annotated[Status, Field(description="passed, failed (a gate) or error (load/run).")]
    version: Annotated[str | None, Field(description="Graph version.")] = None
    content_hash: Annotated[str | None, Field(description="Content hash of the package.")] = None
    commit: Annotated[str | None, Field(description="Git commit validated.")] = None
    models: Annotated[
        dict[str, str], Field(description="Model node -> pinned models:/name/version.")
    ] = {}
    digests: Annotated[dict[str, str], Field(description="Model node -> artifact digest.")] = {}
    formats: Annotated[
        dict[str, str],
        Field(
            description="Model node -> its model format (torch, onnx, xgboost...), marked "
            '"(unpickled: models.pickle_allowed)" for a pickled model a platform team allowed.'
        ),
    ] = {}
    gates: Annotated[list[MetricGate], Field(description="Metric gates.")] = []
    problems: Annotated[
        list[str], Field(description="Why it failed or errored, with the fix.")
    ] = []
    rows: Annotated[int, Field(description="Validation rows processed.")] = 0
    seconds: Annotated[float, Field(description="Wall time of the offline run.")] = 0.0
    stage_seconds: Annotated[dict[str, float], Field(description="Compute seconds per stage.")] = {}
    timings: Annotated[
        dict[str, float],
        Field(
            description="Wall seconds of this graph's validation end to end (total) and of its "
            "parts, in order: ray_start, model_resolve, data_run, conversion_proof (only with "
            "converted models), parity_serve, mlflow_record, "
            "and other (graph load, plan, version and baseline lookups, gates); see TIMED_PARTS."
        ),
    ] = {}
    baseline_run: Annotated[
        str | None, Field(description="Validation run of the pinned version.")
    ] = None
    run_id: Annotated[str | None, Field(description="MLflow run recording this validation.")] = None
    reused: Annotated[
        bool,
        Field(
            description="Not run again: a passed validation of the same lock (version, content "
            "hash, model digests, validation data digest) was found; run_id names it."
        ),
    ] = False
    parity: Annotated[
        ParityResult | None,
        Field(description="Online (Serve) answers compared with the offline ones, when checked."),
    ] = None
    conversions: Annotated[
        list[ConversionParity],
        Field(
            description="Model nodes pinned to a converted version (graphops.converted_from), "
            "each checked against its original on the validation data."
        ),
    ] = []
    plan: Annotated[
        str | None, Field(description="Mermaid flowchart of the plan validated (stages, columns).")
    ] = None
    plan_svg: Annotated[
        str | None,
        Field(
            description="The same picture as SVG; kept out of JSON, written beside the reports.",
            exclude=True,
            repr=False,
        ),
    ] = None


class ValidationReport(StrictModel):
    """Validation of several graphs; see `exit_code`."""

    graphs: Annotated[list[GraphValidation], Field(description="One entry per graph.")]
    selection: Annotated[str, Field(description="How the graphs were chosen.")] = ""
    tracking_uri: Annotated[str, Field(description="MLflow store holding the records.")] = ""

    @property
    def exit_code(self) -> int:
        """0 all passed, 1 a gate failed, 2 a graph could not be loaded or run."""
        statuses = {g.status for g in self.graphs}
        return 2 if "error" in statuses else 1 if "failed" in statuses else 0
