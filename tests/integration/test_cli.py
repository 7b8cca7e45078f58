"""The `graphops` console script, run as a user runs it: a subprocess on a copy of the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from graphops.registry import ResolvedModel

GRAPHOPS = str(Path(sys.executable).with_name("graphops"))


def graphops(
    repo: Path, *args: str, tracking: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "GRAPHOPS_REPO")}
    if tracking is not None:
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tracking}"
    return subprocess.run(
        [GRAPHOPS, "--repo", str(repo), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def plain(text: str) -> str:
    """Panel text without its frame and line wrapping, for substring checks."""
    return " ".join(text.translate(str.maketrans("", "", "│╭╮╰╯─")).split())


def test_run_writes_outputs_and_reports_bad_rows(
    tmp_path: Path, repo_copy: Path, registry_path: Path, champion: ResolvedModel
) -> None:
    rows = [{"pixels": [0.0] * 64}, {"pixels": [16.0] * 64}]
    good = tmp_path / "in.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = graphops(
        repo_copy,
        "run",
        "digits",
        "-i",
        str(good),
        "-o",
        str(tmp_path / "out.parquet"),
        tracking=registry_path,
    )
    assert result.returncode == 0, result.stderr
    written = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert len(written) == 2 and set(written[0]) == {"label", "confidence"}
    assert all(0 <= r["label"] <= 9 for r in written)

    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"pixels": [0.0] * 63}) + "\n" + json.dumps({"pixels": [99.0] * 64}) + "\n"
    )
    result = graphops(repo_copy, "run", "digits", "-i", str(bad), tracking=registry_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    message = plain(result.stderr)
    assert "row 1, field pixels: List should have at least 64 items" in message
    assert "row 2, field pixels.0: Input should be less than or equal to 16" in message
    assert "fix: Each row needs the fields pixels" in message


def test_list_reports_a_broken_graph_without_hiding_the_others(
    tmp_path: Path, repo_copy: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(repo_copy, repo)
    broken = repo / "graphs" / "broken"
    broken.mkdir()
    (broken / "__init__.py").write_text("import numpy\n\nvalue = 1 / 0\n")
    result = graphops(repo, "list")
    assert result.returncode == 1
    assert "digits" in result.stdout and "1.0.0" in result.stdout
    listing = plain(result.stdout).replace(" ", "")
    assert f"{broken / '__init__.py'}:3".replace(" ", "") in listing
    assert "ZeroDivisionError" in listing


def test_unknown_graph_suggests_the_closest(repo_copy: Path) -> None:
    result = graphops(repo_copy, "plan", "digit")
    assert result.returncode == 1
    assert 'Did you mean "digits"?' in plain(result.stderr)
    assert "Traceback" not in result.stderr
