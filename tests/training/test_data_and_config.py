"""Batch order (sharding, determinism), data-kind checks and config layering."""

from __future__ import annotations

import pytest

from astrobio_cli.errors import UsageError
from astrobio_cli.training.config import resolve_config
from astrobio_cli.training.data import BatchOrder, check_data, data_kind


def test_ranks_get_disjoint_samples_covering_the_epoch():
    n, b, world = 50, 4, 3
    orders = [BatchOrder(n, b, world, r, seed=7) for r in range(world)]
    per = orders[0].per_epoch
    assert per == 50 // 12
    seen = [i for o in orders for k in range(per) for i in o.indices(k)]
    assert len(seen) == len(set(seen)) == per * b * world
    # the next epoch is a different permutation of the same samples
    assert orders[0].indices(per) != orders[0].indices(0)
    assert BatchOrder(n, b, world, 1, seed=7).indices(5) == orders[1].indices(5)


def test_too_little_data_is_a_clear_error():
    with pytest.raises(UsageError, match="fewer than batch size"):
        BatchOrder(3, 4).indices(0)


def test_data_kinds(tmp_path):
    nc = tmp_path / "x.nc"
    nc.write_bytes(b"")
    assert data_kind(str(nc)) == "climate-cube"
    assert data_kind("iJO1366") == "metabolic-network"
    assert check_data("cube-unet", ("climate-cube",), str(nc)) == "climate-cube"
    txt = tmp_path / "corpus.txt"
    txt.write_text("hi")
    with pytest.raises(UsageError, match=r"cannot train on text-corpus data.*accepts climate-cube"):
        check_data("cube-unet", ("climate-cube",), str(txt))
    with pytest.raises(UsageError, match="no such file"):
        check_data("cube-unet", ("climate-cube",), str(tmp_path / "missing.nc"))


def test_config_layers(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("steps: 7\nlr: 0.5\nmodel:\n  width: 4\n")
    cfg = resolve_config(
        "m", {"lr": 0.1}, model_defaults={"lr": 1.0, "batch_size": 3}, config_file=f
    )
    assert (cfg.steps, cfg.lr, cfg.batch_size, cfg.model_options) == (7, 0.1, 3, {"width": 4})
    f.write_text("stepz: 7\n")
    with pytest.raises(UsageError, match="unknown option 'stepz'"):
        resolve_config("m", {}, config_file=f)
    with pytest.raises(UsageError, match="batch_size"):
        resolve_config("m", {"batch_size": 0})
    with pytest.raises(UsageError, match="add --cpu"):
        resolve_config("m", {"procs": 2})
