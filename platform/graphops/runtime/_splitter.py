"""The one traffic splitter: a stable ingress sharing its route by its `TrafficSplit`.

Canaries, shadows and A/B experiments all run here (the contract is `graphops.runtime.split`).
Per request: the body is parsed once (by the stable's schema), each row's arm is picked by its
sticky key (`Picker`, salted by the split's name) or the request's at random, the arm answers
(the stable's own steps; a same-code arm's stages called directly, no hop; another version
through its ingress, one hop), the answer names its version(s) in ``x-graphops-arm``, and every
arm is counted (`MergedCounters`). A list whose rows belong to different arms is answered per
arm and put back in order. A mirror gets a copy after the answer is ready, in a background task:
compared with the answer given, counted, never returned, never able to fail the request.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from ray import serve
from starlette.responses import Response

from graphops.graph import Batch
from graphops.planner import Stage
from graphops.runtime._errors import (
    JSON,
    HttpError,
    error_answer,
    error_response,
    failure,
)
from graphops.runtime._handles import ask_version
from graphops.runtime._http import GraphHttp
from graphops.runtime._merged import MergedCounters
from graphops.runtime._traffic import Picker, agree, column_outputs, groups, outputs, renumber
from graphops.runtime.figures import ArmCounters, empty, summary
from graphops.runtime.split import ArmReport, Role, SplitReport, SplitTarget, TrafficSplit

ARM_HEADER = "x-graphops-arm"
"""Response header naming the version that answered (one per row when rows were split)."""

Steps = list[tuple[Stage, Any]]
"""A plan's steps as an ingress runs them: in-process runners, or stage deployment handles."""


class Host(Protocol):
    """What the splitter needs of the ingress it runs in (`graphops.runtime._serve`)."""

    graph: str
    version: str
    app: str
    content_hash: str
    fuse: bool
    http: GraphHttp
    steps: Steps
    models_inside: bool
    """A model stage runs in the ingress itself: another app's arm cannot be run from here."""

    async def run(self, columns: Batch, steps: Steps) -> Batch:
        """Run ``steps`` on ``columns`` (raises what a failed step raises)."""

    def steps_of(self, app: str) -> Steps:
        """The steps of ``app``, a version running this code: its stages, called directly."""

    def record(self, start: float, status: int) -> None:
        """Count one request the stable version answered itself (``/stats``)."""


@dataclass
class Target:
    """One version a split sends requests to: who, its share, and how it is reached."""

    role: Role
    app: str
    version: str
    weight: float
    steps: Steps | None = None
    """Same code: its steps (the stable's own, or another app's stages); no hop."""
    handle: Any = None
    """Other code: its ingress's ``answer``, one hop."""


