"""Nodes: plain typed functions over column batches, and model nodes backed by MLflow."""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, is_typeddict

from graphops.errors import GraphDefinitionError, InvalidModelURIError, MissingTypeHintError
from graphops.graph._settings import Batching, Resources, Scaling

MODEL_PARAMETER = "model"
"""Name of the parameter through which a model node receives its loaded model."""

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_MODEL_URI = re.compile(
    r"^models:/(?P<name>[A-Za-z0-9][A-Za-z0-9_.\-]*)"
    r"(?:@(?P<alias>[A-Za-z0-9_\-]+)|/(?P<version>[1-9][0-9]*))$"
)

Batch = dict[str, Any]
"""A batch: column name -> numpy array, all of the same length (Ray Data's ``numpy`` format)."""


@dataclass(frozen=True)
class ModelURI:
    """A parsed MLflow model reference: ``models:/name@alias`` or ``models:/name/3``."""

    name: str
    alias: str | None = None
    version: int | None = None

    @classmethod
    def parse(cls, uri: str) -> ModelURI:
        """Parse ``uri``; raise `InvalidModelURIError` naming the accepted forms."""
        match = _MODEL_URI.match(uri) if isinstance(uri, str) else None
        if match is None:
            raise InvalidModelURIError(
                f'Got "{uri}" for the model URI.',
                fix='Use "models:/<registered name>@<alias>" (e.g. "models:/digits@champion") '
                'or "models:/<registered name>/<version>" (e.g. "models:/digits/3").',
            )
        version = match["version"]
        return cls(match["name"], match["alias"], int(version) if version else None)

    def __str__(self) -> str:
        ref = f"@{self.alias}" if self.alias else f"/{self.version}"
        return f"models:/{self.name}{ref}"


@dataclass(frozen=True, eq=False)
class Node:
    """One step of a graph: reads the columns named by its parameters, returns new columns.

    Create nodes with the `node` decorator rather than directly.
    """

    fn: Callable[..., Any]
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    resources: Resources = field(default_factory=Resources)
    scaling: Scaling = field(default_factory=Scaling)
    stage: str | None = None
    file: str | None = None
    line: int | None = None
    _single_output: bool = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapped function unchanged (nodes stay plain functions for unit tests)."""
        return self.fn(*args, **kwargs)

    def run(self, batch: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        """Run the node on a batch and return its output columns as a dict."""
        result = self.fn(**{name: batch[name] for name in self.inputs}, **extra)
        return {self.outputs[0]: result} if self._single_output else result

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}: {', '.join(self.inputs)} -> {', '.join(self.outputs)})"


@dataclass(frozen=True, eq=False, repr=False)
class ModelNode(Node):
    """A node that runs a model from the MLflow registry; it receives it as ``model``."""

    uri: ModelURI = field(default_factory=lambda: ModelURI("unset"))
    architecture: type | None = None
    batching: Batching = field(default_factory=Batching)


def _signature(
    fn: Callable[..., Any], *, model: bool
) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
    """Derive (inputs, outputs, single_output) from a function's parameters and return hint."""
    name, file, line = fn.__name__, inspect.getsourcefile(fn), fn.__code__.co_firstlineno
    where = {"node": name, "file": file, "line": line}
    params = inspect.signature(fn).parameters
    for param in params.values():
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            raise GraphDefinitionError(
                f'Got "{param}" as a parameter. A node reads columns by name only.',
                fix="Replace *args/**kwargs with one parameter per input column.",
                **where,
            )
        if param.default is not param.empty:
            raise GraphDefinitionError(
                f'Parameter "{param.name}" has a default value. Every parameter is an input column.',
                fix="Remove the default; put constants in the function body or a request field.",
                **where,
            )
        if param.annotation is param.empty:
            raise MissingTypeHintError(
                f'Parameter "{param.name}" has no type hint.',
                fix=f'Annotate it, e.g. "{param.name}: np.ndarray".',
                **where,
            )
    if inspect.signature(fn).return_annotation is inspect.Signature.empty:
        raise MissingTypeHintError(
            "The return value has no type hint.",
            fix=f'Annotate it: "-> np.ndarray" for one column named "{name}", '
            "or a TypedDict whose keys name several output columns.",
            **where,
        )
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # NameError and friends from unresolvable string hints
        raise MissingTypeHintError(
            f"A type hint cannot be resolved ({exc}).",
            fix="Import every name used in the hints at module level.",
            **where,
        ) from exc
    inputs = tuple(p for p in params if not (model and p == MODEL_PARAMETER))
    if model and MODEL_PARAMETER not in params:
        raise GraphDefinitionError(
            f'A model node needs a parameter named "{MODEL_PARAMETER}" to receive the loaded model.',
            fix=f'Add "{MODEL_PARAMETER}: TorchModel" and call it on the input columns.',
            **where,
        )
    returned = hints["return"]
    if is_typeddict(returned):
        return inputs, tuple(typing.get_type_hints(returned)), False
    return inputs, (name,), True


