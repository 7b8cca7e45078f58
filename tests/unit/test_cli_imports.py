"""The CLI answers at once: commands import Ray, MLflow and torch only when they need them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("ray", "mlflow", "torch", "pandas", "pyarrow", "numpy")
PROBE = """
import json, sys
sys.argv = ["graphops", *json.loads(sys.argv[1])]
from graphops.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})), file=sys.stderr)
"""


def _imported(*argv: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [
        (("--help",), ()),
        (("render", "--help"), ()),
        (("validate", "--help"), ()),
        # render --check reads YAML and compares text; numpy and pyarrow come with the graph
        # model and graphops.runtime's tables (0.1 s), never Ray Serve, MLflow or torch (seconds)
        (("render", "--check"), ("numpy", "pyarrow")),
    ],
)
def test_commands_import_only_what_they_need(
    argv: tuple[str, ...], allowed: tuple[str, ...]
) -> None:
    heavy = _imported(*argv) & set(HEAVY)
    assert heavy <= set(allowed), f"`graphops {' '.join(argv)}` imported {sorted(heavy)}"


def test_public_names_still_load_on_first_use() -> None:
    import graphops
    import graphops.planner  # the subpackage is the planner; graphops.plan is its function

    assert callable(graphops.plan) and graphops.plan is graphops.planner.plan
    assert graphops.Graph.__name__ == "Graph"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = graphops.nothing  # type: ignore[attr-defined]
