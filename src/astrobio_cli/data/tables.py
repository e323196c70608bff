"""Exoplanet catalogues in one schema: the NASA Exoplanet Archive, exoplanet.eu and TEPCat.

    df = read_exoplanet_table("planets.parquet")   # or TEPCat.csv, exoplanet_eu.csv, ...
    sel = measured_mass_radius(df)                 # measured mass and radius, with errors

`read_exoplanet_table` recognises the catalogue by its columns (not by the file name):

- a NASA Exoplanet Archive table (`ps` or `pscomppars`), Parquet or CSV/TSV, as
  `astrobio fetch nasa-exoplanet` writes it or the archive's own downloads (`#` comment lines
  before the header are skipped): any table with a ``pl_name`` column. Its columns already are
  the schema (``pl_radj``/``pl_bmassj`` fill in for absent Earth-unit columns). A table written
  by this module (e.g. astrobio-models' bundled extract) reads back unchanged.
- the exoplanet.eu CSV export (``name``, ``mass``, ``radius``, ``star_name``, ...): Jupiter units
  converted to Earth's; ``mass_measurement_type`` and ``radius_measurement_type`` give the
  provenance columns (below); errors ``*_error_min``/``*_error_max`` become err2/err1.
- TEPCat (``System``, ``Type``, ... ``M_b``, ``R_b`` ...; Southworth 2011): its header repeats
  names (``err``, ``errup``, ``errdn``), so columns are read BY POSITION (the positions are
  checked against the header names); -1 and -999 mean "no value"; Jupiter units; the host is
  the system name without the planet letter, and a system name without a letter is planet b
  ("WASP-018" -> planet "WASP-018 b" of host "WASP-018"; "Kepler-019c" -> "Kepler-019 c").
  Every TEPCat planet transits and its mass is a measured (RV or TTV) mass.

The schema (NASA Exoplanet Archive names and units; https://exoplanetarchive.ipac.caltech.edu/
docs/API_PS_columns.html). Errors follow the archive: err1 is the upper (+) error, err2 the
lower (-) error as a negative number. Non-finite numbers are NaN.

| column         | unit        | meaning                                                          |
| -------------- | ----------- | ---------------------------------------------------------------- |
| pl_name        |             | planet name as the catalogue writes it (TEPCat: `_` -> space)    |
| hostname       |             | host star / system name                                          |
| pl_rade        | R_earth     | planet radius                                                    |
| pl_radeerr1    | R_earth     | upper uncertainty of the radius (>= 0)                           |
| pl_radeerr2    | R_earth     | lower uncertainty of the radius (<= 0)                           |
| pl_bmasse      | M_earth     | planet mass (the archive's "best" mass: see pl_bmassprov)        |
| pl_bmasseerr1  | M_earth     | upper uncertainty of the mass (>= 0)                             |
| pl_bmasseerr2  | M_earth     | lower uncertainty of the mass (<= 0)                             |
| pl_bmassprov   |             | where the mass comes from: 'Mass' (measured), 'Msini',           |
|                |             | 'Msin(i)/sin(i)' (measured Msini over a transit inclination),    |
|                |             | 'M-R relationship' (computed from the radius), 'Model'           |
|                |             | (evolution or atmosphere models, e.g. directly imaged objects),  |
|                |             | 'Unspecified' (the catalogue does not say and cannot be told)    |
| pl_radeprov    |             | astrobio's addition (the archive has no such column; NaN there): |
|                |             | 'Transit' (measured), 'M-R relationship', 'Model', 'Unspecified' |
| pl_orbper      | day         | orbital period                                                   |
| pl_insol       | S_earth     | insolation flux (Earth = 1)                                      |
| pl_eqt         | K           | equilibrium temperature (as the catalogue computes it)           |
| st_mass        | M_sun       | stellar mass                                                     |
| st_teff        | K           | stellar effective temperature                                    |
| st_met         | dex         | stellar metallicity [Fe/H] (or [M/H])                            |
| default_flag   |             | 1 for the archive's default parameter set of a planet (ps rows)  |
| catalogue      |             | 'nasa-exoplanet-archive', 'exoplanet.eu' or 'tepcat'             |

Unit conversions (IAU 2015 nominal values, Resolution B3): 1 M_jup = 317.83 M_earth
(GM_J / GM_E = 1.2668653e17 / 3.986004e14), 1 R_jup = 11.209 R_earth (71,492 km / 6,378.1 km,
equatorial radii).

`df.attrs` carries ``source`` (the path), ``catalogue`` and ``absent``: the schema columns the
file did not have (filled with NaN), so `measured_mass_radius` can tell "no value" from "no
column". Pandas only; no torch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from astrobio_cli.errors import UsageError

M_JUP_EARTH = 317.83
R_JUP_EARTH = 11.209

NUMERIC = (
    "pl_rade",
    "pl_radeerr1",
    "pl_radeerr2",
    "pl_bmasse",
    "pl_bmasseerr1",
    "pl_bmasseerr2",
    "pl_orbper",
    "pl_insol",
    "pl_eqt",
    "st_mass",
    "st_teff",
    "st_met",
    "default_flag",
)
STRINGS = ("pl_name", "hostname", "pl_bmassprov", "pl_radeprov", "catalogue")
COLUMNS = (
    "pl_name",
    "hostname",
    "pl_rade",
    "pl_radeerr1",
    "pl_radeerr2",
    "pl_bmasse",
    "pl_bmasseerr1",
    "pl_bmasseerr2",
    "pl_bmassprov",
    "pl_radeprov",
    "pl_orbper",
    "pl_insol",
    "pl_eqt",
    "st_mass",
    "st_teff",
    "st_met",
    "default_flag",
    "catalogue",
)

NASA, EU, TEPCAT = "nasa-exoplanet-archive", "exoplanet.eu", "tepcat"
MEASURED_MASS = ("mass", "msin(i)/sin(i)")  # pl_bmassprov values that are measured masses
NEEDED = (
    "pl_name",
    "hostname",
    "pl_rade",
    "pl_radeerr1",
    "pl_radeerr2",
    "pl_bmasse",
    "pl_bmasseerr1",
    "pl_bmasseerr2",
    "pl_bmassprov",
)
FETCH_COLUMNS = (
    "pl_name,hostname,default_flag,pl_rade,pl_radeerr1,pl_radeerr2,pl_bmasse,pl_bmasseerr1,"
    "pl_bmasseerr2,pl_bmassprov,pl_orbper,pl_insol,pl_eqt,st_mass,st_teff,st_met"
)
FETCH_HINT = (
    f"`astrobio fetch nasa-exoplanet --table ps --columns {FETCH_COLUMNS} --out planets.parquet` "
    "writes one (or use the exoplanet.eu CSV export or TEPCat)"
)

# TEPCat by position: (index, header name there, our column, scale).
TEPCAT_LAYOUT = (
    (0, "System", "system", None),
    (1, "Type", "type", None),
    (10, "Period(day)", "pl_orbper", 1.0),
    (12, "Teff", "st_teff", 1.0),
    (15, "[Fe/H]", "st_met", 1.0),
    (18, "M_A", "st_mass", 1.0),
    (36, "M_b", "pl_bmasse", M_JUP_EARTH),
    (37, "errup", "pl_bmasseerr1", M_JUP_EARTH),
    (38, "errdn", "pl_bmasseerr2", -M_JUP_EARTH),
    (39, "R_b", "pl_rade", R_JUP_EARTH),
    (40, "errup", "pl_radeerr1", R_JUP_EARTH),
    (41, "errdn", "pl_radeerr2", -R_JUP_EARTH),
    (48, "Teq", "pl_eqt", 1.0),
)

# exoplanet.eu measurement types -> our provenance labels.
EU_MASS_PROV = {
    "radial velocity": "Mass",
    "ttv": "Mass",
    "astrometry": "Mass",
    "timing": "Mass",
    "microlensing": "Mass",
    "theoretical": "M-R relationship",
    "spectrum": "Model",
}
EU_RADIUS_PROV = {"primary transit": "Transit", "theoretical": "M-R relationship", "flux": "Model"}
EU_DYNAMICAL = ("primary transit", "radial velocity", "ttv", "astrometry")


def _pd():
    import pandas as pd

    return pd


# -- reading -----------------------------------------------------------------------------------


def read_exoplanet_table(path: Path | str) -> Any:
    """The table at `path` in the schema above (a pandas DataFrame); see the module docstring."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"table {path} does not exist")
    if path.is_dir():
        raise UsageError(f"table {path} is a directory; give a Parquet or CSV file")
    if _is_parquet(path):
        pd = _pd()
        try:
            raw = pd.read_parquet(path)
        except Exception as exc:
            raise UsageError(
                f"cannot read {path} as Parquet ({type(exc).__name__}: {exc})"
            ) from None
        raw.columns = [str(c).strip().lower() for c in raw.columns]
        if "pl_name" not in raw.columns:
            raise UsageError(
                f"{path} is a Parquet table without a pl_name column ({_list(raw.columns)}); "
                f"it is not a NASA Exoplanet Archive table. {FETCH_HINT}"
            )
        return _finish(_from_nasa(raw), path, NASA)
    header, skip, sep = _csv_header(path)
    names = [h.strip().lstrip("#").strip().lower() for h in header]
    if names and names[0] == "system" and "m_b" in names and "r_b" in names:
        return _finish(_from_tepcat(path, header, skip, sep), path, TEPCAT)
    if "pl_name" in names:
        return _finish(_from_nasa(_read_csv(path, skip, sep)), path, NASA)
    if {"name", "mass", "radius"} <= set(names) and (
        "star_name" in names or "planet_status" in names
    ):
        return _finish(_from_eu(_read_csv(path, skip, sep)), path, EU)
    raise UsageError(
        f"{path} is not an exoplanet table this reader knows: expected a NASA Exoplanet Archive "
        "table (a pl_name column), the exoplanet.eu CSV export (name, mass, radius, star_name) "
        f"or TEPCat (System, ..., M_b, R_b); its columns are {_list(header)}. {FETCH_HINT}"
    )


