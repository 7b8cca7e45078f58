"""The Graph: name, version, schemas and nodes; its DAG is derived from column names."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import BaseModel

from graphops.errors import (
    ColumnTypeError,
    CycleError,
    DuplicateColumnError,
    GraphDefinitionError,
    InvalidVersionError,
    MissingColumnError,
    UnknownColumnError,
    did_you_mean,
)
from graphops.graph._node import ModelNode, Node
from graphops.graph._settings import Validation
from graphops.graph._types import accepts, request_accepts, type_name

# semver.org's recommended regular expression.
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
_GRAPH_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True, eq=False)
class Graph:
    """An inference graph: request schema -> nodes -> response schema, versioned.

    The DAG is derived from column names: a node depends on whichever node produces each of its
    parameters; request fields are the source columns. Every structural check runs here, eagerly.

    Args:
        name: Graph name, lowercase snake_case, equal to its package folder under ``graphs/``.
        version: Semantic version ``MAJOR.MINOR.PATCH``; bump it whenever the package changes.
        request: Pydantic model of one request; its fields are the source columns.
        response: Pydantic model of one response; every field must be produced by a node.
        nodes: The nodes, in any order.
        validation: Offline validation data, label column and metric gates.
        description: One line shown by ``graphops list``.
        lax_requests: Let online requests coerce values pydantic's lax way (``"3"`` or ``true``
            into a number). Default: strict, so a wrong type is a 422, never a silent number.
    """

    name: str
    version: str
    request: type[BaseModel]
    response: type[BaseModel]
    nodes: Sequence[Node]
    validation: Validation | None = None
    description: str = ""
    lax_requests: bool = False
    _producers: dict[str, Node] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        self._check_identity()
        object.__setattr__(self, "_producers", self._check_columns())
        self._check_cycles()
        self._check_types()
        self._check_outputs()

    # -- derived structure -------------------------------------------------------------------

    @property
    def request_fields(self) -> tuple[str, ...]:
        """Source columns: the request schema's field names."""
        return tuple(self.request.model_fields)

    @property
    def response_fields(self) -> tuple[str, ...]:
        """Result columns: the response schema's field names."""
        return tuple(self.response.model_fields)

    @property
    def model_nodes(self) -> tuple[ModelNode, ...]:
        """The nodes that run registered models."""
        return tuple(n for n in self.nodes if isinstance(n, ModelNode))

    def producer(self, column: str) -> Node | None:
        """The node producing ``column``, or None for a request field."""
        return self._producers.get(column)

    def upstream(self, node: Node) -> tuple[Node, ...]:
        """Nodes whose outputs ``node`` reads, in declaration order."""
        found = {self._producers[c] for c in node.inputs if c in self._producers}
        return tuple(n for n in self.nodes if n in found)

    @cached_property
    def order(self) -> tuple[Node, ...]:
        """A deterministic topological order (ties broken by declaration order)."""
        done: list[Node] = []
        pending = list(self.nodes)
        while pending:
            ready = next(n for n in pending if all(u in done for u in self.upstream(n)))
            done.append(ready)
            pending.remove(ready)
        return tuple(done)

    def node(self, name: str) -> Node:
        """Look a node up by name."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(
            f"graph '{self.name}' has no node '{name}'.{did_you_mean(name, self._names)}"
        )

    @property
    def _names(self) -> list[str]:
        return [n.name for n in self.nodes]

    # -- checks ------------------------------------------------------------------------------

    def _check_identity(self) -> None:
        g = self.name
        if not isinstance(g, str) or not _GRAPH_NAME.fullmatch(g):
            raise GraphDefinitionError(
                f'Got "{g}" for the graph name. Names are lowercase snake_case starting with a letter.',
                fix='Rename the graph (and its package folder) e.g. to "my_graph".',
            )
        if not isinstance(self.version, str) or not _SEMVER.fullmatch(self.version):
            raise InvalidVersionError(
                f'Got "{self.version}" for version. It must be semantic versioning MAJOR.MINOR.PATCH.',
                fix='Use e.g. version="1.0.0".',
                graph=g,
            )
        for label, schema in (("request", self.request), ("response", self.response)):
            if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
                raise GraphDefinitionError(
                    f"Got {schema!r} for {label}. It must be a pydantic BaseModel subclass.",
                    fix=f"Declare `class My{label.title()}(BaseModel): ...` and pass the class.",
                    graph=g,
                )
        if not self.nodes:
            raise GraphDefinitionError("The graph has no nodes.", fix="Pass nodes=[...].", graph=g)
        seen: set[str] = set()
        for n in self.nodes:
            if not isinstance(n, Node):
                raise GraphDefinitionError(
                    f"Got {n!r} in nodes. Every entry must be a node.",
                    fix="Decorate the function with @node or @model(...).",
                    graph=g,
                )
            if n.name in seen:
                raise GraphDefinitionError(
                    f'Two nodes are named "{n.name}".', fix="Rename one of them.", **_at(g, n)
                )
            seen.add(n.name)

    def _check_columns(self) -> dict[str, Node]:
        producers: dict[str, Node] = {}
        for n in self.nodes:
            for column in n.outputs:
                if column in self.request_fields:
                    raise DuplicateColumnError(
                        f'Column "{column}" is written by this node but is already a request field.',
                        fix="Give the output another name.",
                        **_at(self.name, n),
                    )
                if column in producers:
                    raise DuplicateColumnError(
                        f'Column "{column}" is written by both node "{producers[column].name}" '
                        f'and node "{n.name}".',
                        fix="Each column has exactly one producer: rename one of the outputs.",
                        **_at(self.name, n),
                    )
                producers[column] = n
        known = [*self.request_fields, *producers]
        for n in self.nodes:
            for column in n.inputs:
                if column not in known:
                    raise UnknownColumnError(
                        f'Parameter "{column}" is neither a request field nor a column any node '
                        f"produces.{did_you_mean(column, known)}",
                        fix=f"Known columns: {', '.join(sorted(known))}.",
                        **_at(self.name, n),
                    )
        return producers

    def _check_cycles(self) -> None:
        state: dict[Node, int] = {}  # 1 = on the current path, 2 = finished
        path: list[Node] = []

        def visit(n: Node) -> None:
            state[n] = 1
            path.append(n)
            for up in self.upstream(n):
                if state.get(up) == 1:
                    cycle = [*path[path.index(up) :], up]
                    steps = ", ".join(
                        f'"{a.name}" reads {_shared(a, b)} from "{b.name}"'
                        for a, b in itertools.pairwise(cycle)
                    )
                    names = " -> ".join(x.name for x in reversed(cycle))
                    raise CycleError(
                        f"Nodes form a cycle {names}: {steps}.",
                        fix="Break it: one of these nodes must not read a column produced downstream.",
                        **_at(self.name, up),
                    )
                if up not in state:
                    visit(up)
            path.pop()
            state[n] = 2

        for n in self.nodes:
            if n not in state:
                visit(n)

    def _check_types(self) -> None:
        for n in self.nodes:
            for column, wanted in n.input_types.items():
                producer = self._producers.get(column)
                if producer is None:
                    declared = self.request.model_fields[column].annotation
                    if request_accepts(wanted, declared):
                        continue
                    raise ColumnTypeError(
                        f'Parameter "{column}" of node "{n.name}" is annotated '
                        f'{type_name(wanted)}, but "{column}" is a request field declared '
                        f"{type_name(declared)} in {self.request.__name__}, which reaches nodes as "
                        "an array column.",
                        fix=f'Annotate "{column}: np.ndarray" (what the node receives) or '
                        f'"{column}: {type_name(declared)}" (the field\'s type).',
                        **_at(self.name, n),
                    )
                given = producer.output_types.get(column, Any)
                if accepts(wanted, given):
                    continue
                raise ColumnTypeError(
                    f'Parameter "{column}" of node "{n.name}" is annotated {type_name(wanted)}, '
                    f'but node "{producer.name}" ({producer.file}:{producer.line}) returns '
                    f'"{column}" as {type_name(given)}.',
                    fix=f'Annotate "{column}: {type_name(given)}" (or a type accepting it), '
                    f'or change what node "{producer.name}" returns.',
                    **_at(self.name, n),
                )

    def _check_outputs(self) -> None:
        known = [*self.request_fields, *self._producers]
        if self.validation and self.validation.label in known:
            raise DuplicateColumnError(
                f'The validation label column "{self.validation.label}" is also a request field or '
                "node output, so the truth would be overwritten by the prediction.",
                fix='Name the label column of the dataset differently (e.g. "true_label").',
                graph=self.name,
            )
        wanted: list[tuple[str, str]] = [(f, "response field") for f in self.response_fields]
        if self.validation:
            wanted += [(m.column, f'metric "{m.name}" column') for m in self.validation.metrics]
        for column, role in wanted:
            if column not in known:
                raise MissingColumnError(
                    f'The {role} "{column}" is produced by no node.{did_you_mean(column, known)}',
                    fix="Add a node returning it, or rename it to an existing column.",
                    graph=self.name,
                )


def _shared(reader: Node, producer: Node) -> str:
    """The columns ``reader`` takes from ``producer``, for cycle messages."""
    return ", ".join(c for c in reader.inputs if c in producer.outputs)


def _at(graph: str, n: Node) -> dict[str, Any]:
    return {"graph": graph, "node": n.name, "file": n.file, "line": n.line}
