"""The stable route of a graph under an experiment: a router that splits traffic between versions.

Ray Serve 2.x has no traffic splitting between applications, so when ``release.yaml`` declares
``traffic`` for a graph, each version runs as its own application (on a private route) and the
application ``<graph>-router`` owns ``/<graph>``. Its one deployment, ``Router``, reads the arms,
weights, sticky key and shadow from its ``user_config``: changing them is an in-place update, no
replica restarts. It forwards the request body to the chosen arm's ingress by handle
(`GraphIngress.answer`), names the arm in the ``x-graphops-arm`` header, copies a share of the
requests to the shadow in the background, and counts per arm (Prometheus metrics through Ray
Serve, plus totals merged across router replicas by `graphops.runtime._merged`, read at
``GET /<graph>/experiment``). Without ``traffic`` there is no router: the version's own
application owns the route and no hop is added.

A canary does not use the router: the stable version's own ingress splits its route
(`graphops.runtime.schema.IngressSplit`), with no hop for requests that run the same code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from typing import Any

from pydantic import ValidationError
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from graphops.errors import ServeError
from graphops.runtime._auth import check_headers
from graphops.runtime._http import BodyReader, HttpError
from graphops.runtime._merged import MergedCounters, empty
from graphops.runtime._serve import ARM_HEADER, ask_version, deployment_of, error_response
from graphops.runtime._traffic import ArmStats, Picker, agree, outputs, summary
from graphops.runtime.schema import (
    ROUTER_CPUS,
    ROUTER_MAX_ONGOING,
    RouterArgs,
    RouterConfig,
)
from graphops.runtime.schema import ROUTER_DEPLOYMENT as DEPLOYMENT
from graphops.runtime.schema import ROUTER_IMPORT_PATH as IMPORT_PATH

REPLICA_ENV = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
}
"""Serve settings of the router's replicas only (Ray 2.60, `ray.serve._private.constants`).

