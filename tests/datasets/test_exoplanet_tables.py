"""`read_exoplanet_table` on real catalogue extracts (TEPCat, exoplanet.eu, a NASA-format body):
recognition by content, units against hand values, the measured-mass-and-radius selection."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from astrobio_cli.data import tables as t
from astrobio_cli.errors import UsageError

PLANETS = Path(__file__).resolve().parents[1] / "data" / "planets"
TEPCAT = PLANETS / "TEPCat_extract.csv"
EU = PLANETS / "exoplanet_eu_extract.csv"
NASA = PLANETS / "nasa_ps_from_catalogues.csv"


def row(df, name):
    hits = df[df["pl_name"] == name]
    assert len(hits) >= 1, f"{name} not in the table"
    return hits.iloc[0]


def test_tepcat_by_position_in_earth_units():
    df = t.read_exoplanet_table(TEPCAT)
    assert df.attrs["catalogue"] == "tepcat" and list(df.columns) == list(t.COLUMNS)
    cnc = row(df, "55 Cnc e")  # M_b 0.0243 +0.0012 -0.0009 M_jup, R_b 0.1692 +0.0039 -0.0041 R_jup
    assert cnc["hostname"] == "55 Cnc"
    assert cnc["pl_bmasse"] == pytest.approx(0.0243 * 317.83, rel=1e-12)  # 7.723269
    assert cnc["pl_bmasseerr1"] == pytest.approx(0.381396, rel=1e-9)
    assert cnc["pl_bmasseerr2"] == pytest.approx(-0.286047, rel=1e-9)
    assert cnc["pl_rade"] == pytest.approx(1.8965628, rel=1e-9)
    assert cnc["pl_radeerr1"] == pytest.approx(0.0437151, rel=1e-9)
    assert cnc["pl_radeerr2"] == pytest.approx(-0.0459569, rel=1e-9)
    assert (cnc["pl_orbper"], cnc["pl_eqt"], cnc["st_teff"]) == (0.73654604, 2349, 5172)
    assert (cnc["st_mass"], cnc["st_met"]) == (0.873, 0.35)
    assert (cnc["pl_bmassprov"], cnc["pl_radeprov"]) == ("Mass", "Transit")
    # a system name without a planet letter is planet b; zero padding is kept
    wasp = row(df, "WASP-018 b")
    assert wasp["hostname"] == "WASP-018"
    assert wasp["pl_bmasse"] == pytest.approx(10.52 * 317.83) and wasp["pl_rade"] == pytest.approx(
        1.204 * 11.209
    )
    assert row(df, "Kepler-010 b")["hostname"] == "Kepler-010"
    # -1 means "no value": Kepler-079b has no [Fe/H] and no Teq
    k79 = row(df, "Kepler-079 b")
    assert math.isnan(k79["st_met"]) and math.isnan(k79["pl_eqt"])
    assert k79["pl_bmasse"] == pytest.approx(0.034 * 317.83)
    # no mass (-1): NaN, never -317.83
    assert (df["pl_bmasse"].dropna() > 0).all() and df["pl_bmasse"].isna().any()
    assert df["pl_insol"].isna().all() and "pl_insol" in df.attrs["absent"]


def test_exoplanet_eu_export_and_its_provenance():
    df = t.read_exoplanet_table(EU)
    assert df.attrs["catalogue"] == "exoplanet.eu"
    hat = row(df, "HAT-P-11 b")  # mass 0.0736 +-0.0047 M_jup, radius 0.389 +-0.0054 R_jup
    assert hat["hostname"] == "HAT-P-11"
    assert hat["pl_bmasse"] == pytest.approx(23.392288, rel=1e-9)
    assert hat["pl_bmasseerr1"] == pytest.approx(0.0047 * 317.83)
    assert hat["pl_bmasseerr2"] == pytest.approx(-0.0047 * 317.83)
    assert hat["pl_rade"] == pytest.approx(4.360301, rel=1e-9)
    assert hat["pl_radeerr2"] == pytest.approx(-0.0605286, rel=1e-9)
    assert hat["pl_orbper"] == pytest.approx(4.887802443)
    # no measurement type given, but a transiting planet: measured
    assert (hat["pl_bmassprov"], hat["pl_radeprov"]) == ("Mass", "Transit")
    assert row(df, "TOI-620 b")["pl_bmassprov"] == "M-R relationship"  # "Theoretical" mass
    assert row(df, "109 Psc b")["pl_radeprov"] == "M-R relationship"  # "Theoretical" radius
    bd = row(df, "2MASS J0030-1450")  # an imaged object: "Spectrum" mass, "Flux" radius
    assert (bd["pl_bmassprov"], bd["pl_radeprov"]) == ("Model", "Model")
    assert math.isnan(row(df, "CoRoT-24 b")["pl_bmasseerr1"])  # "inf" in the export


def test_measured_selection_drops_what_is_not_measured():
    df = t.read_exoplanet_table(EU)
    sel = t.measured_mass_radius(df)
    names = set(sel["pl_name"])
    assert "HAT-P-11 b" in names and "Kepler-10 b" in names
    for gone in ("TOI-620 b", "109 Psc b", "2MASS J0030-1450", "CoRoT-24 b"):
        assert gone not in names
    assert (sel["pl_bmasse"] > 0).all() and (sel["pl_rade"] > 0).all()
    for c in ("pl_bmasseerr1", "pl_radeerr1"):
        assert (np.isfinite(sel[c]) & (sel[c] > 0)).all()
    for c in ("pl_bmasseerr2", "pl_radeerr2"):
        assert (np.isfinite(sel[c]) & (sel[c] < 0)).all()
    info = sel.attrs["selection"]
    assert info["rows"] == len(df) and info["kept"] == len(sel)
    assert info["kept"] + sum(info["dropped"].values()) == info["rows"]
    assert info["dropped"]["mass not measured (pl_bmassprov)"] >= 2


def test_nasa_csv_selection_keeps_the_default_set_and_drops_msini():
    df = t.read_exoplanet_table(NASA)
    assert df.attrs["catalogue"] == "nasa-exoplanet-archive"
    assert df.attrs["absent"] == ["pl_radeprov"]  # the archive has no radius provenance
    assert set(df["pl_bmassprov"]) == {"Mass", "Msini", "M-R relationship"}
    sel = t.measured_mass_radius(df)
    assert set(sel["pl_bmassprov"]) == {"Mass"}
    assert sel["pl_name"].is_unique
    twice = df["pl_name"].value_counts()
    name = twice[twice > 1].index[0]  # a planet with two parameter sets: the default one wins
    assert row(sel, name)["pl_bmasse"] == row(df[df["default_flag"] == 1], name)["pl_bmasse"]


def test_recognised_by_content_not_name(tmp_path):
    for src, cat in ((TEPCAT, "tepcat"), (EU, "exoplanet.eu"), (NASA, "nasa-exoplanet-archive")):
        dst = tmp_path / f"{cat}.table.csv"
        shutil.copy(src, dst)
        assert t.read_exoplanet_table(dst).attrs["catalogue"] == cat
    # the archive's web downloads start with comment lines; TSV works too
    body = NASA.read_text().splitlines()
    web = tmp_path / "web.csv"
    web.write_text("# This file was produced by the NASA Exoplanet Archive\n#\n" + "\n".join(body))
    assert len(t.read_exoplanet_table(web)) == len(body) - 1
    tsv = tmp_path / "x.tsv"
    tsv.write_text("\n".join(line.replace(",", "\t") for line in body[:3]) + "\n")
    assert list(t.read_exoplanet_table(tsv)["pl_name"]) == ["55 Cnc e", "CoRoT-21 b"]


def test_clear_errors(tmp_path):
    thin = tmp_path / "thin.csv"
    thin.write_text('pl_name,pl_rade\n"K2-18 b",2.61\n')
    df = t.read_exoplanet_table(thin)
    with pytest.raises(UsageError) as info:
        t.measured_mass_radius(df)
    msg = str(info.value)
    assert "pl_bmasse" in msg and "pl_bmassprov" in msg and "pl_radeerr1" in msg
    assert "astrobio fetch nasa-exoplanet --table ps --columns" in msg
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(UsageError, match="not an exoplanet table"):
        t.read_exoplanet_table(other)
    with pytest.raises(UsageError, match="does not exist"):
        t.read_exoplanet_table(tmp_path / "missing.csv")


def test_names_and_keys():
    assert t.split_planet_name("Kepler-019b") == ("Kepler-019", "b")
    assert t.split_planet_name("55_Cnc_e") == ("55 Cnc", "e")
    assert t.split_planet_name("WASP-018") == ("WASP-018", "b")
    assert t.split_planet_name("LTT_1445Ab") == ("LTT 1445A", "b")
    assert t.planet_key("WASP-018") == t.planet_key("WASP-18 b")
    assert t.planet_key("Kepler-010b") == t.planet_key("Kepler-10 b")
    assert t.host_key("WASP-18 A") == t.host_key("WASP-018") == "wasp18"
    assert t.host_key("Gliese 12") == t.host_key("GJ 12")


def test_merge_prefers_the_first_catalogue():
    tp = t.measured_mass_radius(t.read_exoplanet_table(TEPCAT))
    eu = t.measured_mass_radius(t.read_exoplanet_table(EU))
    merged = t.merge_catalogues([tp, eu])
    keys = merged["pl_name"].map(t.planet_key)
    assert keys.is_unique
    both = set(tp["pl_name"].map(t.planet_key)) & set(eu["pl_name"].map(t.planet_key))
    assert both  # e.g. 55 Cnc e and HAT-P-11 b are in both extracts
    assert row(merged, "55 Cnc e")["catalogue"] == "tepcat"
    assert len(merged) == len(tp) + len(eu) - len(both)


def test_data_kind_of_tables(tmp_path):
    import pandas as pd

    from astrobio_cli.training.data import data_kind

    archive = tmp_path / "ps.parquet"
    t.read_exoplanet_table(NASA).to_parquet(archive)
    other = tmp_path / "other.parquet"
    pd.DataFrame({"x": [1.0]}).to_parquet(other)
    assert data_kind(str(archive)) == "exoplanet-table"
    assert data_kind(str(other)) is None  # not a planet table: not claimed
    assert data_kind(str(TEPCAT)) == data_kind(str(EU)) == "exoplanet-table"
    # and it reads back: a Parquet in the schema is an archive table
    back = t.read_exoplanet_table(archive)
    assert len(back) == 117 and back.attrs["catalogue"] == "nasa-exoplanet-archive"
