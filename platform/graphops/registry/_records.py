"""Run records in MLflow: validations (the evidence promotion checks) and canary rollouts.

`RunRecords` is a part of `graphops.registry.Registry` (its base class): the store's client and
tracking URI come from the registry, the experiments and run shapes live here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from graphops._models import FrozenModel
from graphops.errors import RegistryError

if TYPE_CHECKING:
    from mlflow import MlflowClient

VALIDATION_EXPERIMENT = "validation/{graph}"
"""Experiment holding a graph's validation runs (one run per validation)."""
ROLLOUT_EXPERIMENT = "graphops-rollouts/{env}"
"""Experiment holding an environment's canary rollouts (one run per rollout, one step per step)."""
ROLLOUT_TAG = "graphops.rollout"
"""Run tag naming the rollout a run records (see `Registry.record_rollout`)."""


TRUSTED_TAG = "graphops.trusted"
"""Validation run tag: "1" when the run was written by the trusted job (`TRUSTED_ENV` set)."""
TRUSTED_ENV = "GRAPHOPS_TRUSTED_RECORD"
"""Set to 1 only in the trusted CI job that validates merged commits (promote.yml)."""


class ValidationRecord(FrozenModel):
    """A validation run as stored in MLflow: the evidence promotion checks."""

    run_id: Annotated[str, Field(description="MLflow run id.")]
    graph: Annotated[str, Field(description="Graph name.")]
    version: Annotated[str, Field(description="Graph version.")]
    content_hash: Annotated[str, Field(description="Content hash of the graph package.")]
    status: Annotated[str, Field(description="passed, failed or error.")]
    dataset_digest: Annotated[str | None, Field(description="sha256 of the validation data.")] = (
        None
    )
    metrics: Annotated[dict[str, float], Field(description="Metric values by name.")] = {}
    commit: Annotated[str | None, Field(description="Git commit validated.")] = None
    models: Annotated[
        dict[str, str], Field(description="Model node -> pinned models:/name/version.")
    ] = {}
    digests: Annotated[dict[str, str], Field(description="Model node -> artifact digest.")] = {}
    formats: Annotated[dict[str, str], Field(description="Model node -> its model format.")] = {}
    trusted: Annotated[
        bool,
        Field(
            description="Written by the trusted validation job (GRAPHOPS_TRUSTED_RECORD=1 at "
            "write time; see docs/security.md)."
        ),
    ] = False


class RolloutRunForm(FrozenModel):
    """A rollout as one MLflow run: what `graphops.controller.rollout.RolloutRecord` makes of itself."""

    env: Annotated[str, Field(description="Environment (selects the experiment).")]
    key: Annotated[str, Field(description="The rollout's identity (env/graph/version/start).")]
    run_name: Annotated[str, Field(description="Shown in the MLflow UI.")]
    tags: Annotated[dict[str, str], Field(description="``graphops.*`` tags.")]
    params: Annotated[dict[str, str], Field(description="``policy.*``: what it was judged by.")]
    steps: Annotated[
        tuple[dict[str, float], ...],
        Field(description="Metric name -> value per step (MLflow step = its index)."),
    ]
    texts: Annotated[dict[str, str], Field(description="Artifact file name -> text.")]


