"""The rule by which a node parameter's hint accepts the column type its producer declares.

Columns are numpy arrays (one entry per row), so the realistic hints are ``np.ndarray``,
``npt.NDArray[np.float32]`` (an array with a dtype), a ``TypedDict`` of those for several outputs,
and ``Any``. The rule compares what both sides declare and trusts the author where a hint says
nothing checkable:

- ``Any`` or ``object`` on either side accepts anything.
- An array hint accepts an array hint; when both name a dtype, the producer's must be the same
  or narrower (``NDArray[np.floating]`` accepts ``NDArray[np.float32]``, not ``NDArray[np.int64]``).
- A request field reaches nodes as an array column whose dtype the runtime chooses: any array
  hint accepts it, and so does a hint accepting the field's own (per-row) type, as the schema
  declares it (``text: str`` for a ``text: str`` field); any other hint (``pixels: float`` for a
  ``list[float]`` field) is a mismatch. Array dtypes are not compared with request fields.
- A union producer must be accepted member by member; a union consumer accepts what any member does.
- Other classes compare by subclass (ignoring their parameters; ``float`` accepts ``int``); what is no class (a TypeVar,
  a string that was not resolved, a non-runtime Protocol) is accepted.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import numpy as np


def accepts(wanted: Any, given: Any) -> bool:
    """Whether a parameter hinted ``wanted`` accepts a column declared ``given`` (see module doc)."""
    if wanted in (Any, object) or given is Any:
        return True
    if _is_union(given):
        return all(accepts(wanted, g) for g in typing.get_args(given))
    if _is_union(wanted):
        return any(accepts(w, given) for w in typing.get_args(wanted))
    want, have = _origin(wanted), _origin(given)
    if want is np.ndarray or have is np.ndarray:
        if want is not np.ndarray or have is not np.ndarray:
            return False
        low, high = _dtype(given), _dtype(wanted)
        return low is None or high is None or issubclass(low, high)
    if isinstance(want, type) and isinstance(have, type):
        if have in _PROMOTED.get(want, ()):
            return True
        try:
            return issubclass(have, want)
        except TypeError:  # e.g. a Protocol that is not runtime_checkable: nothing to compare
            return True
    return True


def request_accepts(wanted: Any, declared: Any) -> bool:
    """Whether a parameter hinted ``wanted`` accepts a request field declared ``declared``."""
    return accepts(wanted, np.ndarray) or accepts(wanted, declared)


_PROMOTED: dict[type, tuple[type, ...]] = {float: (int,), complex: (int, float)}
"""Builtin numbers a hint accepts beyond its subclasses, as type checkers do (PEP 484)."""


def type_name(hint: Any) -> str:
    """A hint as its author would write it, e.g. ``np.ndarray`` or ``NDArray[np.float32]``."""
    if _origin(hint) is np.ndarray and typing.get_args(hint):
        dtype = _dtype(hint)
        return f"NDArray[{type_name(dtype)}]" if dtype is not None else "np.ndarray"
    if isinstance(hint, type) and not typing.get_args(hint):
        module = {"numpy": "np.", "builtins": ""}.get(hint.__module__, f"{hint.__module__}.")
        return f"{module}{hint.__qualname__}"
    return repr(hint).replace("numpy.", "np.").replace("typing.", "")


def _is_union(hint: Any) -> bool:
    """Whether ``hint`` is ``A | B`` or ``Union[A, B]`` (``Optional`` included)."""
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _origin(hint: Any) -> Any:
    """The class behind a parameterized hint (``list`` for ``list[int]``), else the hint itself."""
    return typing.get_origin(hint) or hint


def _dtype(hint: Any) -> type | None:
    """The scalar type of ``np.ndarray[shape, np.dtype[X]]``, or None when it names none."""
    args = typing.get_args(hint)
    if len(args) != 2:
        return None
    scalars = typing.get_args(args[1])
    scalar = scalars[0] if scalars else None
    return scalar if isinstance(scalar, type) and issubclass(scalar, np.generic) else None
