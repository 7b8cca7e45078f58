"""Dynamic batching that waits only under load: concurrent calls merged into one run of a stage.

A call to an idle stage runs at once, alone (Serve's ``@serve.batch`` waits its whole
``batch_wait_timeout_s`` first: 5 ms of every digits request at low load). Calls that arrive
while a batch runs queue up and run together as the next batch, at most ``max_calls`` of them,
so batches grow as fast as the load does. Only then, under load, may the next batch wait for
more calls: until it is full or its oldest call has waited ``max_wait_s`` (`Batching`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from graphops.graph import Batch

INLINE_S = 0.002
"""A batch whose last run took less than this runs on the event loop itself; longer ones run in
a worker thread so that the loop keeps reading requests (a thread switch costs ~50 us)."""


class Batcher:
    """Runs ``run`` on merged batches of concurrent calls; see the module docstring."""

    def __init__(self, run: Callable[[Batch], Batch], max_calls: int, max_wait_s: float) -> None:
        self.run, self.max_calls, self.max_wait_s = run, max_calls, max_wait_s
        self.full = asyncio.Event()
        self.pending: list[tuple[Batch, asyncio.Future[tuple[Batch, float]], float]] = []
        self.worker: asyncio.Task[None] | None = None
        self.sizes: Counter[int] = Counter()  # calls merged per batch -> how often
        self.last_s = 0.0

    async def __call__(self, columns: Batch) -> Batch:
        """The stage's output for ``columns``, computed in a batch with whatever else is queued."""
        out, _ = await self.timed(columns)
        return out

    async def timed(self, columns: Batch) -> tuple[Batch, float]:
        """The stage's output for ``columns`` and the seconds the call waited in the queue."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Batch, float]] = loop.create_future()
        self.pending.append((columns, future, time.perf_counter()))
        if len(self.pending) >= self.max_calls:
            self.full.set()
        if self.worker is None or self.worker.done():
            self.worker = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # calls already runnable on the loop join this first batch
        loaded = False  # the stage was idle: the first batch never waits
        while self.pending:
            if loaded:
                await self._fill()
            loaded = True
            taken, self.pending = self.pending[: self.max_calls], self.pending[self.max_calls :]
            self.sizes[len(taken)] += 1
            began = time.perf_counter()
            parts = [p for p, _, _ in taken]
            try:
                outs = await self._run_merged(parts)
            except Exception as exc:  # every call of the batch gets the node's error
                for _, future, _ in taken:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future, queued), out in zip(taken, outs, strict=True):
                if not future.done():  # a caller may have timed out and gone
                    future.set_result((out, began - queued))

    async def _fill(self) -> None:
        """Under load: wait until the batch is full or its oldest call waited ``max_wait_s``."""
        left = self.max_wait_s - (time.perf_counter() - self.pending[0][2])
        if left <= 0 or len(self.pending) >= self.max_calls:
            return
        self.full.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.full.wait(), left)

    async def _run_merged(self, parts: list[Batch]) -> list[Batch]:
        if len(parts) == 1:
            return [await self._timed(parts[0])]
        sizes = [len(next(iter(p.values()))) for p in parts]
        merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        out = await self._timed(merged)
        bounds = np.cumsum(sizes)[:-1]
        split = {k: np.split(v, bounds) for k, v in out.items()}
        return [{k: split[k][i] for k in out} for i in range(len(parts))]

    async def _timed(self, columns: Batch) -> Batch:
        began = time.perf_counter()
        if self.last_s < INLINE_S:
            out = self.run(columns)
        else:
            out = await asyncio.to_thread(self.run, columns)
        self.last_s = time.perf_counter() - began
        return out
