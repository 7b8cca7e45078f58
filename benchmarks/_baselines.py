"""The systems the offline benchmark times: graphops, the hand-written Ray Data pipeline, torch.

- ``graphops``: `graphops.runtime.offline.run_offline` on the digits graph's plan.
- ``handwritten``: the Ray Data pipeline an expert writes by hand (`EXPERT`): Parquet through
  Ray Data's V1 reader (``DataContext.use_datasource_v2 = False``), few read blocks (2 per
  CPU), the whole per-row work in ONE ``map_batches`` on an actor pool (1..CPUs actors,
  explicit fractional CPUs, torch on one thread), read and write tasks at a quarter CPU.
- ``handwritten_default_reader``: the former baseline, kept as a labelled extra row: the
  operators, resources and batch sizes graphops declares (read -> 3 x ``map_batches`` ->
  write) on Ray Data's defaults (datasource V2, 200 read blocks); with ``timer`` / ``carry``,
  that pipeline plus one graphops behaviour at a time (diagnostics).
- ``read_write``: Ray Data's floor, read + write only (datasource V2 or V1).
- ``torch_b<N>``: the same work in a plain in-process loop (pyarrow, numpy, torch on one thread).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data

GRAPH = "digits"
LEVERS = {
    "no_colocate": "CPU stages as task operators of their own (not in the model's actor)",
    "pool1": "actor pool of 1 (not sized from the cluster's CPUs)",
    "blocks200": "Ray Data's default read_op_min_num_blocks=200 (not 2 per CPU)",
    "batch64": "offline batches of 64 rows (the online max_batch_size) instead of 1,024",
    "datasource_v2": "Parquet read through Ray Data's datasource V2 (the default) instead of V1",
}
"""graphops' offline levers: ``graphops_<lever>`` is graphops with that one lever off."""
EXPERT = {
    "reader": "Parquet datasource V1 (DataContext.use_datasource_v2 = False)",
    "read_blocks": "2 per CPU (read_parquet override_num_blocks)",
    "operators": "one map_batches: normalize + DigitsNet + softmax in one actor call",
    "actor_pool": "ActorPoolStrategy(min_size=1, max_size=CPUs), num_cpus=0.75 per actor",
    "batch_size": 1024,
    "read_write_num_cpus": 0.25,
    "torch_threads": 1,
}
"""The expert pipeline's settings (``handwritten``), written to the results and the docs."""
EXPERT_ACTOR_CPUS = 0.75
EXPERT_IO_CPUS = 0.25
MODEL_NODE = "logits"
CARRIED = ("row", "digit")

Batch = dict[str, np.ndarray]


# -- the hand-written pipeline (also used, in-process, by the torch loop) -----------------------


def load_net(
    repo: str, source: str, tracking_uri: str, architecture: str = "graphs.digits.network:DigitsNet"
) -> Any:
    """A torch network (``module:Class``) from a registered version's artifacts, no graphops.

    The artifacts are the safetensors weights and ``graphops-model.json``'s config.
    """
    import importlib

    from mlflow.artifacts import download_artifacts
    from safetensors.torch import load_file

    if repo not in sys.path:
        sys.path.insert(0, repo)
    module, name = architecture.split(":")
    network = getattr(importlib.import_module(module), name)

    with tempfile.TemporaryDirectory(prefix="bench-model-") as tmp:
        local = Path(
            download_artifacts(artifact_uri=source, dst_path=tmp, tracking_uri=tracking_uri)
        )
        config = json.loads((local / "graphops-model.json").read_text())["config"]
        net = network(**config)
        net.load_state_dict(load_file(str(local / "weights.safetensors")))
    return net.eval()


def normalize(batch: Batch) -> Batch:
    """Pixels 0..16 -> features 0..1; Ray hands the list column as an object array: stack it."""
    pixels = np.stack(batch.pop("pixels"))
    return {**batch, "features": pixels.astype(np.float32) / 16.0}


