"""The offline runtime on a real local Ray cluster: equality with the local runner, batch jobs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from graphops import InputDataError
from graphops.graph import GraphPackage
from graphops.registry import Registry, ResolvedModel
from graphops.runtime import read_rows, run_local
from graphops.runtime.offline import run_offline

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.mark.parametrize(
    ("fuse", "colocate", "operators"),
    [(True, True, 1), (True, False, 3), (False, True, 3)],
    ids=["fused-colocated", "fused-apart", "unfused"],
)
def test_offline_equals_local(
    digits: GraphPackage,
    registry: Registry,
    champion: ResolvedModel,
    fuse: bool,
    colocate: bool,
    operators: int,
) -> None:
    assert digits.validation_dataset is not None
    rows = read_rows(digits.validation_dataset)
    local = run_local(digits, registry, rows)
    offline = run_offline(digits, registry, digits.validation_dataset, fuse=fuse, colocate=colocate)
    assert offline.rows == len(rows) == 360
    assert (
        len(offline.plan.stages) == 3
    )  # features | logits (model) | prediction: no CPU pair to fuse
    # Co-located: features and prediction run inside the model's actor, one map_batches.
    assert len(offline.operators) == operators
    np.testing.assert_array_equal(offline.columns["label"], local.columns["label"])
    np.testing.assert_allclose(
        offline.columns["confidence"], local.columns["confidence"], rtol=1e-6
    )
    np.testing.assert_array_equal(
        offline.columns["digit"], [r["digit"] for r in rows]
    )  # passthrough
    assert offline.pins == local.pins
    assert set(offline.stage_seconds) == {"features", "logits", "prediction"}
    assert offline.gpu_dropped  # the model node asks for a GPU; this machine has none


def test_batch_job_reads_jsonl_and_writes_parquet(
    tmp_path: Path, digits: GraphPackage, registry: Registry, champion: ResolvedModel
) -> None:
    assert digits.validation_dataset is not None
    rows = read_rows(digits.validation_dataset)[:40]
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(json.dumps({"id": i, "pixels": r["pixels"]}) + "\n" for i, r in enumerate(rows))
    )
    out = tmp_path / "out.parquet"
    run = run_offline(digits, registry, source, output=out)
    written = pq.read_table(out).to_pylist()  # a folder of Parquet files
    assert run.rows == len(written) == 40
    assert set(written[0]) == {"label", "confidence", "id"}
    by_id = {r["id"]: r["label"] for r in written}
    local = run_local(digits, registry, [{"pixels": r["pixels"]} for r in rows])
    assert [by_id[i] for i in range(40)] == local.columns["label"].tolist()


def test_missing_request_field_is_named(
    tmp_path: Path, digits: GraphPackage, registry: Registry, champion: ResolvedModel
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"pixel": [0.0] * 64}) + "\n")
    with pytest.raises(InputDataError, match="lacks the request field\\(s\\) pixels"):
        run_offline(digits, registry, source)


def test_unknown_output_format_is_refused_before_running(
    tmp_path: Path, digits: GraphPackage, registry: Registry
) -> None:
    assert digits.validation_dataset is not None
    with pytest.raises(InputDataError, match=r'unknown file type "\.xlsx"'):
        run_offline(digits, registry, digits.validation_dataset, output=tmp_path / "out.xlsx")


FAILING_GRAPH = """
import numpy as np
from pydantic import BaseModel

from graphops import Graph, Resources, node


class Request(BaseModel):
    x: float


class Response(BaseModel):
    y: float


@node(resources=Resources(cpus=0.25))
def y(x: np.ndarray) -> np.ndarray:
    if (x < 0).any():
        raise ValueError("negative input")
    return x * 2


graph = Graph(name="fails", version="1.0.0", request=Request, response=Response, nodes=[y])
"""


def test_a_failing_node_is_reported_by_name_not_as_a_ray_traceback(
    tmp_path: Path, registry: Registry
) -> None:
    from graphops import RunError
    from graphops.graph import load_graph

    package = tmp_path / "graphs" / "fails"
    package.mkdir(parents=True)
    (tmp_path / "graphs" / "__init__.py").touch()
    (package / "__init__.py").write_text(FAILING_GRAPH)
    fails = load_graph(tmp_path, "fails")
    assert run_offline(fails, registry, [{"x": 1.0}, {"x": 2.0}]).columns["y"].tolist() == [
        2.0,
        4.0,
    ]
    with pytest.raises(RunError) as info:
        run_offline(fails, registry, [{"x": 1.0}, {"x": -1.0}])
    assert info.value.node == "y" and info.value.graph == "fails"
    assert "ValueError: negative input" in str(info.value)
    assert f"{package / '__init__.py'}:16" in str(info.value)


def test_feature_lookups_co_located_in_the_model_actor_equal_local(
    repo_copy: Path, registry: Registry
) -> None:
    from graphops.graph import load_graph

    package = load_graph(repo_copy, "feed_ranking")
    trainer = package.trainer()
    assert trainer is not None and package.validation_dataset is not None
    trainer(registry)
    rows = read_rows(package.validation_dataset)
    local = run_local(package, registry, rows)
    for colocate, operators in ((True, 1), (False, 3)):
        offline = run_offline(package, registry, package.validation_dataset, colocate=colocate)
        assert len(offline.operators) == operators  # lookups + pairs, scores, ranking
        assert offline.rows == len(rows)
        for field in ("top_items", "top_scores"):
            got, want = offline.columns[field], local.columns[field]
            if np.issubdtype(np.asarray(want[0]).dtype, np.floating):
                np.testing.assert_allclose(np.stack(got), np.stack(want), rtol=1e-6)
            else:
                assert [list(v) for v in got] == [list(v) for v in want]
