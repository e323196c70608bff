"""The Rust extension's foundation function against a Python (math.fsum) reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from astrobio_cli import _native


def reference_nanmean(xs) -> float:
    vals = [float(x) for x in xs if not math.isnan(x)]
    return math.fsum(vals) / len(vals) if vals else math.nan


@pytest.mark.parametrize("seed", range(5))
def test_nanmean_matches_reference(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(1e6, 3.0, size=rng.integers(1, 2000))
    x[rng.random(x.size) < 0.2] = np.nan
    got = _native.nanmean(x)
    want = reference_nanmean(x)
    if math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(want, rel=1e-14, abs=1e-9)


def test_nanmean_of_all_nan_and_empty_is_nan():
    assert math.isnan(_native.nanmean(np.array([np.nan, np.nan])))
    assert math.isnan(_native.nanmean(np.array([], dtype=np.float64)))


def test_nanmean_strided_input():
    x = np.arange(20, dtype=np.float64)[::3]
    assert _native.nanmean(x) == pytest.approx(reference_nanmean(x))


def test_nanmean_wrong_dtype_is_a_type_error():
    with pytest.raises(TypeError):
        _native.nanmean(np.arange(4, dtype=np.int32))


def test_version_and_profile():
    from importlib.metadata import version

    assert _native.__version__ == version("astrobio")
    assert _native.build_profile() in ("release", "debug")
