"""Tests of the support_tickets graph: its data, its nodes, and a local run with an untrained model.

The gate (accuracy with the model trained by train.py) is checked by
tests/integration/test_support_tickets.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from graphops import load_graph
from graphops.models.transformers import TransformersModel, wordpiece_tokenizer
from graphops.runtime import LocalRunner, read_rows, to_columns
from graphs.support_tickets import normalized, routing
from graphs.support_tickets.data import QUEUES, train_split, validation_split, write_validation

REPO = Path(__file__).resolve().parents[2]


def test_the_data_is_seeded_and_the_committed_validation_file_is_what_data_py_writes(
    tmp_path: Path,
) -> None:
    assert train_split() == train_split()
    texts, queues = validation_split()
    assert len(texts) == 400 and set(queues) == set(QUEUES)
    written = pq.read_table(write_validation(tmp_path / "v.parquet"))
    committed = pq.read_table(REPO / "graphs" / "support_tickets" / "validation.parquet")
    assert written.equals(committed)


def test_normalized_collapses_whitespace_and_lowercases() -> None:
    out = normalized(np.array(["  Hello,   My PARCEL ", "x"], dtype=object))
    assert out.tolist() == ["hello, my parcel", "x"]


def test_routing_names_the_queue_of_the_largest_logit() -> None:
    out = routing(np.array([[0.0, 0.1, 3.0, 0.0], [5.0, 0, 0, 0]], dtype=np.float32))
    assert out["queue"].tolist() == ["account", "billing"]
    assert np.all((out["confidence"] > 0.5) & (out["confidence"] <= 1.0))


def test_runs_locally_on_a_few_validation_rows() -> None:
    from transformers import BertConfig, BertForSequenceClassification

    package = load_graph(REPO, "support_tickets")
    assert package.validation_dataset is not None
    rows = read_rows(package.validation_dataset)[:8]
    columns, passthrough = to_columns(rows, package.graph.request)
    texts, _ = train_split()
    tokenizer = wordpiece_tokenizer(texts[:200], vocab_size=200, max_length=24)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=len(QUEUES),
    )
    net = BertForSequenceClassification(config)
    runner = LocalRunner(
        package.graph, {"logits": TransformersModel(net, tokenizer, torch.device("cpu"), 24)}
    )

    out = runner.run(columns, batch_size=3)

    assert out["logits"].shape == (8, 4)
    assert set(passthrough) == {"true_queue"}
    responses = runner.respond(out)
    assert len(responses) == 8
    assert all(r["queue"] in QUEUES and 0 <= r["confidence"] <= 1 for r in responses)
