"""The Extrasolar Planets Encyclopaedia (exoplanet.eu) catalogue: its CSV export as typed Parquet.

    result = fetch(CatalogueQuery())          # https://exoplanet.eu/catalog/csv/, cached
    result = fetch(CatalogueQuery(url="mirror/exoplanet_eu.csv"))   # a mirror or a local file

The export (Schneider et al. 2011, A&A 532, A79) has one row per planet and ~98 columns:
`name`, `planet_status`, `mass`, `mass_error_min`, `mass_error_max`, `mass_sini`, `radius`, ...,
`star_name`, `star_teff`, ... Masses are in Jupiter masses and radii in Jupiter radii, as the
export has them (no conversion here; `astrobio catalog merge` converts). Errors are positive
numbers (`_error_min` below, `_error_max` above). Blank numbers become NaN. Each column's unit is
in the Parquet field metadata (`unit`, astropy-style names), as `astrobio fetch nasa-exoplanet`
writes them. The TAP service http://voparis-tap-planeto.obspm.fr/tap (table exoplanet.epn_core)
serves the same catalogue; this source reads the CSV export.

The body is checked before it enters the cache (an HTML page, a header without the catalogue's
columns, a row with the wrong number of fields, e.g. a cut download, are errors), so a bad
answer is never cached. This module also holds what `exoplanets-org` shares with it: one CSV
catalogue from a URL (cached) or a local file, parsed by pyarrow, written with provenance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SOURCE = "exoplanet-eu"
BASE_URL = "https://exoplanet.eu"
PATH = "/catalog/csv/"
RATE = 1.0
REQUIRED = ("name", "mass", "radius", "orbital_period", "star_name")

# Numeric columns that come with `_error_min` / `_error_max`: name -> (unit, description).
_WITH_ERRORS: dict[str, tuple[str, str]] = {
    "mass": ("jupiterMass", "Planet mass"),
    "mass_sini": ("jupiterMass", "Planet minimum mass M*sin(i)"),
    "radius": ("jupiterRad", "Planet radius"),
    "orbital_period": ("day", "Orbital period"),
    "semi_major_axis": ("AU", "Orbit semi-major axis"),
    "eccentricity": ("", "Orbital eccentricity"),
    "inclination": ("deg", "Orbital inclination"),
    "omega": ("deg", "Argument of periastron"),
    "tperi": ("d", "Epoch of periastron (Julian date)"),
    "tconj": ("d", "Epoch of conjunction (Julian date)"),
    "tzero_tr": ("d", "Epoch of primary transit (Julian date)"),
    "tzero_tr_sec": ("d", "Epoch of secondary transit (Julian date)"),
    "lambda_angle": ("deg", "Sky-projected spin-orbit angle"),
    "impact_parameter": ("", "Transit impact parameter"),
    "tzero_vr": ("d", "Epoch of zero radial velocity (Julian date)"),
    "k": ("m / s", "Radial-velocity semi-amplitude"),
    "temp_calculated": ("K", "Planet temperature (calculated)"),
    "geometric_albedo": ("", "Geometric albedo"),
    "star_distance": ("pc", "Distance of the star"),
    "star_metallicity": ("dex", "Stellar metallicity [Fe/H]"),
    "star_mass": ("solMass", "Stellar mass"),
    "star_radius": ("solRad", "Stellar radius"),
    "star_age": ("Gyr", "Stellar age"),
    "star_teff": ("K", "Stellar effective temperature"),
}
_PLAIN_FLOATS: dict[str, tuple[str, str]] = {
    "angular_distance": ("arcsec", "Angular distance of planet and star"),
    "temp_measured": ("K", "Planet temperature (measured)"),
    "hot_point_lon": ("deg", "Longitude of the hottest point"),
    "log_g": ("dex(cm / s2)", "Planet surface gravity, log10(g)"),
    "ra": ("deg", "Right ascension"),
    "dec": ("deg", "Declination"),
    "mag_v": ("mag", "V magnitude of the star"),
    "mag_i": ("mag", "I magnitude of the star"),
    "mag_j": ("mag", "J magnitude of the star"),
    "mag_h": ("mag", "H magnitude of the star"),
    "mag_k": ("mag", "K magnitude of the star"),
}
_STRINGS: dict[str, str] = {
    "name": "Planet name",
    "planet_status": "Status (Confirmed, ...)",
    "updated": "Date of the last update",
    "publication": "Publication status",
    "detection_type": "Detection method(s)",
    "mass_measurement_type": "How the mass was measured",
    "radius_measurement_type": "How the radius was measured",
    "alternate_names": "Other names of the planet, comma-separated",
    "molecules": "Molecules detected",
    "star_name": "Host star name",
    "star_sp_type": "Stellar spectral type",
    "star_detected_disc": "Disc detected around the star",
    "star_magnetic_field": "Stellar magnetic field",
    "star_alternate_names": "Other names of the star, comma-separated",
}
_INTS: dict[str, tuple[str, str]] = {"discovered": ("", "Discovery year")}


def _columns() -> dict[str, tuple[str, str, str]]:
    """name -> (kind, unit, description) of every documented export column."""
    out: dict[str, tuple[str, str, str]] = {}
    for name, (unit, desc) in _WITH_ERRORS.items():
        out[name] = ("float", unit, desc)
        out[f"{name}_error_min"] = ("float", unit, f"{desc}: lower error (positive)")
        out[f"{name}_error_max"] = ("float", unit, f"{desc}: upper error (positive)")
    for name, (unit, desc) in _PLAIN_FLOATS.items():
        out[name] = ("float", unit, desc)
    for name, (unit, desc) in _INTS.items():
        out[name] = ("int", unit, desc)
    for name, desc in _STRINGS.items():
        out[name] = ("string", "", desc)
    return out


COLUMNS = _columns()


@dataclass(frozen=True)
class CatalogueQuery:
    """What to fetch: the default export URL, or `url` (an http(s) URL or a local file)."""

    url: str | None = None


def is_local(url: str | None) -> bool:
    return url is not None and (url.startswith("file:") or "://" not in url)


def local_path(url: str) -> Path:
    if url.startswith("file:"):
        from urllib.parse import unquote, urlsplit

        return Path(unquote(urlsplit(url).path))
    return Path(url).expanduser()


# -- parsing -------------------------------------------------------------------------------------


def _content(msg: str):
    from astrobio_cli.net.errors import ContentError

    return ContentError(msg)


def read_csv(
    path: Path,
    what: str,
    *,
    columns: Mapping[str, tuple[str, str, str]],
    required: tuple[str, ...],
    rename: Mapping[str, str] | None = None,
    comment: str | None = None,
):
    """A CSV catalogue at `path` as a pyarrow Table: known columns typed (float blanks NaN),
    unknown ones as pyarrow infers them; units and descriptions in the field metadata.

    A body that is HTML, lacks a `required` column, has a row with the wrong number of fields
    (a cut download) or no rows is a ContentError naming `what`."""
    import csv

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from astrobio_cli.net.content import check_body

    with open(path, "rb") as fh:
        head = fh.read(65536)
    check_body(head, what=what)
    skip = 0
    if comment:
        for line in head.splitlines():
            if not line.startswith(comment.encode()):
                break
            skip += 1
    lines = head.splitlines()
    if len(lines) <= skip:
        raise _content(f"{what}: the file is empty (no header line)")
    header_line = lines[skip].decode("utf-8", "replace")
    raw = next(csv.reader([header_line]), [])
    names = [(rename or {}).get(n.strip(), n.strip()) for n in raw]
    missing = [c for c in required if c not in names]
    if missing:
        raise _content(
            f"{what}: this is not the catalogue's CSV: no column {', '.join(map(repr, missing))} "
            f"(the header starts {header_line[:120]!r})"
        )
    arrow = {"float": pa.float64(), "int": pa.int64(), "string": pa.string()}
    types = {n: arrow[columns[n][0]] for n in names if n in columns}
    read = pacsv.ReadOptions(
        column_names=names, skip_rows=skip + 1, block_size=1 << 24, use_threads=False
    )
    conv = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)
    try:
        table = pacsv.read_csv(path, read_options=read, convert_options=conv)
    except pa.ArrowInvalid as exc:
        raise _content(
            f"{what}: a row does not parse ({exc}); the download may be cut short or damaged "
            "(run again with --refresh)"
        ) from None
    if table.num_rows == 0:
        raise _content(f"{what}: the catalogue has a header but no rows")
    fields, arrays = [], []
    for f, col in zip(table.schema, table.columns, strict=True):
        kind, unit, desc = columns.get(f.name, ("", "", ""))
        if pa.types.is_floating(col.type):
            col = pc.fill_null(col, math.nan)
        elif pa.types.is_null(col.type):  # a column that is blank everywhere
            col = col.cast(pa.float64() if kind != "string" else pa.string())
            if kind != "string":
                col = pc.fill_null(col, math.nan)
        fields.append(pa.field(f.name, col.type, metadata={"unit": unit, "description": desc}))
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def parse(path: Path, what: str):
    return read_csv(
        path, what, columns=COLUMNS, required=REQUIRED, rename={"# name": "name", "#name": "name"}
    )


# -- fetching ----------------------------------------------------------------------------------


@dataclass
class CsvCatalogue:
    """What a CSV catalogue source is: where it lives and how its body is read."""

    source: str
    base_url: str
    path: str
    title: str
    parse: Callable[[Path, str], Any]
    stem: str
    # turns a failed download (the exception) into the error the user sees; None: re-raise
    on_failure: Callable[[str, Exception], Exception | None] | None = None
    rate: float | None = None
    notes: list[str] = field(default_factory=list)


def _client(cat: CsvCatalogue):
    from astrobio_data_sources._remote import make_client

    return make_client(cat.source, cat.base_url, default_rate=cat.rate)


def plan(cat: CsvCatalogue, q: CatalogueQuery) -> list[str]:
    """What --dry-run prints: the request (or the local file) and where the output goes."""
    if is_local(q.url):
        assert q.url is not None
        return [f"READ {local_path(q.url).resolve()}"]
    from astrobio_data_sources._remote import request_line

    with _client(cat) as c:
        return [request_line(c, "GET", q.url or cat.path)]


def _to_table(arrow_table):
    """A pyarrow Table as astrobio's net Table (ArrowColumns), for `write_outputs`."""
    import pyarrow as pa

    from astrobio_cli.net.content import ArrowColumn, Table

    cols = []
    for f, col in zip(arrow_table.schema, arrow_table.columns, strict=True):
        if pa.types.is_floating(f.type):
            kind = "float"
        elif pa.types.is_integer(f.type):
            kind = "int"
        else:
            kind, col = "string", col.cast(pa.string())
        meta = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
        unit, desc = meta.get("unit", ""), meta.get("description", "")
        cols.append(ArrowColumn(f.name, kind, col, unit, desc))  # type: ignore[arg-type]
    return Table(cols)


