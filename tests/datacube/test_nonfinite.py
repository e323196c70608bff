"""Non-finite values (NaN, +inf, -inf) are missing data, the same in Rust and the NumPy twin.

Stats skip them (count, mean, std, min and max are those of the finite values); normalize,
denormalize and the pipeline fill them like NaN (None keeps them missing, as NaN) and the mask
is False there; regridding drops them like a NaN neighbour.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from astrobio_cli import datacube as dc

BOTH = pytest.mark.parametrize("native", [False, True])
DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64])


def cube(dtype=np.float64) -> np.ndarray:
    """(2 samples, 3 vars, 2 levs, 4 lat, 5 lon); var 0 holds one +inf and one -inf, var 1 a
    NaN and an inf, var 2 only infinities."""
    x = np.random.default_rng(7).normal(280.0, 10.0, (2, 3, 2, 4, 5)).astype(dtype)
    x[0, 0, 0, 1, 2] = np.inf
    x[1, 0, 1, 3, 4] = -np.inf
    x[0, 1, 1, 0, 0] = np.nan
    x[1, 1, 0, 2, 1] = -np.inf
    x[:, 2] = np.inf
    x[1, 2, 0, 0, :2] = -np.inf
    return x


@BOTH
@DTYPES
def test_stats_skip_infinities_like_nan(native, dtype):
    x = cube(dtype)
    with pytest.warns(dc.AllNaNWarning, match=r"variable c has no valid \(finite\) values"):
        got = dc.stats(x, names=["a", "b", "c"], native=native)
    for v in (0, 1):
        vals = x[:, v].astype(np.float64).ravel()
        vals = vals[np.isfinite(vals)]
        assert got.count[v] == vals.size
        assert got.mean[v] == pytest.approx(vals.mean(), rel=1e-12)
        assert got.std[v] == pytest.approx(vals.std(), rel=1e-9)
        assert (got.min[v], got.max[v]) == (vals.min(), vals.max())
    assert got.count[2] == 0
    assert np.isnan([got.mean[2], got.std[2], got.min[2], got.max[2]]).all()


def test_one_plus_and_one_minus_inf_give_the_same_stats_natively_and_in_the_twin():
    # The reported case: mean NaN / std 0 natively, +-inf / NaN in the twin.
    x = np.array([[1.0, np.inf, 3.0, -np.inf, 5.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rs, py = dc.stats(x, native=True), dc.stats(x, native=False)
    for s in (rs, py):
        assert s.count[0] == 3
        assert s.mean[0] == 3.0
        assert s.std[0] == pytest.approx(np.std([1.0, 3.0, 5.0]), rel=1e-15)
        assert (s.min[0], s.max[0]) == (1.0, 5.0)
    # stats merged from pieces skip them too
    a, b = dc.stats(x[:, :2], native=True), dc.stats(x[:, 2:], native=True)
    assert a.merge(b).count[0] == 3 and a.merge(b).mean[0] == 3.0


@BOTH
@DTYPES
@pytest.mark.parametrize("fill", [None, "mean", 250.0])
@pytest.mark.parametrize("inverse", [False, True])
def test_normalize_fills_infinities_like_nan(native, dtype, fill, inverse):
    x = cube(dtype)
    s = dc.Stats(np.ones(3), [280.0, 270.0, 1.0], [10.0, 5.0, 2.0], np.zeros(3), np.ones(3))
    f = dc.denormalize if inverse else dc.normalize
    y, valid = f(x, s, fill=fill, mask=True, native=native)
    finite = np.isfinite(x)
    np.testing.assert_array_equal(valid, finite)
    assert np.isfinite(y[finite]).all()
    if fill is None:
        assert np.isnan(y[~finite]).all()
    else:
        # the fill of an inf equals the fill of a NaN at the same place
        z = x.copy()
        z[~finite] = np.nan
        np.testing.assert_array_equal(y, f(z, s, fill=fill, native=native))
        assert np.isfinite(y).all()
    twin = f(x, s, fill=fill, native=not native)
    np.testing.assert_allclose(y, twin, rtol=2e-6 if dtype == np.float32 else 1e-12)


@BOTH
@pytest.mark.parametrize("patch", [None, dc.PatchSpec(3, 2, 1, 2, 1)])
def test_pipeline_treats_infinities_as_missing(native, patch):
    x = cube(np.float32)[:, :2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = dc.pipeline(x, fill="mean", patch=patch, mask=True, native=native)
    assert res.stats.count.tolist() == [x[:, 0].size - 2, x[:, 1].size - 2]
    assert np.isfinite(res.data).all()
    twin = dc.pipeline(x, fill="mean", patch=patch, mask=True, native=not native)
    np.testing.assert_allclose(res.data, twin.data, rtol=2e-6, atol=2e-6)
    np.testing.assert_array_equal(res.mask, twin.mask)
    assert (~res.mask).sum() == (~twin.mask).sum() > 0


@BOTH
def test_regrid_drops_infinite_neighbours_like_nan(native):
    lat, lon = np.array([0.0, 1.0]), np.array([0.0, 1.0])
    x = np.array([[1.0, np.inf], [3.0, -np.inf]])
    y = dc.regrid(x, lat, lon, [0.5, 0.0], [0.5, 1.0], native=native)
    # (0.5, 0.5): the two finite corners; (0, 1): only an inf neighbour -> missing (NaN)
    assert y[0, 0] == 2.0 and np.isnan(y[0, 1])
    assert y[1, 0] == 1.0 and np.isnan(y[1, 1])