class Splitter:
    """Shares one ingress's route by ``split``; see the module docstring."""

    def __init__(self, host: Host, split: TrafficSplit, counters: MergedCounters) -> None:
        self.host, self.split, self.counters = host, split, counters
        own = Target("stable", host.app, split.own_version or host.version, split.own_weight)
        own.steps = host.steps
        self.targets = [own, *(self._target("arm", a, a.weight) for a in split.arms)]
        self.mirror = self._target("mirror", split.mirror, 100) if split.mirror else None
        self.picker = Picker([t.weight for t in self.targets], split.name)
        self.field = split.output or host.http.graph.response_fields[0]
        self.outputs = split.purpose == "experiment"  # the report's output distribution
        self.pending: set[asyncio.Task[Any]] = set()

    @classmethod
    def of(cls, host: Host, split: TrafficSplit, old: Splitter | None) -> Splitter:
        """The splitter of ``split``, counting on where ``old`` counted if it has the same name.

        Call on the replica's event loop (handles are made here). At share 0 no handle is made:
        that version may be gone.
        """
        if old is not None and old.split.name == split.name:
            counters = old.counters
        else:
            if old is not None:
                old.counters.stop()
            counters = MergedCounters(host.graph, split.name)
        return cls(host, split, counters)

    def stop(self) -> None:
        """The route is no longer split: stop flushing counters."""
        self.counters.stop()

    def same_code(self, target: SplitTarget) -> bool:
        """Whether ``target`` runs this graph code, planned the same way (no hop to it)."""
        return (
            target.content_hash == self.host.content_hash
            and target.fuse == self.host.fuse
            and not self.host.models_inside  # its models (maybe other pins) are in its ingress
        )

    def _target(self, role: Role, of: SplitTarget, weight: float) -> Target:
        target = Target(role, of.app, of.version, weight)
        if weight <= 0:
            return target
        if self.same_code(of):
            target.steps = self.host.steps_of(of.app)
        else:
            target.handle = serve.get_app_handle(of.app).options(method_name="answer")
        return target

    async def predict(self, body: bytes) -> Response:
        """Answer one POST of the route: pick, answer, count, mirror."""
        start = time.perf_counter()
        try:
            columns, single = self.host.http.parse(body)
        except HttpError as exc:  # the stable's schema refuses it, for every arm
            own = self.targets[0]
            self.host.record(start, exc.status)
            self._count(own, start, exc.status, 0, [])
            return error_response(exc, {ARM_HEADER: own.version})
        rows = len(next(iter(columns.values())))
        picks = self._picks(columns, rows)
        copy = self.split.mirror is not None and random.random() * 100 < self.split.mirror.percent
        request = dict(columns) if copy else None  # the stages add columns to `columns`
        values: list[Any] | None = None
        if len(set(picks)) == 1:
            target = self.targets[picks[0]]
            status, answer, values = await self._answer(target, body, columns, single, start)
            self._count(target, start, status, rows, values or [])
            header = target.version
        else:
            status, answer = await self._rows(body, columns, picks)
            header = ",".join(self.targets[i].version for i in picks)
        if request is not None:
            task = asyncio.get_running_loop().create_task(
                self._mirror(body, request, single, status, answer, values)
            )
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)
        return Response(answer, status_code=status, media_type=JSON, headers={ARM_HEADER: header})

    def _picks(self, columns: Batch, rows: int) -> list[int]:
        """The arm of each row (by its sticky key), or one arm for the request (at random)."""
        key = self.split.sticky_key
        if key is None or key not in columns:
            return [self.picker.pick()]
        return [self.picker.pick(v) for v in columns[key]]

    async def _answer(
        self, target: Target, body: bytes, columns: Batch, single: bool, start: float
    ) -> tuple[int, bytes, list[Any] | None]:
        """(status, answer, main output values or None) of ``target`` for the whole request."""
        if target.steps is not None:
            try:
                out = await self.host.run(columns, target.steps)
                status, answer = 200, self.host.http.respond(out, single)
                values = column_outputs(out[self.field]) if self.field in out else []
            except Exception as exc:
                (status, answer), values = error_answer(failure(exc, self.host.graph)), []
            if target.role == "stable":
                self.host.record(start, status)
            return status, answer, values if self.outputs else []
        status, answer = await self._ask(target, body)
        return status, answer, self._values(status, answer) if self.outputs else None

    async def _ask(self, target: Target, body: bytes) -> tuple[int, bytes]:
        host = self.host
        return await ask_version(
            target.handle, body, graph=host.graph, version=target.version, app=target.app
        )

    def _values(self, status: int, answer: bytes) -> list[Any]:
        if status != 200:
            return []
        try:
            return outputs(json.loads(answer), self.field)
        except ValueError:
            return []

    async def _rows(self, body: bytes, columns: Batch, picks: list[int]) -> tuple[int, bytes]:
        """A list whose rows belong to different arms: each answers its rows, put back in order."""
        fields = list(self.host.http.graph.request_fields)
        parts = groups(picks)
        rows: list[Any] | None = None
        calls = []
        for index, where in parts.items():
            target = self.targets[index]
            if target.steps is not None:
                at = np.asarray(where)
                sub = {f: columns[f][at] for f in fields}
                calls.append(self._part(target, b"", sub, where))
            else:
                rows = rows if rows is not None else json.loads(body)
                sub_body = json.dumps([rows[p] for p in where]).encode()
                calls.append(self._part(target, sub_body, {}, where))
        answers = await asyncio.gather(*calls)
        merged: list[Any] = [None] * len(picks)
        for where, (status, answer) in zip(parts.values(), answers, strict=True):
            if status != 200:
                return status, renumber(answer, where)
            for position, row in zip(where, json.loads(answer), strict=True):
                merged[position] = row
        return 200, json.dumps(merged).encode()

    async def _part(
        self, target: Target, body: bytes, columns: Batch, where: list[int]
    ) -> tuple[int, bytes]:
        start = time.perf_counter()
        if target.steps is not None:
            status, answer, values = await self._answer(target, body, columns, False, start)
        else:
            status, answer = await self._ask(target, body)
            values = self._values(status, answer) if self.outputs else []
        self._count(target, start, status, len(where), values or [])
        return status, answer

    async def _mirror(
        self,
        body: bytes,
        columns: Batch,
        single: bool,
        status: int,
        answer: bytes,
        values: list[Any] | None,
    ) -> None:
        """Copy one request to the mirror; count its answer and how it agrees, never return it."""
        mirror = self.mirror
        assert mirror is not None  # only called with one
        start = time.perf_counter()
        got: list[Any] = []
        try:
            if mirror.steps is not None:
                out = await self.host.run(columns, mirror.steps)
                got_status, got = 200, column_outputs(out[self.field]) if self.field in out else []
            else:
                got_status, got_answer = await self._ask(mirror, body)
                got = self._values(got_status, got_answer)
        except Exception as exc:  # a failing mirror is counted, never seen by the client
            got_status = failure(exc, self.host.graph).status
        rows = len(next(iter(columns.values())))
        counters = self._count(mirror, start, got_status, rows, got)
        if status == 200 and got_status == 200:
            given = values if values else self._values(status, answer)
            compared, agreed = agree(given, got)
            counters.compared += compared
            counters.agreed += agreed

    def _count(
        self, target: Target, start: float, status: int, rows: int, values: list[Any]
    ) -> ArmCounters:
        ms = (time.perf_counter() - start) * 1000
        tags = {"graph": self.host.graph, "arm": target.version, "role": target.role}
        return self.counters.record(target.app, ms, status, rows, values, tags)

    async def report(self) -> SplitReport:
        """``GET <route>/split``: every arm's totals across the stable ingress's replicas."""
        raw = await self.counters.totals()
        targets = [*self.targets, *([self.mirror] if self.mirror else [])]
        weights = {t.app: t.weight for t in self.targets}
        if self.split.mirror is not None:
            weights[self.split.mirror.app] = self.split.mirror.percent
        arms = []
        for t in targets:
            totals = raw["totals"].get(t.app) or empty()
            arms.append(
                ArmReport(
                    role=t.role,
                    version=t.version,
                    app=t.app,
                    weight=weights[t.app],
                    raw=totals,
                    figures=summary(totals),
                )
            )
        others = [*self.split.arms, *([self.split.mirror] if self.split.mirror else [])]
        return SplitReport(
            graph=self.host.graph,
            name=self.split.name,
            purpose=self.split.purpose,
            same_code={o.app: self.same_code(o) for o in others},
            since=raw["since"],
            now=time.time(),
            arms=tuple(arms),
            sticky_key=self.split.sticky_key,
            output=self.split.output,
        )
