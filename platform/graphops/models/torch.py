"""Torch models stored as a safetensors state dict plus a JSON config: no pickled code is loaded.

torch is imported when a torch model is saved or loaded, not with this module: a replica whose
models are in another format (or an ingress with none) never imports it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from graphops.errors import RegistryError, Where
from graphops.graph import ModelNode
from graphops.models._format import Artifacts, ModelFormat, register_format

if TYPE_CHECKING:
    import torch

FORMAT = "graphops.torch/v1"
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "graphops-model.json"


class TorchModel:
    """A loaded torch module behind a numpy interface: ``model(array, ...) -> array``.

    Inputs are moved to the module's device (floating arrays cast to its dtype); inference runs
    under ``torch.inference_mode()``; the output comes back as a numpy array on the CPU.
    """

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        import torch

        self.module = module.to(device).eval()
        self.device = device
        first = next(module.parameters(), None)
        self._dtype = first.dtype if first is not None else torch.float32

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        """Run the module on numpy inputs and return its output as numpy."""
        import torch

        tensors = []
        for array in arrays:
            a = np.asarray(array)
            # Ray hands zero-copy, read-only batches; torch must not alias memory it may not own.
            t = torch.as_tensor(a if a.flags.writeable else a.copy())
            tensors.append(t.to(self.device, self._dtype if t.is_floating_point() else None))
        with torch.inference_mode():
            out = self.module(*tensors)
        return out.detach().cpu().numpy()


def save_torch(module: torch.nn.Module, config: dict[str, Any], directory: Path) -> Path:
    """Write ``module``'s weights and constructor ``config`` (JSON values only) to ``directory``."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    meta = {"format": FORMAT, "architecture": type(module).__name__, "config": config}
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return directory


def load_torch(node: ModelNode, directory: Path, device: torch.device) -> TorchModel:
    """Build ``node.architecture`` from the saved config and load its weights."""
    from safetensors.torch import load_file

    where: Where = {"node": node.name, "file": node.file, "line": node.line}
    if node.architecture is None:
        raise RegistryError(
            f"Model node has no architecture to load {node.uri} into.",
            fix="Pass architecture=YourModule (a torch.nn.Module class) to @model(...).",
            **where,
        )
    meta_path = directory / CONFIG_FILE
    if not meta_path.is_file() or not (directory / WEIGHTS_FILE).is_file():
        raise RegistryError(
            f"{node.uri} holds no {CONFIG_FILE} + {WEIGHTS_FILE} (found: "
            f"{', '.join(sorted(p.name for p in directory.iterdir())) or 'nothing'}).",
            fix="Register the model with graphops.registry.Registry.register_torch(...).",
            **where,
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT or meta.get("architecture") != node.architecture.__name__:
        raise RegistryError(
            f'{node.uri} was saved from architecture "{meta.get("architecture")}" '
            f'(format {meta.get("format")}), but the node declares "{node.architecture.__name__}".',
            fix="Point the node at a model trained for this architecture, or fix architecture=.",
            **where,
        )
    module = node.architecture(**meta["config"])
    try:
        module.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    except RuntimeError as exc:
        raise RegistryError(
            f"The weights of {node.uri} do not fit {node.architecture.__name__}: {exc}",
            fix="Retrain and register the model, or fix the config it was saved with.",
            **where,
        ) from exc
    return TorchModel(module, device)


def device_for(node: ModelNode) -> torch.device:
    """CUDA when the node asks for a GPU and one is present; the CPU otherwise (never fails)."""
    import torch

    return torch.device("cuda" if node.resources.needs_gpu and torch.cuda.is_available() else "cpu")


@register_format
class TorchFormat(ModelFormat):
    """graphops' torch layout: ``weights.safetensors`` + ``graphops-model.json``, no pickle.

    MLflow's own ``pytorch`` flavor saves the whole module with ``torch.save`` (a pickle): it is
    refused like every pickled model; register torch models with `Registry.register_torch`.
    """

    name = "torch"
    modules = ("torch", "safetensors")

    def matches(self, artifacts: Artifacts) -> bool:
        """A ``graphops-model.json`` of this format at the model's root."""
        meta = artifacts.directory / CONFIG_FILE
        return meta.is_file() and json.loads(meta.read_text()).get("format") == FORMAT

    def load(self, node: ModelNode, artifacts: Artifacts, *, gpu: bool) -> TorchModel:
        """The node's architecture with the saved weights, on its device."""
        return load_torch(node, artifacts.directory, device_for(node))
