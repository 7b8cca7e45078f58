"""A re-run of the main job reads its canaries back from the sandbox's history (no git, no Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from graphops.demo.rollout_history import (
    ALONE,
    BODY,
    LABEL,
    SHIFTED,
    RolloutRun,
    Round,
    bumped,
    commit_message,
    free_version,
    history,
    latest_records,
)

REPO = Path(__file__).resolve().parents[2]
# What `git log --format=%s main` of the sandbox shows after one full run, newest first.
ONE_RUN = [
    'Revert "digits 1.0.3: answers another digit to a request alone (a bug)"',
    "rollout: digits 1.0.3 aborted in dev, back to 1.0.1",
    "promote digits 1.0.3 to dev",
    "digits 1.0.3: answers another digit to a request alone (a bug)",
    "demo: dev rolls out by shadow, then canary",
    'Revert "digits 1.0.2: fails one request in five (a bug)"',
    "rollout: digits 1.0.2 aborted in dev, back to 1.0.1",
    "promote digits 1.0.2 to dev",
    "digits 1.0.2: fails one request in five (a bug)",
    "rollout: digits 1.0.1 promoted in dev",
    "promote digits 1.0.1 to dev",
    "digits 1.0.1: a version bump, same behaviour",
    "demo: dev rolls out by canary (10 -> 50 -> 100 %)",
    "promote digits 1.0.0 to dev",
    "demo: environments on the local clusters",
]
RECORDS = {
    "1.0.1": {"outcome": "promoted"},
    "1.0.2": {"outcome": "aborted"},
    "1.0.3": {"outcome": "aborted"},
}
CANARIES = Round(good="1.0.1", broken="1.0.2", reverted=True)


def test_a_finished_round_is_found_and_needs_no_new_version() -> None:
    made = history(ONE_RUN, "digits")
    assert made == Round(
        good="1.0.1", broken="1.0.2", reverted=True, disagrees="1.0.3", disagrees_reverted=True
    )
    assert made.finished(RECORDS)
    assert not made.finished({"1.0.1": {}, "1.0.3": {}})  # the broken one was never rolled out
    assert not made.finished({"1.0.1": {}, "1.0.2": {}})  # nor the disagreeing one
    assert history(ONE_RUN, "feed_ranking") == Round()  # another graph's canary: none


@pytest.mark.parametrize(
    ("cut", "expected"),
    [
        (14, Round()),  # stopped before the good commit
        (9, Round(good="1.0.1")),  # the good one rolled out, no broken commit yet
        (6, Round(good="1.0.1", broken="1.0.2")),  # aborted, not reverted yet
        (5, CANARIES),  # the canaries done, no shadow version yet
        (1, Round(good="1.0.1", broken="1.0.2", reverted=True, disagrees="1.0.3")),  # aborted
    ],
)
def test_an_interrupted_round_says_where_it_stopped(cut: int, expected: Round) -> None:
    made = history(ONE_RUN[cut:], "digits")
    assert made == expected
    assert not made.finished(RECORDS)
    assert made.canaries_finished(RECORDS) == (cut <= 5)


def test_a_sandbox_of_the_canaries_alone_goes_on_with_the_shadow_round() -> None:
    made = history(ONE_RUN[5:], "digits")  # what a run before the shadow round left
    assert made.canaries_finished(RECORDS) and not made.finished(RECORDS)


def test_a_second_round_replaces_the_first() -> None:
    again = [
        "digits 1.0.5: fails one request in five (a bug)",
        "digits 1.0.4: a version bump, same behaviour",
        *ONE_RUN,
    ]
    assert history(again, "digits") == Round(good="1.0.4", broken="1.0.5")


def test_the_commit_messages_are_what_history_reads() -> None:
    log = [
        f'Revert "{commit_message("digits", "2.0.3", "disagrees")}"',
        commit_message("digits", "2.0.3", "disagrees"),
        f'Revert "{commit_message("digits", "2.0.2", "broken")}"',
        commit_message("digits", "2.0.2", "broken"),
        commit_message("digits", "2.0.1", "good"),
    ]
    assert history(log, "digits") == Round(
        good="2.0.1", broken="2.0.2", reverted=True, disagrees="2.0.3", disagrees_reverted=True
    )
    assert history(log[3:], "digits") == Round(good="2.0.1", broken="2.0.2")
    assert history([log[1], *log[3:]], "digits") == Round(good="2.0.1", broken="2.0.2")


def test_the_latest_record_of_each_version_wins() -> None:
    records = [  # rollouts.yaml: newest first
        {"version": "1.0.2", "outcome": "aborted"},
        {"version": "1.0.1", "outcome": "promoted"},
        {"version": "1.0.1", "outcome": "aborted"},
    ]
    assert latest_records(records) == {
        "1.0.2": {"version": "1.0.2", "outcome": "aborted"},
        "1.0.1": {"version": "1.0.1", "outcome": "promoted"},
    }


def test_a_new_version_skips_those_recorded_at_other_files() -> None:
    text = 'Graph(\n    name="digits",\n    version="1.0.1",\n)\n'
    seen: list[str] = []

    def taken(version: str, candidate: str) -> bool:
        seen.append(version)
        assert f'version="{version}"' in candidate and candidate.count("version=") == 1
        return version in ("1.0.2", "1.0.3")  # the first round's versions, other code

    assert free_version(text, taken) == "1.0.4"
    assert seen == ["1.0.2", "1.0.3", "1.0.4"]
    assert free_version(text, lambda v, c: False) == "1.0.2"
    with pytest.raises(ValueError, match="no free version"):
        free_version(text, lambda v, c: True, tries=3)
    with pytest.raises(ValueError, match="no version"):
        free_version("Graph()\n", lambda v, c: False)
    assert bumped(text, "7.0.0") == text.replace("1.0.1", "7.0.0")


def test_the_digits_graph_still_has_the_line_the_bug_goes_before() -> None:
    code = (REPO / "graphs" / "digits" / "__init__.py").read_text()
    assert BODY in code and 'version="' in code


def test_the_digits_graph_still_has_the_label_the_shadow_bug_wraps() -> None:
    code = (REPO / "graphs" / "digits" / "__init__.py").read_text()
    assert code.count(LABEL) == 1
    buggy = code.replace(LABEL, SHIFTED) + ALONE
    namespace: dict[str, object] = {"np": np}
    exec(ALONE, namespace)  # the bug alone: a single row shifted, a batch untouched
    alone = namespace["_alone"]
    assert alone(np.array([9])).tolist() == [0]  # type: ignore[operator]
    assert alone(np.array([3, 9])).tolist() == [3, 9]  # type: ignore[operator]
    compile(buggy, "digits/__init__.py", "exec")


def mirrored_step(agreed: int, answered: int = 0, share: float = 0) -> dict[str, Any]:
    figures = {"requests": answered, "errors": 0, "error_rate": 0.0}
    return {
        "share": share,
        "mirror": 50,
        "decision": "abort",
        "stable": figures | {"requests": 40},
        "candidate": figures,
        "mirrored": figures | {"requests": 20, "compared": 20, "agreed": agreed},
    }


def shadow_run(
    steps: list[dict[str, Any]], failed: int = 0, outcome: str = "aborted"
) -> RolloutRun:
    record = {
        "outcome": outcome,
        "strategy": "shadow_canary",
        "policy": {"shadow": {"min_agreement": 0.9}},
        "steps": steps,
    }
    return RolloutRun("digits", "1.0.3", "disagrees", record, failed, 100)


def test_the_disagreeing_version_must_end_at_its_mirrored_step_having_answered_no_one() -> None:
    assert shadow_run([mirrored_step(agreed=0)]).problems() == []
    assert shadow_run([mirrored_step(agreed=0)], outcome="promoted").problems() == [
        "the rollout of digits 1.0.3 was promoted, not aborted"
    ]
    [agreed] = shadow_run([mirrored_step(agreed=20)]).problems()
    assert "agreed on 1.0 of its mirrored requests, not below 0.9" in agreed
    [answered] = shadow_run([mirrored_step(agreed=0, answered=3, share=10)]).problems()
    assert "not aborted at its mirrored step alone" in answered
    [failed] = shadow_run([mirrored_step(agreed=0)], failed=2).problems()
    assert "2 client requests of the load failed" in failed
    two = [mirrored_step(agreed=20) | {"decision": "advance"}, mirrored_step(agreed=0, share=10)]
    assert shadow_run(two).problems()  # aborted, but at a canary step: it answered clients
    # The canaries are judged on their outcome alone (the broken one's load fails, as it should).
    broken = RolloutRun("digits", "1.0.2", "broken", {"outcome": "aborted"}, 7, 100)
    assert broken.expected == "aborted" and broken.problems() == []
    good = RolloutRun("digits", "1.0.1", "good", {"outcome": "aborted"}, 0, 100)
    assert good.problems() == ["the rollout of digits 1.0.1 was aborted, not promoted"]
