"""Quick-look PNGs (`astrobio fetch mast-lightcurve/mast-jwst-spectrum --quicklook`).

The loopback MAST of mast_fixtures serves FITS products built with astropy; the expected plotted
values are computed here with NumPy from the arrays the builders wrote (float64 median of the
unflagged finite points), never taken from the code under test. The PNG is checked as a file:
signature, IHDR size, and that Pillow decodes it.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from mast_fixtures import FakeMast, lightcurve, product, x1d

TIC = 261136679
U = "mast:TESS/product/"
J = "mast:JWST/product/"


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    from PIL import Image

    with Image.open(path) as im:
        im.verify()  # a complete, decodable file
    return width, height


@pytest.fixture
def mast(server, point):
    point("mast-lightcurve", server)
    point("mast-jwst-spectrum", server)
    return server


@pytest.fixture
def drawn(monkeypatch):
    """Every QuickLook the fetch drew (the core functions, wrapped)."""
    from astrobio_cli import quicklook

    got = []
    for name in ("light_curve_png", "spectrum_png"):
        real = getattr(quicklook, name)

        def wrapped(*a, _real=real, **kw):
            ql = _real(*a, **kw)
            got.append(ql)
            return ql

        monkeypatch.setattr(quicklook, name, wrapped)
    return got


def test_light_curve_quicklooks(mast, drawn, tmp_path):
    from astrobio_cli.quicklook import DPI, SIZE_IN
    from astrobio_data_sources import mast as m

    names, arrays, files, obs, prods = [], [], {}, [], {}
    for k in (1, 2):
        body, arr = lightcurve("TESS", TIC, k, 30 + 5 * k, k, 2 / 1440)
        name = f"tess2018{k:03d}-s{k:04d}-0000000{TIC}-0120-s_lc.fits"
        oid = str(1000 + k)
        obs.append(
            {
                "obsid": oid,
                "obs_collection": "TESS",
                "dataproduct_type": "timeseries",
                "target_name": str(TIC),
                "sequence_number": k,
            }
        )
        prods[oid] = [product(oid, U + name, "LC")]
        files[U + name] = body
        names.append(name)
        arrays.append(arr)
    FakeMast(mast, {}, obs, prods, files)
    out = tmp_path / "pimen.parquet"
    res = m.fetch_lightcurves(
        m.LightCurveQuery.from_options(f"TIC {TIC}"), out=out, quicklook=True, jobs=2
    )
    qdir = tmp_path / "pimen.quicklook"
    assert ("quicklook", qdir) in res.outputs
    assert sorted(p.name for p in qdir.iterdir()) == [n.replace(".fits", ".png") for n in names]
    assert len(drawn) == 2
    for ql, name, a, k in zip(drawn, names, arrays, (1, 2), strict=True):
        assert ql.path == qdir / name.replace(".fits", ".png")
        assert _png_size(ql.path) == (int(SIZE_IN[0] * DPI), int(SIZE_IN[1] * DPI)) == (800, 450)
        assert f"TIC {TIC}" in ql.title and name in ql.title and f"sector {k}" in ql.title
        # The reference: flagged (quality 128, 1024) and NaN points out, flux / median flux.
        good = (a["quality"] == 0) & np.isfinite(a["flux"]) & np.isfinite(a["time"])
        med = np.median(a["flux"][good])
        (s,) = ql.series
        np.testing.assert_array_equal(s.x, a["time"][good])
        np.testing.assert_allclose(s.y, a["flux"][good] / med, rtol=1e-15, atol=0)
        np.testing.assert_allclose(s.yerr, a["err"][good] / med, rtol=1e-15, atol=0)
        assert ql.dropped == 3 == len(a["time"]) - good.sum()  # 2 flagged + 1 NaN
        assert abs(np.median(s.y) - 1.0) < 1e-12
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary file left


def test_spectrum_quicklook_from_the_cli(mast, cli, drawn, tmp_path):
    body, arrays = x1d("WASP-39", "01366", 50, 9, extensions=2)
    name = "jw01366-o001_t001_nirspec_clear-prism_x1d.fits"
    obs = [
        {
            "obsid": "2001",
            "obs_collection": "JWST",
            "dataproduct_type": "spectrum",
            "proposal_id": "1366",
        }
    ]
    prods = {"2001": [product("2001", J + name, "X1D", calib_level=3)]}
    FakeMast(mast, {}, obs, prods, {J + name: body})
    out = tmp_path / "w39.parquet"
    args = ["fetch", "mast-jwst-spectrum", "--proposal", "1366", "--out", str(out)]
    r = cli(*args)  # off by default
    assert r.exit_code == 0, r.stderr
    assert not (tmp_path / "w39.quicklook").exists() and drawn == []
    r = cli(*args, "--quicklook")
    assert r.exit_code == 0, r.stderr
    png = tmp_path / "w39.quicklook" / name.replace(".fits", ".png")
    assert _png_size(png) == (800, 450)
    assert "quicklook" in r.stdout
    (ql,) = drawn
    assert ql.path == png and "WASP-39" in ql.title and name in ql.title
    assert [s.label for s in ql.series] == ["ext 1", "ext 2"]
    for s, a in zip(ql.series, arrays, strict=True):
        good = a["dq"] == 0  # DQ[0] = DO_NOT_USE
        np.testing.assert_array_equal(s.x, a["wavelength"][good])
        np.testing.assert_array_equal(s.y, a["flux"][good])
        np.testing.assert_array_equal(s.yerr, a["flux_error"][good])
    assert ql.dropped == 2


def test_nothing_to_draw_writes_nothing(tmp_path):
    from astrobio_cli.quicklook import Segment, spectrum_png

    ql = spectrum_png(
        [Segment(np.array([1.0, 2.0]), np.array([np.nan, 1.0]), np.ones(2), np.array([0, 4]))],
        tmp_path / "q" / "x.png",
        title="t",
    )
    assert ql.path is None and ql.skipped and ql.dropped == 2
    assert not (tmp_path / "q").exists()
