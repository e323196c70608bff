"""Bad input: one clear ValueError or TypeError naming the argument, never a panic."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from astrobio_cli import _native
from astrobio_cli import datacube as dc

BOTH = pytest.mark.parametrize("native", [False, True])


def good() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, 3, 2, 4, 5)).astype(np.float32)


def some_stats(n: int = 3) -> dc.Stats:
    return dc.Stats(
        np.ones(n), np.zeros(n), np.ones(n), np.zeros(n), np.ones(n), ("a", "b", "c")[:n]
    )


@BOTH
@pytest.mark.parametrize("dtype", [np.int32, np.float16, np.complex64, bool])
def test_wrong_dtype_is_a_type_error(native, dtype):
    with pytest.raises(TypeError, match=r"data must be float32 or float64, got dtype"):
        dc.stats(good().astype(dtype), native=native)


@BOTH
def test_not_an_array(native):
    with pytest.raises(TypeError, match="data must be a NumPy array"):
        dc.stats([[1.0, 2.0]], native=native)


@BOTH
@pytest.mark.parametrize("shape", [(5,), (), (1,) * 8])
def test_wrong_number_of_dimensions(native, shape):
    with pytest.raises(ValueError, match="dimensions"):
        dc.stats(np.zeros(shape, np.float32), native=native)


@BOTH
def test_stats_for_the_wrong_number_of_variables(native):
    with pytest.raises(ValueError, match=r"stats has 2 variables but data has 3"):
        dc.normalize(good(), some_stats(2), native=native)


@BOTH
@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("mean", np.nan, r"stats.mean\[1\] \(variable b\)"),
        ("std", np.inf, r"stats.std\[1\]"),
        ("std", 0.0, "> 0"),
    ],
)
def test_non_finite_stats(native, key, value, match):
    s = some_stats()
    getattr(s, key)[1] = value
    with pytest.raises(ValueError, match=match):
        dc.normalize(good(), s, native=native)
    with pytest.raises(ValueError, match=match):
        dc.pipeline(good(), stats=s, native=native)


@BOTH
def test_bad_fill(native):
    with pytest.raises(ValueError, match="fill must be"):
        dc.normalize(good(), some_stats(), fill="median", native=native)
    with pytest.raises(ValueError, match="fill must be"):
        dc.normalize(good(), some_stats(), fill=np.nan, native=native)


@BOTH
def test_all_nan_variable_warns_by_name(native):
    x = good()
    x[:, 1] = np.nan
    with pytest.warns(dc.AllNaNWarning, match="variable b has no valid"):
        s = dc.stats(x, names=["a", "b", "c"], native=native)
    assert s.count[1] == 0 and np.isnan([s.mean[1], s.std[1], s.min[1], s.max[1]]).all()
    assert s.count[0] == x[:, 0].size


@BOTH
def test_strided_and_big_endian_input_give_the_same_answer(native):
    x = np.random.default_rng(1).standard_normal((4, 3, 2, 6, 10))
    x[0, 0, 0, 0, :3] = np.nan
    want = dc.stats(np.ascontiguousarray(x[:, :, :, :, ::2]), native=False)
    strided = x[:, :, :, :, ::2]
    assert not strided.flags.c_contiguous
    got = dc.stats(strided, native=native)
    np.testing.assert_allclose(got.mean, want.mean, rtol=1e-12)
    big = np.ascontiguousarray(strided).astype(">f8")
    got = dc.stats(big, native=native)
    np.testing.assert_allclose(got.std, want.std, rtol=1e-12)
    y = dc.normalize(big, want, native=native)
    assert y.dtype == np.dtype("float64") and y.dtype.isnative
    np.testing.assert_allclose(y, dc.normalize(np.ascontiguousarray(strided), want, native=False))
    # Fortran order is copied, not misread
    f = np.asfortranarray(x)
    np.testing.assert_allclose(dc.stats(f, native=native).mean, dc.stats(x, native=False).mean)


def test_patch_that_does_not_fit():
    with pytest.raises(ValueError, match="does not fit 4 latitudes"):
        dc.patches(good(), dc.PatchSpec(6, 2))
    with pytest.raises(ValueError, match="wider than the 5"):
        dc.patches(good(), dc.PatchSpec(2, 6))
    with pytest.raises(ValueError, match="patch size"):
        dc.PatchSpec(0, 2)


def test_regrid_axes_are_checked():
    x = good()
    lat, lon = np.linspace(-60, 60, 4), np.arange(5) * 72.0
    with pytest.raises(ValueError, match="src_lat has 3 points but data has 4"):
        dc.regrid(x, lat[:3], lon, [0.0], [0.0])
    with pytest.raises(ValueError, match="src_lat must be strictly"):
        dc.regrid(x, lat[[0, 2, 1, 3]], lon, [0.0], [0.0])
    with pytest.raises(
        ValueError, match="src_lon must be strictly increasing and span less than 360"
    ):
        dc.regrid(x, lat, np.arange(5) * 90.0, [0.0], [0.0])
    with pytest.raises(ValueError, match="dst_lat has non-finite"):
        dc.regrid(x, lat, lon, [np.nan], [0.0])


# -- the extension itself, called without the Python checks: errors, never a panic ----------


def test_native_rejects_bad_calls_with_python_errors():
    x = good()
    out = np.empty_like(x)
    cases = [
        (TypeError, lambda: _native.stats(x.astype(np.int64))),
        (TypeError, lambda: _native.stats("not an array")),
        (ValueError, lambda: _native.stats(np.zeros(3, np.float32))),
        (ValueError, lambda: _native.stats(x[..., ::2])),  # strided
        (TypeError, lambda: _native.normalize(x, out.astype(np.float64), [0.0] * 3, [1.0] * 3)),
        (ValueError, lambda: _native.normalize(x, out[:1], [0.0] * 3, [1.0] * 3)),
        (ValueError, lambda: _native.normalize(x, out, [0.0] * 2, [1.0] * 2)),
        (ValueError, lambda: _native.normalize(x, out, [0.0] * 3, [1.0, 0.0, 1.0])),
        (ValueError, lambda: _native.normalize(x, out, [0.0] * 3, [1.0] * 3, "median")),
        (ValueError, lambda: _native.normalize(x, x, [0.0] * 3, [1.0] * 3)),  # aliasing
        (
            ValueError,
            lambda: _native.normalize(x, out, [0.0] * 3, [1.0] * 3, mask=np.empty(3, bool)),
        ),
        (ValueError, lambda: _native.patches(x, out, (0, 1, 9, 2, 1, 1, 0))),
        (ValueError, lambda: _native.patches(x, out, (0, 1, 2, 2, 0, 1, 0))),
        (
            ValueError,
            lambda: _native.pipeline(x, out, [0.0] * 3, [1.0] * 3, None, (0, 1, 2, 2, 1, 1, 0)),
        ),
        (ValueError, lambda: _native.regrid(x, out, [0.0] * 4, [0.0] * 5, [0.0], [0.0])),
        (
            ValueError,
            lambda: _native.regrid(x, out, [0.0, 1, 2, 3], [0.0, 1, 2, 3, 4], [0.0], [0.0]),
        ),
        (ValueError, lambda: _native.flip_lat(np.zeros(3), np.zeros(3))),
        (ValueError, lambda: _native.roll_lon(x, out[:1], 1)),
        (ValueError, lambda: _native.add_noise(x, out, -1.0, 0)),
        (ValueError, lambda: _native.add_noise(x, out, np.nan, 0)),
        (ValueError, lambda: _native.stats(x, threads=-1)),
    ]
    for exc, call in cases:
        with pytest.raises(exc):
            call()


def test_no_panic_reaches_python():
    # A panic would print "panicked at" and raise pyo3's PanicException (a BaseException).
    code = (
        "import numpy as np\n"
        "from astrobio_cli import _native as n\n"
        "x = np.zeros((0, 3, 0, 2, 5), np.float32)\n"
        "print(n.stats(x))\n"
        "o = np.empty((0, 5, 3, 0, 2, 5), np.float32)\n"
        "n.patches(x, o, (0, 1, 2, 5, 1, 1, 0))\n"
        "n.pipeline(x, np.empty_like(x), [0.0] * 3, [1.0] * 3)\n"
        "n.regrid(np.zeros((1, 1), np.float64), np.zeros((1, 1)), [5.0], [5.0], [90.0], [-1e9])\n"
        "n.roll_lon(np.zeros((3, 0), np.float64), np.zeros((3, 0)), 4)\n"
        "n.flip_lat(np.zeros((0, 4), np.float64), np.zeros((0, 4)))\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "panicked" not in r.stderr and r.stdout.strip().endswith("ok")


# -- threads: bounded, and rejected before a single thread starts ---------------------------


def over_the_bound() -> int:
    """More threads than any bound of 4x the logical cores allows."""
    return 4 * (os.cpu_count() or 1) + 1


def native_calls(x: np.ndarray, **kw) -> dict:
    out = np.empty_like(x)
    tiles = np.empty(dc.PatchSpec(2, 2).out_shape(x.shape), x.dtype)
    axes = ([0.0, 1, 2, 3], [0.0, 1, 2, 3, 4], [0.5], [0.5])
    return {
        "stats": lambda: _native.stats(x, **kw),
        "normalize": lambda: _native.normalize(x, out, [0.0] * 3, [1.0] * 3, **kw),
        "pipeline": lambda: _native.pipeline(
            x, tiles, [0.0] * 3, [1.0] * 3, None, (0, 1, 2, 2, 2, 2, 0), **kw
        ),
        "patches": lambda: _native.patches(x, tiles, (0, 1, 2, 2, 2, 2, 0), **kw),
        "regrid": lambda: _native.regrid(
            x, np.empty((2, 3, 2, 1, 1), x.dtype), *map(list, axes), **kw
        ),
        "flip_lat": lambda: _native.flip_lat(x, out, **kw),
        "roll_lon": lambda: _native.roll_lon(x, out, 1, **kw),
        "add_noise": lambda: _native.add_noise(x, out, 1.0, 0, **kw),
    }


@BOTH
def test_too_many_threads_is_a_value_error_naming_the_bound(native):
    x = good()
    with pytest.raises(ValueError, match=r"threads=\d+ is more than the maximum of \d+"):
        dc.stats(x, native=native, threads=over_the_bound())
    with pytest.raises(ValueError, match=r"threads=1000000 is more than"):
        dc.normalize(x, some_stats(), native=native, threads=10**6)
    # the bound itself is allowed, and so is 0 (all cores)
    assert dc.max_threads() >= 4
    dc.stats(x, native=native, threads=dc.max_threads())
    dc.stats(x, native=native, threads=0)


def test_too_many_threads_from_the_setting_is_named(monkeypatch):
    from astrobio_cli import settings

    monkeypatch.setenv("ASTROBIO_THREADS", str(over_the_bound()))
    settings.configure(None, None)
    with pytest.raises(ValueError, match=r"the threads setting \(ASTROBIO_THREADS\)"):
        dc.stats(good())


@pytest.mark.parametrize("threads", ["over", 10**6, 2**40, 2**64 - 1])
def test_native_rejects_too_many_threads_before_starting_any(threads):
    # The binding is safe on its own: a million threads is refused up front, not spawned.
    n = over_the_bound() if threads == "over" else threads
    for call in native_calls(good(), threads=n).values():
        with pytest.raises(ValueError, match=rf"threads={n} is more than the maximum"):
            call()
    assert _native.max_threads() == dc.max_threads()


# -- sizes: checked arithmetic in the binding, out-of-range ints are ValueError ------------


def test_native_patch_sizes_that_would_wrap_around_are_value_errors():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 1, 4, 4)
    # padding 2**62 with latitude stride 2: (2**62 + 1) lat tiles x 4 lon tiles is 2**64 + 4,
    # which wrapped to 4 tiles, every one of them padding
    out = np.zeros((1, 4, 1, 1, 4, 1), np.float32)
    with pytest.raises(ValueError, match="too large"):
        _native.patches(x, out, (0, 1, 4, 1, 2, 1, 2**62), 7.0)
    with pytest.raises(ValueError, match="too large"):
        _native.pipeline(x, out, [0.0], [1.0], 0.0, (0, 1, 4, 1, 2, 1, 2**62))
    # padding 2**64 - 1: twice that wrapped to -2 rows, i.e. no padding and a shifted tile
    out = np.zeros((1, 1, 1, 1, 2, 4), np.float32)
    with pytest.raises(ValueError, match="too large"):
        _native.patches(x, out, (0, 1, 2, 4, 1, 4, 2**64 - 1), 7.0)
    assert not out.any()  # nothing was written
    # the wrapper says so too, before allocating anything
    with pytest.raises(ValueError, match="too large"):
        dc.patches(x, dc.PatchSpec(4, 1, 2, 1, 2**62))


HUGE = 2**2000


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("threads", lambda x, o: _native.stats(x, threads=-1)),
        ("threads", lambda x, o: _native.stats(x, threads=2**64)),
        ("threads", lambda x, o: _native.flip_lat(x, o, threads=-(2**70))),
        ("spec", lambda x, o: _native.patches(x, o, (0, 1, 2, 2, 1, 1, 2**64))),
        ("spec", lambda x, o: _native.patches(x, o, (0, 1, 2, 2, 1, 1, -1))),
        ("spec", lambda x, o: _native.pipeline(x, o, [0.0] * 3, [1.0] * 3, None, (-1,) * 7)),
        ("shift", lambda x, o: _native.roll_lon(x, o, 2**63)),
        ("shift", lambda x, o: _native.roll_lon(x, o, -(2**63) - 1)),
        ("seed", lambda x, o: _native.add_noise(x, o, 1.0, -1)),
        ("seed", lambda x, o: _native.add_noise(x, o, 1.0, 2**64)),
        ("std", lambda x, o: _native.add_noise(x, o, HUGE, 0)),
        ("pad_value", lambda x, o: _native.patches(x, o, (0, 1, 2, 2, 1, 1, 0), HUGE)),
        ("mean", lambda x, o: _native.normalize(x, o, [0.0, HUGE, 0.0], [1.0] * 3)),
        ("std", lambda x, o: _native.pipeline(x, o, [0.0] * 3, [1.0, 1.0, HUGE])),
        ("fill", lambda x, o: _native.normalize(x, o, [0.0] * 3, [1.0] * 3, HUGE)),
        ("src_lat", lambda x, o: _native.regrid(x, o, [HUGE] * 4, [0.0] * 5, [0.0], [0.0])),
        ("dst_lon", lambda x, o: _native.regrid(x, o, [0.0] * 4, [0.0] * 5, [0.0], [-HUGE])),
    ],
)
def test_native_out_of_range_numbers_are_value_errors_naming_the_argument(name, call):
    x = good()
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call(x, np.empty_like(x))


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("threads", lambda x, o: _native.stats(x, threads=1.5)),
        ("threads", lambda x, o: _native.stats(x, threads="2")),
        ("spec", lambda x, o: _native.patches(x, o, (0, 1, 2, 2.0, 1, 1, 0))),
        ("spec", lambda x, o: _native.patches(x, o, "0,1,2,2,1,1,0")),
        ("shift", lambda x, o: _native.roll_lon(x, o, 1.0)),
        ("seed", lambda x, o: _native.add_noise(x, o, 1.0, None)),
        ("mean", lambda x, o: _native.normalize(x, o, "abc", [1.0] * 3)),
    ],
)
def test_native_wrong_number_types_are_type_errors_naming_the_argument(name, call):
    x = good()
    with pytest.raises(TypeError, match=rf"\b{name}\b"):
        call(x, np.empty_like(x))
