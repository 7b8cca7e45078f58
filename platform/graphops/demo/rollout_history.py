"""What the main job's rollouts commit, and what earlier runs of them left in the sandbox.

The rollout step (`graphops.demo.rollout`) commits two versions of a graph in the sandbox (`GOOD`, then `BROKEN`) and reverts
the broken one; `apply` writes a record of each rollout in ``rollouts.yaml``. A re-run reads
that history back (`history`): a finished round is shown again, an unfinished one is taken up
where it stopped, and new versions are only made on request (``--canary-again``), each with a
patch number no validation recorded at other files (`free_version`). `RolloutRun` is what one
rollout of a run expected, recorded and saw.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GOOD = "a version bump, same behaviour"
"""What the commit of the canary's good version says after ``<graph> <version>: ``."""
BROKEN = "fails one request in five (a bug)"
"""What the commit of the canary's broken version says after ``<graph> <version>: ``."""
_VERSION = re.compile(r'version="(\d+)\.(\d+)\.(\d+)"')

BODY = "    return pixels.astype(np.float32) / 16.0\n"
"""The line of digits' code the broken version's bug is called before."""
FAILING = '''

_calls: list[int] = []


def _one_in_five(pixels: np.ndarray) -> None:
    """A bug in the one-request path: every fifth request that comes alone fails.

    Offline validation sends batches, so it passes; the smoke tests (the first ones) pass too.
    """
    if len(pixels) == 1:
        _calls.append(1)
        if len(_calls) % 5 == 0:
            raise RuntimeError("this version fails one request in five")
'''
"""The bug the broken version adds at the end of digits' ``__init__.py``."""


@dataclass(frozen=True)
class Round:
    """The canary's latest round in the sandbox's history (each field None until it was made).

    Attributes:
        good: Version of the good commit.
        broken: Version of the broken commit made after it.
        reverted: The broken commit was reverted after it.
    """

    good: str | None = None
    broken: str | None = None
    reverted: bool = False

    def finished(self, records: Mapping[str, Mapping[str, Any]]) -> bool:
        """Both versions were rolled out (each has a record) and the broken one was reverted."""
        return bool(
            self.good and self.broken and self.reverted and {self.good, self.broken} <= set(records)
        )


def commit_message(graph: str, version: str, *, broken: bool) -> str:
    """The first line of the commit of a canary version (what `history` looks for)."""
    return f"{graph} {version}: {BROKEN if broken else GOOD}"


def history(summaries: Iterable[str], graph: str) -> Round:
    """The latest round of ``graph``'s canary, from the first lines of main's commits, newest first.

    A good commit starts a round; a broken commit after it, then that commit's revert, follow.
    """
    found = Round()
    pattern = re.compile(rf"^(Revert \")?{re.escape(graph)} (\S+): (.*?)\"?$")
    for summary in reversed(list(summaries)):  # oldest first
        match = pattern.match(summary)
        if match is None:
            continue
        revert, version, what = match.groups()
        if what == GOOD and not revert:
            found = Round(good=version)
        elif what == BROKEN and found.good and not revert:
            found = Round(good=found.good, broken=version)
        elif what == BROKEN and revert and version == found.broken:
            found = Round(good=found.good, broken=found.broken, reverted=True)
    return found


def latest_records(records: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Version -> its latest rollout record, from ``rollouts.yaml``'s list (newest first)."""
    out: dict[str, Mapping[str, Any]] = {}
    for record in records:
        out.setdefault(str(record.get("version")), record)
    return out


def bumped(text: str, version: str) -> str:
    """``text`` (a graph's ``__init__.py``) with its ``version="x.y.z"`` set to ``version``."""
    found = _VERSION.search(text)
    if found is None:
        raise ValueError('no version="x.y.z" in the graph\'s __init__.py')
    return text[: found.start()] + f'version="{version}"' + text[found.end() :]


def free_version(text: str, taken: Callable[[str, str], bool], tries: int = 100) -> str:
    """The first patch version after ``text``'s whose files nothing recorded differently.

    Args:
        text: The graph's ``__init__.py`` as it is now.
        taken: ``taken(version, text with that version)`` is True when that version is already
            recorded at other files (a passed validation at another content hash).
        tries: How many patch numbers to try.
    """
    found = _VERSION.search(text)
    if found is None:
        raise ValueError('no version="x.y.z" in the graph\'s __init__.py')
    major, minor, patch = found.groups()
    for step in range(1, tries + 1):
        version = f"{major}.{minor}.{int(patch) + step}"
        if not taken(version, bumped(text, version)):
            return version
    raise ValueError(f"no free version in {tries} patch numbers after {found.group(0)}")


@dataclass
class RolloutRun:
    """One rollout of the demo: what was expected, what its record says, what the load saw."""

    graph: str
    version: str
    expected: str
    record: Mapping[str, Any]
    failed: int | None
    total: int | None
    """What the load saw (None: an earlier run's rollout, shown again)."""

    @property
    def outcome(self) -> str:
        """The record's outcome (``missing`` when no record of this version was made)."""
        return str(self.record.get("outcome", "missing"))
