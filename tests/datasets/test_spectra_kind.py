"""The transmission-spectra kind: a fetched spectrum table, resampled with its errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from astrobio_cli.data import spectra
from astrobio_cli.errors import UsageError
from astrobio_cli.net.content import Column, Table
from astrobio_cli.net.tables import to_arrow


def _write_like_fetch(path, wl, flux, err, dq, wl_unit="um"):
    """Columns, kinds and units exactly as mast-jwst-spectrum builds its Table."""
    t = Table([
        Column("wavelength", "float", list(wl), wl_unit, "WAVELENGTH"),
        Column("flux", "float", list(flux), "Jy", "FLUX"),
        Column("flux_error", "float", list(err), "Jy", "FLUX_ERROR"),
        Column("dq", "int", list(dq), "", "Data quality flags"),
    ])  # fmt: skip
    pq.write_table(to_arrow(t), path)


def _reference(wl, v, e, grid):
    """Per bin, a plain loop over samples: the weighted mean and its standard error."""
    edges = [grid[0] ** 2 / np.sqrt(grid[0] * grid[1])]
    edges += [np.sqrt(grid[i] * grid[i + 1]) for i in range(len(grid) - 1)]
    edges += [grid[-1] ** 2 / np.sqrt(grid[-2] * grid[-1])]
    out_v, out_e = [], []
    for b in range(len(grid)):
        sw = swv = 0.0
        for x, y, s in zip(wl, v, e, strict=True):
            if edges[b] <= x < edges[b + 1]:
                sw += 1.0 / s**2
                swv += y / s**2
        out_v.append(swv / sw)
        out_e.append(1.0 / np.sqrt(sw))
    return np.array(out_v), np.array(out_e)


def test_read_and_resample_match_a_plain_loop(tmp_path):
    rng = np.random.default_rng(0)
    wl_um = np.sort(rng.uniform(0.55, 5.3, 600))
    flux = 1e-3 + 1e-4 * rng.normal(size=600)
    err = rng.uniform(1e-5, 5e-5, 600)
    dq = (rng.uniform(size=600) < 0.05).astype(int)
    path = tmp_path / "x1d.parquet"
    _write_like_fetch(path, wl_um * 1000.0, flux, err, dq, wl_unit="nm")
    spec = spectra.read_spectrum(path)
    keep = dq == 0
    assert spec.dropped == int((~keep).sum())
    np.testing.assert_allclose(spec.wavelength_um, wl_um[keep], rtol=1e-12)
    assert spec.quantity == "flux" and spec.unit == "Jy"

    grid = np.geomspace(0.6, 5.0, 32)
    v, e = spectra.resample(spec, grid)
    rv, re_ = _reference(wl_um[keep], flux[keep], err[keep], grid)
    np.testing.assert_allclose(v, rv, rtol=1e-12)
    np.testing.assert_allclose(e, re_, rtol=1e-12)
    # averaging n samples of equal error sigma gives sigma / sqrt(n)
    assert np.all(e < err.max())


def test_gaps_and_bad_tables_are_refused(tmp_path):
    path = tmp_path / "narrow.parquet"
    _write_like_fetch(path, [1.0, 1.1, 1.2], [1, 2, 3], [0.1, 0.1, 0.1], [0, 0, 0])
    spec = spectra.read_spectrum(path)
    with pytest.raises(UsageError, match=r"covers 1-1.2 um and leaves \d+ of the model's 64"):
        spectra.resample(spec, np.geomspace(0.6, 5.0, 64))
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"wavelength": [1.0], "counts": [3.0]}), bad)
    with pytest.raises(UsageError, match="not a spectrum table"):
        spectra.read_spectrum(bad)
    with pytest.raises(UsageError, match="does not exist"):
        spectra.read_spectrum(tmp_path / "nope.parquet")
