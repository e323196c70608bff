"""The NASA Exoplanet Archive through its TAP service: ADQL from options, a typed Parquet out.

    query = ExoplanetQuery(table="pscomppars", where="pl_rade < 2", limit=100)
    query.adql()   # "SELECT TOP 100 pl_name, hostname, ... FROM pscomppars WHERE pl_rade < 2"
    result = fetch(query)              # cached, verified, typed; provenance beside the file

Identifiers (table, columns, ORDER BY) are checked before any request. The body is checked
(HTML or a TAP error with 200, header vs requested columns, each row parses) before it enters
the cache, so a bad answer is never cached. Archive column documentation:
https://exoplanetarchive.ipac.caltech.edu/docs/API_PS_columns.html
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astrobio_cli.errors import UsageError
from astrobio_data_sources.nasa_columns import DOCUMENTED, column_info

SOURCE = "nasa-exoplanet"
BASE_URL = "https://exoplanetarchive.ipac.caltech.edu"
DEFAULT_TABLE = "pscomppars"
FORMATS = ("parquet", "csv", "ecsv")


# Every documented archive column's type, unit and meaning (nasa_columns.py). Units follow
# astropy's names, so `astropy.units.Unit(field.metadata[b"unit"])` parses each of them.
COLUMNS = DOCUMENTED

# The default set: what habitability work needs (host star, orbit, size, mass, irradiation).
DEFAULT_COLUMNS: tuple[str, ...] = (
    "pl_name",
    "hostname",
    "discoverymethod",
    "disc_year",
    "pl_orbper",
    "pl_orbsmax",
    "pl_rade",
    "pl_bmasse",
    "pl_dens",
    "pl_orbeccen",
    "pl_insol",
    "pl_eqt",
    "st_teff",
    "st_rad",
    "st_mass",
    "st_met",
    "st_lum",
    "sy_dist",
    "sy_snum",
    "sy_pnum",
)

_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_TABLE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)?$")
_ORDER_TERM = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)(?:\s+(asc|desc))?$", re.I)


def check_table(name: str) -> str:
    name = name.strip()
    if not _TABLE.match(name):
        raise UsageError(
            f"--table {name!r} is not an ADQL table name (letters, digits and _, starting with a "
            "letter; optionally schema.table), e.g. pscomppars or ps"
        )
    return name


def parse_columns(text: str | None) -> list[str]:
    """`"pl_name, pl_rade"` -> ["pl_name", "pl_rade"]; None -> the default set; "*" -> ["*"]."""
    if text is None:
        return list(DEFAULT_COLUMNS)
    if text.strip() == "*":
        return ["*"]
    cols = [c.strip() for c in text.split(",")]
    bad = [c for c in cols if not _IDENT.match(c)]
    if bad or not cols:
        raise UsageError(
            f"--columns: {', '.join(repr(b) for b in bad) or repr(text)} is not an ADQL column "
            "name (letters, digits and _, starting with a letter); give a comma-separated list, "
            "e.g. --columns pl_name,pl_rade, or '*' for all"
        )
    seen = {c.lower() for c in cols}
    if len(seen) != len(cols):
        raise UsageError(f"--columns {text!r} names a column twice")
    return cols


def parse_order_by(text: str | None) -> str | None:
    if text is None or not text.strip():
        return None
    terms = []
    for term in text.split(","):
        m = _ORDER_TERM.match(term.strip())
        if m is None:
            raise UsageError(
                f"--order-by term {term.strip()!r} is not 'column [asc|desc]', "
                "e.g. --order-by 'sy_dist asc, pl_name'"
            )
        terms.append(m.group(1) + (f" {m.group(2).upper()}" if m.group(2) else ""))
    return ", ".join(terms)


def check_where(text: str | None) -> str | None:
    """A light sanity check of an ADQL condition; the server judges the rest."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    outside = re.sub(r"'(?:[^']|'')*'", "''", text)
    if outside.count("'") % 2:
        raise UsageError(
            f"--where {text!r}: a string is not closed; ADQL strings use single quotes, e.g. --where \"discoverymethod = 'Transit'\""
        )
    if ";" in outside:
        raise UsageError(f"--where {text!r}: ';' is not allowed (one condition, no statements)")
    depth = 0
    for ch in outside:
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            break
    if depth:
        raise UsageError(f"--where {text!r}: parentheses do not balance")
    if '"' in outside:
        raise UsageError(
            f"--where {text!r}: ADQL strings use single quotes ('Transit'), not double quotes"
        )
    return text


