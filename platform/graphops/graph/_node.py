"""Nodes: plain typed functions over column batches, and model nodes backed by MLflow."""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, is_typeddict

from graphops.errors import (
    GraphDefinitionError,
    InvalidModelURIError,
    MissingTypeHintError,
    Where,
)
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
        match = _MODEL_URI.fullmatch(uri) if isinstance(uri, str) else None
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

    Create nodes with the `node`, `model` or `lookup` declarations rather than directly.
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
    input_types: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """Declared type of each input column (parameter hints; absent: not declared)."""
    output_types: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """Declared type of each output column (return hint, or the TypedDict's field hints)."""

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


@dataclass(frozen=True)
class NodeSignature:
    """What a node reads and writes: column names and the types declared for them."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    single: bool
    input_types: dict[str, Any]
    output_types: dict[str, Any]


def _signature(fn: Callable[..., Any], *, name: str, model: bool, where: Where) -> NodeSignature:
    """Derive a node's columns and their types from a function's parameters and return hint."""
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
        returned = hints["return"]
        fields = typing.get_type_hints(returned) if is_typeddict(returned) else None
    except Exception as exc:  # NameError and friends from unresolvable string hints
        raise MissingTypeHintError(
            f"A type hint cannot be resolved ({exc}).",
            fix="Import every name used in the hints at module level.",
            **where,
        ) from exc
    if model and MODEL_PARAMETER not in params:
        raise GraphDefinitionError(
            f'A model node needs a parameter named "{MODEL_PARAMETER}" to receive the loaded model.',
            fix=f'Add "{MODEL_PARAMETER}: Model" (or TorchModel) and call it on the input columns.',
            **where,
        )
    inputs = tuple(p for p in params if not (model and p == MODEL_PARAMETER))
    outputs = {name: returned} if fields is None else fields
    return NodeSignature(
        inputs=inputs,
        outputs=tuple(outputs),
        single=fields is None,
        input_types={p: hints[p] for p in inputs},
        output_types=outputs,
    )


def _location(fn: Callable[..., Any]) -> tuple[str | None, int]:
    """Where ``fn`` is defined (its first decorator line, as its code object reports)."""
    return inspect.getsourcefile(fn), fn.__code__.co_firstlineno


_N = typing.TypeVar("_N", bound=Node)


def build_node(
    kind: type[_N],
    fn: Callable[..., Any],
    *,
    name: str,
    file: str | None,
    line: int | None,
    resources: Resources | None,
    scaling: Scaling | None,
    stage: str | None,
    signature: NodeSignature | None = None,
    **specific: Any,
) -> _N:
    """The one construction path of every node kind: name check, signature, settings, location.

    ``signature`` is read from ``fn``'s hints unless given (lookups declare theirs); ``specific``
    holds the fields of ``kind`` beyond those of `Node`.
    """
    where: Where = {"node": name, "file": file, "line": line}
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise GraphDefinitionError(
            f'Got "{name}" as a node name. Names are lowercase snake_case.',
            fix="Rename it (the function, or the name= given to the decorator).",
            **where,
        )
    if signature is None:
        signature = _signature(fn, name=name, model=issubclass(kind, ModelNode), where=where)
    return kind(
        fn=fn,
        name=name,
        inputs=signature.inputs,
        outputs=signature.outputs,
        resources=resources or Resources(),
        scaling=scaling or Scaling(),
        stage=stage,
        file=file,
        line=line,
        _single_output=signature.single,
        input_types=signature.input_types,
        output_types=signature.output_types,
        **specific,
    )


def node(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    resources: Resources | None = None,
    scaling: Scaling | None = None,
    stage: str | None = None,
) -> Any:
    """Turn a typed function over columns into a graph node.

    Parameter names are the input columns it reads. A ``-> np.ndarray`` return makes one output
    column named after the node; a ``TypedDict`` return names several (return a dict).

    Args:
        fn: The function (when used as ``@node`` without arguments, or called as
            ``node(fn, name=...)``).
        name: Node name (and single output column); defaults to the function's name. Lets one
            function serve as several nodes, e.g. ``node(normalize, name="member_norm")``.
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
        file, line = _location(f)
        return build_node(
            Node,
            f,
            name=f.__name__ if name is None else name,
            file=file,
            line=line,
            resources=resources,
            scaling=scaling,
            stage=stage,
        )

    return wrap(fn) if fn is not None else wrap


def model(
    uri: str,
    *,
    name: str | None = None,
    architecture: type | None = None,
    batching: Batching | None = None,
    resources: Resources | None = None,
    scaling: Scaling | None = None,
    stage: str | None = None,
) -> Callable[[Callable[..., Any]], ModelNode]:
    """Declare a model node: a typed function that receives the registered model as ``model``.

    Args:
        uri: ``models:/name@alias`` or ``models:/name/<version>`` in the MLflow registry.
        name: Node name (and single output column); defaults to the function's name, so one
            function can back two model nodes: ``model("models:/a@champion", name="a")(score)``.
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
        file, line = _location(f)
        called = f.__name__ if name is None else name
        try:
            parsed = ModelURI.parse(uri)
        except InvalidModelURIError as exc:
            exc.node = called
            raise exc.locate(file=file or "?", line=line) from None
        return build_node(
            ModelNode,
            f,
            name=called,
            file=file,
            line=line,
            resources=resources,
            scaling=scaling,
            stage=stage,
            uri=parsed,
            architecture=architecture,
            batching=batching or Batching(),
        )

    return wrap
