"""The runner's compute queue: steps from every session wait here and ONE worker thread runs them.

Continuous batching: each round takes the steps waiting (up to `max_batch`), and
`StageExecutor.forward_batch` runs the one-token decode steps of different sessions as one forward
pass (prefills alone). A step that arrives while a round computes joins a later round, so the batch
follows the load: one session alone runs exactly as before.

Groups: the FIRST stage splits the sessions it holds into `groups` (2) batches that take turns, so
while one group computes here the other computes at a later stage: two stages compute at once
instead of one. All sessions in one batch move in step and leave every stage but one idle. The
price is a smaller batch per forward pass: 8 clients on 3 CPU stages sharing 2 cores with other
work (load 4-5) took 50 ms of CPU per token as one batch of 8 (19.3 tokens/s) and 60-66 ms as two
groups of 4 (13.8-21.0 tokens/s over three runs); two groups pay off where stages do not share
cores with each other or with other work, as on the machines of a swarm.

Gathering: before a round a stage waits, briefly, for the steps it expects. The first stage waits
for a group's share of the sessions held (those that stepped lately), up to one pipeline cycle (the
time between two steps of a session; at most MAX_ENTRY_GATHER_S): sessions that arrived a little
apart (the requests of 8 clients come in over a second) meet there and form the groups, instead of
going round as many small batches. A later stage takes what arrives together: a batch's steps come
back to back from the previous stage, so it starts once no step came for QUIET_S (or after half a
round). Only one stage waiting for the others keeps two groups from each waiting for the other at
different stages. One session never waits (it is the only one held). Used by both the stand-alone
`RunnerServer` and the agent.
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

GROUPS = 2                   # batches the first stage splits the sessions into, taking turns
MAX_ENTRY_GATHER_S = 1.0     # the first stage: the longest a round waits for its group (a cycle at most)
MAX_GATHER_S = 0.25          # later stages: the longest a round waits ...
QUIET_S = 0.005              # ... and the pause that ends a batch arriving (frames on one loopback link)
ACTIVE_WITHIN_S = 1.0
Finish = Callable[[torch.Tensor], Any]         # runs on the compute thread (the token pick, a copy to CPU)


@dataclass
class _Waiting:
    step: Step
    last_only: bool
    finish: Finish | None
    future: asyncio.Future[Any]


class StepQueue:
    def __init__(self, executor: StageExecutor, max_batch: int = MAX_BATCH, groups: int = GROUPS) -> None:
        self.executor = executor
        self.max_batch = max_batch
        self.groups = groups
        self._waiting: list[_Waiting] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stage")
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self.rounds = 0
        self.largest_batch = 0
        self.max_gather_s = MAX_GATHER_S
        self._last_round_s = 0.0
        self._cycle_s = 0.0                       # between two steps of one session (moving mean)
        self._stepped_s: dict[str, float] = {}    # session -> when its last step arrived

    async def submit(self, step: Step, last_only: bool, finish: Finish | None = None) -> Any:
        """Run `step` in the next round; returns `finish(output)` (or the output); raises its error."""
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._wake = asyncio.Event()
            self._worker = loop.create_task(self._work())
        future = loop.create_future()
        self._note_cycle(step.session)
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
                size = await self._gather()
                batch = self._take(size)
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

    def _note_cycle(self, session: str) -> None:
        """Track the pipeline cycle: the time between two steps of one session (a moving mean)."""
        now_s = time.perf_counter()
        previous_s = self._stepped_s.get(session)
        if previous_s is not None:
            interval_s = now_s - previous_s
            self._cycle_s = interval_s if not self._cycle_s else 0.8 * self._cycle_s + 0.2 * interval_s
        self._stepped_s[session] = now_s
        if len(self._stepped_s) > 4 * self.max_batch:         # forget sessions that ended here
            held = set(self.executor.sessions())
            self._stepped_s = {k: v for k, v in self._stepped_s.items() if k in held or k == session}

    async def _gather(self) -> int:
        """Wait (briefly) until the steps of a round's sessions are waiting; returns the round's size:
        at the first stage a group's share of the sessions held, elsewhere all of them."""
        assert self._wake is not None
        if self.executor.first:
            wait_s = min(MAX_ENTRY_GATHER_S, max(self._cycle_s, 2 * self._last_round_s))
            within_s = max(ACTIVE_WITHIN_S, 2 * self._cycle_s, 4 * self._last_round_s)
        else:
            wait_s = min(self.max_gather_s, self._last_round_s / 2)
            within_s = max(ACTIVE_WITHIN_S, 4 * self._last_round_s)
        deadline_s = time.perf_counter() + wait_s
        # a session counts while it stepped lately (not one its client abandoned; ended ones are gone)
        active = self.executor.active_sessions(within_s)
        size = max(1, min(self.max_batch, -(-active // self.groups) if self.executor.first else active))
        while len({w.step.session for w in self._waiting}) < size:
            remaining_s = deadline_s - time.perf_counter()
            if remaining_s <= 0:
                break
            self._wake.clear()
            try:
                # later stages: a batch's steps arrive back to back; a pause means the rest is elsewhere
                await asyncio.wait_for(self._wake.wait(), remaining_s if self.executor.first
                                       else min(remaining_s, QUIET_S))
            except TimeoutError:
                break
        return size if self.executor.first else self.max_batch

    def _take(self, size: int) -> list[_Waiting]:
        """Up to `size` waiting steps sharing the first one's `last_only`, oldest first."""
        mode = self._waiting[0].last_only
        batch = [w for w in self._waiting if w.last_only == mode and not w.future.done()][:size]
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
