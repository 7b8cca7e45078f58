"""Hugging Face transformers: a sequence classifier and its tokenizer, safetensors only, offline.

Reads what ``mlflow.transformers.save_model`` / ``log_model`` writes for a dict of components
``{"model": ..., "tokenizer": ...}``: ``MLmodel`` (flavor ``transformers``), the model's
``config.json`` and ``model.safetensors`` under ``model/`` (the flavor's ``model_binary``) and
the tokenizer's files under ``components/tokenizer/``. Everything loads from those files with
``local_files_only=True`` and ``HF_HUB_OFFLINE=1``: no network, ever; weights are read from
safetensors only (a ``pytorch_model.bin`` is a pickle and is refused) and no remote code runs.

torch and transformers are imported when a model loads, not with this module. Inference uses
torch's process-wide thread count: set ``torch.set_num_threads`` in the caller, not here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from graphops.errors import RegistryError, Where
from graphops.graph import ModelNode
from graphops.models._format import Artifacts, ModelFormat, register_format

if TYPE_CHECKING:
    import torch

FLAVOR = "transformers"
PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
"""Weight files torch reads by unpickling: refused (safetensors only)."""
DEFAULT_MAX_LENGTH = 512
"""Truncation length when neither the tokenizer nor the model config records one."""


class TransformersModel:
    """A sequence classifier behind a numpy interface: ``model(texts) -> logits``.

    ``texts`` is a 1-D array of strings (``str`` or ``object`` dtype); they are tokenized with
    padding and truncation to `max_length`, run under ``torch.inference_mode()`` and the logits
    come back as a ``(rows, labels)`` float32 array.
    """

    def __init__(self, module: Any, tokenizer: Any, device: torch.device, max_length: int) -> None:
        self.module = module.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.max_length = max_length

    def encode(self, texts: np.ndarray) -> dict[str, torch.Tensor]:
        """Token ids and attention mask of ``texts``, padded to the longest, on the device."""
        batch = [str(t) for t in np.asarray(texts, dtype=object).reshape(-1)]
        encoded = self.tokenizer(
            batch,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            return_token_type_ids=False,
        )
        return {k: v.to(self.device) for k, v in encoded.items()}

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        """Logits (float32, on the CPU) for one array of texts."""
        import torch

        if len(arrays) != 1:
            raise TypeError(f"A text classifier takes one array of texts, got {len(arrays)}.")
        if len(arrays[0]) == 0:
            return np.zeros((0, self.module.config.num_labels), dtype=np.float32)
        with torch.inference_mode():
            logits = self.module(**self.encode(arrays[0])).logits
        return logits.detach().float().cpu().numpy()


def save_components(module: Any, tokenizer: Any) -> dict[str, Any]:
    """The components dict to pass to ``Registry.register_flavor(flavor="transformers", ...)``."""
    return {"model": module, "tokenizer": tokenizer}


SAVE_KWARGS: dict[str, Any] = {
    "task": "text-classification",
    "pip_requirements": ["transformers", "tokenizers", "torch", "safetensors"],
}
"""Keyword arguments for ``mlflow.transformers.save_model`` through `register_flavor`."""


SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def wordpiece_tokenizer(texts: Sequence[str], *, vocab_size: int, max_length: int) -> Any:
    """A BERT-style WordPiece tokenizer trained on ``texts``, as a ``PreTrainedTokenizerFast``.

    Lowercasing BERT normalizer and pre-tokenizer, ``[CLS] text [SEP]``; ``max_length`` is
    recorded as its ``model_max_length`` (the truncation length `TransformersModel` uses).
    The vocabulary: the special tokens, every character of the texts (alone and as a ``##``
    continuation, so no word is unknown), then the most frequent words as tokenizers'
    `WordLevelTrainer` counts them (ties by spelling). Deterministic: the same texts give the
    same ``tokenizer.json`` — tokenizers' own `WordPieceTrainer` does not (it breaks ties by
    hash order, a different vocabulary each run), which would register a new version per run.
    """
    with offline():
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
        from tokenizers.trainers import WordLevelTrainer
        from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=True)
    words = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    words.normalizer = normalizer
    words.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words.train_from_iterator(
        list(texts),
        WordLevelTrainer(vocab_size=vocab_size, special_tokens=[], show_progress=False),
    )
    chars = sorted({c for t in texts for c in normalizer.normalize_str(t) if not c.isspace()})
    vocab: dict[str, int] = {}
    ranked = sorted(words.get_vocab().items(), key=lambda item: item[1])
    for token in [*SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars), *(w for w, _ in ranked)]:
        if len(vocab) < vocab_size:
            vocab.setdefault(token, len(vocab))
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )


@contextmanager
def offline() -> Iterator[None]:
    """``HF_HUB_OFFLINE=1`` while inside (huggingface_hub reads it when first imported)."""
    before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["HF_HUB_OFFLINE"]
        else:
            os.environ["HF_HUB_OFFLINE"] = before


def _model_dir(artifacts: Artifacts) -> Path:
    """Where config and weights lie: the flavor's ``model_binary`` (``model/``) folder."""
    binary = artifacts.flavors.get(FLAVOR, {}).get("model_binary") or "model"
    return artifacts.directory / str(binary)


