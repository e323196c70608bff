"""`astrobio catalog merge` on real catalogue rows, fetched the way a user fetches them.

Inputs, each written by its own fetch command against a loopback server:
- NASA: `astrobio fetch nasa-exoplanet --table ps --columns ...` answered with
  tests/data/planets/nasa_ps_from_catalogues.csv (TAP CSV of real TEPCat and exoplanet.eu values,
  117 rows, two parameter sets for some planets);
- exoplanet.eu: the real export (7,317 planets) replayed by the exoplanet-eu source;
- the Exoplanet Orbit Database: the eight rows of tests/data/exoplanets_org/exoplanets.csv.

Matching and the choice of the most precise value are checked against values worked out by hand
from those files (the arithmetic is in the comments); unit conversions against astropy.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from httpserver import LoopbackServer, Reply

TESTS = Path(__file__).resolve().parents[1]
NASA_BODY = (TESTS / "data" / "planets" / "nasa_ps_from_catalogues.csv").read_bytes()
EU_BODY = gzip.decompress((TESTS / "data" / "exoplanet_eu" / "exoplanet_eu.csv.gz").read_bytes())
ORG_BODY = (TESTS / "data" / "exoplanets_org" / "exoplanets.csv").read_bytes()

units = pytest.importorskip("astropy.units")
MJ = units.jupiterMass.to(units.earthMass)  # IAU 2015 nominal GM ratio, 317.828...
RJ = units.jupiterRad.to(units.earthRad)  # 71492 km / 6378.1 km = 11.2089...


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The three Parquet files, fetched once for the module (isolated settings and cache)."""
    from astrobio_cli import settings
    from astrobio_data_sources import exoplanet_eu, exoplanets_org
    from astrobio_data_sources import nasa_exoplanet as nx

    root = tmp_path_factory.mktemp("catalogues")
    with pytest.MonkeyPatch.context() as mp, LoopbackServer() as srv:
        for var in list(os.environ):
            if var.startswith("ASTROBIO_"):
                mp.delenv(var)
        mp.setenv("ASTROBIO_CACHE_DIR", str(root / "cache"))
        mp.setenv("ASTROBIO_DATA_DIR", str(root / "data"))
        for src in ("NASA_EXOPLANET", "EXOPLANET_EU", "EXOPLANETS_ORG"):
            mp.setenv(f"ASTROBIO_SOURCES__{src}__BASE_URL", srv.base_url)
        settings.configure(None, None)
        try:
            srv.route("GET", "/TAP/sync", Reply(200, NASA_BODY, content_type="text/csv"))
            srv.route("GET", "/catalog/csv/", Reply(200, EU_BODY, content_type="text/csv"))
            srv.route("GET", "/csv-files/exoplanets.csv", Reply(200, ORG_BODY))
            columns = NASA_BODY.decode().splitlines()[0]
            paths = {k: root / f"{k}.parquet" for k in ("nasa", "eu", "org")}
            nx.fetch(nx.ExoplanetQuery.from_options("ps", columns), out=paths["nasa"])
            exoplanet_eu.fetch(out=paths["eu"], progress=False)
            exoplanets_org.fetch(out=paths["org"], progress=False)
        finally:
            settings.configure(None, None)
    return paths


@pytest.fixture(scope="module")
def merged(inputs, tmp_path_factory):
    from astrobio_cli.catalog import merge_catalogues

    out = tmp_path_factory.mktemp("merged") / "planets.parquet"
    res = merge_catalogues(**inputs, out=out)
    rows = {r["name"]: r for r in pq.read_table(out).to_pylist()}
    conflicts = pq.read_table(res.conflicts_out).to_pylist()
    return res, rows, conflicts


def _row(rows, name):
    assert name in rows, f"{name} is not a merged planet name"
    return rows[name]


