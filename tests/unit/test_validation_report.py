"""Gate and baseline logic and the Markdown/JSON report, without Ray or MLflow."""

from __future__ import annotations

import json

import pytest

from graphops.graph import Metric, MetricResult
from graphops.registry import ValidationRecord
from graphops.validation import GraphValidation, ValidationReport, markdown, to_json
from graphops.validation.validate import _gate, _why


def record(accuracy: float) -> ValidationRecord:
    return ValidationRecord(
        run_id="r1",
        graph="g",
        version="1.0.0",
        content_hash="h",
        status="passed",
        metrics={"accuracy": accuracy},
    )


@pytest.mark.parametrize(
    ("value", "baseline", "tolerance", "passed", "regressed"),
    [
        (0.97, None, 0.0, True, False),  # no baseline: the gate alone decides
        (0.97, 0.96, 0.0, True, False),  # better than the pinned version
        (0.97, 0.98, 0.0, False, True),  # worse, no tolerance
        (0.97, 0.98, 0.02, True, False),  # worse within tolerance
        (0.90, None, 0.0, False, False),  # gate fails
    ],
)
def test_gate_and_baseline(
    value: float, baseline: float | None, tolerance: float, passed: bool, regressed: bool
) -> None:
    metric = Metric(name="accuracy", column="label", min=0.95, tolerance=tolerance)
    gate = _gate(MetricResult(metric, value), record(baseline) if baseline is not None else None)
    assert (gate.passed, gate.regressed, gate.baseline) == (passed, regressed, baseline)
    if not passed:
        reason = _why(gate)
        assert ("regressed from the pinned" in reason) == regressed
        assert ("fails its gate >= 0.95" in reason) == (not regressed)


def test_lower_is_better_with_a_max_gate() -> None:
    metric = Metric(name="mae", column="y", max=1.0, tolerance=0.05)
    assert _gate(
        MetricResult(metric, 0.5), record(0.4).model_copy(update={"metrics": {"mae": 0.4}})
    ).regressed
    assert not _gate(
        MetricResult(metric, 0.44), record(0.4).model_copy(update={"metrics": {"mae": 0.4}})
    ).regressed


def test_exit_code_and_report() -> None:
    ok = GraphValidation(graph="a", status="passed", version="1.0.0", run_id="run-a")
    bad = GraphValidation(
        graph="b",
        status="failed",
        version="2.0.0",
        problems=["accuracy = 0.9 fails its gate >= 0.95."],
    )
    broken = GraphValidation(graph="c", status="error", problems=["graphs/c/__init__.py:3: boom"])
    assert ValidationReport(graphs=[ok]).exit_code == 0
    assert ValidationReport(graphs=[ok, bad]).exit_code == 1
    assert ValidationReport(graphs=[ok, bad, broken]).exit_code == 2
    assert ValidationReport(graphs=[]).exit_code == 0
    report = ValidationReport(
        graphs=[ok, bad, broken], selection="Graphs: a, b, c.", tracking_uri="sqlite:///x.db"
    )
    text = markdown(report)
    assert "| `a` | 1.0.0 | ✅ passed | `run-a` |" in text
    assert (
        "| `b` | 2.0.0 | ❌ failed |" in text and "> accuracy = 0.9 fails its gate >= 0.95." in text
    )
    assert "💥 error" in text and "> graphs/c/__init__.py:3: boom" in text
    data = json.loads(to_json(report))
    assert data["exit_code"] == 2 and [g["status"] for g in data["graphs"]] == [
        "passed",
        "failed",
        "error",
    ]


def test_the_report_breaks_the_wall_time_down() -> None:
    from graphops.validation.validate import _breakdown

    timings = _breakdown(
        {
            "total": 30.0,
            "ray_start": 5.0,
            "model_resolve": 2.5,
            "data_run": 10.0,
            "parity_serve": 8.0,
            "mlflow_record": 1.5,
        }
    )
    assert list(timings) == [
        "total",
        "ray_start",
        "model_resolve",
        "data_run",
        "parity_serve",
        "mlflow_record",
        "other",
    ]
    assert timings["other"] == pytest.approx(3.0)
    g = GraphValidation(graph="a", status="passed", version="1.0.0", timings=timings)
    text = markdown(ValidationReport(graphs=[g]))
    assert (
        "Validation took 30.0 s end to end: Ray start 5.0 s, model resolve 2.5 s, Data run "
        "10.0 s, parity serve 8.0 s, MLflow record 1.5 s, other 3.0 s." in text
    )
    assert json.loads(to_json(ValidationReport(graphs=[g])))["graphs"][0]["timings"] == timings
    # The copy stored in MLflow is written during the record: it says so.
    early = g.model_copy(update={"timings": _breakdown({"total": 20.0, "data_run": 10.0})})
    assert "(this copy was written during the MLflow record)" in markdown(
        ValidationReport(graphs=[early])
    )
