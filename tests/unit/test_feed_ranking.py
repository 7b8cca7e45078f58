"""Tests of the feed_ranking graph: its nodes, its metric, and a local run (no Ray, no MLflow).

In the style ``graphops new`` writes for a new graph. The run here uses an untrained RankerNet
and the embedded feature store over the committed Parquet tables, so it checks the lookups, the
crosses and the response contract; the gate (NDCG@10 beating popularity with the trained
ranker) is checked by tests/integration/test_feed_ranking.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from graphops import load_graph
from graphops.features import open_store
from graphops.models.torch import TorchModel
from graphops.runtime import LocalRunner, read_rows, to_columns
from graphs.feed_ranking import TOP_K, pairs, ranking
from graphs.feed_ranking.data import TOPICS
from graphs.feed_ranking.metrics import ndcg_at_10
from graphs.feed_ranking.network import RankerNet
from graphs.feed_ranking.preprocess import pair_features

REPO = Path(__file__).resolve().parents[2]
INPUTS = 3 * TOPICS + 7


def test_ranking_orders_candidates_by_score() -> None:
    out = ranking(np.array([[0.1, 0.9, 0.5]]), np.array([[7, 8, 9]]))
    assert out["top_items"].tolist() == [[8, 9, 7]]
    assert out["top_scores"].tolist() == [[0.9, 0.5, 0.1]]


def test_pairs_is_the_training_preprocessing_under_its_node_name() -> None:
    assert (pairs.name, pairs.outputs, pairs.fn) == ("pairs", ("pairs",), pair_features)
    rows, candidates = 2, 3
    out = pairs(
        np.ones((rows, TOPICS), np.float32),
        np.ones(rows, np.float32),
        np.ones(rows, np.float32),
        np.ones((rows, candidates, TOPICS), np.float32),
        *(np.ones((rows, candidates), np.float32) for _ in range(3)),
    )
    assert out.shape == (rows, candidates, INPUTS) and out.dtype == np.float32


def test_ndcg_is_one_for_the_ideal_order() -> None:
    relevance = np.array([[0, 3, 1]])
    assert ndcg_at_10(relevance, relevance) == pytest.approx(1.0)
    assert ndcg_at_10(-relevance, relevance) < 1.0


def test_runs_locally_on_a_few_validation_rows() -> None:
    package = load_graph(REPO, "feed_ranking")
    assert package.validation_dataset is not None
    rows = read_rows(package.validation_dataset)[:6]
    columns, passthrough = to_columns(rows, package.graph.request)
    torch.manual_seed(0)
    ranker = TorchModel(RankerNet(INPUTS), torch.device("cpu"))
    store = open_store(None, package.path)
    try:
        runner = LocalRunner(package.graph, {"scores": ranker}, features=store)
        out = runner.run(columns, batch_size=4)
    finally:
        store.close()

    candidates = np.asarray(columns["candidate_ids"]).shape[1]
    assert out["pairs"].shape == (6, candidates, INPUTS)
    assert out["scores"].shape == (6, candidates)
    assert set(passthrough) == {"relevance", "popularity_scores"}
    for response, ids in zip(runner.respond(out), columns["candidate_ids"], strict=True):
        assert len(response["top_items"]) == min(TOP_K, candidates)
        assert set(response["top_items"]) <= set(np.asarray(ids).tolist())
        assert response["top_scores"] == sorted(response["top_scores"], reverse=True)