def _list(cols: Iterable[Any], n: int = 12) -> str:
    cols = [str(c) for c in cols]
    return ", ".join(cols[:n]) + (f", ... ({len(cols)} in all)" if len(cols) > n else "")


def _is_parquet(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"PAR1"


def _csv_header(path: Path) -> tuple[list[str], int, str]:
    """(header fields, comment/blank lines before the header, delimiter)."""
    import csv

    skip = 0
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        for line in fh:
            if line.startswith("#") and not line.lower().startswith("# name"):
                skip += 1
                continue
            if not line.strip():
                skip += 1
                continue
            sep = "\t" if "\t" in line else ","
            return next(csv.reader([line], delimiter=sep)), skip, sep
    raise UsageError(f"{path} is empty: not even a header line")


def _read_csv(path: Path, skip: int, sep: str, **kw: Any):
    pd = _pd()
    try:
        df = pd.read_csv(path, skiprows=skip, sep=sep, encoding="utf-8-sig", low_memory=False, **kw)
    except Exception as exc:
        raise UsageError(f"cannot read {path} as a table ({type(exc).__name__}: {exc})") from None
    if kw.get("header", "infer") is not None:
        df.columns = [str(c).strip().lstrip("#").strip().lower() for c in df.columns]
    return df


def _num(series) -> Any:
    import numpy as np

    v = _pd().to_numeric(series, errors="coerce").astype("float64")
    return v.where(np.isfinite(v))


def _from_nasa(raw):
    pd = _pd()
    out = pd.DataFrame(index=raw.index)
    absent = []
    for c in COLUMNS:
        if c in raw.columns:
            out[c] = _num(raw[c]) if c in NUMERIC else raw[c]
        else:
            out[c] = float("nan") if c in NUMERIC else None
            absent.append(c)
    # Jupiter-unit columns stand in for absent Earth-unit ones.
    for earth, jup, scale in (
        ("pl_rade", "pl_radj", R_JUP_EARTH),
        ("pl_bmasse", "pl_bmassj", M_JUP_EARTH),
    ):
        for suffix in ("", "err1", "err2"):
            e, j = earth + suffix, jup + suffix
            if e in absent and j in raw.columns:
                out[e] = _num(raw[j]) * scale
                absent.remove(e)
    if "pl_bmasse" in absent and "pl_masse" in raw.columns:  # the true-mass column alone
        for suffix in ("", "err1", "err2"):
            if f"pl_masse{suffix}" in raw.columns:
                out[f"pl_bmasse{suffix}"] = _num(raw[f"pl_masse{suffix}"])
                absent.remove(f"pl_bmasse{suffix}")
        if "pl_bmassprov" in absent:
            out["pl_bmassprov"] = "Mass"
            absent.remove("pl_bmassprov")
    if "catalogue" in absent:
        out["catalogue"] = NASA
        absent.remove("catalogue")
    out.attrs["absent"] = absent
    return out


def _clean_names(series):
    """exoplanet.eu names: HTML entities decoded ('24 Bo&ouml;' -> '24 Boö'), whitespace (a tab
    included) collapsed to single spaces."""
    import html

    return series.map(lambda v: " ".join(html.unescape(v).split()) if isinstance(v, str) else v)


def _from_eu(raw):
    import numpy as np

    pd = _pd()
    n = len(raw)
    get = lambda c: _num(raw[c]) if c in raw.columns else pd.Series(np.nan, index=raw.index)  # noqa: E731
    text = lambda c: (  # noqa: E731
        raw[c].astype("string").str.strip().str.lower()
        if c in raw.columns
        else pd.Series([pd.NA] * n, index=raw.index, dtype="string")
    )
    out = pd.DataFrame(index=raw.index)
    out["pl_name"] = _clean_names(raw["name"])
    host = _clean_names(raw["star_name"]) if "star_name" in raw.columns else None
    fallback = out["pl_name"].map(lambda s: split_planet_name(s)[0] if isinstance(s, str) else None)
    out["hostname"] = fallback if host is None else host.fillna(fallback)
    out["pl_rade"] = get("radius") * R_JUP_EARTH
    out["pl_radeerr1"] = get("radius_error_max") * R_JUP_EARTH
    out["pl_radeerr2"] = -get("radius_error_min") * R_JUP_EARTH
    out["pl_bmasse"] = get("mass") * M_JUP_EARTH
    out["pl_bmasseerr1"] = get("mass_error_max") * M_JUP_EARTH
    out["pl_bmasseerr2"] = -get("mass_error_min") * M_JUP_EARTH
    detection = text("detection_type").fillna("")
    dynamical = detection.map(lambda d: any(k in d for k in EU_DYNAMICAL))
    transit = detection.str.contains("primary transit", regex=False)
    mtype, rtype = text("mass_measurement_type"), text("radius_measurement_type")
    out["pl_bmassprov"] = [
        EU_MASS_PROV.get(t, "Unspecified")
        if isinstance(t, str)
        else ("Mass" if dyn else "Unspecified")
        for t, dyn in zip(mtype.tolist(), dynamical.tolist(), strict=True)
    ]
    out["pl_radeprov"] = [
        EU_RADIUS_PROV.get(t, "Unspecified")
        if isinstance(t, str)
        else ("Transit" if tr else "Unspecified")
        for t, tr in zip(rtype.tolist(), transit.tolist(), strict=True)
    ]
    out["pl_orbper"] = get("orbital_period")
    out["pl_insol"] = np.nan
    out["pl_eqt"] = get("temp_calculated")
    out["st_mass"] = get("star_mass")
    out["st_teff"] = get("star_teff")
    out["st_met"] = get("star_metallicity")
    out["default_flag"] = np.nan
    out["catalogue"] = EU
    out.attrs["absent"] = ["pl_insol", "default_flag"]
    if "mass_measurement_type" not in raw.columns:
        out.attrs["absent"].append("pl_bmassprov")
    return out


def _from_tepcat(path: Path, header: list[str], skip: int, sep: str):
    import numpy as np

    pd = _pd()
    head = [h.strip() for h in header]
    for idx, name, _col, _scale in TEPCAT_LAYOUT:
        if idx >= len(head) or head[idx] != name:
            found = head[idx] if idx < len(head) else "nothing"
            raise UsageError(
                f"{path} looks like TEPCat but column {idx + 1} is {found!r}, not {name!r}: "
                "this reader knows the layout of TEPCat's allplanets CSV (57 columns)"
            )
    raw = _read_csv(path, skip + 1, sep, header=None, dtype=str)
    out = pd.DataFrame(index=raw.index)
    system = raw[0].astype("string").str.strip()
    parts = [split_planet_name(s) for s in system.tolist()]
    out["pl_name"] = [f"{h} {letter}" for h, letter in parts]
    out["hostname"] = [h for h, _ in parts]
    for idx, _name, col, scale in TEPCAT_LAYOUT[2:]:
        v = _num(raw[idx])
        v = v.where(~np.isclose(v, -1.0) & ~np.isclose(v, -999.0))  # TEPCat's "no value"
        out[col] = v * scale
    out["pl_bmassprov"] = np.where(out["pl_bmasse"].notna(), "Mass", None)
    out["pl_radeprov"] = "Transit"
    out["pl_insol"] = np.nan
    out["default_flag"] = np.nan
    out["catalogue"] = TEPCAT
    out.attrs["absent"] = ["pl_insol", "default_flag"]
    return out


def _finish(df, path: Path, catalogue: str):
    absent = list(df.attrs.get("absent", []))
    df = df[list(COLUMNS)].reset_index(drop=True)
    for c in STRINGS:
        df[c] = df[c].astype("object").where(df[c].notna(), None)
    df.attrs.update(source=str(path), catalogue=catalogue, absent=absent)
    return df


# -- names -------------------------------------------------------------------------------------

_LETTER_SUFFIX = re.compile(r"^(.*?)[ _]?([b-z])$")


def split_planet_name(name: str) -> tuple[str, str]:
    """(host, planet letter) of a planet name: 'Kepler-019b' -> ('Kepler-019', 'b'),
    '55_Cnc_e' -> ('55 Cnc', 'e'), 'WASP-018' -> ('WASP-018', 'b') (no letter: planet b),
    'LTT_1445Ab' -> ('LTT 1445A', 'b'). Underscores become spaces."""
    s = str(name).strip().replace("_", " ")
    m = _LETTER_SUFFIX.match(s)
    if m and m.group(1) and (s[-2] in " _)" or s[-2].isdigit() or s[-2].isupper()):
        return m.group(1).strip(), m.group(2)
    return s, "b"


def _norm(s: str) -> str:
    s = str(s).lower().replace("_", " ").replace("gliese", "gj")
    s = re.sub(r"(?<![0-9.])0+(?=[0-9])", "", s)  # WASP-018 -> WASP-18
    return re.sub(r"[\s\-]+", "", s)


def host_key(host: str) -> str:
    """A key that matches one system across catalogues: case, separators, leading zeros and a
    trailing stellar component letter (' A', ' B') do not count ('WASP-018' == 'WASP-18 A')."""
    s = re.sub(r"[\s_]+[AB]$|(?<=\d)[AB]$", "", str(host).strip())
    return _norm(s)


def planet_key(name: str) -> str:
    """A key that matches one planet across catalogues (host_key + planet letter)."""
    host, letter = split_planet_name(name)
    return f"{host_key(host)}|{letter}"


# -- selection ---------------------------------------------------------------------------------


def measured_mass_radius(df, *, dedupe: bool = True):
    """The planets with a measured mass and radius, both with finite uncertainties.

    Kept: pl_rade and pl_bmasse present and > 0; pl_radeerr1, pl_bmasseerr1 > 0 and
    pl_radeerr2, pl_bmasseerr2 < 0, all finite; pl_bmassprov 'Mass' or 'Msin(i)/sin(i)' (so
    not 'Msini', 'M-R relationship', 'Model' or 'Unspecified'); pl_radeprov 'Transit' or not
    given (NaN: the NASA archive has no radius provenance). With `dedupe`, one row per planet:
    the archive's default parameter set (default_flag == 1) when there is one, else the first.
    ``attrs["selection"]`` counts the rows dropped for each reason. A table without the columns
    this needs is a UsageError naming them.
    """
    import numpy as np

    absent = set(df.attrs.get("absent", [])) | {c for c in NEEDED if c not in df.columns}
    lacking = [c for c in NEEDED if c in absent]
    if lacking:
        source = df.attrs.get("source", "the table")
        raise UsageError(
            f"{source} has no column(s) {', '.join(lacking)}, needed to select planets with a "
            f"measured mass and radius (and their uncertainties); {FETCH_HINT}"
        )
    num = {c: df[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in NEEDED[2:8]}
    with np.errstate(invalid="ignore"):
        checks = {
            "no radius": ~(num["pl_rade"] > 0),
            "no mass": ~(num["pl_bmasse"] > 0),
            "radius uncertainty missing": ~(
                (num["pl_radeerr1"] > 0)
                & (num["pl_radeerr2"] < 0)
                & np.isfinite(num["pl_radeerr1"] - num["pl_radeerr2"])
            ),
            "mass uncertainty missing": ~(
                (num["pl_bmasseerr1"] > 0)
                & (num["pl_bmasseerr2"] < 0)
                & np.isfinite(num["pl_bmasseerr1"] - num["pl_bmasseerr2"])
            ),
        }
    mprov = df["pl_bmassprov"].map(lambda v: str(v).strip().lower() if v is not None else "")
    checks["mass not measured (pl_bmassprov)"] = ~mprov.isin(MEASURED_MASS).to_numpy()
    rprov = df["pl_radeprov"] if "pl_radeprov" in df.columns else None
    if rprov is not None:
        ok = rprov.map(
            lambda v: v is None or (isinstance(v, float) and math.isnan(v)) or v == "Transit"
        )
        checks["radius not measured (pl_radeprov)"] = ~ok.to_numpy(dtype=bool)
    keep = np.ones(len(df), dtype=bool)
    counts: dict[str, int] = {}
    for reason, bad in checks.items():
        counts[reason] = int((keep & bad).sum())
        keep &= ~bad
    out = df[keep]
    if dedupe and len(out):
        flag = out["default_flag"].to_numpy(dtype=np.float64, na_value=np.nan)
        order = np.argsort(np.where(flag == 1, 0, 1), kind="stable")
        ranked = out.iloc[order]
        dup = ranked["pl_name"].duplicated(keep="first")
        counts["duplicate rows of a planet"] = int(dup.sum())
        out = ranked[~dup.to_numpy()].sort_index()
    out = out.reset_index(drop=True)
    out.attrs = {**df.attrs, "selection": {"rows": len(df), "kept": len(out), "dropped": counts}}
    return out


def merge_catalogues(frames: Iterable[Any]):
    """Concatenate schema tables, one row per planet (`planet_key`): the first table that has
    a planet wins (give the preferred catalogue first). Hosts are unified per `host_key`, so
    one system keeps one hostname whichever catalogue each of its planets came from."""
    pd = _pd()
    frames = list(frames)
    df = pd.concat(frames, ignore_index=True)
    keys = df["pl_name"].map(planet_key)
    df = df[~keys.duplicated(keep="first").to_numpy()].reset_index(drop=True)
    hk = df["hostname"].map(host_key)
    first = dict(zip(hk[::-1], df["hostname"][::-1], strict=True))  # first spelling wins
    df["hostname"] = hk.map(first)
    df.attrs = {"source": ", ".join(str(f.attrs.get("source", "?")) for f in frames)}
    return df
