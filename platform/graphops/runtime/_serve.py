"""The two Serve deployment classes every graph application is made of: an ingress and a stage.

Both rebuild their part of the graph from the application's arguments (graph name, content hash,
pinned models), so one pair of classes serves every graph and no graph needs Serve code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import Counter
from typing import Any, cast

import numpy as np
from ray import serve
from ray.exceptions import RayActorError
from ray.serve import Deployment
from ray.serve import metrics as serve_metrics
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from graphops.errors import GraphOpsError
from graphops.graph import Batch
from graphops.plan import Stage, plan
from graphops.runtime._auth import check_headers, cluster_token, require_token
from graphops.runtime._http import BodyReader, GraphHttp, HttpError
from graphops.runtime._merged import MergedCounters, empty
from graphops.runtime._remote import PinnedLoader, open_graph, stage_runner
from graphops.runtime._traffic import LATENCY_BOUNDS_MS, ArmStats, summary
from graphops.runtime.runner import LocalRunner
from graphops.runtime.schema import AppArgs, IngressSplit, in_ingress

logger = logging.getLogger("ray.serve")


def deployment_of(cls: type) -> Deployment:
    """``serve.deployment(cls)``, typed: Ray's overloads type a class argument as the factory form."""
    return cast(Deployment, serve.deployment(cls))


_JSON = "application/json"
CANARY_STATS = "canaries"
"""Name of the one statistics actor (`graphops.runtime._merged`) of a graph's canary splits."""
ARM_HEADER = "x-graphops-arm"
"""Response header naming the version that answered, while a route is split."""
_ROUTES = ("", "/health", "/openapi.json", "/docs", "/stats")
_TOKEN_ROUTES = ("/stats",)
"""Routes that answer only with the cluster's token (`graphops.runtime._auth`; docs/security.md)."""


async def call_with_retry(
    call: Any, *, timeout_s: float | None, graph: str, what: str, retry_fix: str
) -> Any:
    """Await ``call()`` (a Serve handle call), within ``timeout_s``; once more if its replica died.

    A replica that died (or is unreachable) mid-call is retried once: the handle routes the
    second call to another replica. An error raised by the code the replica runs is never
    retried. Inference calls are idempotent, so a retry cannot do a request's work twice
    in any way a client sees.

    Raises:
        HttpError: 504 when ``timeout_s`` passes, 503 when the second replica died too.
    """
    for attempt in (1, 2):
        response = call()
        try:
            return await asyncio.wait_for(_awaited(response), timeout_s)
        except TimeoutError:
            response.cancel()
            raise HttpError(
                504,
                {
                    "error": f"{what} of graph '{graph}' did not answer within {timeout_s:g} s.",
                    "fix": "See its replica logs (/tmp/ray/session_latest/logs/serve); a stage "
                    "that needs longer can be given it with stage_timeout_s in the application's "
                    "args, or more replicas.",
                },
            ) from None
        except RayActorError as exc:
            if attempt == 2:
                raise HttpError(
                    503,
                    {
                        "error": f"{what} of graph '{graph}' lost two replicas in a row while "
                        f"answering ({type(exc).__name__}).",
                        "fix": retry_fix,
                    },
                    headers={"Retry-After": "1"},
                ) from None
            logger.warning("%s of graph %s: a replica died (%s); retrying once", what, graph, exc)
    raise AssertionError("unreachable")  # pragma: no cover


async def _awaited(response: Any) -> Any:
    return await response