class ModelActor:
    """Loads the model once per actor; logits for a batch of features."""

    def __init__(self, repo: str, source: str, tracking_uri: str) -> None:
        import torch

        self.torch = torch
        self.net = load_net(repo, source, tracking_uri)

    def __call__(self, batch: Batch) -> Batch:
        """Logits for the batch's features (other columns pass through)."""
        features = batch.pop("features")
        features = features if features.flags.writeable else features.copy()
        with self.torch.inference_mode():
            logits = self.net(self.torch.from_numpy(features)).numpy()
        return {**batch, "logits": logits}


def postprocess(batch: Batch) -> Batch:
    """Most likely digit and its softmax probability."""
    logits = batch.pop("logits")
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    return {**batch, "label": probs.argmax(axis=1), "confidence": probs.max(axis=1)}


class ExpertActor:
    """The expert's one operator: normalize, DigitsNet, softmax in one call per batch."""

    def __init__(self, repo: str, source: str, tracking_uri: str) -> None:
        import torch

        torch.set_num_threads(1)
        self.torch = torch
        self.net = load_net(repo, source, tracking_uri)

    def __call__(self, batch: Batch) -> Batch:
        """Label and confidence for the batch's pixels; ``row`` and ``digit`` pass through."""
        features = np.stack(batch["pixels"]).astype(np.float32) / 16.0
        with self.torch.inference_mode():
            logits = self.net(self.torch.from_numpy(features)).numpy()
        out = postprocess({"logits": logits})
        return {c: batch[c] for c in CARRIED} | out


# -- diagnostics: the hand-written pipeline plus one graphops behaviour at a time -------------


class Step:
    """A hand-written step, optionally reporting per batch as graphops does, or carrying columns."""

    def __init__(
        self, fn: Callable[[Batch], Batch], stage: str, *, timer: Any, carry: bool
    ) -> None:
        self.fn, self.stage, self.timer, self.carry = fn, stage, timer, carry

    def __call__(self, batch: Batch) -> Batch:
        """Run the step on one batch."""
        started = time.perf_counter()
        if self.carry:  # as graphops: densify list columns, return every column received
            from graphops.graph import dense_columns as _dense

            batch = _dense(batch)
            out = {**batch, **self.fn(dict(batch))}
        else:
            out = self.fn(batch)
        if self.timer is not None:
            rows = len(next(iter(out.values())))
            ray.get(self.timer.add.remote(self.stage, time.perf_counter() - started, rows))
        return out


class InstrumentedModel(ModelActor):
    """`ModelActor` as a `Step`: timed per batch and/or carrying its input columns."""

    def __init__(self, repo: str, source: str, tracking_uri: str, timer: Any, carry: bool) -> None:
        super().__init__(repo, source, tracking_uri)
        self.step = Step(super().__call__, MODEL_NODE, timer=timer, carry=carry)

    def __call__(self, batch: Batch) -> Batch:
        """Run the model step on one batch."""
        return self.step(batch)


# -- the systems ----------------------------------------------------------------------------


