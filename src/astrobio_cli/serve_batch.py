"""Dynamic batching for `astrobio serve`: concurrent requests share one forward pass.

Requests are queued; one inference thread takes the first waiting request, then keeps collecting
for at most `max_wait_s` (or until `max_batch` instances are gathered), runs the adapter's
`predict` once on all of their instances and hands each request its own slice of the answers.
The event loop never runs the model (it awaits a future), and one thread owns the model, so no
lock is needed and memory does not grow with the number of waiting clients.

A request is never split across batches. If a batched call fails, each of its requests is
retried alone, so one bad request cannot fail the others with it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_WAIT_S = 0.0


@dataclass
class _Job:
    items: list[Any]
    future: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    """Counters since start: requests and instances answered, forward passes run."""

    requests: int = 0
    instances: int = 0
    batches: int = 0
    largest: int = 0

    def to_dict(self) -> dict[str, Any]:
        mean = self.instances / self.batches if self.batches else 0.0
        return {
            "requests": self.requests,
            "instances": self.instances,
            "forward_passes": self.batches,
            "mean_batch": round(mean, 2),
            "largest_batch": self.largest,
        }


class Batcher:
    """`submit(items) -> Future` of `predict(items)`'s answers, batched with other requests."""

    def __init__(
        self,
        predict: Callable[[list[Any]], list[Any]],
        *,
        max_batch: int,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        name: str = "astrobio-serve-batcher",
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.predict, self.max_batch, self.max_wait_s = predict, max_batch, max_wait_s
        self.stats = BatchStats()
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._held: _Job | None = None  # a job that did not fit the last batch
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, items: list[Any]) -> Future:
        job = _Job(list(items))
        if not self._thread.is_alive():
            job.future.set_exception(RuntimeError("the inference thread has stopped"))
            return job.future
        self._queue.put(job)
        return job.future

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    # -- the inference thread --------------------------------------------------------------------

    def _next(self, timeout: float | None) -> _Job | None:
        if self._held is not None:
            job, self._held = self._held, None
            return job
        if timeout is not None and timeout <= 0:
            return self._queue.get_nowait()
        return self._queue.get(timeout=timeout)

    def _run(self) -> None:
        while True:
            first = self._next(None)
            if first is None:
                return
            jobs, count = [first], len(first.items)
            deadline = time.monotonic() + self.max_wait_s
            stop = False
            while count < self.max_batch:
                try:
                    job = self._next(deadline - time.monotonic())
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                if count + len(job.items) > self.max_batch:
                    self._held = job  # first in the next batch: requests stay whole
                    break
                jobs.append(job)
                count += len(job.items)
            self._answer(jobs)
            if stop:
                return

    def _answer(self, jobs: list[_Job]) -> None:
        items = [it for j in jobs for it in j.items]
        try:
            answers = self.predict(items)
            if len(answers) != len(items):
                raise RuntimeError(f"predict gave {len(answers)} answers for {len(items)} inputs")
        except BaseException as exc:
            if len(jobs) == 1:
                jobs[0].future.set_exception(exc)
                return
            for j in jobs:  # alone, so one bad request does not fail the others
                self._answer([j])
            return
        self.stats.batches += 1
        self.stats.largest = max(self.stats.largest, len(items))
        start = 0
        for j in jobs:
            n = len(j.items)
            self.stats.requests += 1
            self.stats.instances += n
            j.future.set_result(answers[start : start + n])
            start += n
