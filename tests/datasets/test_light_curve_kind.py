"""The light-curve kind: tables written by the mast-lightcurve data source's own code.

`fetch_lightcurves` runs against the loopback MAST of tests/sources (FITS products built with
astropy in the TESS SPOC and Kepler layouts; values synthetic, seeded: no real MAST answer is
recorded in the repository), so the Parquet files are exactly what `astrobio fetch
mast-lightcurve` writes. The reader's values are checked against an independent pyarrow read
and against the arrays the FITS builder wrote.
"""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from httpserver import LoopbackServer  # tests/ is on sys.path, as for mast_fixtures

from astrobio_cli.data.kinds import KINDS
from astrobio_cli.data.lightcurves import LightCurve, read_light_curve
from astrobio_cli.errors import UsageError
from tests.sources.mast_fixtures import FakeMast, lightcurve, product

TIC, KIC = 261136679, 11446443
TESS_2MIN, KEPLER_LONG = 2 / 1440, 0.0204340


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    """{name: (parquet path, [builder arrays per file])} for a 2-sector TESS and a Kepler fetch."""
    from astrobio_cli import settings
    from astrobio_data_sources import mast as m

    root = tmp_path_factory.mktemp("lightcurves")
    mp = pytest.MonkeyPatch()
    out: dict[str, tuple] = {}
    try:
        with LoopbackServer() as srv:
            for k, v in {"BASE_URL": srv.base_url, "BACKOFF": "0.01", "RATE_LIMIT": "1000"}.items():
                mp.setenv(f"ASTROBIO_SOURCES__MAST_LIGHTCURVE__{k}", v)
            for xdg in ("CONFIG", "DATA", "CACHE"):  # module scope: before the per-test ones
                (root / xdg).mkdir()
                mp.setenv(f"XDG_{xdg}_HOME", str(root / xdg))
            settings.configure(None, None)
            s1, a1 = lightcurve("TESS", TIC, 1, 40, 1, TESS_2MIN)
            s2, a2 = lightcurve("TESS", TIC, 2, 30, 2, TESS_2MIN)
            k2, b2 = lightcurve("Kepler", KIC, 2, 25, 6, KEPLER_LONG)
            u = "mast:TESS/product/"
            n1 = "tess2018206045859-s0001-0000000261136679-0120-s_lc.fits"
            n2 = "tess2018234235059-s0002-0000000261136679-0121-s_lc.fits"
            kn = "mast:KEPLER/url/missions/kepler/lightcurves/0114/011446443/" + (
                "kplr011446443-2009259160929_llc.fits"
            )

            def row(obsid, coll, target, seq=None):
                return {"obsid": obsid, "obs_collection": coll, "dataproduct_type": "timeseries",
                        "target_name": target, "sequence_number": seq, "s_ra": 1, "s_dec": 1}  # fmt: skip

            obs = [row("1001", "TESS", str(TIC), 1), row("1002", "TESS", str(TIC), 2),
                   row("3001", "Kepler", f"kplr{KIC:09d}")]  # fmt: skip
            prods = {"1001": [product("1001", u + n1, "LC")],
                     "1002": [product("1002", u + n2, "LC")],
                     "3001": [product("3001", kn, "LLC")]}  # fmt: skip
            FakeMast(srv, {}, obs, prods, {u + n1: s1, u + n2: s2, kn: k2})
            tess = root / "tess.parquet"
            q = m.LightCurveQuery.from_options(f"TIC {TIC}", sector="1,2", cadence="short")
            m.fetch_lightcurves(q, out=tess)
            kepler = root / "kepler.parquet"
            m.fetch_lightcurves(m.LightCurveQuery.from_options(f"KIC {KIC}"), out=kepler)
            out = {"tess": (tess, [a1, a2]), "kepler": (kepler, [b2])}
    finally:
        mp.undo()
        settings.configure(None, None)
    return out


def _arrow(path):
    t = pq.read_table(path)
    return {c: t.column(c) for c in t.schema.names}, t


