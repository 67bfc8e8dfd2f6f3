"""Planning off the Tk thread: one worker thread, latest-request-wins slots, results on a queue.

Slider drags submit many requests; only the newest one waiting is computed (older ones are
dropped unseen), so the plans never lag behind the sliders. The Tk thread polls `results` with
`after` and applies them; Tk is never touched from the worker.
"""

from __future__ import annotations

import queue
import sys
import threading
import traceback

from prismn_gui.viewmodel import PlanningSession, PlanRequest


class PlanWorker:
    def __init__(self, session: PlanningSession) -> None:
        self._session = session
        self._cond = threading.Condition()
        self._plan_request: PlanRequest | None = None
        self._pareto_request: PlanRequest | None = None
        self._stopped = False
        self.results: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="prismn-planner", daemon=True)
        self._thread.start()

    @property
    def session(self) -> PlanningSession:
        return self._session

    def submit_plan(self, request: PlanRequest) -> None:
        with self._cond:
            self._plan_request = request      # replaces any request not yet started
            self._cond.notify()

    def submit_pareto(self, request: PlanRequest) -> None:
        with self._cond:
            self._pareto_request = request
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _take(self):
        with self._cond:
            while not self._stopped and self._plan_request is None and self._pareto_request is None:
                self._cond.wait()
            if self._stopped:
                return None
            # Plans first: they follow the sliders; the sweep can wait.
            if self._plan_request is not None:
                request, self._plan_request = self._plan_request, None
                return "plan", request
            request, self._pareto_request = self._pareto_request, None
            return "pareto", request

    def _run(self) -> None:
        while True:
            job = self._take()
            if job is None:
                return
            kind, request = job
            try:
                if kind == "plan":
                    result = self._session.compute(request)
                else:
                    result = self._session.pareto(request)
            except Exception as exc:  # a bug, not a bad input: report it in the window and on stderr
                traceback.print_exc(file=sys.stderr)
                result = exc
            self.results.put((kind, request, result))
