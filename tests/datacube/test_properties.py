"""Property tests: the Rust kernels equal the NumPy twin (the oracle) within float tolerance.

Random shapes (2 to 7 axes, empty and length-1 axes included), NaN patterns from none to all,
+inf and -inf sprinkled in, float32 and float64, 1 and 2 threads.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astrobio_cli import datacube as dc

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = st.sampled_from([np.float32, np.float64])
THREADS = st.sampled_from([1, 2])


@st.composite
def cubes(draw, min_dims=2, max_dims=7, min_side=0):
    ndim = draw(st.integers(min_dims, max_dims))
    sides = st.integers(min_side, 4)
    shape = [draw(sides) for _ in range(ndim)]
    # keep the last two axes a little larger so tiles and regridding have room
    shape[-1] = draw(st.integers(max(min_side, 1), 9))
    shape[-2] = draw(st.integers(max(min_side, 1), 7))
    while np.prod(shape) > 4000:
        shape[0] = max(1, shape[0] // 2)
        if np.prod(shape) > 4000:
            shape = shape[1:] if len(shape) > min_dims else [1] * len(shape)
    dtype = draw(DTYPES)
    seed = draw(st.integers(0, 2**32 - 1))
    nan_fraction = draw(st.sampled_from([0.0, 0.05, 0.5, 1.0]))
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 20 + 280).astype(dtype)
    x[rng.random(shape) < nan_fraction] = np.nan
    # infinities are missing data too (stats skip them, normalize fills them)
    inf_fraction = draw(st.sampled_from([0.0, 0.0, 0.1]))
    x[rng.random(shape) < inf_fraction / 2] = np.inf
    x[rng.random(shape) < inf_fraction / 2] = -np.inf
    return x


def fixed_stats(x: np.ndarray, seed: int = 0) -> dc.Stats:
    nvar = dc.cube_dims(x.shape)[1]
    rng = np.random.default_rng(seed)
    return dc.Stats(
        count=np.ones(nvar),
        mean=rng.normal(280, 5, nvar),
        std=rng.uniform(0.5, 30, nvar),
        min=np.zeros(nvar),
        max=np.zeros(nvar),
    )


def tol(x: np.ndarray) -> dict:
    return {"rtol": 2e-6, "atol": 2e-6} if x.dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


def assert_same(a: np.ndarray, b: np.ndarray, **kw) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a, b, equal_nan=True, **kw)


@SETTINGS
@given(x=cubes(), threads=THREADS)
def test_stats(x, threads):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dc.AllNaNWarning)
        got = dc.stats(x, native=True, threads=threads)
        want = dc.stats(x, native=False)
    np.testing.assert_array_equal(got.count, want.count)
    for k in ("mean", "std"):
        np.testing.assert_allclose(getattr(got, k), getattr(want, k), rtol=1e-10, atol=1e-9)
    np.testing.assert_array_equal(got.min, want.min)
    np.testing.assert_array_equal(got.max, want.max)


@SETTINGS
@given(
    x=cubes(),
    threads=THREADS,
    fill=st.sampled_from([None, "mean", 0.0, 250.5]),
    inverse=st.booleans(),
)
def test_normalize_and_denormalize(x, threads, fill, inverse):
    s = fixed_stats(x)
    f = dc.denormalize if inverse else dc.normalize
    got, gm = f(x, s, fill=fill, mask=True, native=True, threads=threads)
    want, wm = f(x, s, fill=fill, mask=True, native=False)
    assert_same(got, want, **tol(x))
    np.testing.assert_array_equal(gm, wm)


@st.composite
def cube_and_spec(draw):
    x = draw(cubes(min_dims=2, min_side=1))
    _, _, nlev, nlat, nlon = dc.cube_dims(x.shape)
    pad = draw(st.integers(0, 2))
    lat = draw(st.integers(1, nlat + 2 * pad))
    lon = draw(st.integers(1, nlon))
    lev = draw(st.integers(0, nlev))
    spec = dc.PatchSpec(
        lat,
        lon,
        draw(st.integers(1, 4)),
        draw(st.integers(1, 5)),
        pad,
        lev,
        draw(st.integers(1, 2)) if lev else 0,
    )
    return x, spec


@SETTINGS
@given(xs=cube_and_spec(), threads=THREADS, pad_value=st.sampled_from([np.nan, 0.0, -1.5]))
def test_patches(xs, threads, pad_value):
    x, spec = xs
    got = dc.patches(x, spec, pad_value=pad_value, native=True, threads=threads)
    want = dc.patches(x, spec, pad_value=pad_value, native=False)
    assert_same(got, want, rtol=0, atol=0)


@SETTINGS
@given(
    xs=cube_and_spec(),
    threads=THREADS,
    fill=st.sampled_from([None, "mean", 1.0]),
    patch=st.booleans(),
)
def test_pipeline(xs, threads, fill, patch):
    x, spec = xs
    s = fixed_stats(x, 1)
    spec = spec if patch else None
    got = dc.pipeline(x, stats=s, fill=fill, patch=spec, mask=True, native=True, threads=threads)
    want = dc.pipeline(x, stats=s, fill=fill, patch=spec, mask=True, native=False)
    assert_same(got.data, want.data, **tol(x))
    np.testing.assert_array_equal(got.mask, want.mask)


@st.composite
def axes(draw, n, lo, hi):
    vals = draw(
        st.lists(
            st.floats(lo, hi, allow_nan=False).map(lambda v: round(v, 3)),
            min_size=n,
            max_size=n,
            unique=True,
        )
    )
    return np.sort(np.asarray(vals))


@SETTINGS
@given(data=st.data(), x=cubes(min_side=1), threads=THREADS)
def test_regrid(data, x, threads):
    nlat, nlon = x.shape[-2:]
    src_lat = data.draw(axes(nlat, -89.0, 89.0))
    if data.draw(st.booleans()):
        src_lat = src_lat[::-1]  # descending latitudes (e.g. ERA5) are allowed
    src_lon = data.draw(axes(nlon, 0.0, 359.0))
    dst_lat = data.draw(st.lists(st.floats(-90, 90), min_size=1, max_size=6))
    dst_lon = data.draw(st.lists(st.floats(-720, 720), min_size=1, max_size=6))
    got = dc.regrid(x, src_lat, src_lon, dst_lat, dst_lon, native=True, threads=threads)
    want = dc.regrid(x, src_lat, src_lon, dst_lat, dst_lon, native=False)
    assert_same(got, want, **tol(x))


@SETTINGS
@given(x=cubes(), threads=THREADS, shift=st.integers(-20, 20), seed=st.integers(0, 2**64 - 1))
def test_augmentations(x, threads, shift, seed):
    assert_same(
        dc.flip_lat(x, native=True, threads=threads), dc.flip_lat(x, native=False), rtol=0, atol=0
    )
    assert_same(
        dc.roll_lon(x, shift, native=True, threads=threads),
        dc.roll_lon(x, shift, native=False),
        rtol=0,
        atol=0,
    )
    assert_same(
        dc.add_noise(x, 0.7, seed, native=True, threads=threads),
        dc.add_noise(x, 0.7, seed, native=False),
        **tol(x),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_do_not_depend_on_the_thread_count(dtype):
    # Large enough for many parallel tasks (32 Ki elements each).
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, 4, 5, 60, 180)) * 10 + 1e3).astype(dtype)
    x[rng.random(x.shape) < 0.05] = np.nan
    one, two = dc.stats(x, threads=1, native=True), dc.stats(x, threads=2, native=True)
    for k in ("count", "mean", "std", "min", "max"):
        np.testing.assert_array_equal(getattr(one, k), getattr(two, k))
    np.testing.assert_array_equal(
        dc.add_noise(x, 1.0, 9, threads=1, native=True),
        dc.add_noise(x, 1.0, 9, threads=2, native=True),
    )
    want = dc.stats(x, native=False)
    np.testing.assert_allclose(two.mean, want.mean, rtol=1e-12)
    np.testing.assert_allclose(two.std, want.std, rtol=1e-9)
