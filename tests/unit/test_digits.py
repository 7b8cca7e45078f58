"""Tests of the digits graph: its nodes, and a local run (no Ray, no MLflow) on validation rows.

In the style ``graphops new`` writes for a new graph. The run here uses an untrained DigitsNet,
so it checks the wiring and the response contract; the gate (accuracy with the trained model)
is checked by tests/integration/test_digits.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from graphops import load_graph
from graphops.models.torch import TorchModel
from graphops.runtime import LocalRunner, read_rows, to_columns
from graphs.digits import features, prediction
from graphs.digits.network import DigitsNet

REPO = Path(__file__).resolve().parents[2]


def test_features_scale_pixels_to_the_unit_range() -> None:
    out = features(np.array([[0.0, 8.0, 16.0]]))
    assert out.dtype == np.float32
    assert out.tolist() == [[0.0, 0.5, 1.0]]


def test_prediction_picks_the_largest_logit() -> None:
    out = prediction(np.array([[0.0, 3.0, 1.0]], dtype=np.float32))
    assert out["label"].tolist() == [1]
    assert 0.5 < out["confidence"][0] <= 1.0


def test_runs_locally_on_a_few_validation_rows() -> None:
    package = load_graph(REPO, "digits")
    assert package.validation_dataset is not None
    rows = read_rows(package.validation_dataset)[:8]
    columns, passthrough = to_columns(rows, package.graph.request)
    torch.manual_seed(0)
    runner = LocalRunner(package.graph, {"logits": TorchModel(DigitsNet(), torch.device("cpu"))})

    out = runner.run(columns, batch_size=3)

    assert out["logits"].shape == (8, 10)
    assert set(passthrough) == {"digit"}
    responses = runner.respond(out)
    assert len(responses) == 8
    assert all(0 <= r["label"] <= 9 and 0 <= r["confidence"] <= 1 for r in responses)
