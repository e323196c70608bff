"""The NumPy twin (and so, through the property tests, the Rust kernels) against references
that share no code with it: NumPy's nan-reductions, SciPy's interpolator, index arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator

from astrobio_cli import datacube as dc


@pytest.mark.parametrize("native", [False, True])
def test_stats_match_numpy_nan_reductions(native):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4, 3, 2, 10, 12)) * 5 + 1e4).astype(np.float32)
    x[rng.random(x.shape) < 0.2] = np.nan
    s = dc.stats(x, native=native, names=["a", "b", "c"])
    per_var = np.moveaxis(x, 1, 0).reshape(3, -1).astype(np.float64)
    np.testing.assert_allclose(s.mean, np.nanmean(per_var, axis=1), rtol=1e-12)
    np.testing.assert_allclose(s.std, np.nanstd(per_var, axis=1), rtol=1e-9)
    np.testing.assert_array_equal(s.count, (~np.isnan(per_var)).sum(axis=1))
    np.testing.assert_array_equal(s.min, np.nanmin(per_var, axis=1))
    np.testing.assert_array_equal(s.max, np.nanmax(per_var, axis=1))


def test_merged_chunk_stats_equal_whole_stats():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 2, 1, 4, 5)) * 3 + 7
    x[rng.random(x.shape) < 0.3] = np.nan
    x[:4, 1] = np.nan  # variable 1 empty in the first chunk
    whole = dc.stats(x, native=False)
    with pytest.warns(dc.AllNaNWarning, match="variable #1"):
        first = dc.stats(x[:4], native=False)
    merged = first.merge(dc.stats(x[4:], native=False))
    np.testing.assert_array_equal(merged.count, whole.count)
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(merged.std, whole.std, rtol=1e-12)


def test_normalize_is_the_textbook_formula():
    x = np.array([[[[1.0, np.nan], [3.0, 5.0]]], [[[10.0, 20.0], [np.nan, 40.0]]]])  # (2,1,2,2)
    s = dc.Stats([3, 3], [3.0, 20.0], [2.0, 10.0], [1, 10], [5, 40])
    for native in (False, True):
        y, valid = dc.normalize(x, s, fill=0.0, mask=True, native=native)
        np.testing.assert_allclose(y, [[[[-1, -1.5], [0, 1]]], [[[-1, 0], [-2, 2]]]])
        np.testing.assert_array_equal(valid, ~np.isnan(x))
        back = dc.denormalize(y, s, native=native)
        np.testing.assert_allclose(back[valid], x[valid])


@pytest.mark.parametrize("native", [False, True])
def test_regrid_matches_scipy_inside_the_grid(native):
    src_lat = np.linspace(-80, 80, 9)
    src_lon = np.arange(0, 360, 20.0)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 9, 18))
    dst_lat = np.linspace(-79, 79, 11)
    dst_lon = np.linspace(0, 339, 13)  # inside [0, 340]: no wrap, so SciPy applies
    got = dc.regrid(x, src_lat, src_lon, dst_lat, dst_lon, native=native)
    pts = np.stack(np.meshgrid(dst_lat, dst_lon, indexing="ij"), axis=-1)
    for k in range(3):
        want = RegularGridInterpolator((src_lat, src_lon), x[k])(pts)
        np.testing.assert_allclose(got[k], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("native", [False, True])
def test_regrid_wraps_in_longitude_and_skips_nan(native):
    src_lat = np.array([0.0, 10.0])
    src_lon = np.array([0.0, 90.0, 180.0, 270.0])
    x = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, np.nan]])
    # 315 E lies half way between 270 E and 360 E = 0 E
    got = dc.regrid(x, src_lat, src_lon, [0.0, 10.0, 5.0], [315.0, -45.0], native=native)
    np.testing.assert_allclose(got[0], [2.5, 2.5])
    np.testing.assert_allclose(got[1], [5.0, 5.0])  # the NaN neighbour drops out
    np.testing.assert_allclose(got[2], [(4 + 1 + 5) / 3, (4 + 1 + 5) / 3])
    all_nan = np.full((2, 4), np.nan)
    assert np.isnan(dc.regrid(all_nan, src_lat, src_lon, [5.0], [45.0], native=native)).all()


@pytest.mark.parametrize("native", [False, True])
def test_patches_by_index_arithmetic(native):
    x = np.arange(2 * 1 * 3 * 5 * 8, dtype=np.float64).reshape(2, 1, 3, 5, 8)
    spec = dc.PatchSpec(lat=3, lon=4, lat_stride=2, lon_stride=3, lat_pad=1, lev=2, lev_stride=1)
    got = dc.patches(x, spec, pad_value=-1.0, native=native)
    origins = spec.origins(x.shape)
    assert got.shape == (2, len(origins), 1, 2, 3, 4) == spec.out_shape(x.shape)
    for t, (l0, y0, x0) in enumerate(origins):
        for s in range(2):
            for dl in range(2):
                for dy in range(3):
                    for dx in range(4):
                        y = y0 + dy
                        want = -1.0 if not 0 <= y < 5 else x[s, 0, l0 + dl, y, (x0 + dx) % 8]
                        assert got[s, t, 0, dl, dy, dx] == want


def test_noise_is_standard_normal_and_keeps_nan():
    x = np.zeros((400, 500))
    x[:, ::10] = np.nan
    for native in (False, True):
        y = dc.add_noise(x, 2.0, seed=5, native=native)
        assert np.isnan(y[:, ::10]).all()
        z = y[~np.isnan(y)] / 2.0
        assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
        assert abs(np.mean(z**4) - 3) < 0.05  # Gaussian kurtosis
    assert not np.array_equal(dc.add_noise(x, 1.0, 1), dc.add_noise(x, 1.0, 2), equal_nan=True)


def test_flip_and_roll_are_numpy_s():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(dc.flip_lat(x, native=True), np.flip(x, axis=-2))
    np.testing.assert_array_equal(dc.roll_lon(x, 5, native=True), np.roll(x, 5, axis=-1))


def test_regular_grid():
    lat, lon = dc.regular_grid(2.5)
    assert (lat[0], lat[-1], lat.size) == (-90.0, 90.0, 73)
    assert (lon[0], lon[-1], lon.size) == (0.0, 357.5, 144)
    with pytest.raises(ValueError, match="grid step"):
        dc.regular_grid(7.0)


@pytest.mark.parametrize("native", [False, True])
def test_pipeline_takes_stats_from_the_train_samples(native):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((6, 2, 3, 8, 16)) * 4 + 50).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan
    x[4:] += 100  # validation samples from another climate: must not leak into the stats
    res = dc.pipeline(x, train=x[:4], fill="mean", mask=True, native=native)
    per_var = np.moveaxis(x[:4], 1, 0).reshape(2, -1).astype(np.float64)
    np.testing.assert_allclose(res.stats.mean, np.nanmean(per_var, axis=1), rtol=1e-12)
    want = (x.astype(np.float64) - res.stats.mean[:, None, None, None]) / res.stats.std[
        :, None, None, None
    ]
    want = np.where(np.isnan(x), 0.0, want)
    np.testing.assert_allclose(res.data, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(res.mask, ~np.isnan(x))