def _local(cat: CsvCatalogue, src: Path, out: Path):
    """A local copy (or a mirror on disk): parsed and written with provenance, no cache."""
    import datetime as dt
    import json

    from astrobio_cli import __version__
    from astrobio_cli.data.lineage import file_sha256
    from astrobio_cli.errors import UsageError
    from astrobio_cli.net import provenance
    from astrobio_cli.net.tables import columns_doc, write_table
    from astrobio_data_sources._remote import SourceResult

    if not src.is_file():
        raise UsageError(
            f"--url {src}: no such file; give an http(s) URL or the path of a local copy of the "
            f"{cat.title} CSV"
        )
    arrow = cat.parse(src, f"{cat.title} file {src}")
    table = _to_table(arrow)
    stat = src.stat()
    rec: dict[str, Any] = {
        "source": cat.source,
        "url": src.resolve().as_uri(),
        "query": None,
        "retrieved_at": dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC).isoformat(
            timespec="seconds"
        ),
        "http_status": None,
        "bytes": stat.st_size,
        "sha256": file_sha256(src),
        "from_cache": False,
        "local_file": str(src.resolve()),
        "rows": table.num_rows,
        "columns": columns_doc(table),
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "astrobio_version": __version__,
        "output": {"path": str(out), "format": "parquet", "sha256": None},
    }
    rec["output"]["sha256"] = write_table(
        table, out, "parquet", provenance=json.loads(json.dumps(rec))
    )
    sidecar = provenance.write_sidecar(out, rec)
    return SourceResult(
        source=cat.source,
        rows=table.num_rows,
        columns=rec["columns"],
        outputs=[("table", out), ("provenance", sidecar)],
        requests=0,
        cached=0,
        notes=[f"read the local file {src} (no network)"],
    )


