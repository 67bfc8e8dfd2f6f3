"""The runner's compute queue: steps from every session wait here and ONE worker thread runs them.

Continuous batching: each round takes every step waiting (up to `max_batch`), and
`StageExecutor.forward_batch` runs the one-token decode steps of different sessions as one forward
pass (prefills alone). A step that arrives while a round computes joins the next round, so the
batch follows the load: one session alone runs exactly as before.

Gathering: a round starts once every session this stage holds (that stepped lately) has a step
waiting, or after half the previous round's time. Without it, sessions spread over the stages of a pipeline and each stage
computes small batches back to back (measured: 8 clients on 3 CPU stages cut a runner's CPU per token
by only 25 %); with it they move in step and a stage computes one batch of all of them. One session
never waits (it is the only one held). Used by both the stand-alone `RunnerServer` and the agent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from engine.runner.stage import MAX_BATCH, StageExecutor, Step

MAX_GATHER_S = 0.25          # the longest a round waits for the steps of the other sessions
ACTIVE_WITHIN_S = 1.0
Finish = Callable[[torch.Tensor], Any]         # runs on the compute thread (the token pick, a copy to CPU)


@dataclass
class _Waiting:
    step: Step
    last_only: bool
    finish: Finish | None
    future: asyncio.Future[Any]


class StepQueue:
    def __init__(self, executor: StageExecutor, max_batch: int = MAX_BATCH) -> None:
        self.executor = executor
        self.max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stage")
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self.rounds = 0
        self.largest_batch = 0
        self.max_gather_s = MAX_GATHER_S
        self._last_round_s = 0.0

    async def submit(self, step: Step, last_only: bool, finish: Finish | None = None) -> Any:
        """Run `step` in the next round; returns `finish(output)` (or the output); raises its error."""
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._wake = asyncio.Event()
            self._worker = loop.create_task(self._work())
        future = loop.create_future()
        self._waiting.append(_Waiting(step, last_only, finish, future))
        self._wake.set()
        return await future

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        for waiting in self._waiting:
            if not waiting.future.done():
                waiting.future.cancel()
        self._waiting.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                await self._gather()
                batch = self._take()
                started_s = time.perf_counter()
                try:
                    results = await loop.run_in_executor(self._pool, self._compute, batch)
                except Exception as exc:          # the pool is gone (closing): fail the round
                    results = [exc] * len(batch)
                self._last_round_s = time.perf_counter() - started_s
                self.rounds += 1
                self.largest_batch = max(self.largest_batch, len(batch))
                for waiting, result in zip(batch, results, strict=True):
                    if waiting.future.done():     # its requester gave up
                        continue
                    if isinstance(result, BaseException):
                        waiting.future.set_exception(result)
                    else:
                        waiting.future.set_result(result)

    async def _gather(self) -> None:
        """Wait (briefly) until every session held here has a step waiting."""
        assert self._wake is not None
        deadline_s = time.perf_counter() + min(self.max_gather_s, self._last_round_s / 2)
        # a session counts while it stepped within the last few rounds (not one its client abandoned)
        active = self.executor.active_sessions(max(ACTIVE_WITHIN_S, 4 * self._last_round_s))
        while len({w.step.session for w in self._waiting}) < min(active, self.max_batch):
            remaining_s = deadline_s - time.perf_counter()
            if remaining_s <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining_s)
            except TimeoutError:
                return

    def _take(self) -> list[_Waiting]:
        """Up to max_batch waiting steps sharing the first one's `last_only`, oldest first."""
        mode = self._waiting[0].last_only
        batch = [w for w in self._waiting if w.last_only == mode and not w.future.done()][:self.max_batch]
        taken = {id(w) for w in batch}
        self._waiting = [w for w in self._waiting if id(w) not in taken and not w.future.done()]
        return batch

    def _compute(self, batch: list[_Waiting]) -> list[Any]:
        if not batch:
            return []
        outputs = self.executor.forward_batch([w.step for w in batch], last_only=batch[0].last_only)
        results: list[Any] = []
        for waiting, output in zip(batch, outputs, strict=True):
            if isinstance(output, Exception) or waiting.finish is None:
                results.append(output)
                continue
            try:
                results.append(waiting.finish(output))
            except Exception as exc:              # noqa: BLE001 - that step's error, not the round's
                results.append(exc)
        return results