async def ask_version(handle: Any, body: bytes, *, graph: str, version: str, app: str) -> Any:
    """(status, JSON answer) of another version's ingress (`GraphIngress.answer`) for ``body``.

    Never raises: a version that cannot answer gives the 5xx its client sees (with the fix).
    """
    try:
        return await call_with_retry(
            lambda: handle.remote(body),
            timeout_s=None,  # that ingress bounds its own stages; Serve bounds the rest
            graph=graph,
            what=f"Version {version}",
            retry_fix="Run `graphops status` and `graphops apply`; see the Serve logs.",
        )
    except HttpError as exc:
        return exc.status, exc.json()
    except Exception as exc:  # the version's application is down or being replaced
        logger.warning("version %s of %s failed: %s", version, graph, exc)
        error = {
            "error": f"Version {version} of graph '{graph}' (application {app}) did not "
            f"answer: {type(exc).__name__}.",
            "fix": "Run `graphops status` and `graphops apply`; see the Serve logs.",
        }
        return 503, json.dumps(error).encode()


def _loader(args: AppArgs, stage: Stage) -> PinnedLoader | None:
    """Models straight from each pin's artifact source, digest checked: no registry needed."""
    return PinnedLoader(args.tracking_uri) if stage.model_nodes else None


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
    ``GET /health``, ``GET /openapi.json``, ``GET /docs``, ``GET /stats`` (this replica's
    live counters, see `Live`) and, while its route is split (`IngressSplit`), ``GET
    /experiment`` (both arms' totals merged across ingress replicas, shaped as the router's).
    """

    def __init__(self, args: dict[str, Any], handles: dict[str, Any]) -> None:
        self.args = AppArgs.model_validate(args)
        package = open_graph(self.args)
        graph = package.graph
        self.route = self.args.route or f"/{graph.name}"
        self.http = GraphHttp(
            graph,
            route=self.route,
            max_body_bytes=self.args.max_body_bytes,
            example=self.args.example,
        )
        self.reader = BodyReader.of(graph.name, self.args)
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
        self.live = Live(graph.name, graph.version)
        self.version = graph.version
        self.split: IngressSplit | None = None
        self.other: Any = None  # the other version's ingress (`answer`), when its code differs
        self.other_steps: list[tuple[Stage, LocalRunner | Any]] | None = None  # same code
        self.counters: MergedCounters | None = None

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Give a share of this route to another version (`IngressSplit`), in place.

        Async, so the handles are made on the replica's event loop. The other version's stages
        are called directly when it runs this code (same content hash and fusion); else its
        ingress is asked. At share 0 no handle is made: the other version may be gone.
        """
        split = IngressSplit.model_validate(user_config)
        if self.counters is None or self.counters.experiment != split.experiment:
            if self.counters is not None:
                self.counters.stop()
            # One actor per graph serves all its canaries (each rollout's keys are its apps, and
            # steps are judged on deltas), so rollouts do not leave a detached actor each.
            self.counters = MergedCounters(self.args.graph, split.experiment, CANARY_STATS)
        other, other_steps = None, None
        if split.share and self.same_code(split):
            other_steps = [
                (stage, step)
                if isinstance(step, LocalRunner)
                else (stage, serve.get_deployment_handle(stage.name, split.app))
                for stage, step in self.steps
            ]
        elif split.share:
            other = serve.get_app_handle(split.app).options(method_name="answer")
        self.other, self.other_steps, self.split = other, other_steps, split

    def same_code(self, split: IngressSplit) -> bool:
        """Whether the other version runs this graph code, planned the same way."""
        own = self.info["content_hash"]
        return split.content_hash == own and split.fuse == self.args.fuse

    async def __call__(self, request: Request) -> Response:
        """Route one HTTP request."""
        path = request.url.path
        # Serve puts the application's route prefix in root_path; during a rollout it is not the
        # stable route (see graphops.controller.apply), so never assume `args.route`.
        root = request.scope.get("root_path") or self.route
        sub = (path[len(root) :] if path.startswith(root) else path).rstrip("/")
        try:
            check_headers(self.args.graph, request.scope.get("headers") or [])
            if sub == "" and request.method == "POST":
                return await self._predict(request)
            if request.method == "GET" and sub == "/experiment" and self.split is not None:
                return Response(json.dumps(await self.experiment()), media_type=_JSON)
            if request.method == "GET" and sub in _TOKEN_ROUTES:
                require_token(f"GET {path}", request.headers.get("authorization"), cluster_token())
            if request.method == "GET" and sub in _ROUTES[1:]:
                return self._get(sub)
        except HttpError as exc:
            return error_response(exc)
        allowed = "POST" if sub == "" else "GET"
        known = sub in _ROUTES or (sub == "/experiment" and self.split is not None)
        error = HttpError(
            405 if known else 404,
            {
                "error": f"{request.method} {path} is not a route of graph '{self.args.graph}'.",
                "fix": f"POST {self.route} with a JSON body; GET {self.route}/health, "
                f"{self.route}/openapi.json or {self.route}/docs ({self.route}/stats with the "
                "cluster's token).",
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
        if sub == "/stats":
            return Response(json.dumps(self.live.read()), media_type=_JSON)
        if sub == "/openapi.json":
            self._openapi = self._openapi or json.dumps(self.http.openapi()).encode()
            return Response(self._openapi, media_type=_JSON)
        from fastapi.openapi.docs import get_swagger_ui_html

        html = get_swagger_ui_html(openapi_url=f"{self.route}/openapi.json", title=self.args.graph)
        return HTMLResponse(bytes(html.body))

    async def _predict(self, request: Request) -> Response:
        body = await self.reader.read(request)
        split, counters = self.split, self.counters
        if split is None or counters is None:
            status, answer = await self.answer(body)
            return Response(answer, status_code=status, media_type=_JSON)
        start = time.perf_counter()
        if split.share and random.random() * 100 < split.share:
            if self.other_steps is not None:  # same code: its stages, no extra hop
                status, answer = await self._answer(body, self.other_steps)
            else:  # other code: its ingress, the raw bytes parsed once, there
                status, answer = await ask_version(
                    self.other, body, graph=self.args.graph, version=split.version, app=split.app
                )
            app, version = split.app, split.version
        else:
            status, answer = await self.answer(body)
            app, version = self.live.who["app"], split.own_version or self.version
        ms = (time.perf_counter() - start) * 1000
        tags = {"graph": self.args.graph, "arm": version, "role": "canary"}
        counters.record(f"arm:{app}", ms, status, 1, [], tags)
        headers = {ARM_HEADER: version}
        return Response(answer, status_code=status, media_type=_JSON, headers=headers)

    async def experiment(self) -> dict[str, Any]:
        """Both arms of the split: totals across ingress replicas, in the router's report shape."""
        split, counters = self.split, self.counters
        assert split is not None and counters is not None  # set together by reconfigure
        raw = await counters.totals()
        arms = []
        for version, app, weight in (
            (split.own_version or self.version, self.live.who["app"], 100 - split.share),
            (split.version, split.app, split.share),
        ):
            totals = raw["totals"].get(f"arm:{app}") or empty()
            arms.append(
                {"version": version, "app": app, "weight": weight, **summary(totals)}
                | {"raw": totals}
            )
        return {
            "graph": self.args.graph,
            "experiment": split.experiment,
            "split": "ingress",
            "same_code": self.same_code(split),  # its share answered with no extra hop
            "since": raw["since"],
            "now": time.time(),
            "arms": arms,
        }

    async def answer(self, body: bytes) -> tuple[int, bytes]:
        """Answer one JSON body: (HTTP status, JSON response). The router calls this by handle."""
        start = time.perf_counter()
        status, answer = await self._answer(body, self.steps)
        self.live.record(start, status)
        return status, answer

    async def _answer(
        self, body: bytes, steps: list[tuple[Stage, LocalRunner | Any]]
    ) -> tuple[int, bytes]:
        """Answer ``body`` with ``steps``: this version's, or another's running the same code."""
        try:
            columns, single = self.http.parse(body)
        except HttpError as exc:
            return exc.status, exc.json()
        try:
            for stage, step in steps:
                began = time.perf_counter()
                if isinstance(step, LocalRunner):
                    columns.update(step.run_batch(columns))
                else:
                    columns.update(await self._remote(stage, step, columns))
                if steps is self.steps:  # the other version's stages are not ours
                    self.live.stage(stage.name, began)
            return 200, self.http.respond(columns, single)
        except HttpError as exc:  # a stage timed out, or lost its replicas
            return exc.status, exc.json()
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

    async def _remote(self, stage: Stage, handle: Any, columns: Batch) -> Batch:
        payload = {c: columns[c] for c in stage.inputs}
        result: Batch = await call_with_retry(
            lambda: handle.remote(payload),
            timeout_s=self.args.stage_timeout_s,
            graph=self.args.graph,
            what=f"Stage {stage.name}",
            retry_fix="Run `graphops status`: the deployment is restarting replicas; give it "
            "two replicas or more (policy.min_replicas) so one loss is not an outage.",
        )
        return result


class Live:
    """What one ingress replica counts per request: Prometheus metrics and in-memory totals.

    Prometheus (through ``ray.serve.metrics``, which adds the ``application``, ``deployment``
    and ``replica`` tags): ``graphops_requests`` (tag ``code``), ``graphops_errors`` (5xx),
    ``graphops_latency_ms`` and ``graphops_stage_latency_ms`` (tag ``stage``), all tagged with
    ``graph`` and ``version``. The in-memory totals (`ArmStats`) are served at ``GET
    <route>/stats`` so that `graphops status --live` works on a cluster without Prometheus.
    """

    def __init__(self, graph: str, version: str) -> None:
        context = serve.get_replica_context()
        self.who = {"graph": graph, "version": version, "app": context.app_name}
        self.replica = context.replica_id.unique_id
        self.totals = ArmStats()
        self.since = time.time()
        base = {"graph": graph, "version": version}
        bounds = list(LATENCY_BOUNDS_MS[::4])
        # Ray types tag_keys as a 1-tuple (tuple[str]); any tuple of names is what it takes.
        keys: Any = ("graph", "version")
        code: Any = ("graph", "version", "code")
        stage: Any = ("graph", "version", "stage")
        self.requests = serve_metrics.Counter(
            "graphops_requests", description="Requests answered, by status code.", tag_keys=code
        )
        self.errors = serve_metrics.Counter(
            "graphops_errors", description="Requests answered 5xx.", tag_keys=keys
        )
        self.latency = serve_metrics.Histogram(
            "graphops_latency_ms",
            description="Time the ingress took to answer (ms).",
            boundaries=bounds,
            tag_keys=keys,
        )
        self.stages = serve_metrics.Histogram(
            "graphops_stage_latency_ms",
            description="Time of one stage of the plan, as the ingress waits for it (ms).",
            boundaries=bounds,
            tag_keys=stage,
        )
        for metric in (self.requests, self.errors, self.latency, self.stages):
            metric.set_default_tags(dict(base))  # Serve adds its own tags to the dict given

    def record(self, start: float, status: int) -> None:
        """One answered request (any status)."""
        ms = (time.perf_counter() - start) * 1000
        self.totals.record(ms, status, 1, [])
        self.requests.inc(tags={"code": str(status)})
        if status >= 500:
            self.errors.inc()
        self.latency.observe(ms)

    def stage(self, name: str, start: float) -> None:
        """One stage of one request, done."""
        self.stages.observe((time.perf_counter() - start) * 1000, tags={"stage": name})

    def read(self) -> dict[str, Any]:
        """This replica's totals since it started (raw `ArmStats` counters)."""
        return {
            **self.who,
            "replica": self.replica,
            "since": self.since,
            "now": time.time(),
            "raw": self.totals.state(),
        }


def error_response(exc: HttpError) -> Response:
    """The HTTP response of an `HttpError` (JSON body, its headers)."""
    return Response(exc.json(), status_code=exc.status, media_type=_JSON, headers=exc.headers)