class RunRecords:
    """Validation and rollout runs of the tracking store (`Registry` provides the client)."""

    tracking_uri: str

    @property
    def client(self) -> MlflowClient:
        """MLflow's client (`Registry.client`)."""
        raise NotImplementedError

    def experiment_id(self, name: str) -> str:
        """Id of experiment ``name``, created on first use (artifacts under the work dir locally)."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        root = self._artifact_root()
        location = (root / name.replace("/", "-")).as_uri() if root else None
        return self.client.create_experiment(name, artifact_location=location)

    def _artifact_root(self) -> Path | None:
        """Beside a sqlite database, artifacts live next to it; a tracking server decides itself."""
        if self.tracking_uri.startswith("sqlite:///"):
            return Path(self.tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts"
        return None

    # -- validation records ------------------------------------------------------------------

    def record_validation(
        self,
        *,
        graph: str,
        tags: Mapping[str, str],
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        status: str,
        artifacts: Callable[[str], Mapping[str, str]],
    ) -> str:
        """Log one validation as a run in ``validation/<graph>``; returns the run id.

        Args:
            graph: Graph name (selects the experiment).
            tags: ``graphops.*`` tags: version, content hash, commit, models, digests, status...
            params: Run parameters.
            metrics: Metric values and gate outcomes (1.0 passed, 0.0 failed).
            status: ``passed``, ``failed`` or ``error`` (failed and error runs end FAILED).
            artifacts: Given the new run id, file name -> text content (the reports).
        """
        experiment = self.experiment_id(VALIDATION_EXPERIMENT.format(graph=graph))
        run = self.client.create_run(
            experiment, run_name=f"validate-{graph}", tags={**tags, "graphops.status": status}
        )
        run_id = run.info.run_id
        for key, value in params.items():
            self.client.log_param(run_id, key, value)
        for key, value in metrics.items():
            self.client.log_metric(run_id, key, float(value))
        for name, text in artifacts(run_id).items():
            self.client.log_text(run_id, text, name)
        self.client.set_terminated(run_id, "FINISHED" if status == "passed" else "FAILED")
        return run_id

    def validations(self, graph: str, version: str | None = None) -> list[ValidationRecord]:
        """Validation records of ``graph`` (optionally one version), newest first."""
        found = self.client.get_experiment_by_name(VALIDATION_EXPERIMENT.format(graph=graph))
        if found is None:
            return []
        query = f"tags.`graphops.version` = '{version}'" if version else ""
        runs = self.client.search_runs(
            [found.experiment_id], filter_string=query, order_by=["attributes.start_time DESC"]
        )
        return [_record(r) for r in runs]

    def validation(self, run_id: str) -> ValidationRecord:
        """One validation record by run id."""
        from mlflow.exceptions import MlflowException

        try:
            r = self.client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in exc.message.lower():
                raise RegistryError(
                    f'No validation run "{run_id}" in {self.tracking_uri}.',
                    fix="Check the run id (it comes from `graphops validate`).",
                ) from exc
            raise _unreadable(self.tracking_uri, run_id, exc) from exc
        except Exception as exc:  # the store itself failed (server down, disk, schema)
            raise _unreadable(self.tracking_uri, run_id, exc) from exc
        return _record(r)

    # -- rollout records -----------------------------------------------------------------------

    def record_rollout(self, run: RolloutRunForm) -> str:
        """Log one rollout as a run of ``graphops-rollouts/<env>`` (left RUNNING); its run id.

        The run tagged ``graphops.rollout = key`` is reused when there is one (tags and texts
        updated, metrics kept), so recording a rollout again never makes a second run.

        Raises:
            RegistryError: MLflow could not be written (the tracking URI is named).
        """
        from mlflow.entities import Metric, Param, RunTag

        try:
            experiment = self.experiment_id(ROLLOUT_EXPERIMENT.format(env=run.env))
            found = self.client.search_runs(
                [experiment], filter_string=f"tags.`{ROLLOUT_TAG}` = '{run.key}'", max_results=1
            )
            if found:
                run_id = found[0].info.run_id
                self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in run.tags.items()])
            else:
                made = self.client.create_run(experiment, run_name=run.run_name)
                run_id = made.info.run_id
                now = int(made.info.start_time)
                self.client.log_batch(  # one call: a run has all its figures or none
                    run_id,
                    metrics=[
                        Metric(name, float(value), now, i)
                        for i, step in enumerate(run.steps)
                        for name, value in step.items()
                    ],
                    params=[Param(k, v) for k, v in run.params.items()],
                    tags=[RunTag(k, v) for k, v in {**run.tags, ROLLOUT_TAG: run.key}.items()],
                )
            for name, text in run.texts.items():
                self.client.log_text(run_id, text, name)
        except Exception as exc:  # any failure of the store (server down, disk, schema) alike
            raise RegistryError(
                f"Could not record the rollout {run.key} in MLflow at {self.tracking_uri}: {exc}",
                fix="Check that the tracking store is reachable, then record it again.",
            ) from exc
        return run_id

    def finish_rollout(self, run_id: str, tags: Mapping[str, str], failed: bool) -> None:
        """Tag a rollout's run (e.g. the commit that recorded it in git) and end it.

        Raises:
            RegistryError: MLflow could not be written.
        """
        try:
            for key, value in tags.items():
                self.client.set_tag(run_id, key, value)
            self.client.set_terminated(run_id, "FAILED" if failed else "FINISHED")
        except Exception as exc:  # any failure of the store alike, as in `record_rollout`
            raise RegistryError(
                f"Could not finish the rollout's run {run_id} in MLflow at {self.tracking_uri}: "
                f"{exc}",
                fix="Check that the tracking store is reachable, then record it again.",
            ) from exc

    def rollout_runs(self, env: str) -> list[dict[str, Any]]:
        """The rollout runs of ``env``, newest first: run id, status, tags, last metrics."""
        found = self.client.get_experiment_by_name(ROLLOUT_EXPERIMENT.format(env=env))
        if found is None:
            return []
        runs = self.client.search_runs(
            [found.experiment_id], order_by=["attributes.start_time DESC"]
        )
        return [
            {
                "run_id": r.info.run_id,
                "status": r.info.status,
                "tags": dict(r.data.tags),
                "metrics": dict(r.data.metrics),
            }
            for r in runs
        ]


def _unreadable(tracking_uri: str, run_id: str, exc: Exception) -> RegistryError:
    said = " ".join(str(exc).split())
    said = said if len(said) <= 160 else said[:160] + "…"
    return RegistryError(
        f'Could not read validation run "{run_id}" from MLflow at {tracking_uri} ({said}).',
        fix="Check that the tracking store is reachable, then try again.",
    )


def _record(run: Any) -> ValidationRecord:
    tags = run.data.tags
    return ValidationRecord(
        run_id=run.info.run_id,
        graph=tags.get("graphops.graph", ""),
        version=tags.get("graphops.version", ""),
        content_hash=tags.get("graphops.content_hash", ""),
        status=tags.get("graphops.status", ""),
        dataset_digest=tags.get("graphops.dataset_digest"),
        metrics=dict(run.data.metrics),
        commit=tags.get("graphops.commit") or None,
        trusted=tags.get(TRUSTED_TAG) == "1",
        models={
            k.split(".")[2]: v
            for k, v in tags.items()
            if k.startswith("graphops.model.") and k.count(".") == 2
        },
        digests={
            k.split(".")[2]: v
            for k, v in tags.items()
            if k.startswith("graphops.model.") and k.endswith(".digest")
        },
        formats={
            k.split(".")[2]: v
            for k, v in tags.items()
            if k.startswith("graphops.model.") and k.endswith(".format")
        },
    )
