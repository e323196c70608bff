"""Deterministic train/val/test splits, saved and loaded as JSON."""

from __future__ import annotations

import json

import pytest

from astrobio_cli.data.splits import Splits, load_or_make_splits, make_splits
from astrobio_cli.errors import UsageError


def test_same_seed_same_splits_and_a_partition():
    a, b = make_splits(101, seed=5), make_splits(101, seed=5)
    assert a == b
    assert sorted([*a.train, *a.val, *a.test]) == list(range(101))
    assert (len(a.train), len(a.val), len(a.test)) == (81, 10, 10)
    assert make_splits(101, seed=6).train != a.train


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_tiny_datasets_keep_a_training_sample(n):
    s = make_splits(n, seed=0)
    assert len(s.train) >= 1
    assert sorted([*s.train, *s.val, *s.test]) == list(range(n))


def test_fractions_are_checked():
    with pytest.raises(UsageError, match="summing to 1"):
        make_splits(10, fractions=(0.5, 0.2, 0.2))
    with pytest.raises(UsageError, match="empty"):
        make_splits(0)


def test_saved_splits_reload_identically_and_no_temporary_is_left(tmp_path):
    path = tmp_path / "run" / "splits.json"
    made = load_or_make_splits(path, 50, seed=3, fractions=(0.6, 0.2, 0.2), source="cube.nc")
    assert sorted(p.name for p in path.parent.iterdir()) == ["splits.json"]
    record = json.loads(path.read_text())
    assert record["seed"] == 3 and record["n"] == 50 and record["source"] == "cube.nc"
    # A later run with another seed still gets the saved splits: the file wins.
    assert load_or_make_splits(path, 50, seed=99) == made
    assert Splits.load(path) == made


def test_saved_splits_for_another_dataset_size_fail_loudly(tmp_path):
    path = tmp_path / "splits.json"
    make_splits(50, seed=1).save(path)
    with pytest.raises(UsageError, match="made for 50 samples but the dataset has 60"):
        load_or_make_splits(path, 60)


def test_corrupt_splits_files_are_rejected(tmp_path):
    path = tmp_path / "splits.json"
    path.write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        Splits.load(path)
    record = make_splits(10, seed=0).to_dict()
    record["val"] = record["train"][:1]  # an index in two splits
    path.write_text(json.dumps(record))
    with pytest.raises(UsageError, match="not a partition"):
        Splits.load(path)
