"""`astrobio_cli.serve_batch.Batcher`: concurrent requests share forward passes, each gets
exactly its own answers, requests are never split, and a failing request fails alone."""

from __future__ import annotations

import threading
import time

import pytest

from astrobio_cli.serve_batch import Batcher


class Model:
    """predict(items) -> [2 * x]; records each batch; fails on a negative input."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.delay = delay

    def __call__(self, items):
        self.threads.add(threading.current_thread().name)
        if any(x < 0 for x in items):
            raise ValueError("negative input")
        self.batches.append(list(items))
        time.sleep(self.delay)
        return [2 * x for x in items]


def test_concurrent_requests_share_forward_passes_and_get_their_own_answers():
    model = Model(delay=0.02)
    b = Batcher(model, max_batch=16, max_wait_s=0.05)
    try:
        requests = [[10 * i + k for k in range(1 + i % 3)] for i in range(40)]
        results: dict[int, list[int]] = {}
        barrier = threading.Barrier(len(requests))

        def client(i: int) -> None:
            barrier.wait()
            results[i] = b.submit(requests[i]).result(timeout=30)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(requests))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results == {i: [2 * x for x in r] for i, r in enumerate(requests)}
        assert sum(len(x) for x in model.batches) == sum(len(r) for r in requests)
        assert len(model.batches) < len(requests)  # batched: fewer passes than requests
        assert max(len(x) for x in model.batches) <= 16
        # requests stay whole: each request's items sit together in one batch
        for r in requests:
            assert any(all(x in batch for x in r) for batch in model.batches)
        assert model.threads == {"astrobio-serve-batcher"}  # one thread owns the model
        assert b.stats.requests == len(requests) and b.stats.batches == len(model.batches)
    finally:
        b.close()


def test_a_failing_request_fails_alone():
    model = Model(delay=0.05)
    b = Batcher(model, max_batch=64, max_wait_s=0.1)
    try:
        good1, bad, good2 = b.submit([1, 2]), b.submit([-1]), b.submit([3])
        assert good1.result(timeout=10) == [2, 4]
        assert good2.result(timeout=10) == [6]
        with pytest.raises(ValueError, match="negative input"):
            bad.result(timeout=10)
    finally:
        b.close()


def test_a_request_larger_than_the_rest_of_a_batch_waits_for_the_next():
    model = Model(delay=0.05)
    b = Batcher(model, max_batch=4, max_wait_s=0.1)
    try:
        f1, f2 = b.submit([1, 2, 3]), b.submit([4, 5])
        assert f1.result(timeout=10) == [2, 4, 6] and f2.result(timeout=10) == [8, 10]
        assert [1, 2, 3] in model.batches and [4, 5] in model.batches
    finally:
        b.close()


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_batch"):
        Batcher(lambda x: x, max_batch=0)
    with pytest.raises(ValueError, match="max_wait_s"):
        Batcher(lambda x: x, max_batch=1, max_wait_s=-1)
