"""One planet table from three catalogues: the NASA Exoplanet Archive, exoplanet.eu and the
Exoplanet Orbit Database (exoplanets.org).

    report = merge_catalogues(nasa="ps.parquet", eu="eu.parquet", org="org.parquet",
                              out="merged.parquet")

Inputs are the Parquet files the fetch commands write (`astrobio fetch nasa-exoplanet`,
`exoplanet-eu`, `exoplanets-org`); this module reads them and imports no plugin.

- Matching: a planet's key is its normalised host name + planet letter
  (:func:`astrobio_cli.data.tables.planet_key`: case, spaces, hyphens, leading zeros and a stellar
  component letter do not count: "WASP-018 b" == "WASP-18 Ab"). Alternate designations are keys
  too (exoplanet.eu `alternate_names`, the Orbit Database `OTHERNAME`, when they end in a planet
  letter), and so is the catalogue's host name + the planet's letter. Rows sharing any key are
  one planet (transitively).
- Units: masses in Earth masses, radii in Earth radii (IAU 2015 nominal values), periods in days,
  temperatures in K, stellar mass/radius in solar units, metallicity in dex, distance in pc.
- For each parameter, every row of every catalogue that has a value is a candidate; the chosen
  one has the smallest relative error (eccentricity and metallicity, which can be 0: the smallest
  absolute error). The error is the mean of the upper and lower errors. A value without an error
  is used only when no candidate has one. Ties go to the NASA archive, then exoplanet.eu, then
  the Orbit Database (NASA `ps` rows: the default parameter set first). Each cell keeps its
  source catalogue and reference (`mass`, `mass_err`, `mass_source`, `mass_ref`).
- Conflicts: each other candidate is compared with the chosen one; when they differ by more
  than `nsigma` times their combined error (the quadrature sum) the pair is a conflict, written
  to `<out stem>.conflicts.parquet`.
- Masses: `mass` is a true mass (NASA `pl_bmasse` unless `pl_bmassprov` says Msini or a
  mass-radius relation; exoplanet.eu `mass` unless "Theoretical"; the Orbit Database `MASS`),
  `msini` a minimum mass.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astrobio_cli.errors import UsageError

# IAU 2015 Resolution B3 nominal values: GM and equatorial radii of Jupiter and the Earth.
GM_JUPITER = 1.2668653e17  # m3 s-2
GM_EARTH = 3.986004e14  # m3 s-2
R_JUPITER = 7.1492e7  # m
R_EARTH = 6.3781e6  # m
M_JUP_EARTH = GM_JUPITER / GM_EARTH  # 317.8284...
R_JUP_EARTH = R_JUPITER / R_EARTH  # 11.2089...

CATALOGUES = ("nasa", "eu", "org")
LABELS = {"nasa": "nasa-exoplanet", "eu": "exoplanet-eu", "org": "exoplanets-org"}
TITLES = {
    "nasa": "the NASA Exoplanet Archive (astrobio fetch nasa-exoplanet)",
    "eu": "exoplanet.eu (astrobio fetch exoplanet-eu)",
    "org": "the Exoplanet Orbit Database (astrobio fetch exoplanets-org)",
}

# unit string (as the fetch commands write them) -> (canonical unit, factor to it)
UNITS: dict[str, tuple[str, float]] = {
    "earthMass": ("earthMass", 1.0),
    "jupiterMass": ("earthMass", M_JUP_EARTH),
    "earthRad": ("earthRad", 1.0),
    "jupiterRad": ("earthRad", R_JUP_EARTH),
    "day": ("day", 1.0),
    "d": ("day", 1.0),
    "h": ("day", 1.0 / 24.0),
    "yr": ("day", 365.25),
    "AU": ("AU", 1.0),
    "au": ("AU", 1.0),
    "K": ("K", 1.0),
    "solMass": ("solMass", 1.0),
    "solRad": ("solRad", 1.0),
    "dex": ("dex", 1.0),
    "pc": ("pc", 1.0),
    "": ("", 1.0),
}


@dataclass(frozen=True)
class Param:
    name: str
    unit: str  # canonical unit
    description: str
    absolute: bool = False  # rank by absolute error (values may be 0)


PARAMS: tuple[Param, ...] = (
    Param("mass", "earthMass", "Planet mass (measured)"),
    Param("msini", "earthMass", "Planet minimum mass M*sin(i)"),
    Param("radius", "earthRad", "Planet radius"),
    Param("period", "day", "Orbital period"),
    Param("semi_major_axis", "AU", "Orbit semi-major axis"),
    Param("eccentricity", "", "Orbital eccentricity", absolute=True),
    Param("eq_temp", "K", "Planet equilibrium temperature"),
    Param("star_teff", "K", "Stellar effective temperature"),
    Param("star_mass", "solMass", "Stellar mass"),
    Param("star_radius", "solRad", "Stellar radius"),
    Param("star_met", "dex", "Stellar metallicity [Fe/H]", absolute=True),
    Param("distance", "pc", "Distance of the system"),
)
PARAM = {p.name: p for p in PARAMS}


@dataclass(frozen=True)
class Source:
    """Where a parameter is in one catalogue: value column, error columns, default unit."""

    value: str
    up: str | None
    lo: str | None
    unit: str
    sym: str | None = None  # a symmetric error column (Orbit Database `UX`)
    ref: str | None = None  # a reference column for this parameter


def _nasa(col: str, unit: str) -> Source:
    return Source(col, f"{col}err1", f"{col}err2", unit, ref=f"{col}_reflink")


def _eu(col: str, unit: str) -> Source:
    return Source(col, f"{col}_error_max", f"{col}_error_min", unit)


def _org(col: str, unit: str) -> Source:
    return Source(col, f"{col}UPPER", f"{col}LOWER", unit, sym=f"U{col}", ref=f"{col}REF")


# catalogue -> parameter -> candidate columns (the first one present is used)
MAP: dict[str, dict[str, list[Source]]] = {
    "nasa": {
        "mass": [
            _nasa("pl_masse", "earthMass"),
            _nasa("pl_bmasse", "earthMass"),
            _nasa("pl_bmassj", "jupiterMass"),
        ],
        "msini": [_nasa("pl_msinie", "earthMass"), _nasa("pl_bmasse", "earthMass")],
        "radius": [_nasa("pl_rade", "earthRad"), _nasa("pl_radj", "jupiterRad")],
        "period": [_nasa("pl_orbper", "day")],
        "semi_major_axis": [_nasa("pl_orbsmax", "AU")],
        "eccentricity": [_nasa("pl_orbeccen", "")],
        "eq_temp": [_nasa("pl_eqt", "K")],
        "star_teff": [_nasa("st_teff", "K")],
        "star_mass": [_nasa("st_mass", "solMass")],
        "star_radius": [_nasa("st_rad", "solRad")],
        "star_met": [_nasa("st_met", "dex")],
        "distance": [_nasa("sy_dist", "pc")],
    },
    "eu": {
        "mass": [_eu("mass", "jupiterMass")],
        "msini": [_eu("mass_sini", "jupiterMass")],
        "radius": [_eu("radius", "jupiterRad")],
        "period": [_eu("orbital_period", "day")],
        "semi_major_axis": [_eu("semi_major_axis", "AU")],
        "eccentricity": [_eu("eccentricity", "")],
        "eq_temp": [_eu("temp_calculated", "K")],
        "star_teff": [_eu("star_teff", "K")],
        "star_mass": [_eu("star_mass", "solMass")],
        "star_radius": [_eu("star_radius", "solRad")],
        "star_met": [_eu("star_metallicity", "dex")],
        "distance": [_eu("star_distance", "pc")],
    },
    "org": {
        "mass": [_org("MASS", "jupiterMass")],
        "msini": [_org("MSINI", "jupiterMass")],
        "radius": [_org("R", "jupiterRad")],
        "period": [_org("PER", "day")],
        "semi_major_axis": [_org("A", "AU")],
        "eccentricity": [_org("ECC", "")],
        "star_teff": [_org("TEFF", "K")],
        "star_mass": [_org("MSTAR", "solMass")],
        "star_radius": [_org("RSTAR", "solRad")],
        "star_met": [_org("FE", "dex")],
        "distance": [_org("DIST", "pc")],
    },
}
# identifier columns: (name, host, aliases, row reference)
IDS: dict[str, tuple[str, str, str | None, str | None]] = {
    "nasa": ("pl_name", "hostname", None, "pl_refname"),
    "eu": ("name", "star_name", "alternate_names", None),
    "org": ("NAME", "STAR", "OTHERNAME", None),
}
NASA_MSINI = {"msini"}
NASA_NOT_MASS = {"msini", "m-r relationship", "model", "unspecified"}
EU_NOT_MEASURED = {"theoretical"}

_REFLINK = re.compile(r"<a[^>]*href=[\"']?([^\"' >]+)[^>]*>(.*?)</a>", re.I | re.S)


# -- reading ---------------------------------------------------------------------------------


@dataclass
class Input:
    cat: str
    path: Path
    columns: dict[str, list[Any]]
    units: dict[str, str]
    rows: int


def _unit_of(meta: dict[bytes, bytes] | None) -> str | None:
    if not meta or b"unit" not in meta:
        return None
    return meta[b"unit"].decode()


def _needed(cat: str) -> set[str]:
    """The columns of a catalogue the merge reads (the rest are never converted)."""
    need = {c for c in IDS[cat] if c} | {"default_flag", "pl_bmassprov", "updated"}
    for sources in MAP[cat].values():
        for s in sources:
            need |= {c for c in (s.value, s.up, s.lo, s.sym, s.ref) if c}
            need |= {f"{s.value}URL", f"{s.value}_measurement_type"}
    return need


def read_input(cat: str, path: Path | str) -> Input:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    flag = f"--{cat}"
    if not path.is_file():
        raise UsageError(f"{flag} {path}: no such file; give the Parquet that {TITLES[cat]} wrote")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UsageError(
            f"{flag} {path} is not a readable Parquet file ({exc}); give the Parquet that "
            f"{TITLES[cat]} wrote"
        ) from None
    name_col = IDS[cat][0]
    if name_col not in table.column_names:
        raise UsageError(
            f"{flag} {path} has no column {name_col!r}, so it is not a table of {TITLES[cat]}; "
            "check which file goes with which option"
        )
    need = _needed(cat)
    cols = {n: table.column(n).to_pylist() for n in table.column_names if n in need}
    units = {f.name: u for f in table.schema if (u := _unit_of(f.metadata))}
    return Input(cat, path, cols, units, table.num_rows)


def _num(v: Any) -> float:
    if v is None:
        return math.nan
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def _text(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    s = str(v).strip()
    return s or None


def _ref_text(v: Any) -> str | None:
    """A NASA reflink (`<a refstr=... href=URL target=ref>Author et al. 2020</a>`) as
    'Author et al. 2020 (URL)'; other references as given."""
    s = _text(v)
    if s is None:
        return None
    m = _REFLINK.search(s)
    if m:
        return f"{' '.join(m.group(2).split())} ({m.group(1)})"
    return s


def _factor(inp: Input, src: Source, param: Param) -> float:
    unit = inp.units.get(src.value) or src.unit
    known = UNITS.get(unit)
    if known is None or known[0] != param.unit:
        raise UsageError(
            f"--{inp.cat} {inp.path}: column {src.value!r} has the unit {unit!r}, which cannot be "
            f"converted to {param.unit or 'a plain number'} ({param.description}); was the file "
            "written by the fetch command?"
        )
    return known[1]


# -- candidates --------------------------------------------------------------------------------


@dataclass
class Candidate:
    cat: str
    order: int  # rank among rows of the same catalogue (NASA: default parameter set first)
    value: float
    err: float  # symmetric error (NaN when none)
    ref: str | None
    row_name: str

    def precision(self, absolute: bool) -> float:
        if not (self.err > 0):
            return math.inf
        if absolute:
            return self.err
        return self.err / abs(self.value) if self.value != 0 else math.inf


def _err(up: float, lo: float, sym: float) -> float:
    up, lo = abs(up), abs(lo)
    have = [e for e in (up, lo) if not math.isnan(e)]
    if have:
        return sum(have) / len(have)
    return abs(sym)


def _row_candidates(inp: Input) -> list[dict[str, Candidate]]:
    """For each row of `inp`: parameter -> its candidate (converted)."""
    cols, n = inp.columns, inp.rows
    name_col, _host_col, _alias_col, ref_col = IDS[inp.cat]
    names = cols[name_col]
    row_refs = cols.get(ref_col, [None] * n) if ref_col else [None] * n
    out: list[dict[str, Candidate]] = [{} for _ in range(n)]
    order = list(range(n))
    if inp.cat == "nasa" and "default_flag" in cols:
        order = sorted(range(n), key=lambda i: (0 if _num(cols["default_flag"][i]) == 1 else 1, i))
    rank = {i: k for k, i in enumerate(order)}
    prov = cols.get("pl_bmassprov") if inp.cat == "nasa" else None
    for pname, sources in MAP[inp.cat].items():
        param = PARAM[pname]
        src = next((s for s in sources if s.value in cols), None)
        if src is None:
            continue
        f = _factor(inp, src, param)
        vals = cols[src.value]
        ups = cols.get(src.up or "", [None] * n)
        los = cols.get(src.lo or "", [None] * n)
        syms = cols.get(src.sym or "", [None] * n)
        refs = cols.get(src.ref or "", [None] * n)
        for i in range(n):
            v = _num(vals[i])
            if math.isnan(v) or not _keep(inp, pname, src, i, prov):
                continue
            e = _err(_num(ups[i]), _num(los[i]), _num(syms[i]))
            ref = _ref_text(refs[i]) or _ref_text(row_refs[i])
            if ref is None and inp.cat == "eu":
                upd = _text(cols.get("updated", [None] * n)[i])
                ref = f"exoplanet.eu (updated {upd})" if upd else "exoplanet.eu"
            if ref is not None and inp.cat == "org":
                url = _text(cols.get(f"{src.value}URL", [None] * n)[i])
                ref = f"{ref} ({url})" if url else ref
            out[i][pname] = Candidate(
                inp.cat, rank[i], v * f, e * f if not math.isnan(e) else math.nan, ref,
                str(names[i]),
            )  # fmt: skip
    return out


def _keep(inp: Input, pname: str, src: Source, i: int, prov: list[Any] | None) -> bool:
    """Is this value a measurement of `pname` (and not, e.g., an Msini or a model value)?"""
    cols = inp.columns
    if inp.cat == "nasa" and src.value in ("pl_bmasse", "pl_bmassj"):
        p = (_text(prov[i]) or "").lower() if prov is not None else ""
        if pname == "msini":
            return p in NASA_MSINI
        return p not in NASA_NOT_MASS
    if inp.cat == "eu" and pname in ("mass", "radius"):
        kind = _text(cols.get(f"{pname}_measurement_type", [None] * inp.rows)[i]) or ""
        return kind.lower() not in EU_NOT_MEASURED
    return True


# -- matching ----------------------------------------------------------------------------------


_PLANET = re.compile(r"^(?P<host>.*?)\s*(?:\(?(?P<comp>[A-D]{1,4})\)?)?\s*(?P<letter>[b-z])$")
# stellar components whose planets may be named without the component ("55 Cnc e" for
# "55 Cnc Ae", "Kepler-16 b" for "Kepler-16 (AB) b"); a "B" component never is
_LOOSE_COMPONENTS = {"", "a", "ab"}


def _norm(s: str) -> str:
    s = str(s).lower().replace("_", " ").replace("gliese", "gj")
    s = re.sub(r"(?<![0-9.])0+(?=[0-9])", "", s)  # WASP-018 -> wasp-18
    return re.sub(r"[\s\-]+", "", s)


def planet_keys(name: str) -> tuple[str, set[str]]:
    """(exact key, all keys) of a planet name.

    A name ending in a planet letter ("Kepler-10 b", "55 Cnc Ae", "HD 41004 Bb", "Kepler-16
    (AB) b") has the key host + stellar component + "|" + letter, normalised (case, spaces,
    hyphens and leading zeros do not count; Gliese = GJ); with no component, or component A or
    AB, also host + "|" + letter, so that "WASP-18 Ab" meets "WASP-018 b". A name without a
    planet letter ("2M1207 A", "2MASS J0052+0012") is only itself."""
    s = " ".join(str(name).replace("_", " ").split())
    m = _PLANET.match(s)
    explicit = len(s) >= 2 and (s[-2] in " )" or s[-2].isdigit() or s[-2].isupper())
    if m is None or not explicit or not m.group("host"):
        key = f"{_norm(s)}|"
        return key, {key}
    host, comp, letter = _norm(m.group("host")), (m.group("comp") or "").lower(), m.group("letter")
    exact = f"{host}{comp}|{letter}"
    keys = {exact}
    if comp in _LOOSE_COMPONENTS:
        keys.add(f"{host}|{letter}")
    return exact, keys


def row_keys(name: str, aliases: Sequence[str] = ()) -> set[str]:
    """Every key of a catalogue row: its name's and its planet-lettered aliases'."""
    keys = set(planet_keys(name)[1])
    for a in aliases:
        exact, more = planet_keys(a)
        if not exact.endswith("|"):
            keys |= more
    return keys


def _aliases(v: Any) -> list[str]:
    s = _text(v)
    return [a.strip() for a in s.split(",") if a.strip()] if s else []


class _Groups:
    """Union-find over catalogue rows; a group never holds two different planets (exact keys)
    of one catalogue, so an alias that names a sibling cannot join two planets."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.exact: list[dict[str, set[str]]] = []

    def add(self, cat: str, exact: str) -> int:
        self.parent.append(len(self.parent))
        self.exact.append({cat: {exact}})
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        ea, eb = self.exact[ra], self.exact[rb]
        if any(ea[c] != eb[c] for c in ea.keys() & eb.keys()):
            return False
        lo, hi = min(ra, rb), max(ra, rb)  # the earlier row (NASA first) is the root
        self.parent[hi] = lo
        for c, keys in self.exact[hi].items():
            self.exact[lo].setdefault(c, set()).update(keys)
        return True


