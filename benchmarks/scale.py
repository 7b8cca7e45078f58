"""The scale benchmark: how each command's cost grows with the number of graphs in the repository.

For each N of ``--sizes`` (default 10, 50, 200) a synthetic monorepo is generated in a temporary
directory (`benchmarks._monorepo`: N graphs of three shapes, validated and pinned in dev, staging
and prod; the measured graph is left out of staging and prod so its promotion commits something).
Each command runs as a subprocess of the real ``graphops`` CLI (``--repeats`` times, the sizes
alternating their order every repeat), timed by wall clock:

- ``list``, ``plan <one graph>``, ``render --check`` (every environment);
- ``diff --env dev`` and ``status --env dev``: no cluster is reachable (dev's dashboard is a
  closed loopback port), so they measure git's side and the refused connection, and exit 1/0;
- ``promote <one graph> --to staging``: a real promotion commit (its branch deleted after);
- ``validate --changed --base main`` in a worktree where one graph changed: its passed record
  exists, so it is reused and Ray never starts (what is measured is finding the changed graph
  and checking its record);
- ``controller_round``: a round of the running pull controller with nothing changed on origin
  (``round_`` after its first apply: fetch, compare, state written), timed inside the process
  as its second such round (the first imports apply's modules: ``first_s``; the whole process:
  ``process_s``).

Results: ``benchmarks/results/scale.json`` (raw runs, medians, ratios N=max/N=min). Run it with
``nox -s bench -- scale`` or ``python -m benchmarks.scale --sizes 10 50 200 --repeats 3``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._monorepo import Monorepo, generate
from benchmarks._report import machine, utc_now, write_json
from benchmarks._running import on_local_cluster

REPO = Path(__file__).resolve().parents[1]
GRAPHOPS = str(Path(sys.executable).with_name("graphops"))
ONE_GRAPH = ("plan", "promote", "validate_changed", "controller_round")
"""Commands about one graph (or none): their target is N=200 <= 1.5x N=10."""
_ROUND = """
import sys, time
from pathlib import Path
from graphops.controller.reconciler import ControllerState, round_
state = ControllerState(env="dev", branch="main", rounds=1)
for _ in range(2):  # the first round of this process imports apply's modules
    start, cpu = time.perf_counter(), time.process_time()
    round_(Path(sys.argv[1]), "dev", "main", state, heal=False, timeout_s=5, log=print)
    print(f"ROUND {time.perf_counter() - start:.6f} {time.process_time() - cpu:.6f}")
    assert not state.last_error, state.last_error
"""


def commands(m: Monorepo) -> dict[str, tuple[list[str], Path]]:
    """Each measured command line and the directory it runs in."""
    return {
        "list": (["list"], m.root),
        "plan": (["plan", m.one], m.root),
        "render_check": (["render", "--check"], m.root),
        "diff": (["diff", "--env", "dev"], m.root),
        "status": (["status", "--env", "dev"], m.root),
        "promote": (["promote", m.one, "--to", "staging"], m.root),
        "validate_changed": (
            ["validate", "--changed", "--base", "main", "--no-record"],
            m.changed,
        ),
    }


def _env(m: Monorepo) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GRAPHOPS_REPO", "RAY_ADDRESS")}
    return env | {"MLFLOW_TRACKING_URI": m.tracking_uri, "PYTHONPATH": _pythonpath()}


def _pythonpath() -> str:
    parts = [str(REPO / "platform"), str(REPO), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in parts if p)


def _cpu() -> float:
    """CPU seconds (user + system) of every child process that has ended."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def run_one(m: Monorepo, name: str) -> dict[str, Any]:
    """One timed run of command ``name`` on ``m``: wall and CPU seconds, exit code.

    The CPU seconds of the process (``cpu_s``; of the warm round for ``controller_round``) are
    what a shared, loaded machine changes least.
    """
    cpu = _cpu()
    out = _run_one(m, name)
    return {"cpu_s": out.pop("round_cpu_s", _cpu() - cpu)} | out


def _run_one(m: Monorepo, name: str) -> dict[str, Any]:
    if name == "controller_round":
        start = time.perf_counter()
        ran = subprocess.run(
            [sys.executable, "-c", _ROUND, str(m.root)],
            env=_env(m),
            capture_output=True,
            text=True,
            timeout=600,
        )
        wall = time.perf_counter() - start
        rounds = [line for line in ran.stdout.splitlines() if line.startswith("ROUND ")]
        seconds = [line.split()[1:] for line in rounds] or [["nan", "nan"]] * 2
        out = {"wall_s": float(seconds[-1][0]), "first_s": float(seconds[0][0])}
        out |= {"round_cpu_s": float(seconds[-1][1]), "process_s": wall}
        return out | {"rc": ran.returncode}
    args, cwd = commands(m)[name]
    start = time.perf_counter()
    ran = subprocess.run(
        [GRAPHOPS, *args], cwd=cwd, env=_env(m), capture_output=True, text=True, timeout=600
    )
    wall = time.perf_counter() - start
    if name == "promote":
        _undo_promotion(m)
    out = {"wall_s": wall, "rc": ran.returncode}
    if ran.returncode != 0 and name not in ("diff", "status"):
        out["error"] = (ran.stdout + ran.stderr)[-2000:]
    return out