@dataclass(frozen=True)
class ExoplanetQuery:
    table: str = DEFAULT_TABLE
    columns: list[str] = field(default_factory=lambda: list(DEFAULT_COLUMNS))
    where: str | None = None
    order_by: str | None = None
    limit: int | None = None

    @classmethod
    def from_options(
        cls,
        table: str = DEFAULT_TABLE,
        columns: str | None = None,
        where: str | None = None,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> ExoplanetQuery:
        """Validate command-line options (no network) and build the query."""
        if limit is not None and limit < 1:
            raise UsageError(f"--limit {limit} must be a positive number of rows")
        return cls(
            check_table(table),
            parse_columns(columns),
            check_where(where),
            parse_order_by(order_by),
            limit,
        )

    def adql(self) -> str:
        top = f"TOP {self.limit} " if self.limit else ""
        sql = f"SELECT {top}{', '.join(self.columns)} FROM {self.table}"
        if self.where:
            sql += f" WHERE {self.where}"
        if self.order_by:
            sql += f" ORDER BY {self.order_by}"
        return sql

    @property
    def expected_columns(self) -> list[str] | None:
        return None if self.columns == ["*"] else list(self.columns)


@dataclass
class FetchResult:
    out: Path
    sidecar: Path
    fmt: str
    rows: int
    columns: list[dict[str, Any]]
    adql: str
    url: str
    from_cache: bool
    cache_path: Path
    age_s: float
    bytes: int
    http_status: int | None


def default_out(query: ExoplanetQuery, fmt: str, data_dir: Path) -> Path:
    from astrobio_cli.net.tap import normalise_adql

    tag = hashlib.sha256(normalise_adql(query.adql()).encode()).hexdigest()[:8]
    return data_dir / SOURCE / f"{query.table.replace('.', '_').lower()}-{tag}.{fmt}"


def _client(**kw: Any):
    from astrobio_cli.net.http import HttpClient

    return HttpClient.from_settings(SOURCE, BASE_URL, **kw)


def plan(query: ExoplanetQuery) -> tuple[str, str]:
    """(ADQL, sync URL): what --dry-run prints. No network."""
    from astrobio_cli.net.tap import TapService

    with _client() as client:
        return query.adql(), TapService(client).sync_url(query.adql())


def _parse(path: Path, query: ExoplanetQuery, what: str):
    """The body at `path` as a typed table, streamed from disk (a large table is never held as
    one bytes or str object)."""
    from astrobio_cli.net.content import parse_delimited_file
    from astrobio_cli.net.errors import ContentError

    with open(path, encoding="utf-8", errors="replace") as fh:  # the header names the columns
        header = [h.strip().strip('"') for h in fh.readline().split(",")]
    infos = {h: column_info(h) for h in header}
    kinds = {h: i.kind for h, i in infos.items() if i is not None}
    try:
        table = parse_delimited_file(
            path,
            expected_columns=query.expected_columns,
            kinds=kinds,
            what=what,  # type: ignore[arg-type]
        )
    except UnicodeDecodeError as exc:
        raise ContentError(f"{what} sent a body that is not UTF-8 text: {exc}") from None
    for col in table.columns:
        info = infos.get(col.name) or column_info(col.name)
        if info is not None:
            col.unit, col.description = info.unit, info.description
    return table


def fetch(
    query: ExoplanetQuery,
    *,
    out: Path | None = None,
    fmt: str = "parquet",
    refresh: bool = False,
    use_async: bool = False,
    progress: bool | None = None,
    client: Any = None,
    poll: Any = None,
) -> FetchResult:
    """Run `query` (from the cache when it was asked before), write a typed table + provenance."""
    from astrobio_cli.net import provenance
    from astrobio_cli.net.cache import Cache
    from astrobio_cli.net.content import check_body
    from astrobio_cli.net.errors import ContentError
    from astrobio_cli.net.tables import columns_doc, write_table
    from astrobio_cli.net.tap import PollPolicy, TapService
    from astrobio_cli.settings import get_settings

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r} is not known: use {', '.join(FORMATS)}")
    settings = get_settings()
    out = Path(out) if out is not None else default_out(query, fmt, settings.data_dir)
    if out.is_dir():
        raise UsageError(
            f"--out {out} is a directory; give a file name such as {out / 'planets'}.{fmt}"
        )
    adql = query.adql()
    own_client = client is None
    client = client or _client()
    try:
        tap = TapService(client)
        what = f"the archive ({client.host})"
        parsed: dict[str, Any] = {}

        def validate(tmp: Path, headers: dict[str, str]) -> None:
            with tmp.open("rb") as fh:
                head = fh.read(65536)
            check_body(head, what=what, content_type=headers.get("content-type", ""))
            parsed["table"] = _parse(tmp, query, what)

        if use_async:
            s = settings.source(SOURCE)
            poll = poll or PollPolicy(first=s.backoff, cap=max(s.backoff * 15, 0.05))

            def download(dest: Path):
                return tap.fetch_async(adql, dest, poll=poll, validate=validate, progress=progress)
        else:

            def download(dest: Path):
                return tap.fetch_sync(adql, dest, validate=validate, progress=progress)

        hit = Cache(settings.cache_dir).fetch(
            SOURCE,
            tap.cache_request(adql),
            download,
            refresh=refresh,
            extra={"query": adql, "via": "TAP async" if use_async else "TAP sync"},
        )
        table = parsed.get("table")
        if table is None:  # a cache hit: parse the stored body
            try:
                table = _parse(hit.path, query, f"the cached copy {hit.path}")
            except (ContentError, UnicodeDecodeError) as exc:
                raise ContentError(f"{exc}; run again with --refresh to download it anew") from None

        url = tap.sync_url(adql)
        cols = columns_doc(table)
        body_url = hit.entry.record.get("url") or url  # async: the job's result URL
        rec = provenance.record(
            source=SOURCE,
            url=body_url,
            query=adql,
            hit=hit,
            columns=cols,
            rows=table.num_rows,
            output=out,
            output_format=fmt,
            extra={
                "service": hit.entry.record.get("via", "TAP sync"),
                "sync_url": url,
                "table": query.table,
            },
        )
        digest = write_table(table, out, fmt, provenance=rec)
        rec["output"]["sha256"] = digest
        sidecar = provenance.write_sidecar(out, rec, redact=client.redact)
        return FetchResult(
            out=out,
            sidecar=sidecar,
            fmt=fmt,
            rows=table.num_rows,
            columns=cols,
            adql=adql,
            url=url,
            from_cache=hit.from_cache,
            cache_path=hit.path,
            age_s=hit.entry.age_s,
            bytes=hit.entry.bytes,
            http_status=hit.entry.record.get("status"),
        )
    finally:
        if own_client:
            client.close()


class NasaExoplanetArchive:
    """The source object (DataSourceSpec.factory): the library above, as methods."""

    name = SOURCE
    columns = COLUMNS
    default_columns = DEFAULT_COLUMNS

    def query(self, **options: Any) -> ExoplanetQuery:
        return ExoplanetQuery.from_options(**options)

    def fetch(self, query: ExoplanetQuery, **kw: Any) -> FetchResult:
        return fetch(query, **kw)
