"""The climate-cube reader (`astrobio_cli.data.climate`) on raw ensembles and preprocessed stores.

References are independent of the code under test: float64 NumPy on the raw file (xarray only to
read it), `np.flip` / `np.roll`, and the generator's own metadata.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
import xarray as xr

from astrobio_cli.data import climate
from astrobio_cli.errors import UsageError

N = 24  # samples: 20 train, 4 held out with --split train (ceil(0.8 * 24) = 20)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    from astrobio_data_sources import synthetic_climate as sc

    ds = sc.generate(N, nlat=8, nlon=16, nlev=3, seed=5)
    return sc.write(ds, tmp_path_factory.mktemp("clim") / "clim.nc")


def _preprocess(raw, out, **kw):
    from astrobio_cli.preprocess import preprocess

    preprocess(raw, out, threads=1, **kw)
    return out


@pytest.fixture(scope="module")
def store(raw):
    return _preprocess(raw, raw.parent / "store.zarr", split="train")


@pytest.fixture(scope="module")
def tiles(raw):
    from astrobio_cli import datacube as dc

    return _preprocess(raw, raw.parent / "tiles.zarr", split="train", patch=dc.PatchSpec(4, 8))


def _raw64(raw) -> dict[str, np.ndarray]:
    with xr.open_dataset(raw) as ds:
        return {n: ds[n].values.astype(np.float64) for n in climate.SCHEMA}


def _np_stats(values: np.ndarray) -> tuple[float, float]:
    v = values[~np.isnan(values)]
    return float(v.mean()), float(np.sqrt(np.mean((v - v.mean()) ** 2)))


def test_schema_agrees_with_the_generator():
    from astrobio_cli.data.datasets import CUBE_INPUTS, CUBE_TARGETS
    from astrobio_data_sources import synthetic_climate as sc

    ds = sc.generate(2, nlat=4, nlon=8, nlev=2, seed=0)
    assert set(ds.data_vars) == set(climate.SCHEMA)
    for name, var in climate.SCHEMA.items():
        assert ds[name].dims == ("sample", *var.dims), name
        assert ds[name].attrs["units"] == var.units, name
    for coord, units in climate.COORDS.items():
        assert ds[coord].attrs["units"] == units
    assert tuple(sc.INPUT_VARIABLES) == climate.GENERATOR_INPUTS
    assert tuple(sc.OUTPUT_VARIABLES) == climate.OUTPUTS
    assert CUBE_INPUTS == climate.MODEL_INPUTS and CUBE_TARGETS == climate.MODEL_TARGETS


def test_store_items_equal_numpy_on_the_raw_file_with_the_store_stats(raw, store):
    ref = _raw64(raw)
    st = json.loads((store / "stats.json").read_text())["variables"]
    cube = climate.open_climate_cube(store)
    assert cube.form == "preprocessed" and cube.n_samples == N and cube.n_items == N
    for item in (0, 7, 19, 20, 23):
        got = cube.read(item)
        assert got["sample"] == item and got["whole"]
        for name in climate.SCHEMA:
            want = (ref[name][item] - st[name]["mean"]) / st[name]["std"]
            assert got[name].dtype == np.float32
            assert got[name].shape == want.shape, name  # rsdt back to (lat,)
            np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-5, err_msg=name)


def test_store_train_split_is_the_samples_its_stats_came_from(raw, store):
    ref = _raw64(raw)
    cube = climate.open_climate_cube(store)
    n_train = math.ceil(0.8 * N)
    assert cube.splits.train == tuple(range(n_train))
    assert cube.splits.val == tuple(range(n_train, N)) and cube.splits.test == ()
    st = json.loads((store / "stats.json").read_text())["variables"]
    for name in ("stellar_flux", "ta", "rsdt"):
        mean, std = _np_stats(ref[name][:n_train])  # the held-out samples never seen
        assert st[name]["mean"] == pytest.approx(mean, rel=1e-9)
        assert st[name]["std"] == pytest.approx(std, rel=1e-9)
    prov = cube.provenance()
    assert prov["split"]["train"] == list(range(n_train))
    assert prov["stats"]["variables"]["ta"]["mean"] == st["ta"]["mean"]


def test_tiles_carry_the_scalars_and_map_back_to_their_sample(raw, tiles):
    ref = _raw64(raw)
    st = json.loads((tiles / "stats.json").read_text())["variables"]
    assert st["stellar_flux"]["kind"] == "scalar" and st["rsdt"]["kind"] == "zonal"
    cube = climate.open_climate_cube(tiles)
    per = 2 * 2  # (8 / 4) lat tiles x (16 / 8) lon tiles
    assert cube.n_items == N * per and cube.tiled
    assert set(cube.items("val")) == set(range(20 * per, N * per))
    with xr.open_zarr(tiles) as z:
        lat0, lon0 = z["patch_lat0"].values, z["patch_lon0"].values
    lat = np.asarray(xr.open_dataset(raw)["lat"].values)
    for item in (0, 5, 47, N * per - 1):
        got = cube.read(item)
        s = item // per
        assert got["sample"] == s and not got["whole"]
        rows, cols = slice(lat0[item], lat0[item] + 4), slice(lon0[item], lon0[item] + 8)
        np.testing.assert_allclose(got["lat"], lat[rows])
        for name in climate.SCHEMA:
            want = (ref[name][s] - st[name]["mean"]) / st[name]["std"]
            if name == "rsdt":
                want = want[rows]
            elif climate.SCHEMA[name].dims:
                want = want[..., rows, cols]
            np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-5, err_msg=name)


def test_a_store_whose_stats_saw_every_sample_is_refused(raw):
    seen = _preprocess(raw, raw.parent / "all.zarr", split="all")
    with pytest.raises(UsageError, match="--split train"):
        climate.open_climate_cube(seen)
    with pytest.warns(UserWarning, match="re-split"):
        cube = climate.open_climate_cube(seen, allow_seen=True, seed=3)
    assert len(cube.splits.train) + len(cube.splits.val) == N
    assert cube.provenance()["notes"]


def test_raw_reader_stats_from_the_train_split_and_normalised_items(raw):
    ref = _raw64(raw)
    cube = climate.open_climate_cube(raw, seed=1)
    assert cube.form == "raw"
    train = list(cube.splits.train)
    for v, name in enumerate(cube.stats.names):
        mean, std = _np_stats(ref[name][train])
        assert cube.stats.mean[v] == pytest.approx(mean, rel=1e-9)
        assert cube.stats.std[v] == pytest.approx(std, rel=1e-9)
    val = cube.dataset("val")
    item = val[1]
    k = int(cube.splits.val[1])
    assert item["sample"] == k
    for name in climate.SCHEMA:
        i = cube.stats.names.index(name)
        want = (ref[name][k] - cube.stats.mean[i]) / cube.stats.std[i]
        assert tuple(item[name].shape) == want.shape
        np.testing.assert_allclose(item[name].numpy(), want, rtol=1e-5, atol=1e-5)


def test_missing_variables_are_named(raw, tmp_path):
    part = _preprocess(raw, tmp_path / "part.zarr", split="train", variables=["ta", "hus"])
    with pytest.raises(UsageError, match="it lacks stellar_flux"):
        climate.open_climate_cube(part, variables=climate.MODEL_INPUTS)


def _flip(a: np.ndarray) -> np.ndarray:
    return np.flip(a, axis=-2 if a.ndim >= 2 else -1)


@pytest.mark.parametrize("native", [True, False])
def test_flips_and_rolls_equal_numpy(store, native):
    cube = climate.open_climate_cube(store)
    clean = cube.read(3)
    seen = set()
    torch.manual_seed(0)
    aug = climate.Augment(flip_lat=True, roll_lon=True)
    for _ in range(12):
        got = cube.read(3, augment=aug, native=native)
        # which (flip, shift) made it: exactly one fits the land-sea pattern of ta
        fits = [
            (f, s)
            for f in (False, True)
            for s in range(16)
            if np.array_equal(got["ta"], np.roll(_flip(clean["ta"]) if f else clean["ta"], s, -1))
        ]
        assert len(fits) == 1
        flipped, shift = fits[0]
        seen.add(fits[0])
        # the mirror planet's latitudes: reversed and negated (this grid is symmetric)
        want_lat = -clean["lat"][::-1] if flipped else clean["lat"]
        np.testing.assert_array_equal(got["lat"], want_lat)
        for name in climate.SCHEMA:
            want = _flip(clean[name]) if flipped and clean[name].ndim else clean[name]
            want = np.roll(want, shift, -1) if want.ndim >= 2 else want
            np.testing.assert_array_equal(got[name], want, err_msg=name)
    assert {f for f, _ in seen} == {False, True} and len({s for _, s in seen}) > 2


def test_tiles_are_flipped_but_never_rolled(tiles):
    cube = climate.open_climate_cube(tiles)
    clean = cube.read(5)
    torch.manual_seed(1)
    for _ in range(6):
        got = cube.read(5, augment=climate.Augment(flip_lat=True, roll_lon=True))
        flipped = not np.array_equal(got["lat"], clean["lat"])  # tiles: not symmetric
        want = np.flip(clean["land_mask"], -2) if flipped else clean["land_mask"]
        np.testing.assert_array_equal(got["land_mask"], want)
        np.testing.assert_array_equal(got["lat"], -clean["lat"][::-1] if flipped else clean["lat"])


def test_noise_has_the_asked_spread_and_repeats_with_the_seed(store):
    cube = climate.open_climate_cube(store)
    aug = climate.Augment(noise=0.1, noise_vars=("ta", "land_mask"))
    clean = cube.read(2)
    torch.manual_seed(7)
    a = cube.read(2, augment=aug)
    torch.manual_seed(7)
    b = cube.read(2, augment=aug)
    np.testing.assert_array_equal(a["ta"], b["ta"])
    d = np.concatenate([(a[n] - clean[n]).ravel() for n in ("ta", "land_mask")]).astype(float)
    assert abs(d.mean()) < 0.1 * 4 / math.sqrt(d.size)  # 4 sigma of the mean
    assert d.std() == pytest.approx(0.1, rel=0.1)
    np.testing.assert_array_equal(a["hus"], clean["hus"])  # not a noise variable


def test_dataloader_workers_read_every_item_once(raw, store):
    from torch.utils.data import DataLoader

    for path in (raw, store):  # raw: the parent ran the stats kernel before the fork
        cube = climate.open_climate_cube(path)
        ds = cube.dataset("train", variables=("ta", "stellar_flux"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batches = list(DataLoader(ds, batch_size=4, num_workers=2))
        idx = torch.cat([b["index"] for b in batches]).tolist()
        assert sorted(idx) == sorted(ds.idx.tolist())
        first = batches[0]
        np.testing.assert_array_equal(first["ta"][0].numpy(), ds[0]["ta"].numpy())


def _normalise_in_child(queue, threads):
    from astrobio_cli import datacube as dc

    x = np.random.default_rng(0).random((4, 2, 3, 64, 128)).astype(np.float32)
    queue.put(float(dc.normalize(x, dc.stats(x, threads=threads), threads=threads).mean()))


@pytest.mark.parametrize("threads", [1, 0])
def test_native_kernels_run_in_a_forked_worker(threads):
    """A DataLoader worker is a fork: the kernels' thread pools (built by the parent for the
    same thread count) must be rebuilt there, not waited on forever."""
    import multiprocessing as mp

    from astrobio_cli import datacube as dc

    x = np.random.default_rng(1).random((8, 2, 3, 64, 128)).astype(np.float32)
    dc.stats(x, threads=threads)  # the parent builds (and keeps) its pool
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_normalise_in_child, args=(queue, threads))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked process hung in a native kernel")
    assert child.exitcode == 0
    assert abs(queue.get(timeout=5)) < 0.1
