"""Traffic between graph versions, as pure functions: arm choice, stickiness, answers compared.

An arm is chosen by hashing the sticky key's value into one of 10,000 buckets laid out by the
arms' cumulative weights (salted with the split's name), so the same value always lands on the
same arm, and a weight change moves only the keys of the buckets that change hands. The
splitting ingress (`graphops.runtime._splitter`) calls these; unit tests call them directly.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import math
import random
import re
from collections.abc import Sequence
from typing import Any

BUCKETS = 10_000
"""Resolution of the weights: 0.01 percentage points."""

_ROW = re.compile(r"first: row (\d+),")


class Picker:
    """Chooses an arm (an index into ``weights``) per sticky-key value, or at random without one.

    Args:
        weights: Each arm's share (any scale; an arm of weight 0 is never chosen).
        salt: Salts the hash (the split's name): another salt reassigns the keys.
    """

    def __init__(self, weights: Sequence[float], salt: str) -> None:
        total = sum(weights)
        edges, acc = [], 0.0
        for weight in weights:
            acc += weight
            edges.append(round(acc / total * BUCKETS) if total else BUCKETS)
        self.edges = edges
        self.last = max((i for i, w in enumerate(weights) if w > 0), default=0)
        self.salt = hashlib.blake2b(salt.encode(), digest_size=32).digest()
        self.only = next((i for i, w in enumerate(weights) if w >= total > 0), None)

    def bucket(self, key: Any) -> int:
        """The bucket (0..9999) of a sticky-key value: stable across processes and restarts."""
        digest = hashlib.blake2b(key_text(key).encode(), digest_size=8, key=self.salt).digest()
        return int.from_bytes(digest, "big") % BUCKETS

    def pick(self, key: Any = None) -> int:
        """Index of the arm for ``key``; a random arm (by weight) when ``key`` is None."""
        if self.only is not None:  # one arm takes everything: no hash
            return self.only
        bucket = random.randrange(BUCKETS) if key is None else self.bucket(key)
        return min(bisect.bisect_right(self.edges, bucket), self.last)


def key_text(value: Any) -> str:
    """The text a sticky-key value is hashed as: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    if hasattr(value, "tolist"):  # a numpy value of a parsed column
        value = value.tolist()
    return json.dumps(value, sort_keys=True)


def outputs(answer: Any, field: str | None) -> list[Any]:
    """The main output value of each row of a JSON answer (``field``, or the first field)."""
    rows = answer if isinstance(answer, list) else [answer]
    values = []
    for row in rows:
        if isinstance(row, dict) and row:
            value = row.get(field) if field else next(iter(row.values()))
            values.append(value[0] if isinstance(value, list) and value else value)
    return values


def column_outputs(column: Any) -> list[Any]:
    """`outputs` of a response column (numpy): its first element per row when rows are lists."""
    values = column.tolist() if hasattr(column, "tolist") else list(column)
    return [v[0] if isinstance(v, list) and v else v for v in values]


def agree(given: list[Any], mirrored: list[Any]) -> tuple[int, int]:
    """(rows compared, rows whose main outputs agree); floats within 1e-6 relative."""
    agreed = 0
    for a, b in zip(given, mirrored, strict=False):
        if isinstance(a, float) or isinstance(b, float):
            with contextlib.suppress(TypeError, ValueError):
                agreed += math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
        else:
            agreed += a == b
    return min(len(given), len(mirrored)), agreed


def groups(picks: Sequence[int]) -> dict[int, list[int]]:
    """Arm -> the positions of the rows it answers, in order."""
    out: dict[int, list[int]] = {}
    for position, arm in enumerate(picks):
        out.setdefault(arm, []).append(position)
    return out


def renumber(answer: bytes, where: list[int]) -> bytes:
    """An arm's error about a sub-list, with the row numbers of the client's list."""
    try:
        error = json.loads(answer)
    except ValueError:
        return answer
    if not isinstance(error, dict):
        return answer
    for item in error.get("detail") or []:
        loc = item.get("loc") or []
        if len(loc) > 1 and isinstance(loc[1], int) and loc[1] < len(where):
            loc[1] = where[loc[1]]
    if isinstance(error.get("error"), str):
        error["error"] = _ROW.sub(
            lambda m: f"first: row {where[int(m.group(1)) - 1] + 1},", error["error"]
        )
    return json.dumps(error).encode()