class Bench:
    """Shared state: the graph, the registry, the model's artifact source, the plan's settings."""

    def __init__(self, work: Path, repo: Path) -> None:
        from graphops.graph import load_graph
        from graphops.planner import plan
        from graphops.registry import Registry

        self.work, self.repo = work, repo
        self.package = load_graph(repo, GRAPH)
        self.registry = Registry(work / ".graphops")
        self.node = self.package.graph.node(MODEL_NODE)
        stages = {s.name: s for s in plan(self.package.graph).stages}
        self.cpus = {name: s.resources.cpus for name, s in stages.items()}
        # The batch graphops hands the model offline (Batching.offline_rows): the same for both.
        self.batch_size = stages[MODEL_NODE].batching.offline_rows  # type: ignore[union-attr]
        self.runs = 0
        self._b64: Any = None

    def output(self, system: str, rows: int) -> Path:
        """A fresh output folder for one run."""
        self.runs += 1
        return self.work / "out" / f"{self.runs:03d}-{system}-{rows}.parquet"

    def source(self) -> str:
        """The artifact URI of digits@champion (an MLflow lookup, as a hand-written job does)."""
        uri = self.node.uri  # type: ignore[attr-defined]
        return self.registry.client.get_model_version_by_alias(uri.name, uri.alias).source

    def graphops(self, path: Path, rows: int, lever: str | None = None) -> dict[str, Any]:
        """`run_offline` on the graph, writing Parquet; wall time around the whole call.

        ``lever`` turns one of graphops' offline levers off (see `LEVERS`).
        """
        import os

        from graphops.runtime.offline import ClusterSize, run_offline

        out = self.output(f"graphops_{lever}" if lever else "graphops", rows)
        package = self.package_b64() if lever == "batch64" else self.package
        options: dict[str, Any] = {
            "no_colocate": {"colocate": False},
            "pool1": {"cluster": ClusterSize(cpus=1.0, gpus=0.0)},
            "blocks200": {"blocks": False},
        }.get(lever or "", {})
        if lever == "datasource_v2":
            os.environ["RAY_DATA_USE_DATASOURCE_V2"] = "1"
        try:
            started = time.perf_counter()
            run = run_offline(package, self.registry, path, output=out, **options)
            wall = time.perf_counter() - started
        finally:
            os.environ.pop("RAY_DATA_USE_DATASOURCE_V2", None)
        return {
            "wall_s": wall,
            "pipeline_s": run.seconds,
            "stage_seconds": run.stage_seconds,
            "reported_rows": run.rows,
            "output": str(out),
        }

    def package_b64(self) -> Any:
        """The digits graph with ``offline_batch_size=64`` (the online batch), in a copy."""
        import shutil

        from graphops.graph import load_graph

        if self._b64 is None:
            root = self.work / "repo-b64"
            shutil.copytree(self.repo / "graphs" / GRAPH, root / "graphs" / GRAPH)
            shutil.copy(self.repo / "graphs" / "__init__.py", root / "graphs" / "__init__.py")
            code = root / "graphs" / GRAPH / "__init__.py"
            text = code.read_text()
            edited = text.replace("max_wait_ms=5)", "max_wait_ms=5, offline_batch_size=64)")
            assert edited != text, "the digits graph's Batching(...) line changed"
            code.write_text(edited)
            self._b64 = load_graph(root, GRAPH)
        return self._b64

    def handwritten(self, path: Path, rows: int) -> dict[str, Any]:
        """The expert's pipeline (`EXPERT`): V1 reader, few blocks, one actor operator."""
        out = self.output("handwritten", rows)
        started = time.perf_counter()
        cpus = int(ray.cluster_resources().get("CPU", 1))
        context = ray.data.DataContext.get_current()
        default = context.use_datasource_v2
        context.use_datasource_v2 = False  # before the read: a dataset keeps its context
        try:
            ds = ray.data.read_parquet(
                str(path), override_num_blocks=2 * cpus, num_cpus=EXPERT_IO_CPUS
            )
            ds = ds.map_batches(
                ExpertActor,
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=cpus),
                num_cpus=EXPERT_ACTOR_CPUS,
                batch_size=1024,
                batch_format="numpy",
                zero_copy_batch=True,
                fn_constructor_kwargs={
                    "repo": str(self.repo),
                    "source": self.source(),
                    "tracking_uri": self.registry.tracking_uri,
                },
            )
            ds.write_parquet(str(out), ray_remote_args={"num_cpus": EXPERT_IO_CPUS})
        finally:
            context.use_datasource_v2 = default
        return {"wall_s": time.perf_counter() - started, "output": str(out)}

    def handwritten_default_reader(
        self, path: Path, rows: int, *, timer: bool = False, carry: bool = False
    ) -> dict[str, Any]:
        """The former baseline, on Ray Data's defaults (datasource V2, 200 read blocks).

        ``timer`` / ``carry`` add one graphops behaviour each (diagnostics).
        """
        name = "handwritten_default_reader" + "_timer" * timer + "_carry" * carry
        out = self.output(name, rows)
        started = time.perf_counter()
        kwargs = {
            "repo": str(self.repo),
            "source": self.source(),
            "tracking_uri": self.registry.tracking_uri,
        }
        steps: list[Any] = [normalize, ModelActor, postprocess]
        if timer or carry:
            extra = {"timer": stage_monitor() if timer else None, "carry": carry}
            steps = [
                Step(normalize, "features", **extra),
                InstrumentedModel,
                Step(postprocess, "prediction", **extra),
            ]
            kwargs |= extra
        ds = ray.data.read_parquet(str(path))
        ds = ds.map_batches(
            steps[0], batch_format="numpy", num_cpus=self.cpus["features"], batch_size=1024
        )
        ds = ds.map_batches(
            steps[1],
            compute=ray.data.ActorPoolStrategy(size=1),
            num_cpus=self.cpus[MODEL_NODE],
            batch_size=self.batch_size,
            batch_format="numpy",
            fn_constructor_kwargs=kwargs,
        )
        ds = ds.map_batches(
            steps[2], batch_format="numpy", num_cpus=self.cpus["prediction"], batch_size=1024
        )
        if carry:
            ds = ds.select_columns([*CARRIED, "label", "confidence"])
        ds.write_parquet(str(out))
        return {"wall_s": time.perf_counter() - started, "output": str(out)}

    def handwritten_timer(self, path: Path, rows: int) -> dict[str, Any]:
        """Diagnostic: plus graphops' per-batch ``ray.get(timer.add.remote(...))``."""
        return self.handwritten_default_reader(path, rows, timer=True)

    def handwritten_carry(self, path: Path, rows: int) -> dict[str, Any]:
        """Diagnostic: plus graphops' data flow (every stage returns all columns it got)."""
        return self.handwritten_default_reader(path, rows, carry=True)

    def read_write(self, path: Path, rows: int, *, v2: bool = True) -> dict[str, Any]:
        """Diagnostic: Ray Data's floor, read + write and nothing else (datasource V2 or V1)."""
        out = self.output(f"read_write_v{2 if v2 else 1}", rows)
        context = ray.data.DataContext.get_current()
        default = context.use_datasource_v2
        context.use_datasource_v2 = v2
        try:
            started = time.perf_counter()
            ray.data.read_parquet(str(path)).write_parquet(str(out))
            return {"wall_s": time.perf_counter() - started}
        finally:
            context.use_datasource_v2 = default

    def torch_loop(self, path: Path, rows: int, batch_size: int) -> dict[str, Any]:
        """The same work in-process: load, read, loop over batches, write."""
        import torch

        out = self.output(f"torch_b{batch_size}", rows)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the one CPU the model stage gets in Ray (OMP_NUM_THREADS=1)
        try:
            started = time.perf_counter()
            net = load_net(str(self.repo), self.source(), self.registry.tracking_uri)
            loaded = time.perf_counter()
            table = pq.read_table(path)
            pixels = np.stack(table.column("pixels").to_numpy(zero_copy_only=False))
            read = time.perf_counter()
            parts = []
            with torch.inference_mode():
                for i in range(0, len(pixels), batch_size):
                    batch = normalize({"pixels": pixels[i : i + batch_size]})
                    batch = {"logits": net(torch.from_numpy(batch["features"])).numpy()}
                    parts.append(postprocess(batch))
            computed = time.perf_counter()
            columns = {c: table.column(c) for c in CARRIED}
            for key in ("label", "confidence"):
                columns[key] = pa.array(np.concatenate([p[key] for p in parts]))
            out.mkdir(parents=True)
            pq.write_table(pa.table(columns), out / "part-0.parquet")
            done = time.perf_counter()
        finally:
            torch.set_num_threads(threads)
        return {
            "wall_s": done - started,
            "phases_s": {
                "model_load": loaded - started,
                "read_and_stack": read - loaded,
                "compute": computed - read,
                "write": done - computed,
            },
            "output": str(out),
        }


def stage_monitor() -> Any:
    """A new instance of the actor graphops' stage workers report to once per batch (private)."""
    from graphops.runtime._workers import Monitor

    return Monitor.remote()
