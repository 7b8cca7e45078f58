"""The two Serve deployment classes every graph application is made of: an ingress and a stage.

Both rebuild their part of the graph from the application's arguments (graph name, content hash,
pinned models), so one pair of classes serves every graph and no graph needs Serve code. The
ingress answers HTTP; while its route is split (a `TrafficSplit` in its ``user_config``) its
`Splitter` (`graphops.runtime._splitter`) decides who answers each request.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any, cast

import numpy as np
from ray import serve
from ray.serve import Deployment
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from graphops.graph import Batch
from graphops.planner import Stage, plan
from graphops.runtime._auth import check_headers, cluster_token, require_token
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


_ROUTES = ("", "/health", "/openapi.json", "/docs", "/stats")
_TOKEN_ROUTES = ("/stats",)
"""Routes that answer only with the cluster's token (`graphops.runtime._auth`; docs/security.md)."""


def _loader(args: AppArgs, stage: Stage) -> PinnedLoader | None:
    """Models straight from each pin's artifact source, digest checked: no registry needed."""
    return PinnedLoader(args.tracking_uri, args.pickle_allowed) if stage.model_nodes else None


class StageDeployment:
    """One remote stage: runs its nodes on the columns it is sent, with dynamic batching for models.

    With batching, concurrent calls are merged into one batch (Serve's ``@serve.batch``, sized by
    the node's ``Batching``), run in slices of at most ``max_batch_size`` rows, and split back.
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
        self.batching = self.stage.batching
        self.batch_sizes: Counter[int] = Counter()  # calls merged per batch -> how often
        if self.batching is not None:
            # @serve.batch's wrapper has these setters; its type hints keep the bare signature.
            batched: Any = self._batched
            batched.set_max_batch_size(self.batching.max_batch_size)
            batched.set_batch_wait_timeout_s(self.batching.max_wait_ms / 1000)

    async def __call__(self, columns: Batch) -> Batch:
        """Run the stage on one request's columns; returns only the columns later stages need."""
        if self.batching is None:
            return self._run(columns)
        return await self._batched(columns)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _batched(self, parts: list[Batch]) -> list[Batch]:
        self.batch_sizes[len(parts)] += 1
        sizes = [len(next(iter(p.values()))) for p in parts]
        merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        out = self._run(merged)
        bounds = np.cumsum(sizes)[:-1]
        split = {k: np.split(v, bounds) for k, v in out.items()}
        return [{k: split[k][i] for k in out} for i in range(len(parts))]

    def _run(self, columns: Batch) -> Batch:
        size = self.batching.max_batch_size if self.batching else None
        result = (
            self.runner.run(columns, batch_size=size) if size else self.runner.run_batch(columns)
        )
        return {k: result[k] for k in self.stage.outputs}

    def stats(self) -> dict[str, Any]:
        """Batches run so far by size (calls merged per batch): the evidence batching works."""
        return {"stage": self.stage.name, "batch_sizes": dict(self.batch_sizes)}


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
        for stage in plan(graph, fuse=self.args.fuse).stages:
            if in_ingress(stage):
                runner = stage_runner(package, stage, None, {}, self.args.features)
                self.steps.append((stage, runner))
            else:
                self.steps.append((stage, handles[stage.name]))
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
                body = await self.reader.read(request)
                if splitter is not None:
                    return await splitter.predict(body)
                status, answer = await self.answer(body)
                return Response(answer, status_code=status, media_type=JSON)
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

    async def answer(self, body: bytes) -> tuple[int, bytes]:
        """Answer one JSON body: (HTTP status, JSON response). Another version's split calls this."""
        start = time.perf_counter()
        try:
            columns, single = self.http.parse(body)
            status, answer = 200, self.http.respond(await self.run(columns, self.steps), single)
        except Exception as exc:
            status, answer = error_answer(failure(exc, self.graph))
        self.record(start, status)
        return status, answer

    def record(self, start: float, status: int) -> None:
        """Count one request this version answered (`Live`)."""
        self.live.record(start, status)

    async def run(self, columns: Batch, steps: Steps) -> Batch:
        """Run ``steps`` (this version's, or another's of the same code) on ``columns``.

        Raises:
            HttpError: A stage timed out or lost its replicas (504, 503).
            GraphOpsError: A node failed.
        """
        own = steps is self.steps  # the other version's stages are not ours to time
        for stage, step in steps:
            began = time.perf_counter()
            if isinstance(step, LocalRunner):
                columns.update(step.run_batch(columns))
            else:
                columns.update(await self._remote(stage, step, columns))
            if own:
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
