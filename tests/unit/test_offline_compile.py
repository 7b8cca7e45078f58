"""What the offline compiler decides without running Ray: pruned columns and batch sizes."""

from __future__ import annotations

import pytest

from graphops.graph import Batching
from graphops.graph._settings import OFFLINE_BATCH_ROWS
from graphops.plan import plan
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
