"""The training loop's data feed: with `--workers N` a real `torch.utils.data.DataLoader` reads
and transforms the items in N worker processes, and every micro-batch holds the same items as
when the loop reads them itself."""

from __future__ import annotations

import os

import pytest

from astrobio_cli.training.config import TrainConfig
from astrobio_cli.training.data import BatchOrder
from astrobio_cli.training.loop import _Feed


class PidItems:
    """Item i -> (i, the pid of the process that read it)."""

    def __len__(self) -> int:
        return 37

    def __getitem__(self, i: int) -> tuple[int, int]:
        return i, os.getpid()


def _positions(feed: _Feed, start: int, count: int) -> list[list[tuple[int, int]]]:
    out = [feed.items(p) for p in range(start, start + count)]
    feed.close()
    return out


@pytest.mark.parametrize("world", [1, 2])
def test_workers_read_the_same_batches_in_other_processes(world):
    cfg0 = TrainConfig(model="m", workers=0, seed=3)
    cfg2 = TrainConfig(model="m", workers=2, seed=3)
    for rank in range(world):
        order = BatchOrder(37, 4, world, rank, seed=3)
        start = 5  # e.g. a resumed run: the feed starts mid-epoch
        here = _positions(_Feed(PidItems(), order, start, cfg0, rank), start, 12)
        there = _positions(_Feed(PidItems(), order, start, cfg2, rank), start, 12)
        assert [[i for i, _ in b] for b in here] == [[i for i, _ in b] for b in there]
        # independently: the indices BatchOrder assigns to those micro-batches
        assert [[i for i, _ in b] for b in here] == [order.indices(p) for p in range(5, 17)]
        assert {pid for b in here for _, pid in b} == {os.getpid()}
        worker_pids = {pid for b in there for _, pid in b}
        assert os.getpid() not in worker_pids and len(worker_pids) == 2


def test_the_feed_is_read_in_order():
    feed = _Feed(PidItems(), BatchOrder(37, 4), 0, TrainConfig(model="m", workers=1), 0)
    try:
        feed.items(0)
        with pytest.raises(RuntimeError, match="asked for 5"):
            feed.items(5)
    finally:
        feed.close()