# -- the merge ---------------------------------------------------------------------------------


@dataclass
class MergeResult:
    out: Path
    conflicts_out: Path
    sidecar: Path
    report: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)  # the merged planets
    conflicts: list[dict[str, Any]] = field(default_factory=list)


def merge(inputs: list[Input], nsigma: float = 1.0) -> tuple[list[dict], list[dict], dict]:
    """The merged rows, the conflict rows and the counts (no files)."""
    groups = _Groups()
    rows: list[tuple[Input, int, str, str | None, list[str], dict[str, Candidate]]] = []
    keysets: list[tuple[set[str], set[str]]] = []
    for inp in inputs:
        name_col, host_col, alias_col, _ref = IDS[inp.cat]
        cands = _row_candidates(inp)
        names = inp.columns[name_col]
        hosts = inp.columns.get(host_col, [None] * inp.rows)
        aliases = inp.columns.get(alias_col, [None] * inp.rows) if alias_col else [None] * inp.rows
        for i in range(inp.rows):
            name = _text(names[i])
            if name is None:
                continue
            al = _aliases(aliases[i])
            exact, own = planet_keys(name)
            groups.add(inp.cat, exact)
            rows.append((inp, i, name, _text(hosts[i]), al, cands[i]))
            keysets.append((own, row_keys(name, al) - own))
    # names first, then aliases: an alias only joins what the names left apart
    owner: dict[str, int] = {}
    for which in (0, 1):
        for gid, ks in enumerate(keysets):
            for k in sorted(ks[which]):
                if k in owner:
                    groups.union(gid, owner[k])
                else:
                    owner[k] = gid
    members: dict[int, list[int]] = {}
    for gid in range(len(rows)):
        members.setdefault(groups.find(gid), []).append(gid)

    cat_rank = {c: k for k, c in enumerate(CATALOGUES)}
    merged: list[dict[str, Any]] = []
    conflicts: list[dict[str, Any]] = []
    per_cat = {inp.cat: 0 for inp in inputs}
    beyond = {inp.cat: 0 for inp in inputs if inp.cat != "nasa"}
    has_nasa = any(inp.cat == "nasa" for inp in inputs)
    for root in sorted(members):
        ids = members[root]
        ids.sort(key=lambda g: (cat_rank[rows[g][0].cat], g))
        cats = sorted({rows[g][0].cat for g in ids}, key=cat_rank.__getitem__)
        for c in cats:
            per_cat[c] += 1
            if has_nasa and "nasa" not in cats and c != "nasa":
                beyond[c] += 1
        first = rows[ids[0]]
        names: list[str] = []
        for g in ids:
            for n in (rows[g][2], *rows[g][4]):
                if n not in names:
                    names.append(n)
        host = next((rows[g][3] for g in ids if rows[g][3]), None)
        rec: dict[str, Any] = {
            "name": first[2],
            "hostname": host,
            "aliases": "; ".join(n for n in names if n != first[2]) or None,
            "catalogues": ",".join(cats),
            "n_catalogues": len(cats),
        }
        for p in PARAMS:
            cands = [rows[g][5][p.name] for g in ids if p.name in rows[g][5]]
            if not cands:
                rec.update({p.name: math.nan, f"{p.name}_err": math.nan,
                            f"{p.name}_source": None, f"{p.name}_ref": None})  # fmt: skip
                continue
            best = min(cands, key=lambda c: (c.precision(p.absolute), cat_rank[c.cat], c.order))
            rec.update({p.name: best.value, f"{p.name}_err": best.err,
                        f"{p.name}_source": LABELS[best.cat], f"{p.name}_ref": best.ref})  # fmt: skip
            for c in cands:
                if c is best or not (c.err > 0 and best.err > 0):
                    continue
                comb = math.hypot(c.err, best.err)
                diff = abs(c.value - best.value)
                if diff > nsigma * comb:
                    conflicts.append({
                        "name": first[2], "parameter": p.name, "unit": p.unit,
                        "value": best.value, "err": best.err, "source": LABELS[best.cat],
                        "ref": best.ref, "other_value": c.value, "other_err": c.err,
                        "other_source": LABELS[c.cat], "other_ref": c.ref,
                        "other_row_name": c.row_name, "difference": diff,
                        "combined_err": comb, "n_sigma": diff / comb,
                    })  # fmt: skip
        merged.append(rec)
    cells = {(c["name"], c["parameter"]) for c in conflicts}
    by_param: dict[str, int] = {}
    for _name, p in cells:
        by_param[p] = by_param.get(p, 0) + 1
    counts = {
        "planets": len(merged),
        "per_catalogue": per_cat,
        "beyond_nasa": beyond if has_nasa else None,
        "in_all": sum(1 for r in merged if r["n_catalogues"] == len(inputs)),
        "conflicts": {
            "pairs": len(conflicts),
            "values": len(cells),
            "by_parameter": dict(sorted(by_param.items())),
            "nsigma": nsigma,
        },
    }
    return merged, conflicts, counts