def _check_name(name: str, fn: Callable[..., Any]) -> None:
    if not _NAME.match(name):
        raise GraphDefinitionError(
            f'Got "{name}" as a node name. Names are lowercase snake_case.',
            fix="Rename the function.",
            file=inspect.getsourcefile(fn),
            line=fn.__code__.co_firstlineno,
        )


def node(
    fn: Callable[..., Any] | None = None,
    *,
    resources: Resources | None = None,
    scaling: Scaling | None = None,
    stage: str | None = None,
) -> Any:
    """Turn a typed function over columns into a graph node.

    Parameter names are the input columns it reads. A ``-> np.ndarray`` return makes one output
    column named after the function; a ``TypedDict`` return names several (return a dict).

    Args:
        fn: The function (when used as ``@node`` without arguments).
        resources: What a replica reserves; defaults to one CPU.
        scaling: Replicas and autoscaling bounds of the node's stage.
        stage: Explicit stage name; nodes sharing it are fused together, overriding the planner.

    Returns:
        A `Node` (or a decorator producing one).

    Example:
        >>> @node
        ... def scaled(pixels: np.ndarray) -> np.ndarray:
        ...     return pixels / 16.0
    """

    def wrap(f: Callable[..., Any]) -> Node:
        _check_name(f.__name__, f)
        inputs, outputs, single = _signature(f, model=False)
        return Node(
            fn=f,
            name=f.__name__,
            inputs=inputs,
            outputs=outputs,
            resources=resources or Resources(),
            scaling=scaling or Scaling(),
            stage=stage,
            file=inspect.getsourcefile(f),
            line=f.__code__.co_firstlineno,
            _single_output=single,
        )

    return wrap(fn) if fn is not None else wrap


def model(
    uri: str,
    *,
    architecture: type | None = None,
    batching: Batching | None = None,
    resources: Resources | None = None,
    scaling: Scaling | None = None,
    stage: str | None = None,
) -> Callable[[Callable[..., Any]], ModelNode]:
    """Declare a model node: a typed function that receives the registered model as ``model``.

    Args:
        uri: ``models:/name@alias`` or ``models:/name/<version>`` in the MLflow registry.
        architecture: The ``torch.nn.Module`` class whose weights the registered model holds;
            weights load as a safetensors state dict, never by unpickling code.
        batching: Dynamic batching (max batch size, max wait).
        resources: What a replica reserves (usually a GPU in production).
        scaling: Replicas and autoscaling bounds.
        stage: Explicit stage name (see `node`).

    Returns:
        A decorator producing a `ModelNode`.
    """

    def wrap(f: Callable[..., Any]) -> ModelNode:
        _check_name(f.__name__, f)
        try:
            parsed = ModelURI.parse(uri)
        except InvalidModelURIError as exc:
            exc.node = f.__name__
            raise exc.locate(
                file=inspect.getsourcefile(f) or "?", line=f.__code__.co_firstlineno
            ) from None
        inputs, outputs, single = _signature(f, model=True)
        return ModelNode(
            fn=f,
            name=f.__name__,
            inputs=inputs,
            outputs=outputs,
            resources=resources or Resources(),
            scaling=scaling or Scaling(),
            stage=stage,
            file=inspect.getsourcefile(f),
            line=f.__code__.co_firstlineno,
            _single_output=single,
            uri=parsed,
            architecture=architecture,
            batching=batching or Batching(),
        )

    return wrap
