"""Model formats: how registered weights become a callable model (torch: safetensors + config)."""

from graphops.models.torch import TorchModel, device_for, load_torch, save_torch

__all__ = ["TorchModel", "device_for", "load_torch", "save_torch"]
