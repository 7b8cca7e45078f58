"""Reporting shared by the benchmarks: the date, the machine, JSON results, the offline table."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (a result's ``date``)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def write_json(path: Path, result: dict[str, Any]) -> None:
    """Write ``result`` to ``path`` as indented JSON, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import mlflow
    import numpy as np
    import pyarrow as pa
    import ray
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "torch": torch.__version__,
        "mlflow": mlflow.__version__,
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "graphops_commit": _git("rev-parse", "--short", "HEAD"),
        "working_tree_dirty": bool(_git("status", "--porcelain", "--", "platform", "graphs")),
        "load_average_at_start": os.getloadavg(),
        "note": "2-core VM shared with other work: absolute figures are noisy, ratios less so.",
    }


def _git(*args: str) -> str:
    """Output of a git command in the repository ("" when git is unavailable)."""
    import subprocess

    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return ""
    return done.stdout.strip()


def print_report(result: dict[str, Any]) -> None:
    """A Rich table of the medians and ratios, the targets, the diagnostics and the breakdown."""
    from rich.console import Console
    from rich.table import Table

    rows, small_rows = result["parameters"]["rows"], result["parameters"]["small_rows"]
    big, small = str(rows), str(small_rows)
    huge_rows = result["parameters"].get("huge_rows") or 0
    huge = str(huge_rows)
    summary = result["summary"]
    table = Table(
        title=f"Offline digits: medians of {result['parameters']['repeats']} "
        f"({result['date']}, {result['machine']['cpu_count']} CPUs, shared)"
    )
    for column in (
        "system",
        f"{rows:,} rows: wall s",
        "rows/s",
        "graphops rows/s ÷ this",
        f"{small_rows:,} rows: wall s",
        f"{huge_rows:,} rows: wall s",
        "graphops rows/s ÷ this",
    ):
        table.add_column(column, justify="right")

    def cell(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for system, sizes in summary["medians"].items():
        table.add_row(
            system,
            cell(sizes.get(big, {}).get("wall_s"), ".2f"),
            cell(sizes.get(big, {}).get("rows_per_s"), ",.0f"),
            cell(summary["ratios"]["throughput"].get(f"graphops_vs_{system}"), ".3f"),
            cell(sizes.get(small, {}).get("wall_s"), ".2f"),
            cell(sizes.get(huge, {}).get("wall_s"), ".2f"),
            cell(
                summary["ratios"]
                .get("at_huge_rows", {})
                .get("throughput", {})
                .get(f"graphops_vs_{system}"),
                ".3f",
            ),
        )
    console = Console()
    console.print(table)
    for name, t in summary["targets"].items():
        mark = "[green]met[/]" if t["met"] else "[red]NOT met[/]"
        console.print(
            f"{name}: {t['value']:.3f} median of per-repeat ratios, "
            f"{t['ratio_of_medians']:.3f} ratio of medians (target {t['target']}) {mark}"
        )
    console.print_json(
        json.dumps(
            {
                "diagnostics": summary["diagnostics"],
                "model_stage_batches": result.get("model_stage_batches"),
                "breakdown": result["breakdown"],
            }
        )
    )
