"""`astrobio fetch mast-lightcurve` / `mast-jwst-spectrum` against a loopback MAST.

The server (mast_fixtures.FakeMast) speaks the MAST API's invoke services and the download
endpoint; the FITS products are built with astropy in the TESS, Kepler and JWST x1d layouts.
Expected values are the arrays the builders wrote (float32 columns compared after the same
float32 rounding the file applies), never values read back by the code under test.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from mast_fixtures import FakeMast, lightcurve, product, x1d

TIC, KIC = 261136679, 11446443
TESS_2MIN, TESS_20S, KEPLER_LONG = 2 / 1440, 20 / 86400, 0.0204340
U = "mast:TESS/product/"


def tess_archive(srv, drop=None, executing=0):
    s1, a1 = lightcurve("TESS", TIC, 1, 40, 1, TESS_2MIN, drop=drop)
    s2, a2 = lightcurve("TESS", TIC, 2, 30, 2, TESS_2MIN)
    f2, _ = lightcurve("TESS", TIC, 2, 50, 3, TESS_20S)
    n1 = "tess2018206045859-s0001-0000000261136679-0120-s_lc.fits"
    n2 = "tess2018234235059-s0002-0000000261136679-0121-s_lc.fits"
    nf = "tess2018234235059-s0002-0000000261136679-0121-a_fast-lc.fits"
    obs = [
        {
            "obsid": "1001",
            "obs_collection": "TESS",
            "dataproduct_type": "timeseries",
            "target_name": str(TIC),
            "sequence_number": 1,
            "s_ra": 84.29,
            "s_dec": -80.47,
        },
        {
            "obsid": "1002",
            "obs_collection": "TESS",
            "dataproduct_type": "timeseries",
            "target_name": str(TIC),
            "sequence_number": 2,
            "s_ra": 84.29,
            "s_dec": -80.47,
        },
        {
            "obsid": "1003",
            "obs_collection": "TESS",
            "dataproduct_type": "timeseries",
            "target_name": "1",
            "sequence_number": 1,
            "s_ra": 10.0,
            "s_dec": 10.0,
        },
    ]
    products = {
        "1001": [
            product("1001", U + n1, "LC"),
            product("1001", U + n1.replace("_lc", "_tp"), "TP"),
        ],
        "1002": [
            product("1002", U + n2, "LC"),
            product("1002", U + nf, "FAST-LC"),
            product("1002", U + n2.replace("_lc.fits", "_dvt.fits"), "DVT"),
        ],
    }
    files = {U + n1: s1, U + n2: s2, U + nf: f2}
    return (
        FakeMast(srv, {"Pi Mensae": (84.29, -80.47)}, obs, products, files, executing),
        (a1, a2),
        (n1, n2),
    )


@pytest.fixture
def mast(server, point):
    point("mast-lightcurve", server)
    point("mast-jwst-spectrum", server)
    return server


def test_tess_by_tic_end_to_end(mast, run_cli, cli, tmp_path):
    fake, (a1, a2), (n1, n2) = tess_archive(mast)
    out = tmp_path / "pimen.parquet"
    args = ["fetch", "mast-lightcurve", f"TIC {TIC}", "--sector", "1,2", "--cadence", "short"]
    r = run_cli(*args, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert fake.services == ["Mast.Caom.Filtered", "Mast.Caom.Products"]
    first = json.loads(mast.hits("/v0/invoke")[0].form["request"][0])
    assert {"paramName": "target_name", "values": [str(TIC)]} in first["params"]["filters"]
    assert {"paramName": "sequence_number", "values": [1, 2]} in first["params"]["filters"]
    # Only the two 2-min light curves were downloaded (no target pixels, DV, or 20 s file).
    assert sorted(h.q("uri") for h in mast.hits("/v0.1/Download/file")) == [U + n1, U + n2]
    t = pq.read_table(out)
    n = len(a1["time"]) + len(a2["time"])
    assert t.num_rows == n
    np.testing.assert_array_equal(
        t.column("time").to_numpy(), np.concatenate([a1["time"], a2["time"]])
    )
    np.testing.assert_array_equal(
        t.column("flux").to_numpy(), np.concatenate([a1["flux"], a2["flux"]])
    )
    np.testing.assert_array_equal(
        t.column("flux_err").to_numpy(), np.concatenate([a1["err"], a2["err"]])
    )
    assert (
        t.column("quality").to_pylist() == np.concatenate([a1["quality"], a2["quality"]]).tolist()
    )
    assert t.column("sector").to_pylist() == [1] * 40 + [2] * 30
    assert set(t.column("mission").to_pylist()) == {"TESS"}
    assert set(t.column("quarter").to_pylist()) == {None}
    np.testing.assert_allclose(t.column("cadence").to_numpy(), 120.0, rtol=1e-12)
    assert t.schema.field("time").metadata[b"unit"] == b"BJD - 2457000, days"
    assert t.schema.field("flux").metadata[b"unit"] == b"e-/s"
    prov = json.loads(out.with_name(out.name + ".provenance.json").read_text())
    assert prov["source"] == "mast-lightcurve" and prov["rows"] == n
    assert prov["products"] == [U + n1, U + n2]
    # The original FITS files are in the cache, byte for byte.
    for path, uri in zip(prov["originals"], prov["products"], strict=True):
        with open(path, "rb") as fh:
            assert fh.read() == fake.files[uri]
    before = len(mast.requests)
    r2 = cli(*args, "--out", str(tmp_path / "again.parquet"))
    assert r2.exit_code == 0 and "cache hit" in r2.stdout and len(mast.requests) == before


def test_name_paging_and_executing(mast, monkeypatch, tmp_path):
    from astrobio_data_sources import mast as m

    fake, _arrays, _ = tess_archive(mast, executing=1)
    monkeypatch.setattr(m, "PAGE_SIZE", 1)  # every observation and product on its own page
    q = m.LightCurveQuery.from_options("Pi Mensae", cadence="fast")
    res = m.fetch_lightcurves(q, out=tmp_path / "f.parquet")
    assert (
        fake.services[0] == "Mast.Name.Lookup" and fake.services[1] == "Mast.Name.Lookup"
    )  # EXECUTING, asked again
    search = [json.loads(h.form["request"][0]) for h in mast.hits("/v0/invoke")]
    pos = [s for s in search if s["service"] == "Mast.Caom.Filtered.Position"]
    assert [s["page"] for s in pos] == [1, 2]  # two nearby observations, one per page
    assert pos[0]["params"]["position"] == "84.29, -80.47, 0.000556"
    t = pq.read_table(tmp_path / "f.parquet")
    assert res.rows == 50 == t.num_rows  # the 20 s light curve only
    np.testing.assert_allclose(t.column("cadence").to_numpy(), 20.0, rtol=1e-12)


def test_kepler_quarter_filter(mast, tmp_path):
    from astrobio_data_sources import mast as m

    q1, _ = lightcurve("Kepler", KIC, 1, 20, 5, KEPLER_LONG)
    q2, b2 = lightcurve("Kepler", KIC, 2, 25, 6, KEPLER_LONG)
    k = "mast:KEPLER/url/missions/kepler/lightcurves/0114/011446443/"
    obs = [
        {
            "obsid": "3001",
            "obs_collection": "Kepler",
            "dataproduct_type": "timeseries",
            "target_name": f"kplr{KIC:09d}",
            "s_ra": 1,
            "s_dec": 1,
        }
    ]
    prods = {
        "3001": [
            product("3001", k + "kplr011446443-2009166043257_llc.fits", "LLC"),
            product("3001", k + "kplr011446443-2009259160929_llc.fits", "LLC"),
        ]
    }
    files = {prods["3001"][0]["dataURI"]: q1, prods["3001"][1]["dataURI"]: q2}
    FakeMast(mast, {}, obs, prods, files, throttle=1)
    q = m.LightCurveQuery.from_options(f"KIC {KIC}", quarter="2", flux="sap")
    m.fetch_lightcurves(q, out=tmp_path / "k.parquet", progress=True)  # byte bars on stderr
    t = pq.read_table(tmp_path / "k.parquet")
    assert t.column("quarter").to_pylist() == [2] * 25
    np.testing.assert_array_equal(t.column("flux").to_numpy(), b2["sap"])  # SAP_FLUX, by request
    assert t.column("quality").to_pylist() == b2["quality"].tolist()  # from SAP_QUALITY
    assert t.schema.field("time").metadata[b"unit"] == b"BJD - 2454833, days"
    assert set(t.column("mission").to_pylist()) == {"Kepler"}
    # The first download was refused with 429 + Retry-After and asked again.
    assert len(mast.hits("/v0.1/Download/file")) == 3


def test_unknown_target_and_no_observations(mast, cli, tmp_path):
    tess_archive(mast)
    out = tmp_path / "x" / "y.parquet"
    r = cli("fetch", "mast-lightcurve", "Nowhere-1", "--out", str(out))
    assert r.exit_code == 1 and "could not resolve target 'Nowhere-1'" in r.stderr
    r = cli("fetch", "mast-lightcurve", f"TIC {TIC}", "--sector", "99", "--out", str(out))
    assert r.exit_code == 1
    assert f"no TESS observations for target 'TIC {TIC}' in sector(s) 99" in r.stderr
    assert not out.parent.exists()


def test_fits_without_expected_columns_is_named(mast, cli, tmp_path):
    _, _, (n1, _) = tess_archive(mast, drop="PDCSAP_FLUX")
    out = tmp_path / "x.parquet"
    r = cli("fetch", "mast-lightcurve", f"TIC {TIC}", "--sector", "1", "--out", str(out))
    assert r.exit_code == 1
    assert n1 in r.stderr and "lacks PDCSAP_FLUX" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_jwst_x1d_by_proposal(mast, run_cli, cli, tmp_path):
    body, arrays = x1d("WASP-39", "01366", 60, 9, extensions=2)
    other, arrays2 = x1d("WASP-39", "01366", 30, 10, flux_unit="mJy")
    j = "mast:JWST/product/"
    obs = [
        {
            "obsid": "2001",
            "obs_collection": "JWST",
            "dataproduct_type": "spectrum",
            "proposal_id": "1366",
            "s_ra": 217.3,
            "s_dec": -3.4,
        }
    ]
    prods = {
        "2001": [
            product(
                "2001",
                j + "jw01366-o001_t001_nirspec_clear-prism_x1d.fits",
                "X1D",
                calib_level=3,
                obs_id="jw01366-o001_t001_nirspec_clear-prism",
            ),
            product(
                "2001", j + "jw01366001001_04101_00001-seg001_nrs1_x1d.fits", "X1D", calib_level=2
            ),
            product(
                "2001", j + "jw01366-o001_t001_nirspec_clear-prism_s2d.fits", "S2D", calib_level=3
            ),
        ]
    }
    FakeMast(
        mast,
        {},
        obs,
        prods,
        {prods["2001"][0]["dataURI"]: body, prods["2001"][1]["dataURI"]: other},
    )
    out = tmp_path / "w39.parquet"
    r = run_cli("fetch", "mast-jwst-spectrum", "--proposal", "1366", "--out", str(out))
    assert r.returncode == 0, r.stderr
    t = pq.read_table(out)
    # Sorted by dataURI: the level-3 file (2 extensions, Jy) first, then the level-2 file,
    # whose mJy are converted to the first file's Jy.
    assert t.num_rows == 60 + 60 + 30
    both = np.concatenate([a["wavelength"] for a in arrays])
    np.testing.assert_array_equal(t.column("wavelength").to_numpy()[:120], both)
    np.testing.assert_array_equal(
        t.column("flux_error").to_numpy()[:120], np.concatenate([a["flux_error"] for a in arrays])
    )
    np.testing.assert_allclose(
        t.column("flux").to_numpy()[120:], arrays2[0]["flux"] / 1000.0, rtol=1e-12
    )
    assert t.column("extension").to_pylist() == [1] * 60 + [2] * 60 + [1] * 30
    assert t.column("dq").to_pylist()[0] == 1
    assert t.schema.field("wavelength").metadata[b"unit"] == b"um"
    assert t.schema.field("flux").metadata[b"unit"] == b"Jy"
    assert set(t.column("target").to_pylist()) == {"WASP-39"}
    assert t.column("obs_id").to_pylist()[0] == "jw01366-o001_t001_nirspec_clear-prism"
    r = cli("fetch", "mast-jwst-spectrum", "--target", "WASP-39", "--dry-run")
    assert r.exit_code == 0
    assert (
        '"service": "Mast.Name.Lookup"' in r.stdout
        and f"POST {mast.base_url}/v0/invoke" in r.stdout
    )


def test_level_filter_and_bad_options(mast, cli, tmp_path):
    from astrobio_data_sources import mast as m

    p2 = product("1", "mast:JWST/product/a_x1d.fits", "X1D", calib_level=2)
    p3 = product("1", "mast:JWST/product/b_x1d.fits", "X1D", calib_level=3)
    q = m.SpectrumQuery.from_options(proposal="1366", level=3)
    assert not q.wants_product(p2) and q.wants_product(p3)
    assert cli("fetch", "mast-lightcurve", "TIC 1", "--mission", "kepler").exit_code == 2
    assert cli("fetch", "mast-lightcurve", "KIC 1", "--sector", "3").exit_code == 2
    assert cli("fetch", "mast-jwst-spectrum").exit_code == 2
    r = cli("fetch", "mast-lightcurve", "TIC 1", "--dry-run")
    assert r.exit_code == 0 and mast.requests == []
    assert '{"paramName": "target_name", "values": ["1"]}' in r.stdout