def test_reads_what_the_source_writes(fetched):
    path, arrays = fetched["tess"]
    lc = read_light_curve(path)
    cols, table = _arrow(path)
    assert isinstance(lc, LightCurve) and len(lc) == table.num_rows == 70
    for name in ("time", "flux", "flux_err"):
        got = getattr(lc, name)
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, cols[name].to_numpy())
    np.testing.assert_array_equal(lc.quality, cols["quality"].to_numpy())
    np.testing.assert_array_equal(lc.sector, cols["sector"].to_numpy())
    np.testing.assert_array_equal(lc.cadence_s, cols["cadence"].to_numpy())
    assert (lc.quarter == -1).all() and cols["quarter"].null_count == 70
    # and against what the FITS builder wrote (float32 columns widened exactly)
    np.testing.assert_array_equal(lc.time, np.concatenate([a["time"] for a in arrays]))
    np.testing.assert_array_equal(lc.flux, np.concatenate([a["flux"] for a in arrays]))
    np.testing.assert_array_equal(lc.quality, np.concatenate([a["quality"] for a in arrays]))
    assert lc.mission == "TESS" and lc.target == f"TIC {TIC}"
    assert lc.sectors == (1, 2) and lc.quarters == ()
    assert len(lc.cadences_s) == 1 and lc.cadences_s[0] == pytest.approx(120.0, rel=1e-12)
    assert lc.time_system == "BJD - 2457000, days" and lc.time_offset == 2457000.0
    assert lc.flux_unit == "e-/s" and lc.dropped == 0
    assert np.isnan(lc.flux).sum() == 2  # the gap in each sector is kept unless asked
    again = pickle.loads(pickle.dumps(lc))
    np.testing.assert_array_equal(again.flux, lc.flux)
    assert KINDS["light-curve"].reader == "astrobio_cli.data.lightcurves.read_light_curve"


def test_kepler_quarter_and_time_system(fetched):
    path, (arrays,) = fetched["kepler"]
    lc = read_light_curve(path)
    assert lc.mission == "Kepler" and lc.target == f"KIC {KIC}"
    assert lc.quarters == (2,) and lc.sectors == () and (lc.sector == -1).all()
    assert lc.time_system == "BJD - 2454833, days" and lc.time_offset == 2454833.0
    assert lc.cadences_s[0] == pytest.approx(KEPLER_LONG * 86400, rel=1e-12)
    np.testing.assert_array_equal(lc.flux, arrays["flux"])  # PDCSAP by default
    np.testing.assert_array_equal(lc.quality, arrays["quality"])  # from SAP_QUALITY


def test_drop_bad_points(fetched):
    path, _ = fetched["tess"]
    cols, _ = _arrow(path)
    good = (
        (cols["quality"].to_numpy() == 0)
        & np.isfinite(cols["time"].to_numpy())
        & np.isfinite(cols["flux"].to_numpy())
        & np.isfinite(cols["flux_err"].to_numpy())
    )
    lc = read_light_curve(path, drop_bad=True)
    assert len(lc) == good.sum() == 70 - 6  # per sector: 2 flagged cadences and 1 NaN flux
    assert lc.dropped == 6
    np.testing.assert_array_equal(lc.time, cols["time"].to_numpy()[good])
    np.testing.assert_array_equal(lc.flux_err, cols["flux_err"].to_numpy()[good])
    np.testing.assert_array_equal(lc.sector, cols["sector"].to_numpy()[good])
    assert (lc.quality == 0).all() and np.isfinite(lc.flux).all()