def _arrow(rows: list[dict[str, Any]], spec: list[tuple[str, str, str, str]], meta: dict):
    """rows -> a pyarrow Table; spec: (name, kind, unit, description)."""
    import pyarrow as pa

    types = {"float": pa.float64(), "int": pa.int64(), "string": pa.string()}
    fields = [pa.field(n, types[k], metadata={"unit": u, "description": d}) for n, k, u, d in spec]
    arrays = [pa.array([r.get(n) for r in rows], type=types[k]) for n, k, _u, _d in spec]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta))


def merged_spec() -> list[tuple[str, str, str, str]]:
    spec = [
        ("name", "string", "", "Planet name (NASA's when it has the planet, else exoplanet.eu's)"),
        ("hostname", "string", "", "Host star name"),
        ("aliases", "string", "", "Other names of the planet in the catalogues, '; '-separated"),
        ("catalogues", "string", "", "Catalogues that have the planet (nasa, eu, org)"),
        ("n_catalogues", "int", "", "How many catalogues have the planet"),
    ]
    for p in PARAMS:
        spec += [
            (p.name, "float", p.unit, p.description),
            (f"{p.name}_err", "float", p.unit, f"{p.description}: 1-sigma error (mean of +/-)"),
            (f"{p.name}_source", "string", "", f"{p.description}: catalogue of the value"),
            (f"{p.name}_ref", "string", "", f"{p.description}: reference of the value"),
        ]
    return spec