def _undo_promotion(m: Monorepo) -> None:
    """Delete the promotion's branch, so every run promotes the same lock again."""
    import git

    with git.Repo(m.root) as r:
        for branch in list(r.branches):
            if branch.name.startswith("promote/"):
                r.git.branch("-D", branch.name)


NAMES = (
    "list",
    "plan",
    "render_check",
    "diff",
    "status",
    "promote",
    "validate_changed",
    "controller_round",
)


def summarize(
    runs: dict[str, dict[str, list[dict[str, Any]]]], key: str = "wall_s"
) -> dict[str, Any]:
    """Median seconds (``key``) per N and command, and each ratio largest N / smallest N."""
    sizes = sorted(runs, key=int)
    medians = {
        n: {c: statistics.median(r[key] for r in rs) for c, rs in runs[n].items()} for n in sizes
    }
    ratios = {
        c: medians[sizes[-1]][c] / medians[sizes[0]][c]
        for c in medians[sizes[0]]
        if medians[sizes[0]][c] > 0
    }
    return {"medians_s": medians, "ratios": {"sizes": [sizes[0], sizes[-1]], **ratios}}


def markdown(result: dict[str, Any], names: tuple[str, ...] = NAMES) -> str:
    """The table of docs/performance.md: median seconds per command and N, and the ratio."""
    medians = result["summary"]["medians_s"]
    sizes = sorted(medians, key=int)
    ratios = result["summary"]["ratios"]
    head = "| command | " + " | ".join(f"N = {n}" for n in sizes) + " | ratio |"
    lines = [head, "| --- |" + " ---: |" * (len(sizes) + 1)]
    for c in names:
        cells = " | ".join(f"{medians[n][c]:.2f} s" for n in sizes)
        lines.append(f"| `{c}` | {cells} | {ratios.get(c, float('nan')):.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Generate each size's monorepo, time every command on each, write the results.

    ``--running N`` (default 30; 0 skips it) then applies one changed graph while N generated
    graphs run on a local cluster of its own (`benchmarks._running`); ``--sizes`` with no value
    skips the commands and updates only that part of the results file.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10, 50, 200])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=NAMES, default=list(NAMES))
    parser.add_argument("--running", type=int, default=30)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/scale.json")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {}
    if args.output.is_file():  # a part not run this time keeps its last figures
        result = json.loads(args.output.read_text())
    if args.sizes:
        result |= _commands(args)
    if args.running:
        with tempfile.TemporaryDirectory(prefix="graphops-running-") as tmp:
            running = on_local_cluster(Path(tmp), args.running)
        result["apply_among_running"] = {"date": utc_now(), **running}
        print(
            f"apply of one changed graph among {running['graphs']} running "
            f"({running['replicas']} replicas): {running['apply_one_s']:.1f} s, restarted "
            f"{len(running['restarted'])} of the other {running['others']} applications",
            flush=True,
        )
    write_json(args.output, result)
    return result


def _commands(args: argparse.Namespace) -> dict[str, Any]:
    """Every command of ``args.only`` timed on each size's monorepo (``args.repeats`` times)."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    generation: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="graphops-scale-") as tmp:
        repos = {}
        for n in args.sizes:
            start = time.perf_counter()
            repos[n] = generate(Path(tmp) / f"n{n}", n)
            generation[str(n)] = time.perf_counter() - start
            print(f"generated {n} graphs in {generation[str(n)]:.1f} s", flush=True)
        for repeat in range(args.repeats):
            order = args.sizes if repeat % 2 == 0 else args.sizes[::-1]
            for n in order:
                for name in args.only:
                    run = run_one(repos[n], name)
                    runs.setdefault(str(n), {}).setdefault(name, []).append(run)
                    print(f"N={n} {name}: {run['wall_s']:.2f} s rc={run['rc']}", flush=True)
    result = {
        "date": utc_now(),
        "machine": machine(),
        "settings": {"sizes": args.sizes, "repeats": args.repeats},
        "generation_s": generation,
        "runs": runs,
        "summary": summarize(runs),
        "summary_cpu": summarize(runs, "cpu_s"),
    }
    print(markdown(result))
    print(markdown({"summary": result["summary_cpu"]}))
    return result


if __name__ == "__main__":
    main()
