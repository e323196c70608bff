"""CubeDataset: shapes, train-split normalisation against float64 NumPy, sharding coverage."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from torch.utils.data import DataLoader

from astrobio_cli.data.datasets import CUBE_INPUTS, CUBE_TARGETS, CubeDataset
from astrobio_cli.data.splits import make_splits
from astrobio_cli.errors import UsageError

HERE = Path(__file__).resolve().parent


def raw(path, name: str) -> np.ndarray:
    with xr.open_dataset(path) as ds:
        return ds[name].values.astype(np.float64)


def test_shapes_channels_and_dtype(cube_files, cube):
    nc, _ = cube_files
    ds = CubeDataset(nc)
    splits = make_splits(cube["samples"], 0)
    assert len(ds) == len(splits.train) == 24
    assert ds.sample_shape == (cube["nlev"], cube["nlat"], cube["nlon"])
    x, y = ds[0]
    assert x.shape == (len(CUBE_INPUTS), 3, 8, 16) and x.dtype == torch.float32
    assert y.shape == (len(CUBE_TARGETS), 3, 8, 16) and y.dtype == torch.float32
    assert ds.input_channels == CUBE_INPUTS and ds.target_channels == CUBE_TARGETS
    with pytest.raises(IndexError):
        ds[len(ds)]


@pytest.mark.parametrize("native", [True, False], ids=["native", "numpy-twin"])
def test_stats_equal_float64_numpy_on_the_train_split_only(cube_files, cube, native):
    from astrobio_cli import settings

    settings.configure(None, {"native": native})
    nc, _ = cube_files
    train = np.array(make_splits(cube["samples"], 0).train)
    for split in ("train", "val", "test"):
        ds = CubeDataset(nc, split)
        for name in (*CUBE_INPUTS, *CUBE_TARGETS):
            v = raw(nc, name)[train]
            assert ds.stats[name]["mean"] == pytest.approx(v.mean(), rel=1e-12), name
            assert ds.stats[name]["std"] == pytest.approx(v.std(), rel=1e-10), name
            assert ds.stats[name]["count"] == v.size
            assert (ds.stats[name]["min"], ds.stats[name]["max"]) == (v.min(), v.max())
    # ... and not the statistics of all samples (this fails if val/test leak in).
    everything = raw(nc, "ta")
    assert ds.stats["ta"]["mean"] != pytest.approx(everything.mean(), rel=1e-9)


def test_items_are_the_raw_values_broadcast_and_normalised(cube_files):
    nc, _ = cube_files
    ds = CubeDataset(nc, "val")
    for k in (0, len(ds) - 1):
        i = ds.sample_index(k)
        x, y = ds[k]
        expected = {
            "stellar_flux": np.full((3, 8, 16), raw(nc, "stellar_flux")[i]),
            "land_mask": np.broadcast_to(raw(nc, "land_mask")[i][None], (3, 8, 16)),
            "rsdt": np.broadcast_to(raw(nc, "rsdt")[i][None, :, None], (3, 8, 16)),
        }
        for name, value in expected.items():
            c = CUBE_INPUTS.index(name)
            want = (value - ds.stats[name]["mean"]) / ds.stats[name]["std"]
            np.testing.assert_allclose(x[c].numpy(), want, rtol=1e-5, atol=1e-5)
        for c, name in enumerate(CUBE_TARGETS):
            want = (raw(nc, name)[i] - ds.stats[name]["mean"]) / ds.stats[name]["std"]
            np.testing.assert_allclose(y[c].numpy(), want, rtol=1e-5, atol=1e-5)
        back = ds.denormalize_target(y.double()).numpy()
        np.testing.assert_allclose(back[0], raw(nc, "ta")[i], rtol=1e-6)


def test_given_stats_are_used_and_raw_mode(cube_files):
    nc, _ = cube_files
    stats = {n: {"mean": 1.0, "std": 2.0} for n in ("ts", "stellar_flux")}
    ds = CubeDataset(nc, inputs=("stellar_flux",), targets=("ts",), stats=stats)
    i = ds.sample_index(3)
    x, _ = ds[3]
    assert float(x[0, 0, 0, 0]) == pytest.approx((raw(nc, "stellar_flux")[i] - 1) / 2, rel=1e-6)
    plain = CubeDataset(nc, inputs=("stellar_flux",), targets=("ts",), normalize=False)
    np.testing.assert_allclose(plain[3][1][0, 1].numpy(), raw(nc, "ts")[i], rtol=1e-7)


def test_zarr_netcdf_and_preloaded_read_the_same(cube_files):
    nc, zarr = cube_files
    a, b = CubeDataset(nc, "test"), CubeDataset(zarr, "test", preload=True)
    c = CubeDataset(nc, "test", preload=True)
    assert a.stats == b.stats
    for k in range(len(a)):
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
        torch.testing.assert_close(a[k], c[k], rtol=0, atol=0)


def test_saved_splits_are_honoured(cube_files, cube, tmp_path):
    nc, _ = cube_files
    path = make_splits(cube["samples"], seed=42, fractions=(0.5, 0.25, 0.25)).save(
        tmp_path / "s.json"
    )
    ds = CubeDataset(nc, "val", splits=path)
    assert ds.indices == make_splits(cube["samples"], 42, (0.5, 0.25, 0.25)).val
    make_splits(cube["samples"] + 1, 0).save(tmp_path / "other.json")
    with pytest.raises(UsageError, match="made for 31 samples but the dataset has 30"):
        CubeDataset(nc, splits=tmp_path / "other.json")


def test_bad_inputs_are_one_clear_error(cube_files, tmp_path):
    nc, _ = cube_files
    with pytest.raises(UsageError, match=r"no variable.*precip"):
        CubeDataset(nc, targets=("precip",))
    with pytest.raises(UsageError, match="does not exist"):
        CubeDataset(tmp_path / "missing.nc")
    (tmp_path / "junk.nc").write_text("not a netcdf file")
    with pytest.raises(UsageError, match="cannot read datacube"):
        CubeDataset(tmp_path / "junk.nc")
    with pytest.raises(UsageError, match="unknown split"):
        CubeDataset(nc, "validation")


def _flux_ids(nc):
    flux = raw(nc, "stellar_flux").astype(np.float32)
    return {float(f): i for i, f in enumerate(flux)}


@pytest.mark.parametrize(("shuffle", "preload"), [(False, False), (True, True)])
def test_two_ranks_two_workers_cover_every_sample_exactly_once(cube_files, shuffle, preload):
    nc, _ = cube_files
    ds = CubeDataset(
        nc, "train", inputs=("stellar_flux",), targets=("ts",), normalize=False, preload=preload
    )
    ids = _flux_ids(nc)
    per_rank = []
    for rank in range(2):
        shard = ds.shard(rank, 2, shuffle=shuffle, seed=1, epoch=4)
        loader = DataLoader(shard, batch_size=5, num_workers=2)
        seen = [ids[float(x[0, 0, 0, 0])] for xb, _ in loader for x in xb]
        assert len(seen) == len(shard)
        per_rank.append(seen)
    counts = Counter(per_rank[0] + per_rank[1])
    assert sorted(counts) == list(ds.indices)
    assert set(counts.values()) == {1}
    assert not set(per_rank[0]) & set(per_rank[1])


def test_shuffling_changes_with_the_epoch_and_even_shards_are_equal(cube_files):
    nc, _ = cube_files
    ds = CubeDataset(nc, "train", inputs=("stellar_flux",), targets=("ts",), normalize=False)
    shard = ds.shard(0, 1, shuffle=True, seed=1)
    first = shard.rank_positions().tolist()
    shard.set_epoch(1)
    second = shard.rank_positions().tolist()
    assert first != second and sorted(first) == sorted(second) == list(range(len(ds)))
    # 24 samples over 5 ranks: 5,5,5,5,4 uneven; even=True gives 4 each, all distinct.
    uneven = [len(ds.shard(r, 5)) for r in range(5)]
    assert uneven == [5, 5, 5, 5, 4]
    even = [ds.shard(r, 5, even=True, shuffle=True, seed=2).rank_positions() for r in range(5)]
    assert [len(e) for e in even] == [4] * 5
    assert len(set(np.concatenate(even).tolist())) == 20


def test_real_gloo_group_shards_by_its_own_rank(cube_files, tmp_path):
    """Two processes in a gloo group, each with 2 DataLoader workers: every sample once."""
    nc, _ = cube_files
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "seen.json"
    procs = []
    for rank in range(2):
        env = dict(os.environ)
        env.update(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            RANK=str(rank),
            WORLD_SIZE="2",
            OMP_NUM_THREADS="1",
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, str(HERE / "gloo_shards.py"), str(nc), str(out)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    record = json.loads(out.read_text())
    seen = record["ranks"][0] + record["ranks"][1]
    assert sorted(seen) == record["train"]
    assert len(record["ranks"][0]) == 12 and len(record["ranks"][1]) == 12


@pytest.mark.filterwarnings("ignore::xarray.SerializationWarning")
def test_reads_a_real_reanalysis_cube_with_time_as_the_sample_dim():
    """NCEP/NCAR June climatology (tests/data/climate): T, Z3 on 17 levels, TS and PS at the surface."""
    path = Path(__file__).resolve().parents[1] / "data" / "climate" / "NCEP_06_climo.nc"
    ds = CubeDataset(path, "train", sample_dim="time", inputs=("TS", "PS"), targets=("T", "Z3"))
    assert len(ds) == 1 and ds.sample_shape == (17, 64, 128)
    x, y = ds[0]
    assert x.shape == (2, 17, 64, 128) and y.shape == (2, 17, 64, 128)
    with xr.open_dataset(path) as ref:
        t = ref["T"].values.astype(np.float64)
        ts = ref["TS"].values.astype(np.float64)
    assert ds.stats["T"]["mean"] == pytest.approx(np.nanmean(t), rel=1e-12)
    assert ds.stats["T"]["std"] == pytest.approx(np.nanstd(t), rel=1e-10)
    want = (ts[0] - np.nanmean(ts)) / np.nanstd(ts)
    for level in (0, 16):  # the surface field is repeated on every level
        np.testing.assert_allclose(x[0, level].numpy(), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(UsageError, match=r"'SHUM' .* dims"):
        CubeDataset(path, sample_dim="time", inputs=("TS",), targets=("SHUM",))  # on lev2
    shum = CubeDataset(path, sample_dim="time", level_dim="lev2", inputs=("TS",), targets=("SHUM",))
    assert shum.sample_shape == (8, 64, 128)
