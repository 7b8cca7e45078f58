"""LibYAML reads and writes environment files exactly as PyYAML's pure-Python code does.

`graphops.environments._yaml` uses LibYAML when PyYAML has it (render of hundreds of graphs was
seconds of pure-Python YAML, docs/performance.md); these tests hold both paths to the same
bytes and the same refusals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from graphops.environments import _yaml
from graphops.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
TRICKY: dict[str, Any] = {
    "long": "x" * 250 + " " + "y" * 120,
    "multi": "line one\nline two\n  indented: yes\n",
    "unicode": "café — ünïcode ✓",
    "quoted": ["yes", "no", "null", "1.0", "0x10", "", " lead", "trail ", "a: b", "#c"],
    "numbers": [0, -1, 1.5, 1e-17, float("inf")],
    "nested": {"b": [{"x": 1}, {"y": [1, 2]}], "a": None, "t": True},
}


@pytest.fixture
def pure(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pure-Python path, as on a PyYAML built without LibYAML."""
    monkeypatch.setattr(_yaml, "_CSafeDumper", None)
    monkeypatch.setattr(_yaml, "_CStrictLoader", None)


def _documents() -> list[Any]:
    files = sorted(REPO.glob("environments/*/*.yaml"))
    assert files, "the repository's environment files"
    return [_yaml.read_yaml(p) for p in files] + [TRICKY]


def test_libyaml_is_used_here_and_writes_the_same_bytes_as_pure_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _yaml._CSafeDumper is not None and _yaml._CStrictLoader is not None
    fast = [_yaml.dump_yaml(d) for d in _documents()]
    monkeypatch.setattr(_yaml, "_CSafeDumper", None)
    assert [_yaml.dump_yaml(d) for d in _documents()] == fast


def test_libyaml_reads_what_pure_python_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [_yaml.dump_yaml(d) for d in _documents()]
    fast = [_yaml.parse_yaml(t.encode(), "x.yaml") for t in texts]
    monkeypatch.setattr(_yaml, "_CStrictLoader", None)
    assert [_yaml.parse_yaml(t.encode(), "x.yaml") for t in texts] == fast
    assert fast[-1] == yaml.safe_load(texts[-1])


REFUSED = {
    "a: &x 1\nb: 2\n": r"x.yaml:1: An anchor \(&x\)",
    "a: 1\nb: *x\n": r"(An alias \(\*x\)|Invalid YAML)",
    "a: !!python/object:os.system 1\n": r'The tag "tag:yaml.org,2002:python/object:os.system"',
    "a:\n  b: !secret 1\n": r'x.yaml:2: The tag "!secret"',
    "a: 1\na: 2\n": r'Key "a" appears twice \(lines 1 and 2\)',
    "a: {<<: {b: 1}}\n": r"A merge key \(<<\)",
    "a: " + "[" * 70 + "]" * 70 + "\n": r"Nesting deeper than 64 levels",
    "a: [1\n": r"Invalid YAML",
}


@pytest.mark.parametrize("path", ["libyaml", "pure"])
@pytest.mark.parametrize("text", list(REFUSED))
def test_both_paths_refuse_the_same(
    text: str, path: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    if path == "pure":
        request.getfixturevalue("pure")
    with pytest.raises(ConfigError, match=REFUSED[text]):
        _yaml.parse_yaml(text.encode(), "x.yaml")


def test_depth_64_is_still_read_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "a: " + "[" * 63 + "]" * 63 + "\n"  # the mapping, then 63 lists: 64 levels
    assert _yaml.parse_yaml(text.encode(), "x.yaml")
    monkeypatch.setattr(_yaml, "_CStrictLoader", None)
    assert _yaml.parse_yaml(text.encode(), "x.yaml")