The router's code is a few awaits per request; by default Serve runs it on a thread of its own
and its handles' routing on another event loop, so every request crosses two threads. Both off,
one event loop does all of it (two of the settings ``RAY_SERVE_THROUGHPUT_OPTIMIZED`` turns on
cluster-wide; here they apply to this process alone). Measured in docs/performance.md (d).
"""

logger = logging.getLogger("ray.serve")
_JSON = "application/json"
_ROW = re.compile(r"first: row (\d+),")


class Router:
    """Splits a graph's stable route between versions; see the module docstring."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.args = RouterArgs.model_validate(args)
        self.route = self.args.route or f"/{self.args.graph}"
        self.reader = BodyReader.of(self.args.graph, self.args)
        self.config: RouterConfig | None = None
        self.counters: MergedCounters | None = None
        self.pending: set[asyncio.Task[Any]] = set()

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Take new arms/weights/shadow in place (Serve calls this on a ``user_config`` change).

        Async, so it runs on the replica's event loop: handles made with
        ``RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=0`` (`REPLICA_ENV`) must be created on one.
        """
        config = RouterConfig.model_validate(user_config)
        if self.counters is None or config.experiment != self.counters.experiment:
            if self.counters is not None:
                self.counters.stop()
            self.counters = MergedCounters(self.args.graph, config.experiment)
        self.config = config
        self.picker = Picker(config)
        apps = [a.app for a in config.arms] + ([config.shadow.app] if config.shadow else [])
        # `handle.answer` builds a new handle on every attribute access: keep one per arm.
        self.handles = {app: serve.get_app_handle(app) for app in apps}
        self.calls = {app: h.options(method_name="answer") for app, h in self.handles.items()}

    async def __call__(self, request: Request) -> Response:
        """Route one HTTP request."""
        path = request.url.path
        root = request.scope.get("root_path") or self.route
        sub = (path[len(root) :] if path.startswith(root) else path).rstrip("/")
        try:
            check_headers(self.args.graph, request.scope.get("headers") or [])
            if sub == "" and request.method == "POST":
                return await self._route(await self.reader.read(request))
            if request.method == "GET" and sub == "/experiment":
                return Response(json.dumps(await self.report()), media_type=_JSON)
            if request.method == "GET" and sub in ("/health", "/openapi.json", "/docs"):
                return await self._forward_get(sub)
        except HttpError as exc:
            return error_response(exc)
        error = HttpError(
            404,
            {
                "error": f"{request.method} {path} is not a route of graph '{self.args.graph}'.",
                "fix": f"POST {self.route} with a JSON body; GET {self.route}/health, "
                f"{self.route}/openapi.json, {self.route}/docs or {self.route}/experiment.",
            },
        )
        return Response(error.json(), status_code=error.status, media_type=_JSON)

    async def _route(self, body: bytes) -> Response:
        config = self._configured()
        key = config.sticky_key
        rows: Any = None
        if key is not None:
            try:
                rows = json.loads(body)
            except ValueError:
                rows = None  # the arm's ingress answers the 422
        if isinstance(rows, list) and rows:
            picks = [self.picker.pick(_key(r, key)) for r in rows]
        else:
            picks = [self.picker.pick(_key(rows, key) if isinstance(rows, dict) else None)]
        if len(set(picks)) == 1:
            status, answer = await self._ask(picks[0], body, len(picks))
            arm_header = config.arms[picks[0]].version
        else:
            status, answer = await self._split(rows, picks)
            arm_header = ",".join(config.arms[i].version for i in picks)
        if config.shadow is not None and random.random() * 100 < config.shadow.percent:
            task = asyncio.get_running_loop().create_task(self._shadow(body, status, answer))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)
        return Response(
            answer, status_code=status, media_type=_JSON, headers={ARM_HEADER: arm_header}
        )

    async def _ask(self, index: int, body: bytes, rows: int) -> tuple[int, bytes]:
        arm = self._configured().arms[index]
        start = time.perf_counter()
        status, answer = await ask_version(
            self.calls[arm.app], body, graph=self.args.graph, version=arm.version, app=arm.app
        )
        self._record("arm", arm.version, start, status, rows, answer)
        return status, answer

    async def _split(self, rows: list[Any], picks: list[int]) -> tuple[int, bytes]:
        """Rows of one list request that belong to different arms: ask each, answer in order."""
        groups: dict[int, list[int]] = {}
        for position, arm in enumerate(picks):
            groups.setdefault(arm, []).append(position)
        answers = await asyncio.gather(
            *(
                self._ask(arm, json.dumps([rows[p] for p in where]).encode(), len(where))
                for arm, where in groups.items()
            )
        )
        merged: list[Any] = [None] * len(rows)
        for (_, where), (status, answer) in zip(groups.items(), answers, strict=True):
            if status != 200:
                return status, _renumber(answer, where)
            for position, row in zip(where, json.loads(answer), strict=True):
                merged[position] = row
        return 200, json.dumps(merged).encode()

    async def _shadow(self, body: bytes, status: int, answer: bytes) -> None:
        """Copy one request to the shadow; record its answer, never return it."""
        config = self._configured()
        shadow = config.shadow
        assert shadow is not None
        start = time.perf_counter()
        try:
            got_status, got = await self.calls[shadow.app].remote(body)
        except Exception:  # a failing shadow is counted, never seen by the client
            got_status, got = 0, b""
        stats = self._record("shadow", shadow.version, start, got_status, 0, got)
        if status == 200 and got_status == 200:
            compared, agreed = agree(
                outputs(json.loads(answer), config.output), outputs(json.loads(got), config.output)
            )
            stats.compared += compared
            stats.agreed += agreed

    def _record(
        self, role: str, version: str, start: float, status: int, rows: int, answer: bytes
    ) -> ArmStats:
        ms = (time.perf_counter() - start) * 1000
        values: list[Any] = []
        if status == 200:
            try:
                values = outputs(json.loads(answer), self._configured().output)
            except ValueError:
                values = []
        assert self.counters is not None  # set with the config
        tags = {"graph": self.args.graph, "arm": version, "role": role}
        return self.counters.record(
            f"{role}:{version}", ms, status, rows or len(values), values, tags
        )

    async def report(self) -> dict[str, Any]:
        """The experiment's totals across router replicas, per arm and for the shadow."""
        config = self._configured()
        assert self.counters is not None  # set with the config
        raw = await self.counters.totals()
        arms = []
        for arm in config.arms:
            counters = raw["totals"].get(f"arm:{arm.version}") or empty()
            figures = summary(counters)
            arms.append(
                {"version": arm.version, "app": arm.app, "weight": arm.weight, **figures}
                | {"raw": counters}  # mergeable totals: a reader diffs two reports (live figures)
            )
        out: dict[str, Any] = {
            "graph": self.args.graph,
            "experiment": config.experiment,
            "sticky_key": config.sticky_key,
            "output": config.output,
            "since": raw["since"],
            "now": time.time(),
            "arms": arms,
        }
        if config.shadow is not None:
            s = config.shadow
            figures = summary(raw["totals"].get(f"shadow:{s.version}") or empty())
            out["shadow"] = {"version": s.version, "app": s.app, "percent": s.percent, **figures}
        return out

    async def _forward_get(self, sub: str) -> Response:
        """Health, OpenAPI and docs come from the first arm (the control)."""
        arm = self._configured().arms[0]
        status, body, media = await self.handles[arm.app].get.remote(sub)
        if sub == "/health":
            health = json.loads(body)
            health["experiment"] = self._configured().model_dump(mode="json")
            body = json.dumps(health).encode()
        return Response(body, status_code=status, media_type=media)

    def _configured(self) -> RouterConfig:
        if self.config is None:
            raise HttpError(
                503,
                {
                    "error": f"The router of graph '{self.args.graph}' has no arms configured.",
                    "fix": "Render and apply the environment (the arms are its user_config).",
                },
            )
        return self.config


