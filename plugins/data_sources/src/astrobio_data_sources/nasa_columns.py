"""Units and meanings of the NASA Exoplanet Archive's documented columns (PS and PSCompPars).

From the archive's column definitions
(https://exoplanetarchive.ipac.caltech.edu/docs/API_PS_columns.html). Each measured quantity
`X` comes with `Xerr1` (upper uncertainty, same unit), `Xerr2` (lower uncertainty, same unit),
`Xlim` (limit flag: 1 upper limit, -1 lower limit, 0 neither), `Xstr` (the value as
published, a string) and, in PSCompPars, `X_reflink` (the reference, an HTML link).

Units are astropy unit strings, so `astropy.units.Unit(unit)` parses every one of them and
`QTable.read` of a fetched table gives Quantity columns. The archive's "Earth flux" is the
IAU 2015 nominal total solar irradiance, 1361 W m^-2; its log10 quantities are `dex(...)`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ColumnInfo:
    kind: str  # "int" | "float" | "string"
    unit: str  # astropy unit string ("" for a dimensionless number or a string)
    description: str


def _f(unit: str, description: str) -> ColumnInfo:
    return ColumnInfo("float", unit, description)


def _i(description: str) -> ColumnInfo:
    return ColumnInfo("int", "", description)


def _s(description: str) -> ColumnInfo:
    return ColumnInfo("string", "", description)


EARTH_FLUX = "1361 W / m2"  # IAU 2015 Resolution B3 nominal total solar irradiance

# Base columns as the archive documents them.
DOCUMENTED: dict[str, ColumnInfo] = {
    # names and identifiers
    "pl_name": _s("Planet name"),
    "pl_letter": _s("Planet letter"),
    "hostname": _s("Host star name"),
    "hd_name": _s("HD (Henry Draper) catalogue name"),
    "hip_name": _s("HIPPARCOS catalogue name"),
    "tic_id": _s("TESS Input Catalog ID"),
    "gaia_id": _s("Gaia ID"),
    "gaia_dr2_id": _s("Gaia DR2 ID"),
    "gaia_dr3_id": _s("Gaia DR3 ID"),
    "default_flag": _i("1 when this is the default parameter set"),
    "soltype": _s("Solution type"),
    "pl_controv_flag": _i("1 when the planet is controversial"),
    "pl_refname": _s("Planetary parameter reference"),
    "st_refname": _s("Stellar parameter reference"),
    "sy_refname": _s("System parameter reference"),
    "pl_bmassprov": _s("Provenance of the best mass: Mass, Msini or Msin(i)/sin(i)"),
    "pl_tsystemref": _s("Time reference frame and standard"),
    "st_spectype": _s("Stellar spectral type"),
    "st_metratio": _s("Ratio of the metallicity: [Fe/H] or [M/H]"),
    "rastr": _s("Right ascension, sexagesimal"),
    "decstr": _s("Declination, sexagesimal"),
    "rowupdate": _s("Date of the last update"),
    "pl_pubdate": _s("Planetary parameter reference publication date"),
    "releasedate": _s("Release date"),
    "disc_pubdate": _s("Discovery publication date"),
    "disc_refname": _s("Discovery reference"),
    "disc_locale": _s("Discovery locale: ground, space or multiple"),
    "disc_facility": _s("Discovery facility"),
    "disc_telescope": _s("Discovery telescope"),
    "disc_instrument": _s("Discovery instrument"),
    "discoverymethod": _s("Discovery method"),
    "disc_year": _i("Discovery year"),
    # flags and counts
    "sy_snum": _i("Number of stars in the system"),
    "sy_pnum": _i("Number of planets in the system"),
    "sy_mnum": _i("Number of moons in the system"),
    "cb_flag": _i("1 when the planet orbits a binary system"),
    "rv_flag": _i("1 when detected by radial velocity"),
    "pul_flag": _i("1 when detected by pulsar timing"),
    "ptv_flag": _i("1 when detected by pulsation timing variations"),
    "tran_flag": _i("1 when detected by transits"),
    "ast_flag": _i("1 when detected by astrometry"),
    "obm_flag": _i("1 when detected by orbital brightness modulation"),
    "micro_flag": _i("1 when detected by microlensing"),
    "etv_flag": _i("1 when detected by eclipse timing variations"),
    "ima_flag": _i("1 when detected by imaging"),
    "dkin_flag": _i("1 when detected by disk kinematics"),
    "ttv_flag": _i("1 when the orbit shows transit timing variations"),
    "pl_nnotes": _i("Number of notes"),
    "st_nphot": _i("Number of photometry time series"),
    "st_nrvc": _i("Number of radial velocity time series"),
    "st_nspec": _i("Number of stellar spectra"),
    "pl_nespec": _i("Number of emission spectroscopy measurements"),
    "pl_ntranspec": _i("Number of transmission spectroscopy measurements"),
    "pl_ndispec": _i("Number of direct imaging spectroscopy measurements"),
    # position
    "ra": _f("deg", "Right ascension"),
    "dec": _f("deg", "Declination"),
    "glat": _f("deg", "Galactic latitude"),
    "glon": _f("deg", "Galactic longitude"),
    "elat": _f("deg", "Ecliptic latitude"),
    "elon": _f("deg", "Ecliptic longitude"),
    "x": _f("", "Cartesian X (equatorial, unit sphere)"),
    "y": _f("", "Cartesian Y (equatorial, unit sphere)"),
    "z": _f("", "Cartesian Z (equatorial, unit sphere)"),
    # planet
    "pl_orbper": _f("day", "Orbital period"),
    "pl_orbsmax": _f("AU", "Orbit semi-major axis"),
    "pl_angsep": _f("mas", "Angular separation"),
    "pl_rade": _f("earthRad", "Planet radius"),
    "pl_radj": _f("jupiterRad", "Planet radius"),
    "pl_radelim": _i("Planet radius limit flag"),
    "pl_masse": _f("earthMass", "Planet mass"),
    "pl_massj": _f("jupiterMass", "Planet mass"),
    "pl_msinie": _f("earthMass", "Planet M*sin(i)"),
    "pl_msinij": _f("jupiterMass", "Planet M*sin(i)"),
    "pl_cmasse": _f("earthMass", "Planet M/sin(i)"),
    "pl_cmassj": _f("jupiterMass", "Planet M/sin(i)"),
    "pl_bmasse": _f("earthMass", "Planet mass or M*sin(i)"),
    "pl_bmassj": _f("jupiterMass", "Planet mass or M*sin(i)"),
    "pl_dens": _f("g / cm3", "Planet density"),
    "pl_orbeccen": _f("", "Orbital eccentricity"),
    "pl_insol": _f(EARTH_FLUX, "Insolation flux (Earth flux = 1361 W/m2)"),
    "pl_eqt": _f("K", "Equilibrium temperature"),
    "pl_orbincl": _f("deg", "Orbital inclination"),
    "pl_tranmid": _f("day", "Transit midpoint (Julian date)"),
    "pl_imppar": _f("", "Impact parameter"),
    "pl_trandep": _f("%", "Transit depth"),
    "pl_trandur": _f("hour", "Transit duration"),
    "pl_ratdor": _f("", "Ratio of semi-major axis to stellar radius"),
    "pl_ratror": _f("", "Ratio of planet to stellar radius"),
    "pl_occdep": _f("%", "Occultation depth"),
    "pl_orbtper": _f("day", "Epoch of periastron (Julian date)"),
    "pl_orblper": _f("deg", "Argument of periastron"),
    "pl_rvamp": _f("m / s", "Radial velocity amplitude"),
    "pl_projobliq": _f("deg", "Projected obliquity"),
    "pl_trueobliq": _f("deg", "True obliquity"),
    # star
    "st_teff": _f("K", "Stellar effective temperature"),
    "st_rad": _f("solRad", "Stellar radius"),
    "st_mass": _f("solMass", "Stellar mass"),
    "st_met": _f("dex", "Stellar metallicity"),
    "st_lum": _f("dex(solLum)", "Stellar luminosity, log10(L/Lsun)"),
    "st_logg": _f("dex(cm / s2)", "Stellar surface gravity, log10(g)"),
    "st_age": _f("Gyr", "Stellar age"),
    "st_dens": _f("g / cm3", "Stellar density"),
    "st_vsin": _f("km / s", "Stellar rotational velocity v*sin(i)"),
    "st_rotp": _f("day", "Stellar rotational period"),
    "st_radv": _f("km / s", "Systemic radial velocity"),
    # system
    "sy_pm": _f("mas / yr", "Total proper motion"),
    "sy_pmra": _f("mas / yr", "Proper motion in right ascension"),
    "sy_pmdec": _f("mas / yr", "Proper motion in declination"),
    "sy_dist": _f("pc", "Distance"),
    "sy_plx": _f("mas", "Parallax"),
}

# Photometry: every sy_<band>mag is a magnitude.
BANDS = {
    "b": "B (Johnson)",
    "v": "V (Johnson)",
    "j": "J (2MASS)",
    "h": "H (2MASS)",
    "k": "Ks (2MASS)",
    "u": "u (Sloan)",
    "g": "g (Sloan)",
    "r": "r (Sloan)",
    "i": "i (Sloan)",
    "z": "z (Sloan)",
    "w1": "W1 (WISE)",
    "w2": "W2 (WISE)",
    "w3": "W3 (WISE)",
    "w4": "W4 (WISE)",
    "gaia": "Gaia G",
    "ic": "I (Cousins)",
    "t": "TESS",
    "kep": "Kepler",
}
for _band, _name in BANDS.items():
    DOCUMENTED[f"sy_{_band}mag"] = _f("mag", f"{_name} magnitude")


def column_info(name: str) -> ColumnInfo | None:
    """The documented type, unit and meaning of an archive column, or None if undocumented.

    >>> column_info("pl_orbpererr1")
    ColumnInfo(kind='float', unit='day', description='Orbital period, upper uncertainty')
    >>> column_info("pl_radelim").kind, column_info("st_tefflim").kind
    ('int', 'int')
    """
    n = name.lower()
    if n in DOCUMENTED:
        return DOCUMENTED[n]
    for suffix, what in (("err1", "upper uncertainty"), ("err2", "lower uncertainty")):
        base = DOCUMENTED.get(n.removesuffix(suffix)) if n.endswith(suffix) else None
        if base is not None and base.kind == "float":
            return ColumnInfo("float", base.unit, f"{base.description}, {what}")
    if n.endswith("lim") and n.removesuffix("lim") in DOCUMENTED:
        return _i(
            f"{DOCUMENTED[n.removesuffix('lim')].description}: limit flag (1 upper, -1 lower)"
        )
    if n.endswith("str") and n.removesuffix("str") in DOCUMENTED:
        return _s(f"{DOCUMENTED[n.removesuffix('str')].description}, as published")
    if n.endswith("_reflink"):
        base = n.removesuffix("_reflink")
        desc = DOCUMENTED[base].description if base in DOCUMENTED else base
        return _s(f"{desc}: reference")
    return None
