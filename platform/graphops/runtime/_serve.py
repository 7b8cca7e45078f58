"""The two Serve deployment classes every graph application is made of: an ingress and a stage.

Both rebuild their part of the graph from the application's arguments (graph name, content hash,
pinned models), so one pair of classes serves every graph and no graph needs Serve code.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any, cast

import numpy as np
from ray import serve
from ray.serve import Deployment
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from graphops.errors import GraphOpsError
from graphops.graph import Batch
from graphops.plan import Stage, plan
from graphops.registry import Registry
from graphops.runtime._http import GraphHttp, HttpError
from graphops.runtime._remote import open_graph, stage_runner
from graphops.runtime.runner import LocalRunner
from graphops.runtime.schema import AppArgs, in_ingress

logger = logging.getLogger("ray.serve")


def deployment_of(cls: type) -> Deployment:
    """``serve.deployment(cls)``, typed: Ray's overloads type a class argument as the factory form."""
    return cast(Deployment, serve.deployment(cls))


_JSON = "application/json"


def _registry(args: AppArgs, stage: Stage) -> Registry | None:
    return Registry(Path(args.work_dir), args.tracking_uri) if stage.model_nodes else None


class StageDeployment:
    """One remote stage: runs its nodes on the columns it is sent, with dynamic batching for models.

    With batching, concurrent calls are merged into one batch (Serve's ``@serve.batch``, sized by
    the node's ``Batching``), run in slices of at most ``max_batch_size`` rows, and split back.
    """

    def __init__(self, args: dict[str, Any], stage: str) -> None:
        self.args = AppArgs.model_validate(args)
        package = open_graph(self.args.repo, self.args.graph, self.args.content_hash)
        the_plan = plan(package.graph, fuse=self.args.fuse)
        self.stage = next(s for s in the_plan.stages if s.name == stage)
        pins = self.args.models
        self.runner = stage_runner(
            package, self.stage, _registry(self.args, self.stage), pins, self.args.features
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
    ``GET /health``, ``GET /openapi.json`` and ``GET /docs``.
    """

    def __init__(self, args: dict[str, Any], handles: dict[str, Any]) -> None:
        self.args = AppArgs.model_validate(args)
        package = open_graph(self.args.repo, self.args.graph, self.args.content_hash)
        graph = package.graph
        self.route = self.args.route or f"/{graph.name}"
        self.http = GraphHttp(
            graph,
            route=self.route,
            max_body_bytes=self.args.max_body_bytes,
            example=self.args.example,
        )
        self.steps: list[tuple[Stage, LocalRunner | Any]] = []
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

    async def __call__(self, request: Request) -> Response:
        """Route one HTTP request."""
        path = request.url.path
        # Serve puts the application's route prefix in root_path; during a rollout it is not the
        # stable route (see graphops.controller.apply), so never assume `args.route`.
        root = request.scope.get("root_path") or self.route
        sub = (path[len(root) :] if path.startswith(root) else path).rstrip("/")
        try:
            if sub == "" and request.method == "POST":
                return await self._predict(request)
            if request.method == "GET" and sub in ("/health", "/openapi.json", "/docs"):
                return self._get(sub)
        except HttpError as exc:
            return Response(exc.json(), status_code=exc.status, media_type=_JSON)
        allowed = "POST" if sub == "" else "GET"
        known = sub in ("", "/health", "/openapi.json", "/docs")
        error = HttpError(
            405 if known else 404,
            {
                "error": f"{request.method} {path} is not a route of graph '{self.args.graph}'.",
                "fix": f"POST {self.route} with a JSON body; GET {self.route}/health, "
                f"{self.route}/openapi.json or {self.route}/docs.",
            },
        )
        headers = {"Allow": allowed} if known else None
        return Response(error.json(), status_code=error.status, media_type=_JSON, headers=headers)

    async def get(self, sub: str) -> tuple[int, bytes, str]:
        """(status, body, media type) of ``GET <route><sub>``; the router forwards these by handle."""
        response = self._get(sub)
        return response.status_code, bytes(response.body), response.media_type or _JSON

    def _get(self, sub: str) -> Response:
        if sub == "/health":
            return Response(self.http.health(self.info), media_type=_JSON)
        if sub == "/openapi.json":
            self._openapi = self._openapi or json.dumps(self.http.openapi()).encode()
            return Response(self._openapi, media_type=_JSON)
        from fastapi.openapi.docs import get_swagger_ui_html

        html = get_swagger_ui_html(openapi_url=f"{self.route}/openapi.json", title=self.args.graph)
        return HTMLResponse(bytes(html.body))

    async def _predict(self, request: Request) -> Response:
        status, body = await self.answer(await self._body(request))
        return Response(body, status_code=status, media_type=_JSON)

    async def answer(self, body: bytes) -> tuple[int, bytes]:
        """Answer one JSON body: (HTTP status, JSON response). The router calls this by handle."""
        try:
            columns, single = self.http.parse(body)
        except HttpError as exc:
            return exc.status, exc.json()
        try:
            for stage, step in self.steps:
                if isinstance(step, LocalRunner):
                    columns.update(step.run_batch(columns))
                else:
                    columns.update(await step.remote({c: columns[c] for c in stage.inputs}))
            return 200, self.http.respond(columns, single)
        except GraphOpsError as exc:  # a node failed: say which, where, and what to do
            logger.warning("graph %s failed a request: %s", self.args.graph, exc)
            error = {"error": exc.what, "fix": exc.fix, "graph": exc.graph, "node": exc.node}
            if exc.location:
                error["file"] = exc.location
            return 500, json.dumps(error).encode()
        except Exception as exc:  # anything else: short, not a Ray traceback
            logger.exception("graph %s failed a request", self.args.graph)
            first = (str(exc).strip().splitlines() or [""])[-1][:300]
            error = {
                "error": f"The graph failed: {type(exc).__name__}: {first}",
                "fix": "See the Serve replica logs (/tmp/ray/session_latest/logs/serve).",
            }
            return 500, json.dumps(error).encode()

    async def _body(self, request: Request) -> bytes:
        """The body, refused with 413 as soon as it exceeds the limit (even without a length)."""
        limit = self.http.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise self.http.too_large(int(declared))
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise self.http.too_large(size)
            chunks.append(chunk)
        return b"".join(chunks)
