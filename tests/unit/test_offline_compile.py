"""What the offline compiler decides without running Ray: operators, pools, columns, batches."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from graphops import Graph, Resources, Scaling
from graphops.graph import Batching, MiB
from graphops.graph._settings import OFFLINE_BATCH_ROWS
from graphops.planner import (
    Boundary,
    Operator,
    Stage,
    can_colocate,
    offline_operators,
    plan,
    pool_size,
    read_blocks,
)
from graphops.runtime.offline import kept_columns
from tests.fixtures.graphs import valid


def test_each_operator_keeps_only_what_later_stages_and_the_result_read() -> None:
    the_plan = plan(valid.graph)

    kept = kept_columns(the_plan, ["label", "score", "id"])

    # x and the CPU stage's intermediates (clipped, centered) never leave the first operator.
    assert kept == [("features", "id"), ("id", "logits"), ("id", "label", "score")]


def test_unfused_plan_prunes_after_every_node() -> None:
    the_plan = plan(valid.graph, fuse=False)

    kept = kept_columns(the_plan, ["label", "score"])

    # A chain: each operator hands on only the column the next one reads.
    assert [s.name for s in the_plan.stages] == [
        "clipped",
        "centered",
        "features",
        "logits",
        "postprocess",
    ]
    assert kept == [("clipped",), ("centered",), ("features",), ("logits",), ("label", "score")]


@pytest.mark.parametrize(
    ("batching", "rows"),
    [
        (Batching(), OFFLINE_BATCH_ROWS),
        (Batching(max_batch_size=4096), 4096),
        (Batching(max_batch_size=8, offline_batch_size=200), 200),
    ],
)
def test_model_stages_batch_offline_at_offline_rows(batching: Batching, rows: int) -> None:
    assert batching.offline_rows == rows


def test_offline_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="offline_batch_size"):
        Batching(offline_batch_size=0)


# -- co-location: which stages share an operator (the planner decides) -------------------------


def digits_graph() -> Graph:
    from graphs.digits import graph

    return graph


def test_digits_runs_as_one_operator_in_the_model_actor() -> None:
    [op] = offline_operators(plan(digits_graph()))

    assert [s.name for s in op.stages] == ["features", "logits", "prediction"]
    assert op.colocated == ("features", "prediction")
    assert op.actors and op.batch_size == 1024
    assert op.resources == Resources(cpus=1, gpus=1)  # the model stage's reservation
    assert op.inputs == ("pixels",) and op.outputs == ("label", "confidence")


def test_colocate_off_gives_one_operator_per_stage() -> None:
    ops = offline_operators(plan(digits_graph()), colocate=False)

    assert [o.name for o in ops] == ["features", "logits", "prediction"]
    assert [o.actors for o in ops] == [False, True, False]
    assert all(o.colocated == () for o in ops)


def test_an_unfused_plan_colocates_nothing() -> None:
    ops = offline_operators(plan(digits_graph(), fuse=False))

    assert [len(o.stages) for o in ops] == [1, 1, 1]


def test_a_cpu_stage_asking_more_than_the_actor_reserves_stays_apart() -> None:
    # valid's CPU nodes keep the default 1 CPU; its model stage reserves 0.5.
    ops = offline_operators(plan(valid.graph))

    assert [o.name for o in ops] == ["clipped_to_features", "logits", "postprocess"]
    assert [o.colocated for o in ops] == [(), (), ()]


def stage(name: str, kind: Boundary, resources: Resources, model: bool = False) -> Stage:
    nodes = tuple(valid.graph.order[3:4]) if model else tuple(valid.graph.order[:1])
    return Stage(name, nodes, resources, Scaling(), kind, (), ())


@pytest.mark.parametrize(
    ("cpu", "ok"),
    [
        (stage("a", Boundary.CPU, Resources(cpus=0.5)), True),
        (stage("a", Boundary.CPU, Resources(cpus=2)), False),
        (stage("a", Boundary.CPU, Resources(cpus=0.5, memory=MiB)), False),
        (stage("a", Boundary.EXPLICIT, Resources(cpus=0.5)), False),
        (stage("a", Boundary.UNFUSED, Resources(cpus=0.5)), False),
        (stage("a", Boundary.GPU, Resources(cpus=0.5, gpus=1)), False),
    ],
)
def test_can_colocate(cpu: Stage, ok: bool) -> None:
    model = stage("m", Boundary.MODEL, Resources(cpus=1), model=True)
    assert can_colocate(cpu, model) is ok


def test_memory_colocates_when_the_actor_reserves_as_much() -> None:
    cpu = stage("a", Boundary.CPU, Resources(cpus=0.5, memory=MiB))
    model = stage("m", Boundary.MODEL, Resources(cpus=1, memory=2 * MiB), model=True)
    assert can_colocate(cpu, model)


def test_operators_prune_columns_between_them() -> None:
    ops = offline_operators(plan(digits_graph()), colocate=False)

    assert kept_columns(ops, ["label", "confidence", "row"]) == [
        ("features", "row"),
        ("logits", "row"),
        ("confidence", "label", "row"),
    ]


# -- actor pools sized from the cluster ---------------------------------------------------------


def model_operator(scaling: Scaling | None = None, resources: Resources | None = None) -> Operator:
    [op] = offline_operators(plan(digits_graph()))
    return replace(op, scaling=scaling or Scaling(), resources=resources or op.resources)


@pytest.mark.parametrize(
    ("cpus", "gpus", "others", "expected"),
    [
        (2, 0, 0.0, (1, 2)),  # grows to the CPUs the cluster holds
        (2, 0, 1.0, (1, 1)),  # CPU tasks of other operators are set aside
        (16, 0, 0.0, (1, 16)),
        (16, 4, 0.0, (1, 4)),  # a GPU model: one actor per GPU
        (0.5, 0, 0.0, (1, 1)),  # never below one actor
    ],
)
def test_pool_size_from_the_cluster(
    cpus: float, gpus: float, others: float, expected: tuple[int, int]
) -> None:
    assert pool_size(model_operator(), cpus, gpus, others=others) == expected


def test_a_node_sets_its_offline_pool() -> None:
    assert pool_size(model_operator(Scaling(offline_replicas=3)), 2, 0) == (3, 3)
    autoscale = Scaling(replicas=2, min_replicas=1, max_replicas=4)
    assert pool_size(model_operator(autoscale), 16, 0) == (1, 4)


def test_fractional_cpu_model_fits_more_actors() -> None:
    op = model_operator(resources=Resources(cpus=0.5))
    assert pool_size(op, 2, 0) == (1, 4)


@pytest.mark.parametrize(("cpus", "blocks"), [(2, 4), (16, 32), (0.5, 1), (2.5, 4)])
def test_reads_aim_for_two_blocks_per_cpu(cpus: float, blocks: int) -> None:
    assert read_blocks(cpus) == blocks


@pytest.mark.parametrize(("flag", "operators"), [([], 1), (["--no-colocate"], 3)])
def test_graphops_plan_shows_the_offline_operators(flag: list[str], operators: int) -> None:
    from typer.testing import CliRunner

    from graphops.cli import app

    repo = Path(__file__).resolve().parents[2]
    result = CliRunner().invoke(
        app, ["--repo", str(repo), "plan", "digits", *flag], env={"COLUMNS": "250"}
    )

    assert result.exit_code == 0, result.output
    assert f"Offline: {operators} Ray Data operator(s)" in result.output
    co_located = "features (co-located) + logits + prediction (co-located)"
    assert (co_located in result.output) is (operators == 1)
