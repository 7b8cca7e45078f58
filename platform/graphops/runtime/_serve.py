"""The two Serve deployment classes every graph application is made of: an ingress and a stage.

Both rebuild their part of the graph from the application's arguments (graph name, content hash,
pinned models), so one pair of classes serves every graph and no graph needs Serve code. The
ingress answers HTTP; while its route is split (a `TrafficSplit` in its ``user_config``) its
`Splitter` (`graphops.runtime._splitter`) decides who answers each request.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

from ray import serve
from ray.serve import Deployment
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from graphops.graph import Batch
from graphops.planner import Stage, plan
from graphops.runtime._auth import check_headers, cluster_token, require_token
from graphops.runtime._batcher import Batcher
from graphops.runtime._body import BodyReader
from graphops.runtime._errors import (
    JSON,
    HttpError,
    MethodNotAllowed,
    NotFound,
    error_answer,
    error_response,
    failure,
)
from graphops.runtime._handles import call_with_retry
from graphops.runtime._http import GraphHttp
from graphops.runtime._live import Live
from graphops.runtime._remote import PinnedLoader, open_graph, stage_runner
from graphops.runtime._splitter import Splitter, Steps
from graphops.runtime.runner import LocalRunner
from graphops.runtime.schema import AppArgs, in_ingress
from graphops.runtime.split import SPLIT_ROUTE, TrafficSplit


def deployment_of(cls: type) -> Deployment:
    """``serve.deployment(cls)``, typed: Ray's overloads type a class argument as the factory form."""
    return cast(Deployment, serve.deployment(cls))


SERVER_TIMING = "server-timing"
"""Response header with each phase's milliseconds (read, parse, each stage, respond, total)."""
STAGE_SAMPLE = 8
"""One request in this many feeds the per-stage latency histograms (Prometheus); all are timed."""


class Timing:
    """How long each phase of one request took, as a ``Server-Timing`` header (W3C)."""

    def __init__(self, began: float) -> None:
        self.began = self.last = began
        self.phases: list[tuple[str, float]] = []

    def lap(self, name: str) -> None:
        """``name`` took the time since the previous lap."""
        now = time.perf_counter()
        self.phases.append((name, now - self.last))
        self.last = now

    def add(self, name: str, seconds: float) -> None:
        """``name`` took ``seconds`` (inside the next lap, e.g. a batch's queue)."""
        self.phases.append((name, seconds))

    def header(self) -> str:
        """``read;dur=0.031, parse;dur=0.102, ..., total;dur=0.4`` (milliseconds)."""
        total = time.perf_counter() - self.began
        parts = [f"{n};dur={s * 1000:.3f}" for n, s in (*self.phases, ("total", total))]
        return ", ".join(parts)


_ROUTES = ("", "/health", "/openapi.json", "/docs", "/stats")
_TOKEN_ROUTES = ("/stats",)
"""Routes that answer only with the cluster's token (`graphops.runtime._auth`; docs/security.md)."""


def _loader(args: AppArgs, stage: Stage) -> PinnedLoader | None:
    """Models straight from each pin's artifact source, digest checked: no registry needed."""
    return PinnedLoader(args.tracking_uri, args.pickle_allowed) if stage.model_nodes else None


class StageDeployment:
    """One remote stage: runs its nodes on the columns it is sent, with dynamic batching for models.

    With batching, calls that arrive while a batch runs are merged into the next one
    (`graphops.runtime._batcher`: a call to an idle stage never waits), run in slices of at most
    ``max_batch_size`` rows, and split back.
    """

    def __init__(self, args: dict[str, Any], stage: str) -> None:
        self.args = AppArgs.model_validate(args)
        package = open_graph(self.args)
        the_plan = plan(package.graph, fuse=self.args.fuse)
        self.stage = next(s for s in the_plan.stages if s.name == stage)
        pins = self.args.models
        self.runner = stage_runner(
            package, self.stage, _loader(self.args, self.stage), pins, self.args.features
        )
        self.batcher = batched(self.stage, self.runner)

    async def __call__(self, columns: Batch) -> Batch:
        """Run the stage on one request's columns; returns only the columns later stages need."""
        if self.batcher is None:
            return _outputs(self.stage, self.runner.run_batch(columns))
        return await self.batcher(columns)

    def stats(self) -> dict[str, Any]:
        """Batches run so far by size (calls merged per batch): the evidence batching works."""
        sizes = dict(self.batcher.sizes) if self.batcher else {}
        return {"stage": self.stage.name, "batch_sizes": sizes}