def test_matching_names_components_and_aliases(merged):
    res, rows, _c = merged
    # NASA names differ from exoplanet.eu's by leading zeros and stellar components
    assert _row(rows, "WASP-018 b")["catalogues"] == "nasa,eu,org"
    assert {"WASP-18 Ab", "WASP-18 b"} <= set(rows["WASP-018 b"]["aliases"].split("; "))
    assert _row(rows, "55 Cnc e")["catalogues"] == "nasa,eu,org"
    assert "55 Cnc Ae" in rows["55 Cnc e"]["aliases"].split("; ")
    assert _row(rows, "Kepler-010 b")["catalogues"] == "nasa,eu,org"  # also "Kepler-10 b" in ps
    # only an alternate designation links these: exoplanet.eu's "109 Psc b" lists "HD 10697 b",
    # the Orbit Database row is "HD 10697 b" with OTHERNAME "109 Psc b"
    assert _row(rows, "109 Psc b")["catalogues"] == "eu,org"
    assert "HD 10697 b" not in rows
    # planets of different stars of one system stay apart (A and B components)
    for a, b in [("HD 41004 Ab", "HD 41004 Bb"), ("eps Ind Ab", "eps Ind Bb")]:
        assert _row(rows, a)["catalogues"] == "eu" and _row(rows, b)["catalogues"] == "eu"
    # renamed siblings whose aliases point at each other stay apart (GJ 229 c is "GJ 229 Ab")
    assert {"GJ 229 b", "GJ 229 c", "GJ 229 d"} <= rows.keys()
    # an object without a planet letter is not planet b of itself
    assert {"2M1207 A", "2M1207 b", "2MASS J0052+0012", "2MASS J0052+0012 b"} <= rows.keys()
    # counts: every exoplanet.eu row is one planet; NASA's 117 rows are its distinct names
    # (Kepler-010 b and Kepler-10 b are one planet: leading zeros do not count)
    nasa_names = {
        re.sub(r"(?<=-)0+(?=\d)", "", line.split('","')[0].strip('"'))
        for line in NASA_BODY.decode().splitlines()[1:]
    }
    rep = res.report
    assert rep["planets_per_catalogue"] == {
        "nasa-exoplanet": len(nasa_names),
        "exoplanet-eu": 7317,
        "exoplanets-org": 8,
    }
    assert rep["planets"] == len(rows)
    only_eu = sum(
        1 for r in rows.values() if "eu" in r["catalogues"] and "nasa" not in r["catalogues"]
    )
    assert rep["beyond_nasa"] == {"exoplanet-eu": only_eu, "exoplanets-org": 4}
    # HD 209458 b, 51 Peg b, GJ 436 b and 109 Psc b are the Orbit Database rows NASA lacks here
    assert sorted(n for n, r in rows.items() if "org" in r["catalogues"] and "nasa" not in r["catalogues"]) == [
        "109 Psc b", "51 Peg b", "GJ 436 b", "HD 209458 b"]  # fmt: skip


