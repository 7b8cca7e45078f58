"""Model formats: how registered files become a callable model, one module per format.

`FORMATS` holds every format by name (torch, onnx, xgboost, lightgbm, sklearn, transformers,
and pyfunc for pickled models a platform team allowed); `load_model` picks one from the files.
No format module imports its runtime (torch, onnxruntime...) before a model of it is loaded.
"""

from graphops.models import (  # noqa: F401  (each registers its format)
    lightgbm,
    onnx,
    pyfunc,
    sklearn,
    torch,
    transformers,
    xgboost,
)
from graphops.models._format import (
    FORMATS,
    MLMODEL_FILE,
    PICKLE_OPT_IN,
    Artifacts,
    Model,
    ModelFormat,
    detect,
    format_of,
    load_model,
    pickle_refused,
    register_format,
)
from graphops.models.onnx import OnnxModel
from graphops.models.torch import TorchModel, device_for, load_torch, save_torch

__all__ = [
    "FORMATS",
    "MLMODEL_FILE",
    "PICKLE_OPT_IN",
    "Artifacts",
    "Model",
    "ModelFormat",
    "OnnxModel",
    "TorchModel",
    "detect",
    "device_for",
    "format_of",
    "load_model",
    "load_torch",
    "pickle_refused",
    "register_format",
    "save_torch",
]