def _outputs(stage: Stage, result: Batch) -> Batch:
    return {k: result[k] for k in stage.outputs}


def batched(stage: Stage, runner: LocalRunner) -> Batcher | None:
    """A `Batcher` of ``stage`` when its model batches (rows sliced by ``max_batch_size``)."""
    if stage.batching is None:
        return None
    size, wait_s = stage.batching.max_batch_size, stage.batching.max_wait_ms / 1000
    return Batcher(lambda cols: _outputs(stage, runner.run(cols, batch_size=size)), size, wait_s)


class GraphIngress:
    """HTTP for one graph: validates requests, runs the plan (CPU stages in-process), answers.

    Routes under the application's route prefix: ``POST /`` (one request object or a list),
    ``GET /health``, ``GET /openapi.json``, ``GET /docs``, ``GET /stats`` (this replica's live
    counters, see `Live`) and, while its route is split, ``GET /split`` (the `SplitReport`).
    """

    def __init__(self, args: dict[str, Any], handles: dict[str, Any]) -> None:
        self.args = AppArgs.model_validate(args)
        package = open_graph(self.args)
        graph = package.graph
        self.graph, self.version = graph.name, graph.version
        self.content_hash, self.fuse = package.content_hash, self.args.fuse
        self.route = self.args.route or f"/{graph.name}"
        self.http = GraphHttp(
            graph,
            route=self.route,
            max_body_bytes=self.args.max_body_bytes,
            example=self.args.example,
        )
        self.reader = BodyReader.of(graph.name, self.args)
        self.steps: Steps = []
        self.models_inside = False  # a model stage runs here: another app's arm needs a hop
        for stage in plan(graph, fuse=self.args.fuse).stages:
            if not in_ingress(stage, self.args):
                self.steps.append((stage, handles[stage.name]))
                continue
            loader = _loader(self.args, stage)
            runner = stage_runner(package, stage, loader, self.args.models, self.args.features)
            self.models_inside |= loader is not None
            self.steps.append((stage, batched(stage, runner) or runner))
        self.served = 0  # requests answered, for sampling the stage metrics
        self._openapi: bytes | None = None
        self.info = {
            "content_hash": package.content_hash,
            "fused": self.args.fuse,
            "models": {k: {"uri": v.uri, "digest": v.digest} for k, v in self.args.models.items()},
            "deployments": ["ingress", *handles],
            "features": self.args.features.store,
        }
        self.live = Live(graph.name, graph.version)
        self.app = self.live.who["app"]
        self.splitter: Splitter | None = None

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Split this route by a `TrafficSplit` (``{}``: not split), in place.

        Async, so the handles the splitter makes are made on the replica's event loop.
        """
        old = self.splitter
        if not user_config:
            self.splitter = None
            if old is not None:
                old.stop()
            return
        self.splitter = Splitter.of(self, TrafficSplit.model_validate(user_config), old)

    def steps_of(self, app: str) -> Steps:
        """The steps of ``app``, which runs this code: the in-process ones, its stages by handle."""
        return [
            (stage, step)
            if isinstance(step, LocalRunner)
            else (stage, serve.get_deployment_handle(stage.name, app))
            for stage, step in self.steps
        ]

    async def __call__(self, request: Request) -> Response:
        """Route one HTTP request."""
        path = request.url.path
        # Serve puts the application's route prefix in root_path; during a rollout it is not the
        # stable route (see graphops.controller.apply), so never assume `args.route`.
        root = request.scope.get("root_path") or self.route
        sub = (path[len(root) :] if path.startswith(root) else path).rstrip("/")
        splitter = self.splitter
        try:
            check_headers(self.graph, request.scope.get("headers") or [])
            if sub == "" and request.method == "POST":
                began = time.perf_counter()
                body = await self.reader.read(request)
                if splitter is not None:
                    return await splitter.predict(body)
                timing = Timing(began)
                status, answer = await self.answer(body, timing)
                headers = {SERVER_TIMING: timing.header()}
                return Response(answer, status_code=status, media_type=JSON, headers=headers)
            if request.method == "GET" and sub == SPLIT_ROUTE and splitter is not None:
                report = await splitter.report()
                return Response(report.model_dump_json(), media_type=JSON)
            if request.method == "GET" and sub in _TOKEN_ROUTES:
                require_token(f"GET {path}", request.headers.get("authorization"), cluster_token())
            if request.method == "GET" and sub in _ROUTES[1:]:
                return self._get(sub)
            known = sub in _ROUTES or (sub == SPLIT_ROUTE and splitter is not None)
            where = (
                f"POST {self.route} with a JSON body; GET {self.route}/health, "
                f"{self.route}/openapi.json or {self.route}/docs ({self.route}/stats with the "
                "cluster's token)."
            )
            what = f"{request.method} {path} is not a route of graph '{self.graph}'."
            if known:
                allowed = "POST" if sub == "" else "GET"
                raise MethodNotAllowed(what, where, headers={"Allow": allowed})
            raise NotFound(what, where)
        except HttpError as exc:
            return error_response(exc)

    def stats(self, stage: str) -> dict[str, Any]:
        """Batches a stage run here has run so far by size (as `StageDeployment.stats`)."""
        step = next((step for s, step in self.steps if s.name == stage), None)
        sizes = dict(step.sizes) if isinstance(step, Batcher) else {}
        return {"stage": stage, "batch_sizes": sizes}

    def _get(self, sub: str) -> Response:
        if sub == "/health":
            return Response(self.http.health(self.info), media_type=JSON)
        if sub == "/stats":
            return Response(json.dumps(self.live.read()), media_type=JSON)
        if sub == "/openapi.json":
            self._openapi = self._openapi or json.dumps(self.http.openapi()).encode()
            return Response(self._openapi, media_type=JSON)
        from fastapi.openapi.docs import get_swagger_ui_html

        html = get_swagger_ui_html(openapi_url=f"{self.route}/openapi.json", title=self.graph)
        return HTMLResponse(bytes(html.body))

    async def answer(self, body: bytes, timing: Timing | None = None) -> tuple[int, bytes]:
        """Answer one JSON body: (HTTP status, JSON response). Another version's split calls this.

        ``timing`` collects how long each phase took (the ``Server-Timing`` header).
        """
        start = time.perf_counter()
        timing = timing or Timing(start)
        try:
            timing.lap("read")
            columns, single = self.http.parse(body)
            timing.lap("parse")
            result = await self.run(columns, self.steps, timing)
            status, answer = 200, self.http.respond(result, single)
            timing.lap("respond")
        except Exception as exc:
            status, answer = error_answer(failure(exc, self.graph))
        self.record(start, status)
        return status, answer

    def record(self, start: float, status: int) -> None:
        """Count one request this version answered (`Live`)."""
        self.live.record(start, status)

    async def run(self, columns: Batch, steps: Steps, timing: Timing | None = None) -> Batch:
        """Run ``steps`` (this version's, or another's of the same code) on ``columns``.

        Raises:
            HttpError: A stage timed out or lost its replicas (504, 503).
            GraphOpsError: A node failed.
        """
        own = steps is self.steps  # the other version's stages are not ours to time
        self.served += 1
        sampled = own and self.served % STAGE_SAMPLE == 0
        for stage, step in steps:
            began = time.perf_counter()
            if isinstance(step, LocalRunner):
                columns.update(step.run_batch(columns))
            elif isinstance(step, Batcher):
                out, waited = await step.timed(columns)
                columns.update(out)
                if timing is not None:
                    timing.add(f"{stage.name}-wait", waited)
            else:
                columns.update(await self._remote(stage, step, columns))
            if timing is not None:
                timing.lap(stage.name)
            if sampled:
                self.live.stage(stage.name, began)
        return columns

    async def _remote(self, stage: Stage, handle: Any, columns: Batch) -> Batch:
        payload = {c: columns[c] for c in stage.inputs}
        result: Batch = await call_with_retry(
            lambda: handle.remote(payload),
            timeout_s=self.args.stage_timeout_s,
            graph=self.graph,
            what=f"Stage {stage.name}",
            retry_fix="Run `graphops status`: the deployment is restarting replicas; give it "
            "two replicas or more (policy.min_replicas) so one loss is not an outage.",
        )
        return result
