"""Parallel downloads: a bounded pool of worker threads, results in input order.

    from astrobio_cli.net.pool import download_all

    hits = download_all(products, fetch_one, jobs=4, key=lambda p: p["dataURI"])

`download_all(items, fn, jobs=N)` calls `fn(item)` for every item with at most N calls running at
once (N threads taking items from one first-in-first-out queue: the work is network and disk I/O,
and the GIL is released while waiting; the main thread only waits, so Ctrl-C reaches it), and
returns the results in the order of `items`, whatever order they finished in, so outputs,
provenance and manifests come out exactly as with `jobs=1`. `jobs=1` is a plain loop in the
calling thread: today's behaviour, byte-level progress bars of the caller included.

What keeps it safe:
- Every client of a source shares one thread-safe rate limiter (:func:`astrobio_cli.net.http.limiter_for`),
  so N workers together still send at most the source's requests per second; an
  :class:`~astrobio_cli.net.http.HttpClient` may be shared by the workers (httpx's connection pool
  is thread-safe; the time limits of a request are kept per thread).
- `key(item)`: items with the same key (the same cache entry) run once and share the result, so
  two workers never write the same cache entry; every download streams to its own temporary
  name (`.<name>.<pid>.<rand>.part`) and is renamed into place only when complete and verified.
- The first error stops the rest: queued items are cancelled, the ones in progress are allowed
  to end (each removes its temporary file), and one error is raised, unchanged (one clear
  message): that of the earliest failed item, the one a `jobs=1` run would have stopped at.
  Ctrl-C does the same, says on stderr what it is waiting for, and raises KeyboardInterrupt; a
  second Ctrl-C quits at once (the workers are daemon threads; a cut transfer leaves only its
  `.part` file, which the next run resumes or removes). Nothing half-written is ever visible
  under a final name.
- Progress: with `jobs > 1`, one bar counting finished items on stderr when it is a terminal (or
  `progress=True`); the callers turn their per-file byte bars off then (rich shows one live
  display at a time).
"""

from __future__ import annotations

import collections
import queue as queue_mod
import sys
import threading
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

from astrobio_cli.errors import UsageError

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_JOBS = 4
JOBS_HELP = (
    "Downloads at once (threads; the source's rate limit still holds). 1: one at a time, "
    "with per-file progress bars."
)


def check_jobs(jobs: Any, option: str = "--jobs") -> int:
    """`jobs` as an int >= 1, or one UsageError saying what to give."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UsageError(
            f"{option} {jobs!r} must be a whole number of at least 1 (parallel downloads; "
            f"1 downloads one file at a time, default {DEFAULT_JOBS})"
        )
    return jobs


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _bar(enabled: bool | None, description: str, total: int):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    bar.start()
    return bar, bar.add_task(description, total=total)


def download_all(
    items: Iterable[T],
    fn: Callable[[T], R],
    *,
    jobs: int = DEFAULT_JOBS,
    key: Callable[[T], Hashable] | None = None,
    progress: bool | None = None,
    label: str = "downloads",
    notify: Callable[[str], None] | None = _stderr,
) -> list[R]:
    """`[fn(item) for item in items]` with at most `jobs` calls at once; see the module doc.

    key(item): items with equal keys run once (the later ones get the first one's result).
    progress: True/False, or None for "when stderr is a terminal" (only used when jobs > 1).
    label: what the bar and the Ctrl-C notice call the items ("MAST products").
    notify: where the Ctrl-C notice goes (None: nowhere).
    """
    jobs = check_jobs(jobs)
    items = list(items)
    slot: list[int] = []  # item index -> task index
    tasks: list[T] = []
    seen: dict[Hashable, int] = {}
    for item in items:
        k = key(item) if key is not None else len(tasks)
        if k not in seen:
            seen[k] = len(tasks)
            tasks.append(item)
        slot.append(seen[k])
    if jobs == 1 or len(tasks) <= 1:
        done = [fn(t) for t in tasks]
    else:
        done = _parallel(tasks, fn, min(jobs, len(tasks)), progress, label, notify)
    return [done[i] for i in slot]


def _parallel(
    tasks: list[T],
    fn: Callable[[T], R],
    jobs: int,
    progress: bool | None,
    label: str,
    notify: Callable[[str], None] | None,
) -> list[R]:
    """`jobs` worker threads take the next task from a shared queue until it is empty or the
    pool stops (an error, Ctrl-C). The main thread only waits, so Ctrl-C always reaches it."""
    stop = threading.Event()
    lock = threading.Lock()
    queue = collections.deque(range(len(tasks)))
    finished: queue_mod.SimpleQueue[int] = queue_mod.SimpleQueue()
    results: list[Any] = [None] * len(tasks)
    errors: dict[int, BaseException] = {}

    def worker() -> None:
        while not stop.is_set():
            with lock:
                if not queue:
                    return
                i = queue.popleft()
            try:
                results[i] = fn(tasks[i])
            except BaseException as exc:  # handed to the main thread, raised there
                errors[i] = exc
                stop.set()
            finally:
                finished.put(i)

    # Daemon threads: a second Ctrl-C while the first waits quits at once (a download cut then
    # leaves only its `.part` file, which the next run cleans up or resumes).
    threads = [
        threading.Thread(target=worker, name=f"astrobio-download-{k}", daemon=True)
        for k in range(jobs)
    ]
    bar = _bar(progress, f"{label} ({jobs} at once)", len(tasks))
    interrupted: KeyboardInterrupt | None = None
    try:
        for t in threads:
            t.start()
        done = 0
        while done < len(tasks) and not stop.is_set():
            try:
                finished.get(timeout=0.25)
            except queue_mod.Empty:
                continue
            done += 1
            if bar is not None:
                bar[0].advance(bar[1])
    except KeyboardInterrupt as exc:
        interrupted = exc
    finally:
        stop.set()
        with lock:
            cancelled = len(queue)
            queue.clear()
        try:
            running = [t for t in threads if t.ident is not None and t.is_alive()]
            if interrupted is not None and notify is not None:
                notify(
                    f"interrupted: {cancelled} queued {label} cancelled; waiting for the "
                    f"{len(running)} in progress to end (each removes its temporary file; "
                    "Ctrl-C again quits at once)"
                )
            for t in running:
                t.join()
        finally:
            if bar is not None:
                bar[0].stop()
    if interrupted is not None:
        raise interrupted
    if errors:
        # The error of the earliest item, as a one-at-a-time run would have met it (the queue is
        # first in, first out: every item before a started one has started too).
        raise errors[min(errors)]
    return results