def _tokenizer_dir(artifacts: Artifacts) -> Path:
    """The tokenizer's files: ``components/tokenizer/``, or beside the model when saved so."""
    component = artifacts.directory / "components" / "tokenizer"
    return component if component.is_dir() else _model_dir(artifacts)


def load_transformers(
    directory: Path, tokenizer_directory: Path, device: torch.device, where: Where, uri: str
) -> TransformersModel:
    """Load a sequence classifier and its tokenizer from local files only (no network)."""
    with offline():
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per load in every replica's log otherwise

    weights = sorted(p.name for p in directory.glob("*.safetensors"))
    if not (directory / "config.json").is_file() or not weights:
        found = ", ".join(sorted(p.name for p in directory.iterdir())) if directory.is_dir() else ""
        raise RegistryError(
            f"{uri} holds no transformers config.json + *.safetensors weights in {directory.name}/ "
            f"(found: {found or 'nothing'}).",
            fix="Save the model with mlflow.transformers.save_model/log_model (safe_serialization "
            "is the default) or register it with Registry.register_flavor(flavor='transformers').",
            **where,
        )
    architectures = json.loads((directory / "config.json").read_text()).get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        # Any other head would load with a freshly initialised classifier: answers, but random.
        raise RegistryError(
            f"{uri} is a {', '.join(map(str, architectures)) or 'model of no architecture'}, "
            "not a sequence classifier: graphops' transformers format serves text "
            "classification (logits per label).",
            fix="Log an *ForSequenceClassification model (task text-classification) with its "
            "tokenizer.",
            **where,
        )
    try:
        with offline():
            tokenizer = AutoTokenizer.from_pretrained(
                str(tokenizer_directory), local_files_only=True
            )
            module = AutoModelForSequenceClassification.from_pretrained(
                str(directory), local_files_only=True, use_safetensors=True, trust_remote_code=False
            )
    except (OSError, ValueError, KeyError) as exc:
        raise RegistryError(
            f"{uri} could not be loaded as a transformers sequence classifier: {exc}",
            fix="Log a *ForSequenceClassification model with its tokenizer "
            '(components {"model": ..., "tokenizer": ...}).',
            **where,
        ) from exc
    return TransformersModel(module, tokenizer, device, max_length_of(tokenizer, module))


def max_length_of(tokenizer: Any, module: Any) -> int:
    """The truncation length: the tokenizer's ``model_max_length``, capped by the positions."""
    positions = getattr(module.config, "max_position_embeddings", None) or DEFAULT_MAX_LENGTH
    recorded = getattr(tokenizer, "model_max_length", None)
    # An unset model_max_length is a huge sentinel (VERY_LARGE_INTEGER): fall back to positions.
    if not isinstance(recorded, int) or recorded <= 0 or recorded > positions:
        return int(positions)
    return recorded


def export_onnx(model: TransformersModel, path: Path, *, opset: int = 18) -> Path:
    """Write ``model`` as ONNX: inputs ``input_ids``/``attention_mask``, output ``logits``.

    Batch and sequence axes are dynamic; the tokenizer stays in Python (tokenize with
    `TransformersModel.encode`, then feed the arrays to ONNX Runtime).
    """
    import torch

    class _Logits(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    example = model.encode(np.array(["an example text to trace", "another"], dtype=object))
    wrapper = _Logits(model.module).to(model.device).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=model.max_length)
    torch.onnx.export(
        wrapper,
        (example["input_ids"], example["attention_mask"]),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_shapes={
            "input_ids": {0: batch, 1: sequence},
            "attention_mask": {0: batch, 1: sequence},
        },
        opset_version=opset,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    return path


@register_format
class TransformersFormat(ModelFormat):
    """MLflow's ``transformers`` flavor: a sequence classifier + tokenizer, safetensors weights.

    Weights saved as ``pytorch_model.bin`` (or any ``.bin``/``.pt``/``.pkl`` file) would load by
    unpickling and are refused unless a platform team allowed the model.
    """

    name = "transformers"
    flavor = FLAVOR
    extra = "transformers"
    modules = ("transformers", "tokenizers", "torch")

    def pickled(self, artifacts: Artifacts) -> str | None:
        """The first weights file torch would unpickle, if any."""
        for path in sorted(artifacts.directory.rglob("*")):
            if path.is_file() and path.suffix.lower() in PICKLED_SUFFIXES:
                return str(path.relative_to(artifacts.directory))
        return None

    def load(self, node: ModelNode, artifacts: Artifacts, *, gpu: bool) -> TransformersModel:
        """The classifier and tokenizer, on CUDA when ``gpu`` and one is present."""
        import torch

        where: Where = {"node": node.name, "file": node.file, "line": node.line}
        device = torch.device("cuda" if gpu and torch.cuda.is_available() else "cpu")
        return load_transformers(
            _model_dir(artifacts), _tokenizer_dir(artifacts), device, where, artifacts.uri
        )
