"""Fetched tables load with units in astropy (Parquet and ECSV) and still load in pandas.

The fetch runs the installed `astrobio` against the loopback TAP server replaying the archive's
recorded answer; the expected units come from the archive's column documentation, parsed by
astropy independently of how we wrote them.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable
from httpserver import Reply

from astrobio_data_sources import nasa_columns as nc

ARCHIVE_DATA = Path(__file__).resolve().parents[1] / "data" / "nasa-exoplanet-archive"
BODY = (ARCHIVE_DATA / "pscomppars-default.csv").read_bytes()
REF = list(csv.DictReader(BODY.decode().splitlines()))

# From the archive's column documentation page, by hand: (column, unit as the archive writes it)
DOC_UNITS = {
    "pl_orbper": u.day,
    "pl_orbsmax": u.AU,
    "pl_rade": u.earthRad,
    "pl_bmasse": u.earthMass,
    "pl_dens": u.g / u.cm**3,
    "pl_insol": 1361 * u.W / u.m**2,
    "pl_eqt": u.K,
    "st_teff": u.K,
    "st_rad": u.solRad,
    "st_mass": u.solMass,
    "st_met": u.dex,
    "st_lum": u.dex(u.solLum),
    "sy_dist": u.pc,
}


@pytest.fixture
def fetched(loopback, archive_env, run_cli, tmp_path):
    loopback.route("GET", "/TAP/sync", Reply(200, BODY, content_type="text/csv"))

    def fetch(fmt: str) -> Path:
        out = tmp_path / f"planets.{fmt}"
        res = run_cli("fetch", "nasa-exoplanet", "--format", fmt, "--out", str(out), "--json")
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert doc["out"] == str(out) and doc["rows"] == len(REF) and doc["fmt"] == fmt
        return out

    return fetch


def _values(col) -> np.ndarray:
    v = getattr(col, "value", col)
    return np.ma.filled(np.ma.asarray(v, dtype=float), np.nan)


@pytest.mark.parametrize("fmt", ["parquet", "ecsv"])
def test_qtable_read_gives_every_documented_unit(fetched, fmt):
    t = QTable.read(fetched(fmt))
    assert t.colnames == list(REF[0].keys())
    for name, unit in DOC_UNITS.items():
        col = t[name]
        assert isinstance(col, u.Quantity), (fmt, name, type(col))
        assert u.Unit(col.unit) == u.Unit(unit), (fmt, name, col.unit)
        want = [float(r[name]) if r[name] else math.nan for r in REF]
        np.testing.assert_array_equal(_values(col), np.array(want), err_msg=name)
    # every numeric column the table holds is documented, with a unit or as a plain number
    for name in t.colnames:
        info = nc.column_info(name)
        assert info is not None, name
        if info.kind == "float" and info.unit:
            assert isinstance(t[name], u.Quantity), name
    assert "Orbital period" in (t["pl_orbper"].info.description or "")
    assert list(t["pl_name"]) == [r["pl_name"] for r in REF]


def test_parquet_still_reads_in_pandas_and_pyarrow(fetched):
    import pandas as pd
    import pyarrow.parquet as pq

    path = fetched("parquet")
    df = pd.read_parquet(path)
    assert list(df["pl_name"]) == [r["pl_name"] for r in REF]
    assert pq.read_table(path).schema.field("pl_orbper").metadata[b"unit"] == b"day"


def test_every_documented_column_has_a_unit_astropy_parses():
    numeric = 0
    for name, info in nc.DOCUMENTED.items():
        for col in (name, f"{name}err1", f"{name}err2"):
            got = nc.column_info(col)
            if info.kind != "float" and col != name:
                continue
            assert got is not None and got.unit == info.unit, col
            if info.unit:
                u.Unit(info.unit)  # raises on a unit astropy does not know
                numeric += 1
        if info.kind == "float":
            assert nc.column_info(f"{name}lim").kind == "int"
            assert nc.column_info(f"{name}str").kind == "string"
    assert numeric >= 198  # values and both error columns of 66 measured quantities
    assert nc.column_info("not_a_column") is None
