"""The transformers format: a tokenizer trained here, a tiny BERT, saved by MLflow's flavor, loaded.

No network: the tokenizer is trained on a few texts, the model configured small and untrained.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mlflow.transformers
import numpy as np
import pytest
import torch

from graphops.errors import RegistryError
from graphops.graph import ModelNode, model
from graphops.models import Artifacts, detect, format_of, load_model
from graphops.models.transformers import (
    SAVE_KWARGS,
    TransformersModel,
    max_length_of,
    save_components,
    wordpiece_tokenizer,
)

TEXTS = [
    "my card was charged twice",
    "the app crashes on login",
    "i forgot my password",
    "where is my parcel",
] * 10


@model("models:/tickets@champion")
def logits(text: np.ndarray, model: Any) -> np.ndarray:
    """A model node to load for."""
    return np.asarray(model(text))


NODE: ModelNode = logits  # type: ignore[assignment]


def tiny(labels: int = 3) -> tuple[Any, Any]:
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = wordpiece_tokenizer(TEXTS, vocab_size=120, max_length=16)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=labels,
    )
    return tokenizer, BertForSequenceClassification(config).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer, net = tiny()
    directory = tmp_path_factory.mktemp("tx") / "model"
    mlflow.transformers.save_model(save_components(net, tokenizer), str(directory), **SAVE_KWARGS)
    return directory


def test_the_tokenizer_is_trained_here_deterministically_and_records_its_length() -> None:
    first = wordpiece_tokenizer(TEXTS, vocab_size=120, max_length=16)
    second = wordpiece_tokenizer(TEXTS, vocab_size=120, max_length=16)
    assert first.backend_tokenizer.to_str() == second.backend_tokenizer.to_str()
    assert first.model_max_length == 16 and len(first) <= 120
    ids = first("My CARD was charged")["input_ids"]
    assert ids[0] == first.cls_token_id and ids[-1] == first.sep_token_id
    assert first.unk_token_id not in ids  # every word of it was in the training texts


def test_a_forward_pass_gives_float32_logits_per_text_truncated_to_the_length() -> None:
    tokenizer, net = tiny(labels=4)
    runner = TransformersModel(net, tokenizer, torch.device("cpu"), max_length_of(tokenizer, net))
    texts = np.array(["where is my parcel", "word " * 200, ""], dtype=object)
    out = runner(texts)
    assert out.shape == (3, 4) and out.dtype == np.float32
    assert runner.encode(texts)["input_ids"].shape[1] == 16
    # str-dtype arrays (what numpy makes of a list of str) answer the same as object arrays
    np.testing.assert_allclose(runner(texts.astype(str)), out, atol=1e-6)
    assert runner(np.array([], dtype=object)).shape == (0, 4)


def test_mlflows_flavor_layout_is_detected_and_loads_offline(
    saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (saved / "model" / "model.safetensors").is_file()
    assert (saved / "components" / "tokenizer" / "tokenizer.json").is_file()
    assert format_of(saved, "models:/tickets/1") == "transformers"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # loading sets it itself: no network either way
    loaded = load_model(NODE, saved, "models:/tickets/1")
    assert isinstance(loaded, TransformersModel) and loaded.max_length == 16
    assert os.environ["HF_HUB_OFFLINE"] == "0"  # set for the load only, then restored
    out = loaded(np.array(["my card was charged twice", "i forgot my password"], dtype=object))
    assert out.shape == (2, 3) and out.dtype == np.float32


def test_identical_saves_give_identical_model_files(saved: Path, tmp_path: Path) -> None:
    tokenizer, net = tiny()
    again = tmp_path / "again"
    mlflow.transformers.save_model(save_components(net, tokenizer), str(again), **SAVE_KWARGS)
    for name in (
        "model/model.safetensors",
        "model/config.json",
        "components/tokenizer/tokenizer.json",
    ):
        assert (again / name).read_bytes() == (saved / name).read_bytes(), name


@pytest.mark.parametrize("weights", ["pytorch_model.bin", "weights.pt", "extra.pkl"])
def test_pickled_weights_are_refused(saved: Path, tmp_path: Path, weights: str) -> None:
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(saved, copy)
    (copy / "model" / weights).write_bytes(b"\x80\x04N.")
    with pytest.raises(RegistryError) as caught:
        detect(Artifacts.read(copy, "models:/tickets/2"), {})
    message = str(caught.value)
    assert "transformers" in message and weights in message and "tickets" in message
    assert "models.pickle_allowed" in message


def test_missing_safetensors_is_a_registry_error_naming_the_files(
    saved: Path, tmp_path: Path
) -> None:
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(saved, copy)
    (copy / "model" / "model.safetensors").unlink()
    with pytest.raises(RegistryError, match=r"models:/tickets/3 holds no transformers config.json"):
        load_model(NODE, copy, "models:/tickets/3")


# torch 2.13's ONNX exporter pickles pytree specs through a deprecated LeafSpec check, and says
# that axis names sharing constraints are merged: neither is about the exported model.
@pytest.mark.filterwarnings(
    "ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning"
)
@pytest.mark.filterwarnings("ignore:# The axis name:UserWarning")
def test_the_onnx_export_answers_like_torch_on_the_validation_texts(tmp_path: Path) -> None:
    import onnxruntime as ort

    from graphops.models.transformers import export_onnx
    from graphs.support_tickets.data import validation_split

    tokenizer, net = tiny(labels=4)
    runner = TransformersModel(net, tokenizer, torch.device("cpu"), max_length_of(tokenizer, net))
    path = export_onnx(runner, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    texts = np.array(validation_split()[0], dtype=object)
    for batch in (texts, texts[:3], texts[:1]):  # batch and sequence axes are dynamic
        encoded = {k: v.numpy() for k, v in runner.encode(batch).items()}
        [logits] = session.run(["logits"], encoded)
        expected = runner(batch)
        assert logits.shape == expected.shape
        np.testing.assert_allclose(logits, expected, atol=1e-5)
        assert (logits.argmax(1) == expected.argmax(1)).all()


def test_a_model_with_another_head_is_refused_not_given_a_random_classifier(
    saved: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(saved, copy)
    config = copy / "model" / "config.json"
    config.write_text(
        json.dumps({**json.loads(config.read_text()), "architectures": ["BertForMaskedLM"]})
    )
    with pytest.raises(
        RegistryError, match=r"models:/tickets/4 is a BertForMaskedLM, not a sequence"
    ):
        load_model(NODE, copy, "models:/tickets/4")