def fetch_catalogue(
    cat: CsvCatalogue,
    q: CatalogueQuery,
    *,
    out: Path | None = None,
    refresh: bool = False,
    progress: bool | None = None,
):
    """Download (cached) or read the catalogue, write `out` (Parquet) + provenance sidecar."""
    from astrobio_cli.net.cache import Cache
    from astrobio_cli.settings import get_settings
    from astrobio_data_sources._remote import (
        Fetched,
        SourceResult,
        cached,
        check_out,
        default_out,
        traffic,
        write_outputs,
    )

    out = check_out(out) if out is not None else default_out(cat.source, cat.stem, q.url or "")
    if is_local(q.url):
        assert q.url is not None
        return _local(cat, local_path(q.url), out)
    cache = Cache(get_settings().cache_dir)
    with _client(cat) as client:
        target = q.url or cat.path
        shown = client.full_url(target)
        what = f"{cat.title} ({shown})"
        parsed: dict[str, Any] = {}

        def validate(tmp: Path, _headers: dict[str, str]) -> None:
            parsed["table"] = cat.parse(tmp, what)

        try:
            hit = cached(
                cache,
                client,
                cat.source,
                target,
                refresh=refresh,
                validate=validate,
                progress=progress,
            )
        except Exception as exc:
            better = cat.on_failure(shown, exc) if cat.on_failure is not None else None
            if better is None:
                raise
            raise better from None
        arrow = parsed.get("table")
        if arrow is None:  # a cache hit: the stored body was checked when it was stored
            arrow = cat.parse(hit.path, f"the cached copy {hit.path}")
        table = _to_table(arrow)
        fetched = [Fetched(shown, hit)]
        sidecar, _rec = write_outputs(
            table,
            out,
            source=cat.source,
            query=f"GET {shown}",
            fetched=fetched,
            client=client,
            extra={"catalogue": cat.title},
        )
    columns = [
        {"name": c.name, "type": c.kind, "unit": c.unit, "description": c.description}
        for c in table.columns
    ]
    return SourceResult(
        source=cat.source,
        rows=table.num_rows,
        columns=columns,
        outputs=[("table", out), ("provenance", sidecar), ("original", hit.path)],
        notes=list(cat.notes),
        **traffic(fetched),
    )