def test_most_precise_value_hand_computed(merged):
    _res, rows, _c = merged
    hat = _row(rows, "HAT-P-11 b")
    # mass, relative errors: NASA default set (TEPCat) 1.5256/25.013 = 0.0610; NASA second set
    # 1.4938/23.392 = 0.0639; exoplanet.eu 0.0047/0.0736 = 0.0639; Orbit DB 0.009/0.081 = 0.111
    assert hat["mass"] == 25.013 and hat["mass_err"] == 1.5256
    assert hat["mass_source"] == "nasa-exoplanet"
    # radius: 0.066133/5.0059 = 0.01321 beats 0.0054/0.389 = 0.01388 and 0.014/0.422 = 0.0332
    assert hat["radius"] == 5.0059 and hat["radius_source"] == "nasa-exoplanet"
    # period: NASA has no error; exoplanet.eu 3e-8 d beats the Orbit DB's 7.1e-6 d
    assert hat["period"] == 4.887802443 and hat["period_err"] == 3e-08
    assert hat["period_source"] == "exoplanet-eu" and hat["period_ref"].startswith("exoplanet.eu")
    # eccentricity is ranked by absolute error: 0.0009 (eu) beats 0.046 (org)
    assert hat["eccentricity"] == 0.265 and hat["eccentricity_source"] == "exoplanet-eu"
    # stellar mass: eu 0.809 +- ? vs org 0.809 +0.020/-0.027 (mean 0.0235)
    assert hat["star_mass"] == 0.809

    hd = _row(rows, "HD 209458 b")
    assert hd["catalogues"] == "eu,org"
    # mass: Torres et al. 2008 0.685 +0.015/-0.014 MJ (0.0145/0.685 = 0.0212) beats
    # exoplanet.eu 0.69 +-0.017 (0.0246); converted to Earth masses
    assert hd["mass"] == pytest.approx(0.685 * MJ, rel=1e-12)
    assert hd["mass_err"] == pytest.approx(0.0145 * MJ, rel=1e-12)
    assert hd["mass_source"] == "exoplanets-org"
    assert (
        hd["mass_ref"]
        == "Torres et al. 2008 (https://ui.adsabs.harvard.edu/abs/2008ApJ...677.1324T)"
    )
    # radius: 1.359 +0.016/-0.019 RJ (0.0175/1.359 = 0.01288) beats 1.38 +-0.018 (0.01304)
    assert hd["radius"] == pytest.approx(1.359 * RJ, rel=1e-12)
    assert hd["radius_err"] == pytest.approx(0.0175 * RJ, rel=1e-12)
    # period: Knutson et al. 2007, 3.8e-7 d
    assert hd["period"] == 3.52474859 and hd["period_ref"].startswith("Knutson et al. 2007")

    cnc = _row(rows, "55 Cnc e")
    # NASA 7.7233 +0.3814/-0.28605 ME: mean error 0.333725, 0.0432 relative, beats
    # exoplanet.eu (and the Orbit DB copy of it) 0.00135/0.02703 = 0.0499
    assert cnc["mass"] == 7.7233 and cnc["mass_err"] == pytest.approx(0.333725, rel=1e-12)
    # no NASA Msini; exoplanet.eu's 109 Psc b Msini, a tie with the Orbit DB copy: eu wins
    psc = _row(rows, "109 Psc b")
    assert psc["msini"] == pytest.approx(6.383 * MJ, rel=1e-12)
    assert psc["msini_source"] == "exoplanet-eu"
    # exoplanet.eu's 109 Psc b radius is "Theoretical" (a model value): not a measurement
    assert math.isnan(psc["radius"]) and psc["radius_source"] is None


def test_conflicts_beyond_combined_errors(merged):
    res, _rows, conflicts = merged
    hat = {(c["parameter"], c["other_source"], round(c["other_value"], 6)): c
           for c in conflicts if c["name"] == "HAT-P-11 b"}  # fmt: skip
    # radius 5.0059 +-0.066133 vs exoplanet.eu 0.389 RJ +-0.0054 RJ
    c = hat[("radius", "exoplanet-eu", round(0.389 * RJ, 6))]
    assert c["n_sigma"] == pytest.approx(
        (5.0059 - 0.389 * RJ) / math.hypot(0.066133, 0.0054 * RJ), rel=1e-9
    )
    # vs the Orbit DB 0.422 RJ +-0.014 RJ: (5.0059 - 4.7302) / 0.1703 = 1.62 sigma
    c = hat[("radius", "exoplanets-org", round(0.422 * RJ, 6))]
    assert c["n_sigma"] == pytest.approx(
        (5.0059 - 0.422 * RJ) / math.hypot(0.066133, 0.014 * RJ), rel=1e-9
    )
    assert c["other_ref"].startswith("Bakos et al. 2010")
    # period: (4.8878162 - 4.887802443) / hypot(3e-8, 7.1e-6) = 1.94 sigma
    c = hat[("period", "exoplanets-org", 4.887816)]
    assert c["n_sigma"] == pytest.approx(
        (4.8878162 - 4.887802443) / math.hypot(3e-8, 7.1e-6), rel=1e-9
    )
    # the masses agree within their errors: 25.013 +-1.5256 vs 23.392 +-1.4938 is 0.76 sigma
    assert not [k for k in hat if k[0] == "mass"]
    cells = {(c["name"], c["parameter"]) for c in conflicts}
    assert res.report["conflicts"]["values"] == len(cells) > 0
    assert res.report["conflicts"]["pairs"] == len(conflicts)
    assert all(c["n_sigma"] > 1 for c in conflicts)


