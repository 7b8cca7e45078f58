"""The main job's latency check reads the ingress's Server-Timing header."""

from __future__ import annotations

from graphops.demo.latency import phases


def test_server_timing_phases_are_read_in_order() -> None:
    header = (
        "read;dur=0.087, parse;dur=0.131, logits-wait;dur=0.025, logits;dur=0.407, total;dur=0.8"
    )
    assert phases(header) == {
        "read": 0.087,
        "parse": 0.131,
        "logits-wait": 0.025,
        "logits": 0.407,
        "total": 0.8,
    }


def test_a_missing_or_odd_header_gives_no_phases() -> None:
    assert phases(None) == {} and phases("") == {} and phases("cache;desc=hit") == {}
