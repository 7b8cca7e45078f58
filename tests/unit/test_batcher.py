"""The online batcher: no wait when idle, batches under load, answers split back in order."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from graphops.graph import Batch
from graphops.runtime._batcher import Batcher


def double(columns: Batch) -> Batch:
    return {"y": columns["x"] * 2}


def test_a_call_to_an_idle_stage_never_waits_for_a_batch() -> None:
    batcher = Batcher(double, max_calls=64, max_wait_s=1.0)

    async def one() -> tuple[Batch, float]:
        began = time.perf_counter()
        out = await batcher({"x": np.array([3.0])})
        return out, time.perf_counter() - began

    for _ in range(3):  # each call finds the stage idle again
        out, took = asyncio.run(one())
        assert out["y"].tolist() == [6.0]
        assert took < 0.5  # max_wait_s is 1 s: it was not waited
    assert batcher.sizes == {1: 3}


def test_concurrent_calls_are_merged_and_split_back_in_order() -> None:
    calls: list[int] = []

    def run(columns: Batch) -> Batch:
        calls.append(len(columns["x"]))
        return double(columns)

    batcher = Batcher(run, max_calls=4, max_wait_s=0.0)

    async def many() -> list[Batch]:
        parts = [{"x": np.arange(i, i + 2, dtype=float)} for i in range(10)]
        return await asyncio.gather(*(batcher(p) for p in parts))

    outs = asyncio.run(many())
    assert [o["y"].tolist() for o in outs] == [[2.0 * i, 2.0 * i + 2] for i in range(10)]
    assert sum(calls) == 20 and max(calls) <= 8  # at most 4 calls of 2 rows per batch
    assert sum(n * k for n, k in batcher.sizes.items()) == 10 and max(batcher.sizes) > 1


def test_a_batch_under_load_waits_to_fill_but_not_past_max_wait() -> None:
    def slow(columns: Batch) -> Batch:
        time.sleep(0.01)  # over INLINE_S: batches after the first run in a worker thread
        return double(columns)

    batcher = Batcher(slow, max_calls=8, max_wait_s=0.05)

    async def load() -> float:
        await batcher({"x": np.array([1.0])})  # idle: runs at once
        running = asyncio.ensure_future(batcher({"x": np.array([2.0])}))
        await asyncio.sleep(0.002)  # its batch now runs in a thread: the stage is loaded
        began = time.perf_counter()
        await asyncio.gather(running, *(batcher({"x": np.array([float(i)])}) for i in range(3)))
        return time.perf_counter() - began

    took = asyncio.run(load())
    assert 0.04 <= took < 1.0  # the 3 queued calls waited for more (none came) until max_wait_s
    assert batcher.sizes == {1: 2, 3: 1}


def test_a_failing_batch_fails_each_of_its_calls_and_the_next_batch_runs() -> None:
    def run(columns: Batch) -> Batch:
        if (columns["x"] < 0).any():
            raise ValueError("negative input")
        return double(columns)

    batcher = Batcher(run, max_calls=2, max_wait_s=0.0)

    async def go() -> tuple[list[object], Batch]:
        results = await asyncio.gather(
            batcher({"x": np.array([-1.0])}),
            batcher({"x": np.array([1.0])}),
            return_exceptions=True,
        )
        return results, await batcher({"x": np.array([5.0])})

    results, after = asyncio.run(go())
    assert all(isinstance(r, ValueError) for r in results)
    assert after["y"].tolist() == [10.0]


def test_queue_time_is_reported_per_call() -> None:
    batcher = Batcher(double, max_calls=4, max_wait_s=0.0)

    async def go() -> float:
        _, waited = await batcher.timed({"x": np.array([1.0])})
        return waited

    assert 0 <= asyncio.run(go()) < 0.5


@pytest.mark.parametrize("rows", [1, 3])
def test_a_slow_stage_runs_in_a_thread_and_still_answers(rows: int) -> None:
    def slow(columns: Batch) -> Batch:
        time.sleep(0.005)  # over INLINE_S: the next batch goes to a worker thread
        return double(columns)

    batcher = Batcher(slow, max_calls=4, max_wait_s=0.0)

    async def go() -> list[Batch]:
        await batcher({"x": np.ones(rows)})
        return await asyncio.gather(*(batcher({"x": np.ones(rows)}) for _ in range(3)))

    assert all(o["y"].tolist() == [2.0] * rows for o in asyncio.run(go()))