def test_units_and_provenance(inputs, merged):
    from astrobio_cli.catalog import M_JUP_EARTH, R_JUP_EARTH

    assert abs(M_JUP_EARTH - MJ) <= 1e-12 * MJ
    assert abs(R_JUP_EARTH - RJ) <= 1e-12 * RJ
    res, _rows, _c = merged
    schema = pq.read_schema(res.out)
    for col, unit in [("mass", "earthMass"), ("mass_err", "earthMass"), ("msini", "earthMass"),
                      ("radius", "earthRad"), ("period", "day"), ("eq_temp", "K"),
                      ("star_teff", "K"), ("star_mass", "solMass"), ("distance", "pc")]:  # fmt: skip
        assert schema.field(col).metadata[b"unit"].decode() == unit
        units.Unit(unit)
    side = json.loads(res.sidecar.read_text())
    assert side["source"] == "catalog-merge"
    got = {i["catalogue"]: i for i in side["inputs"]}
    for cat, label in [
        ("nasa", "nasa-exoplanet"),
        ("eu", "exoplanet-eu"),
        ("org", "exoplanets-org"),
    ]:
        assert got[label]["sha256"] == hashlib.sha256(inputs[cat].read_bytes()).hexdigest()
        assert got[label]["provenance"]["source"] == label  # the fetch's own sidecar, embedded
    assert got["exoplanet-eu"]["provenance"]["sha256"] == hashlib.sha256(EU_BODY).hexdigest()
    assert side["output"]["sha256"] == hashlib.sha256(res.out.read_bytes()).hexdigest()
    assert (
        side["conflicts_output"]["sha256"]
        == hashlib.sha256(res.conflicts_out.read_bytes()).hexdigest()
    )


def test_cli_end_to_end(inputs, merged, run_cli, tmp_path):
    res, _rows, _c = merged
    out = tmp_path / "m.parquet"
    r = run_cli(
        "catalog", "merge", "--nasa", str(inputs["nasa"]), "--eu", str(inputs["eu"]),
        "--org", str(inputs["org"]), "-o", str(out), "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    for key in ("planets", "planets_per_catalogue", "beyond_nasa", "conflicts"):
        assert rep[key] == res.report[key]
    assert Path(rep["outputs"]["conflicts"]).is_file() and out.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_bad_inputs_are_clear(inputs, cli, tmp_path):
    out = str(tmp_path / "m.parquet")
    r = cli("catalog", "merge", "--eu", str(inputs["nasa"]), "-o", out)
    assert r.exit_code == 2 and "has no column 'name'" in r.stderr and "--eu" in r.stderr
    r = cli("catalog", "merge", "--org", str(tmp_path / "none.parquet"), "-o", out)
    assert r.exit_code == 2 and "no such file" in r.stderr
    r = cli("catalog", "merge", "-o", out)
    assert r.exit_code == 2 and "give at least one catalogue" in r.stderr
    import pyarrow as pa

    odd = tmp_path / "odd" / "eu.parquet"  # a mass in kg: no conversion to Earth masses known
    odd.parent.mkdir()
    field = pa.field("mass", pa.float64(), metadata={"unit": "kg"})
    pq.write_table(pa.table({"name": ["X b"], "mass": pa.array([1e27], field.type)},
                            schema=pa.schema([pa.field("name", pa.string()), field])), odd)  # fmt: skip
    r = cli("catalog", "merge", "--eu", str(odd), "-o", out)
    assert r.exit_code == 2 and "column 'mass' has the unit 'kg'" in r.stderr
    odd.unlink()
    odd.parent.rmdir()
    assert list(tmp_path.iterdir()) == []