def test_normalised_flux(fetched):
    path, _ = fetched["tess"]
    cols, _ = _arrow(path)
    flux, err = cols["flux"].to_numpy(), cols["flux_err"].to_numpy()
    good = (cols["quality"].to_numpy() == 0) & np.isfinite(flux)
    lc = read_light_curve(path)
    rel = lc.normalized()
    med = np.median(flux[good])
    np.testing.assert_allclose(rel.flux, flux / med, rtol=1e-15, equal_nan=True)
    np.testing.assert_allclose(rel.flux_err, err / med, rtol=1e-15)
    assert rel.flux_unit == "" and lc.flux_unit == "e-/s"  # a copy; the original is untouched
    np.testing.assert_array_equal(lc.flux, flux)
    per = lc.normalized(per_segment=True)
    sector = cols["sector"].to_numpy()
    for s in (1, 2):
        sel = sector == s
        m = np.median(flux[sel & good])
        np.testing.assert_allclose(per.flux[sel], flux[sel] / m, rtol=1e-15, equal_nan=True)
    assert np.nanmedian(per.flux[good & (sector == 2)]) == pytest.approx(1.0, abs=1e-15)


def test_mixed_time_systems_need_a_mission(fetched, tmp_path):
    tess, _ = _arrow(fetched["tess"][0])
    kep, _ = _arrow(fetched["kepler"][0])
    cols = {c: pa.concat_arrays([tess[c].combine_chunks(), kep[c].combine_chunks()])
            for c in tess}  # fmt: skip
    mixed = tmp_path / "mixed.parquet"
    pq.write_table(pa.table(cols), mixed)
    with pytest.raises(UsageError, match=r"mixes time systems .*mission='Kepler\|TESS'"):
        read_light_curve(mixed)
    k = read_light_curve(mixed, mission="kepler")
    assert len(k) == 25 and k.mission == "Kepler" and k.time_offset == 2454833.0
    with pytest.raises(UsageError, match="no K2 rows"):
        read_light_curve(mixed, mission="K2")


def test_bad_files_are_clear_usage_errors(fetched, tmp_path):
    path, _ = fetched["tess"]
    _, table = _arrow(path)
    with pytest.raises(UsageError, match=r"nope\.parquet does not exist.*fetch mast-lightcurve"):
        read_light_curve(tmp_path / "nope.parquet")
    text = tmp_path / "lc.parquet"
    text.write_text("time,flux\n1,2\n")
    with pytest.raises(UsageError, match=r"cannot read .*lc\.parquet as Parquet.*mast-lightcurve"):
        read_light_curve(text)
    lacking = tmp_path / "lacking.parquet"
    pq.write_table(table.drop_columns(["flux_err", "quality", "sector", "quarter"]), lacking)
    with pytest.raises(UsageError) as e:
        read_light_curve(lacking)
    msg = str(e.value)
    assert msg.startswith(f"{lacking} is not a light curve: it lacks flux_err, quality, sector or ")
    assert "`astrobio fetch mast-lightcurve TARGET` writes one" in msg
    spectrum = tmp_path / "spectrum.parquet"
    pq.write_table(pa.table({"wavelength": [1.0], "flux": [2.0], "flux_error": [0.1]}), spectrum)
    with pytest.raises(UsageError, match="lacks time, flux_err, quality, mission, cadence"):
        read_light_curve(spectrum)
    wrong = tmp_path / "wrong.parquet"
    pq.write_table(table.set_column(3, "quality", pc.cast(table["quality"], pa.string())), wrong)
    with pytest.raises(UsageError, match="column quality is string, not integers"):
        read_light_curve(wrong)
    empty = tmp_path / "empty.parquet"
    pq.write_table(table.slice(0, 0), empty)
    with pytest.raises(UsageError, match="has no rows"):
        read_light_curve(empty)
    flagged = tmp_path / "flagged.parquet"
    pq.write_table(table.set_column(3, "quality", pa.array(np.ones(70, np.int64))), flagged)
    with pytest.raises(UsageError, match=r"no usable point .* of 70"):
        read_light_curve(flagged, drop_bad=True)
    assert len(read_light_curve(flagged)) == 70


def test_training_recognises_the_kind(fetched):
    from astrobio_cli.training.data import data_kind

    assert data_kind(str(fetched["tess"][0])) == "light-curve"
