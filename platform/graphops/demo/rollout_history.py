"""What the main job's rollouts commit, and what earlier runs of them left in the sandbox.

The rollout step (`graphops.demo.rollout`) commits three versions of a graph in the sandbox
(`GOOD`, then `BROKEN`, reverted, then `DISAGREES`, reverted); `apply` writes a record of each
rollout in ``rollouts.yaml``. A re-run reads that history back (`history`): a finished round is
shown again, an unfinished one is taken up where it stopped, and new versions are only made on
request (``--canary-again``), each with a patch number no validation recorded at other files
(`free_version`). `RolloutRun` is what one rollout of a run expected, recorded and saw, and
`RolloutRun.problems` what of it the demo counts as a failure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

Kind = Literal["good", "broken", "disagrees"]
"""A version of the round: a bump, one failing requests (canary), one disagreeing (shadow)."""
GOOD = "a version bump, same behaviour"
"""What the commit of the canary's good version says after ``<graph> <version>: ``."""
BROKEN = "fails one request in five (a bug)"
"""What the commit of the canary's broken version says after ``<graph> <version>: ``."""
DISAGREES = "answers another digit to a request alone (a bug)"
"""What the commit of the shadow round's version says after ``<graph> <version>: ``."""
MESSAGES: dict[Kind, str] = {"good": GOOD, "broken": BROKEN, "disagrees": DISAGREES}
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

LABEL = '"label": probs.argmax(axis=1)'
"""What digits' code answers as its label: the shadow round's version wraps it in its bug."""
SHIFTED = '"label": _alone(probs.argmax(axis=1))'
ALONE = '''

def _alone(label: np.ndarray) -> np.ndarray:
    """A bug in the one-request path: a request that comes alone is answered the next digit.

    Offline validation sends batches, so its accuracy is unchanged and it passes; the smoke test
    asks for an answer, and any digit is one. Only the stable's answers to the same requests
    show it: the shadow step's agreement.
    """
    return (label + 1) % 10 if len(label) == 1 else label
'''
"""The bug the disagreeing version adds at the end of digits' ``__init__.py``."""


@dataclass(frozen=True)
class Round:
    """The rollouts' latest round in the sandbox's history (each field None until it was made).

    Attributes:
        good: Version of the good commit.
        broken: Version of the broken commit made after it.
        reverted: The broken commit was reverted after it.
        disagrees: Version of the disagreeing commit made after that revert (shadow round).
        disagrees_reverted: The disagreeing commit was reverted after it.
    """

    good: str | None = None
    broken: str | None = None
    reverted: bool = False
    disagrees: str | None = None
    disagrees_reverted: bool = False

    def canaries_finished(self, records: Mapping[str, Mapping[str, Any]]) -> bool:
        """Both canaries were rolled out (each has a record) and the broken one was reverted."""
        return bool(
            self.good and self.broken and self.reverted and {self.good, self.broken} <= set(records)
        )

    def finished(self, records: Mapping[str, Mapping[str, Any]]) -> bool:
        """The canaries are finished, and the disagreeing version was rolled out and reverted."""
        return bool(
            self.canaries_finished(records)
            and self.disagrees
            and self.disagrees_reverted
            and self.disagrees in records
        )


def commit_message(graph: str, version: str, kind: Kind) -> str:
    """The first line of the commit of a version of the round (what `history` looks for)."""
    return f"{graph} {version}: {MESSAGES[kind]}"


def history(summaries: Iterable[str], graph: str) -> Round:
    """The latest round of ``graph``'s rollouts, from the first lines of main's commits, newest first.

    A good commit starts a round; a broken commit after it, that commit's revert, then a
    disagreeing commit and its revert follow.
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
        elif what == DISAGREES and found.reverted and not revert:
            found = replace(found, disagrees=version, disagrees_reverted=False)
        elif what == DISAGREES and revert and version == found.disagrees:
            found = replace(found, disagrees_reverted=True)
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
    kind: Kind
    record: Mapping[str, Any]
    failed: int | None
    total: int | None
    """What the load saw (None: an earlier run's rollout, shown again)."""

    @property
    def expected(self) -> str:
        """``promoted`` for the good version, ``aborted`` for the others."""
        return "promoted" if self.kind == "good" else "aborted"

    @property
    def outcome(self) -> str:
        """The record's outcome (``missing`` when no record of this version was made)."""
        return str(self.record.get("outcome", "missing"))

    def problems(self) -> list[str]:
        """What went otherwise than expected: the outcome, and for ``disagrees`` how it ended.

        The disagreeing version must be aborted at its mirrored step (the only step), having
        answered no client, its agreement below ``min_agreement``, and no client request failed.
        """
        what = f"the rollout of {self.graph} {self.version}"
        if self.outcome != self.expected:
            return [f"{what} was {self.outcome}, not {self.expected}"]
        if self.kind != "disagrees":
            return []
        out = []
        steps = list(self.record.get("steps") or [])
        mirrored = steps[0].get("mirrored") if len(steps) == 1 else None
        if not mirrored or steps[0].get("share") or steps[0].get("decision") != "abort":
            labels = [f"{s.get('share')}% mirror {s.get('mirror')}%" for s in steps]
            out.append(f"{what} was not aborted at its mirrored step alone: {labels}")
        else:
            if steps[0]["candidate"]["requests"]:
                out.append(f"{what} answered {steps[0]['candidate']['requests']} clients")
            least = float(self.record.get("policy", {}).get("shadow", {}).get("min_agreement", 1))
            seen = agreement(mirrored)
            if seen is None or seen >= least:
                out.append(f"{what} agreed on {seen} of its mirrored requests, not below {least}")
        if self.failed:
            out.append(f"{what}: {self.failed} client requests of the load failed")
        return out


def agreement(figures: Mapping[str, Any]) -> float | None:
    """A mirror's share of compared rows that agreed (None when nothing was compared)."""
    compared = int(figures.get("compared") or 0)
    return int(figures.get("agreed") or 0) / compared if compared else None
