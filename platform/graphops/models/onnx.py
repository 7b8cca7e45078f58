"""ONNX models run by ONNX Runtime: the ``model.onnx`` MLflow's onnx flavor writes, no pickle.

onnxruntime is imported when an ONNX model is loaded, not with this module. The session runs on
the CPU provider, with CUDA first when the node asks for a GPU and onnxruntime offers it (never
failing without one); its intra-op threads are few (one per CPU the node reserves), so replicas
sharing a node do not each take every core.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from graphops.errors import RegistryError, Where
from graphops.graph import ModelNode
from graphops.models._format import Artifacts, ModelFormat, register_format

if TYPE_CHECKING:
    import onnxruntime

MODEL_FILE = "model.onnx"
"""The file name MLflow's onnx flavor saves (``MLmodel``'s ``flavors.onnx.data`` names it)."""
THREADS_ENV = "GRAPHOPS_ONNX_THREADS"
"""Overrides the intra-op threads of every ONNX Runtime session (an integer >= 1)."""
# ONNX's tensor element types as ONNX Runtime names them -> numpy dtypes.
_DTYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


class OnnxModel:
    """An ONNX Runtime session behind the numpy interface: ``model(array, ...) -> array``.

    Arrays feed the session's inputs in order, each cast to the element type the input declares
    and made contiguous; the first output comes back as a numpy array.
    """

    def __init__(self, session: onnxruntime.InferenceSession, uri: str, where: Where) -> None:
        self.session = session
        self.uri = uri
        self._where = where
        self._inputs = [(i.name, _DTYPES.get(i.type)) for i in session.get_inputs()]
        self._output = session.get_outputs()[0].name

    @property
    def providers(self) -> list[str]:
        """The execution providers the session runs on, preferred first."""
        return list(self.session.get_providers())

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        """Run the session on numpy inputs and return its first output."""
        if len(arrays) != len(self._inputs):
            names = ", ".join(name for name, _ in self._inputs)
            raise RegistryError(
                f"{self.uri} takes {len(self._inputs)} input(s) ({names}), but the node passed "
                f"{len(arrays)}.",
                fix="Call model(...) with one array per ONNX input, in the model's input order.",
                **self._where,
            )
        feed = {
            name: np.ascontiguousarray(array, dtype=dtype)
            for (name, dtype), array in zip(self._inputs, arrays, strict=True)
        }
        out = self.session.run([self._output], feed)[0]
        return np.asarray(out)


def session_threads(node: ModelNode) -> int:
    """Intra-op threads of a node's session: `THREADS_ENV`, else its CPUs rounded up (>= 1)."""
    configured = os.environ.get(THREADS_ENV)
    if configured:
        try:
            return max(1, int(configured))
        except ValueError:
            raise RegistryError(
                f'Got "{configured}" for {THREADS_ENV}. It must be an integer >= 1.',
                fix=f"Set {THREADS_ENV} to the threads each ONNX Runtime session may use, or unset it.",
            ) from None
    return max(1, math.ceil(node.resources.cpus))


def providers_for(available: list[str], *, gpu: bool) -> list[str]:
    """CUDA first when asked for and available, then the CPU provider (always present)."""
    chosen = ["CUDAExecutionProvider"] if gpu and "CUDAExecutionProvider" in available else []
    return [*chosen, "CPUExecutionProvider"]


def model_file(artifacts: Artifacts) -> Path:
    """The ``.onnx`` file of ``artifacts``: what ``flavors.onnx.data`` names, else model.onnx."""
    flavor: dict[str, Any] = dict(artifacts.flavors.get(OnnxFormat.flavor or "", {}) or {})
    return artifacts.directory / str(flavor.get("data") or MODEL_FILE)


def load_onnx(node: ModelNode, artifacts: Artifacts, *, gpu: bool) -> OnnxModel:
    """An ONNX Runtime session over the model file of ``artifacts``; errors name model and fix."""
    import onnxruntime as ort

    where: Where = {"node": node.name, "file": node.file, "line": node.line}
    path = model_file(artifacts)
    if not path.is_file():
        found = ", ".join(sorted(p.name for p in artifacts.directory.iterdir())) or "nothing"
        raise RegistryError(
            f"{artifacts.uri} has no ONNX model file {path.name} (its files: {found}).",
            fix="Log the model with mlflow.onnx.log_model (or `graphops export onnx`) and point "
            "the node at that version.",
            **where,
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = session_threads(node)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings go to stderr of every replica
    try:
        # From the path, not the bytes: models saved with external data find it beside the file.
        session = ort.InferenceSession(
            str(path),
            sess_options=options,
            providers=providers_for(list(ort.get_available_providers()), gpu=gpu),
        )
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... classes
        raise RegistryError(
            f"ONNX Runtime cannot load {artifacts.uri} ({path.name}): {exc}",
            fix="The file is corrupt or uses operators this onnxruntime lacks: re-export the "
            "model (e.g. `graphops export onnx GRAPH NODE`) and register it as a new version.",
            **where,
        ) from exc
    return OnnxModel(session, artifacts.uri, where)


@register_format
class OnnxFormat(ModelFormat):
    """MLflow's onnx flavor (``mlflow.onnx.log_model``), run by ONNX Runtime."""

    name = "onnx"
    flavor = "onnx"
    extra = "onnx"
    modules = ("onnxruntime",)

    def load(self, node: ModelNode, artifacts: Artifacts, *, gpu: bool) -> OnnxModel:
        """An ONNX Runtime session on the CPU (CUDA first when ``gpu`` and available)."""
        return load_onnx(node, artifacts, gpu=gpu)
