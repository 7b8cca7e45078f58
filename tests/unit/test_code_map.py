"""docs/code-map.md lists every module of the package, and nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_code_map_lists_every_module() -> None:
    listed = set(
        re.findall(
            r"^\| `(graphops/[\w/]+\.py)` \|", (ROOT / "docs" / "code-map.md").read_text(), re.M
        )
    )
    actual = {
        str(p.relative_to(ROOT / "platform"))
        for p in (ROOT / "platform" / "graphops").rglob("*.py")
    }
    assert not actual - listed, f"add to docs/code-map.md: {sorted(actual - listed)}"
    assert not listed - actual, f"gone, remove from docs/code-map.md: {sorted(listed - actual)}"