def _key(row: Any, key: str | None) -> Any:
    return row.get(key) if key is not None and isinstance(row, dict) else None


def _renumber(answer: bytes, where: list[int]) -> bytes:
    """An arm's error about a sub-list, with row numbers of the client's list."""
    try:
        error = json.loads(answer)
    except ValueError:
        return answer
    if not isinstance(error, dict):
        return answer
    for item in error.get("detail") or []:
        loc = item.get("loc") or []
        if len(loc) > 1 and isinstance(loc[1], int) and loc[1] < len(where):
            loc[1] = where[loc[1]]
    if isinstance(error.get("error"), str):
        error["error"] = _ROW.sub(
            lambda m: f"first: row {where[int(m.group(1)) - 1] + 1},", error["error"]
        )
    return json.dumps(error).encode()


def app(args: dict[str, Any] | RouterArgs) -> serve.Application:
    """Build a graph's router application (the arms come from the Serve config's user_config).

    Raises:
        ServeError: The arguments are invalid (the field is named).
    """
    return router_app(args)


def router_app(
    args: dict[str, Any] | RouterArgs, config: RouterConfig | None = None
) -> serve.Application:
    """A router application, with its arms given here (``config``) or by the Serve config.

    Raises:
        ServeError: The arguments are invalid (the field is named).
    """
    try:
        parsed = args if isinstance(args, RouterArgs) else RouterArgs.model_validate(args)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise ServeError(
            f"Got {err.get('input')!r:.80} for args.{'.'.join(map(str, err['loc']))} of "
            f"{IMPORT_PATH}: {err['msg']}.",
            fix="Re-render the environment (`graphops render`); do not edit serve.yaml.",
        ) from exc
    options: dict[str, Any] = {
        "name": DEPLOYMENT,
        "ray_actor_options": {"num_cpus": ROUTER_CPUS, "runtime_env": {"env_vars": REPLICA_ENV}},
        "max_ongoing_requests": ROUTER_MAX_ONGOING,
        "logging_config": {"enable_access_log": False},
    }
    if config is not None:
        options["user_config"] = config.model_dump(mode="json")
    return deployment_of(Router).options(**options).bind(parsed.model_dump(mode="json"))
