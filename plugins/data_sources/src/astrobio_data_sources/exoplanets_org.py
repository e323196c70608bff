"""The Exoplanet Orbit Database (exoplanets.org; Wright et al. 2011, Han et al. 2014) as Parquet.

    result = fetch(CatalogueQuery())                       # http://exoplanets.org/csv-files/exoplanets.csv
    result = fetch(CatalogueQuery(url="./exoplanets.csv"))  # a mirror or a local copy

The service has been offline for years: a refused connection, a 404 or an HTML page instead of the
CSV is one error that names the URL and suggests `--url` (a mirror, or a local copy of the file).

The CSV has one row per planet and a family of columns per parameter `X`: `X` (value),
`XUPPER` / `XLOWER` (the upper and lower uncertainties, positive numbers), `UX` (a symmetric
uncertainty), `XREF` (the reference) and `XURL` (its link). Parameters and units:
`MSINI`, `MASS` (Jupiter masses), `R` (Jupiter radii), `PER` (days), `A` (AU), `ECC`, `I` (deg),
`K` (m/s), `TEFF` (K), `FE` ([Fe/H], dex), `MSTAR` (solar masses), `RSTAR` (solar radii),
`DIST` (pc), `T0` and `TT` (Julian dates), ... Identifiers: `NAME`, `STAR`, `OTHERNAME`.
Units go into the Parquet field metadata, as for the other catalogue sources.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from astrobio_data_sources.exoplanet_eu import (
    CatalogueQuery,
    CsvCatalogue,
    fetch_catalogue,
    plan,
    read_csv,
    result_json,
)

SOURCE = "exoplanets-org"
BASE_URL = "http://exoplanets.org"
PATH = "/csv-files/exoplanets.csv"
REQUIRED = ("NAME", "STAR", "MSINI", "PER")

# Parameter families: X -> (unit, description); each has XUPPER, XLOWER, UX, XREF, XURL.
PARAMETERS: dict[str, tuple[str, str]] = {
    "A": ("AU", "Orbit semi-major axis"),
    "AR": ("", "Semi-major axis over stellar radius a/R*"),
    "B": ("", "Transit impact parameter"),
    "BIGOM": ("deg", "Longitude of the ascending node"),
    "DENSITY": ("g / cm3", "Planet density"),
    "DEPTH": ("", "Transit depth (fraction)"),
    "DIST": ("pc", "Distance of the star"),
    "DVDT": ("m / (s d)", "Radial-velocity linear trend"),
    "ECC": ("", "Orbital eccentricity"),
    "FE": ("dex", "Stellar metallicity [Fe/H]"),
    "GAMMA": ("m / s", "Systemic radial velocity"),
    "GRAVITY": ("dex(cm / s2)", "Planet surface gravity, log10(g)"),
    "I": ("deg", "Orbital inclination"),
    "K": ("m / s", "Radial-velocity semi-amplitude"),
    "LAMBDA": ("deg", "Sky-projected spin-orbit angle"),
    "LOGG": ("dex(cm / s2)", "Stellar surface gravity, log10(g)"),
    "MASS": ("jupiterMass", "Planet mass"),
    "MSINI": ("jupiterMass", "Planet minimum mass M*sin(i)"),
    "MSTAR": ("solMass", "Stellar mass"),
    "OM": ("deg", "Argument of periastron"),
    "PAR": ("mas", "Parallax"),
    "PER": ("day", "Orbital period"),
    "R": ("jupiterRad", "Planet radius"),
    "RHOSTAR": ("g / cm3", "Stellar density"),
    "RR": ("", "Planet-to-star radius ratio"),
    "RSTAR": ("solRad", "Stellar radius"),
    "SEP": ("AU", "Projected separation"),
    "T0": ("d", "Epoch of periastron (Julian date)"),
    "T14": ("d", "Transit duration"),
    "TEFF": ("K", "Stellar effective temperature"),
    "TT": ("d", "Epoch of mid-transit (Julian date)"),
    "VSINI": ("km / s", "Stellar projected rotation velocity"),
}
STRINGS: dict[str, str] = {
    "NAME": "Planet name",
    "STAR": "Host star name",
    "OTHERNAME": "Other names of the planet",
    "PLANETDISCMETH": "Discovery method",
    "RA_STRING": "Right ascension (sexagesimal)",
    "DEC_STRING": "Declination (sexagesimal)",
    "FIRSTREF": "Discovery reference",
    "FIRSTURL": "Discovery reference link",
    "EANAME": "Name in the Exoplanet Archive",
    "EAURL": "Exoplanet Archive link",
    "ETDNAME": "Name in the Exoplanet Transit Database",
    "ETDURL": "Exoplanet Transit Database link",
    "SIMBADNAME": "SIMBAD name",
    "SIMBADURL": "SIMBAD link",
}
PLAIN: dict[str, tuple[str, str, str]] = {
    "RA": ("float", "hourangle", "Right ascension (decimal hours)"),
    "DEC": ("float", "deg", "Declination"),
    "V": ("float", "mag", "V magnitude"),
    "J": ("float", "mag", "J magnitude"),
    "H": ("float", "mag", "H magnitude"),
    "KS": ("float", "mag", "Ks magnitude"),
    "DATE": ("int", "", "Year of the discovery publication"),
    "TRANSIT": ("int", "", "1 when the planet transits"),
}


def _columns() -> dict[str, tuple[str, str, str]]:
    out: dict[str, tuple[str, str, str]] = {}
    for x, (unit, desc) in PARAMETERS.items():
        out[x] = ("float", unit, desc)
        out[f"{x}UPPER"] = ("float", unit, f"{desc}: upper uncertainty (positive)")
        out[f"{x}LOWER"] = ("float", unit, f"{desc}: lower uncertainty (positive)")
        out[f"U{x}"] = ("float", unit, f"{desc}: symmetric uncertainty")
        out[f"{x}REF"] = ("string", "", f"{desc}: reference")
        out[f"{x}URL"] = ("string", "", f"{desc}: reference link")
    for name, desc in STRINGS.items():
        out[name] = ("string", "", desc)
    out.update(PLAIN)
    return out


COLUMNS = _columns()


def parse(path: Path, what: str):
    return read_csv(path, what, columns=COLUMNS, required=REQUIRED)


def _offline(url: str, exc: Exception) -> Exception | None:
    """Whatever went wrong getting the file, one message: the URL, what happened, --url."""
    from astrobio_cli.errors import UserError
    from astrobio_cli.net.errors import ContentError, NetworkError

    if not isinstance(exc, NetworkError | ContentError):
        return None
    said = str(exc)
    return UserError(
        f"exoplanets-org: could not get the Exoplanet Orbit Database CSV from {url} ({said}). "
        "exoplanets.org has been offline for years: point --url at a mirror (an http(s) URL) "
        "or at a local copy of exoplanets.csv, e.g. `astrobio fetch exoplanets-org --url "
        "./exoplanets.csv`"
    )


CATALOGUE = CsvCatalogue(
    source=SOURCE,
    base_url=BASE_URL,
    path=PATH,
    title="the Exoplanet Orbit Database",
    parse=parse,
    stem="exoplanets-org",
    on_failure=_offline,
)


def fetch(q: CatalogueQuery | None = None, **kw: Any):
    return fetch_catalogue(CATALOGUE, q or CatalogueQuery(), **kw)


__all__ = ["CATALOGUE", "COLUMNS", "CatalogueQuery", "fetch", "plan", "result_json"]


class ExoplanetsOrg:
    """The source object (DataSourceSpec.factory)."""

    name = SOURCE
    columns = COLUMNS

    def query(self, **options: Any) -> CatalogueQuery:
        return CatalogueQuery(**options)

    def fetch(self, query: CatalogueQuery, **kw: Any):
        return fetch(query, **kw)
