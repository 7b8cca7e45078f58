"""A re-run of the main job reads its canaries back from the sandbox's history (no git, no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphops.demo.rollout_history import (
    BODY,
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
RECORDS = {"1.0.1": {"outcome": "promoted"}, "1.0.2": {"outcome": "aborted"}}


def test_a_finished_round_is_found_and_needs_no_new_version() -> None:
    made = history(ONE_RUN, "digits")
    assert made == Round(good="1.0.1", broken="1.0.2", reverted=True)
    assert made.finished(RECORDS)
    assert not made.finished({"1.0.1": {}})  # the broken one was never rolled out
    assert history(ONE_RUN, "feed_ranking") == Round()  # another graph's canary: none


@pytest.mark.parametrize(
    ("cut", "expected"),
    [
        (9, Round()),  # stopped before the good commit
        (4, Round(good="1.0.1")),  # the good one rolled out, no broken commit yet
        (1, Round(good="1.0.1", broken="1.0.2")),  # aborted, not reverted yet
    ],
)
def test_an_interrupted_round_says_where_it_stopped(cut: int, expected: Round) -> None:
    made = history(ONE_RUN[cut:], "digits")
    assert made == expected
    assert not made.finished(RECORDS)


def test_a_second_round_replaces_the_first() -> None:
    again = [
        "digits 1.0.4: fails one request in five (a bug)",
        "digits 1.0.3: a version bump, same behaviour",
        *ONE_RUN,
    ]
    assert history(again, "digits") == Round(good="1.0.3", broken="1.0.4")


def test_the_commit_messages_are_what_history_reads() -> None:
    log = [
        f'Revert "{commit_message("digits", "2.0.2", broken=True)}"',
        commit_message("digits", "2.0.2", broken=True),
        commit_message("digits", "2.0.1", broken=False),
    ]
    assert history(log, "digits") == Round(good="2.0.1", broken="2.0.2", reverted=True)


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