CONFLICT_SPEC: list[tuple[str, str, str, str]] = [
    ("name", "string", "", "Planet name"),
    ("parameter", "string", "", "Parameter (a column of the merged table)"),
    ("unit", "string", "", "Unit of the values"),
    ("value", "float", "", "The chosen value"),
    ("err", "float", "", "Its 1-sigma error"),
    ("source", "string", "", "Its catalogue"),
    ("ref", "string", "", "Its reference"),
    ("other_value", "float", "", "The conflicting value"),
    ("other_err", "float", "", "Its 1-sigma error"),
    ("other_source", "string", "", "Its catalogue"),
    ("other_ref", "string", "", "Its reference"),
    ("other_row_name", "string", "", "The planet's name in that catalogue row"),
    ("difference", "float", "", "|value - other_value|"),
    ("combined_err", "float", "", "sqrt(err^2 + other_err^2)"),
    ("n_sigma", "float", "", "difference / combined_err"),
]


def conflicts_path(out: Path) -> Path:
    name = out.name[: -len(".parquet")] if out.name.endswith(".parquet") else out.name
    return out.with_name(f"{name}.conflicts.parquet")


def merge_catalogues(
    *,
    nasa: Path | str | None = None,
    eu: Path | str | None = None,
    org: Path | str | None = None,
    out: Path | str,
    nsigma: float = 1.0,
    progress: Callable[[str], None] | None = None,
) -> MergeResult:
    """Read the given catalogues, merge them, write `out` + conflicts + provenance sidecar."""
    import pyarrow.parquet as pq

    from astrobio_cli import __version__
    from astrobio_cli.data.lineage import file_sha256, input_record
    from astrobio_cli.net import provenance
    from astrobio_cli.net.files import atomic_path

    given = {"nasa": nasa, "eu": eu, "org": org}
    if all(v is None for v in given.values()):
        raise UsageError("give at least one catalogue: --nasa, --eu and/or --org (Parquet files)")
    if not (nsigma > 0):
        raise UsageError(f"--nsigma {nsigma} must be a positive number")
    out = Path(out)
    if out.is_dir():
        raise UsageError(
            f"-o {out} is a directory; give a file name such as {out / 'merged.parquet'}"
        )
    inputs = []
    for cat in CATALOGUES:
        if given[cat] is not None:
            if progress:
                progress(f"reading {LABELS[cat]}: {given[cat]}")
            inputs.append(read_input(cat, given[cat]))  # type: ignore[arg-type]
    rows, conflicts, counts = merge(inputs, nsigma)
    cpath = conflicts_path(out)
    records = {inp.cat: input_record(inp.path, kind="exoplanet-table") for inp in inputs}
    report: dict[str, Any] = {
        "inputs": {
            LABELS[inp.cat]: {
                "path": str(inp.path),
                "sha256": records[inp.cat].get("sha256"),
                "rows": inp.rows,
                "planets": counts["per_catalogue"][inp.cat],
            }
            for inp in inputs
        },
        "planets": counts["planets"],
        "planets_per_catalogue": {LABELS[c]: n for c, n in counts["per_catalogue"].items()},
        "beyond_nasa": (
            {LABELS[c]: n for c, n in counts["beyond_nasa"].items()}
            if counts["beyond_nasa"] is not None
            else None
        ),
        "in_every_catalogue": counts["in_all"],
        "conflicts": counts["conflicts"],
        "outputs": {"merged": str(out), "conflicts": str(cpath)},
    }
    spec = merged_spec()
    rec: dict[str, Any] = {
        "source": "catalog-merge",
        "query": None,
        "options": {"nsigma": nsigma, "units": {p.name: p.unit for p in PARAMS}},
        "inputs": [records[inp.cat] | {"catalogue": LABELS[inp.cat]} for inp in inputs],
        "rows": len(rows),
        "columns": [{"name": n, "type": k, "unit": u, "description": d} for n, k, u, d in spec],
        "report": {k: v for k, v in report.items() if k != "outputs"},
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "astrobio_version": __version__,
        "output": {"path": str(out), "format": "parquet", "sha256": None},
        "conflicts_output": {"path": str(cpath), "format": "parquet", "sha256": None},
    }
    meta = {"astrobio.provenance": json.dumps(rec)}
    with atomic_path(cpath) as tmp:
        pq.write_table(_arrow(conflicts, CONFLICT_SPEC, meta), tmp)
    with atomic_path(out) as tmp:
        pq.write_table(_arrow(rows, spec, meta), tmp)
    rec["output"]["sha256"] = file_sha256(out)
    rec["conflicts_output"]["sha256"] = file_sha256(cpath)
    sidecar = provenance.write_sidecar(out, rec)
    report["outputs"]["provenance"] = str(sidecar)
    return MergeResult(out, cpath, sidecar, report, rows, conflicts)


__all__ = [
    "M_JUP_EARTH",
    "PARAMS",
    "R_JUP_EARTH",
    "MergeResult",
    "merge",
    "merge_catalogues",
    "row_keys",
]