def _eu_failure(url: str, exc: Exception) -> Exception | None:
    from astrobio_data_sources._remote import HttpStatusError, NotFoundError

    if isinstance(exc, HttpStatusError) and exc.status in (404, 410):
        return NotFoundError(
            f"exoplanet.eu: {url} was not found (HTTP {exc.status}); the export may have moved: "
            "see https://exoplanet.eu/catalog/ for the current CSV link and pass it with --url "
            "(or set sources.exoplanet-eu.base_url)"
        )
    return None


CATALOGUE = CsvCatalogue(
    source=SOURCE,
    base_url=BASE_URL,
    path=PATH,
    title="exoplanet.eu",
    parse=parse,
    stem="exoplanet-eu",
    on_failure=_eu_failure,
    rate=RATE,
)


def fetch(q: CatalogueQuery | None = None, **kw: Any):
    return fetch_catalogue(CATALOGUE, q or CatalogueQuery(), **kw)


def result_json(r) -> dict[str, Any]:
    """A SourceResult as plain data (what --json prints)."""
    return {
        "source": r.source,
        "rows": r.rows,
        "columns": r.columns,
        "out": str(r.outputs[0][1]) if r.outputs else None,
        "outputs": {label: str(p) for label, p in r.outputs},
        "requests": r.requests,
        "cached": r.cached,
        "bytes": r.bytes,
        "from_cache": r.from_cache,
        "notes": r.notes,
    }


class ExoplanetEu:
    """The source object (DataSourceSpec.factory)."""

    name = SOURCE
    columns = COLUMNS

    def query(self, **options: Any) -> CatalogueQuery:
        return CatalogueQuery(**options)

    def fetch(self, query: CatalogueQuery, **kw: Any):
        return fetch(query, **kw)
