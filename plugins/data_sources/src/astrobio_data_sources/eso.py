"""The ESO Science Archive through its TAP service (`tap_obs`): ObsCore listing + public products.

    q = EsoQuery.from_options(instrument="HARPS", target="HD 40307", date="2010-01-01/2012-12-31")
    q.adql()   # "SELECT TOP ... obs_id, dp_id, ... FROM ivoa.ObsCore WHERE instrument_name = 'HARPS' ..."
    fetch(q, download=True)   # listing -> typed Parquet; public FITS -> cache + <out>_files/

How it talks to ESO (https://archive.eso.org/programmatic/):
1. `GET https://archive.eso.org/tap_obs/sync?query=<ADQL>&format=votable` on the `ivoa.ObsCore`
   table (ESO's ObsCore with its extra columns dp_id, obs_release_date, ...). The answer is a
   VOTable; `INFO name="QUERY_STATUS" value="ERROR"` is an error, `OVERFLOW` a cut answer.
2. `GET https://dataportal.eso.org/dataPortal/file/<dp_id>` downloads a product (FITS), streamed
   with Range resume, verified (size, sha256, FITS signature) into the cache, then copied (to a
   temporary name, renamed) into the files folder. A product whose `obs_release_date` is still in
   the future is proprietary: skipped with a message, unless a token is set.

Authentication: setting `sources.eso.api_key` (env `ASTROBIO_SOURCES__ESO__API_KEY`) holds an
ESO token (from https://www.eso.org/sso/oidc/token); it is sent as `Authorization: Bearer ...`
to the TAP service and the data portal, never printed, logged, cached or written to provenance
(`astrobio config show` masks it). A base_url setting (a mirror, a test server) serves both the
TAP service and `/dataPortal/file/`.

The generic parts (VOTable -> typed table, product downloads, the summary) are reused by
:mod:`astrobio_data_sources.koa`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astrobio_cli.errors import UsageError
from astrobio_cli.net.errors import ContentError

SOURCE = "eso"
BASE_URL = "https://archive.eso.org"
TAP_SYNC = "tap_obs/sync"
TAP_ASYNC = "tap_obs/async"
DATAPORTAL = "https://dataportal.eso.org"
FILE_PATH = "dataPortal/file"
TABLE = "ivoa.ObsCore"
RATE = 2.0  # ESO publishes no figure; stay polite
MJD0 = dt.date(1858, 11, 17)

# ObsCore columns asked for (the standard names plus ESO's dp_id and obs_release_date).
COLUMNS: tuple[str, ...] = (
    "obs_id",
    "dp_id",
    "obs_collection",
    "instrument_name",
    "target_name",
    "s_ra",
    "s_dec",
    "t_min",
    "t_max",
    "t_exptime",
    "dataproduct_type",
    "calib_level",
    "proposal_id",
    "obs_release_date",
    "access_url",
    "access_estsize",
)
DP_TYPES = ("image", "cube", "spectrum", "sed", "timeseries", "visibility", "measurements")

_INSTRUMENT = re.compile(r"^[A-Za-z0-9_/+-]{1,40}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def quote(text: str) -> str:
    """An ADQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def parse_dates(text: str | None, opt: str = "--date") -> tuple[dt.date | None, dt.date | None]:
    """'2019-01-01/2019-12-31', '2019-01-01/' (on or after), '/2019-12-31', or one night."""
    if text is None or not text.strip():
        return None, None
    text = text.strip()
    parts = text.split("/") if "/" in text else [text, text]
    if len(parts) != 2 or not any(p.strip() for p in parts):
        raise UsageError(
            f"{opt} {text!r}: give START/END (2019-01-01/2019-12-31), START/, /END or one date"
        )
    out: list[dt.date | None] = []
    for p in parts:
        p = p.strip()
        if not p:
            out.append(None)
            continue
        if not _DATE.match(p):
            raise UsageError(f"{opt} {text!r}: {p!r} is not a date YYYY-MM-DD")
        try:
            out.append(dt.date.fromisoformat(p))
        except ValueError as exc:
            raise UsageError(f"{opt} {text!r}: {p!r} is not a date ({exc})") from None
    start, end = out
    if start and end and end < start:
        raise UsageError(f"{opt} {text!r}: the end is before the start")
    return start, end


def check_position(
    ra: float | None, dec: float | None, radius: float, max_radius: float = 10.0
) -> tuple[float, float] | None:
    if ra is None and dec is None:
        return None
    if ra is None or dec is None:
        raise UsageError("a cone search needs both --ra and --dec (degrees, ICRS)")
    if not 0 <= ra < 360:
        raise UsageError(f"--ra {ra} must be in [0, 360) degrees")
    if not -90 <= dec <= 90:
        raise UsageError(f"--dec {dec} must be in [-90, 90] degrees")
    if not 0 < radius <= max_radius:
        raise UsageError(f"--radius {radius} must be in (0, {max_radius:g}] degrees")
    return ra, dec


def check_limit(limit: int | None) -> int | None:
    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit} must be a positive number of rows")
    return limit


@dataclass(frozen=True)
class EsoQuery:
    instrument: str | None = None
    target: str | None = None
    position: tuple[float, float] | None = None
    radius: float = 0.1  # degrees
    start: dt.date | None = None
    end: dt.date | None = None
    dp_type: str | None = None
    limit: int | None = None

    @classmethod
    def from_options(
        cls,
        instrument: str | None = None,
        target: str | None = None,
        ra: float | None = None,
        dec: float | None = None,
        radius: float = 0.1,
        date: str | None = None,
        dp_type: str | None = None,
        limit: int | None = None,
    ) -> EsoQuery:
        """Validate command-line options (no network) and build the query."""
        instrument = instrument.strip().upper() if instrument and instrument.strip() else None
        if instrument and not _INSTRUMENT.match(instrument):
            raise UsageError(
                f"--instrument {instrument!r} is not an instrument name, e.g. HARPS, MUSE, UVES"
            )
        target = target.strip() if target and target.strip() else None
        position = check_position(ra, dec, radius)
        if target and position:
            raise UsageError("give --target or --ra/--dec, not both")
        start, end = parse_dates(date)
        if dp_type is not None:
            dp_type = dp_type.strip().lower()
            if dp_type not in DP_TYPES:
                raise UsageError(f"--dp-type {dp_type!r} is not known: use {', '.join(DP_TYPES)}")
        limit = check_limit(limit)
        if not (instrument or target or position or start or end or dp_type):
            raise UsageError(
                "give at least one of --instrument, --target, --ra/--dec, --date, --dp-type "
                "(the whole archive is millions of products)"
            )
        return cls(instrument, target, position, radius, start, end, dp_type, limit)

    def where(self) -> list[str]:
        w = []
        if self.instrument:
            w.append(f"instrument_name = {quote(self.instrument)}")
        if self.target:
            w.append(f"target_name = {quote(self.target)}")
        if self.position:
            ra, dec = self.position
            w.append(
                f"CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {ra!r}, {dec!r}, "
                f"{self.radius!r})) = 1"
            )
        if self.start:
            w.append(f"t_min >= {(self.start - MJD0).days}")
        if self.end:
            w.append(f"t_min < {(self.end - MJD0).days + 1}")
        if self.dp_type:
            w.append(f"dataproduct_type = {quote(self.dp_type)}")
        return w

    def adql(self) -> str:
        top = f"TOP {self.limit} " if self.limit else ""
        sql = f"SELECT {top}{', '.join(COLUMNS)} FROM {TABLE}"
        if w := self.where():
            sql += " WHERE " + " AND ".join(w)
        return sql + " ORDER BY t_min, dp_id"

    def describe(self) -> str:
        parts = []
        if self.instrument:
            parts.append(f"instrument {self.instrument}")
        if self.target:
            parts.append(f"target {self.target!r}")
        if self.position:
            parts.append(f"within {self.radius:g} deg of ({self.position[0]}, {self.position[1]})")
        if self.start or self.end:
            parts.append(f"dates {self.start or '...'}/{self.end or '...'}")
        if self.dp_type:
            parts.append(f"type {self.dp_type}")
        return ", ".join(parts)

    def stem(self) -> str:
        return "-".join(p for p in (self.instrument, self.target, self.dp_type) if p) or "cone"


# -- shared by eso and koa -----------------------------------------------------------------------


class Refused(ContentError):
    """The archive refused one product (proprietary, no permission): skipped, not fatal."""


@dataclass
class Product:
    """One file of a listing to download."""

    ident: str  # the archive's id (dp_id, koaid)
    filename: str  # the name in the files folder
    path: str  # URL or path relative to the client's base URL
    params: dict[str, str] = field(default_factory=dict)
    release: dt.datetime | None = None  # when it becomes public (None: unknown)

    def proprietary(self, now: dt.datetime | None = None) -> bool:
        now = now or dt.datetime.now(dt.UTC)
        return self.release is not None and self.release > now


@dataclass
class ArchiveResult:
    """What an archive fetch returns: the SourceResult fields plus files and skipped products."""

    source: str
    rows: int
    columns: list[dict[str, Any]]
    outputs: list[tuple[str, Path]]
    requests: int
    cached: int
    bytes: int = 0
    notes: list[str] = field(default_factory=list)
    query: str = ""
    files: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def from_cache(self) -> bool:
        return self.requests == 0 and self.cached > 0

    def doc(self) -> dict[str, Any]:
        """The `--json` summary."""
        return {
            "source": self.source,
            "query": self.query,
            "rows": self.rows,
            "columns": [c["name"] for c in self.columns],
            "out": str(self.outputs[0][1]) if self.outputs else None,
            "outputs": {label: str(p) for label, p in self.outputs},
            "requests": self.requests,
            "cached": self.cached,
            "bytes": self.bytes,
            "files": self.files,
            "skipped": self.skipped,
            "notes": self.notes,
        }


def parse_time(text: Any) -> dt.datetime | None:
    """'2014-04-02T08:46:36.137Z' / '2014-04-02' -> an aware UTC datetime (None when blank)."""
    if text is None:
        return None
    s = str(text).strip()
    if not s or s in ("--", "null"):
        return None
    s = s.replace("Z", "+00:00").replace(" ", "T", 1)
    try:
        when = dt.datetime.fromisoformat(s)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def votable_table(path: Path, what: str) -> tuple[Any, str | None]:
    """A TAP VOTable answer -> (typed Table, QUERY_STATUS). An ERROR status is a ContentError."""
    import warnings

    import numpy as np
    from astropy.io.votable import parse

    from astrobio_cli.net.content import Column, Table, check_body

    with open(path, "rb") as fh:
        check_body(fh.read(65536), what=what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vt = parse(str(path), verify="ignore")
    except Exception as exc:
        raise ContentError(f"{what} sent a VOTable that cannot be read ({exc})") from None
    status = None
    infos = list(vt.infos) + [i for r in vt.resources for i in r.infos]
    for info in infos:
        if (info.name or "").upper() == "QUERY_STATUS":
            status = str(info.value).upper()
            if status == "ERROR":
                said = " ".join(str(info.content or "").split()) or "(no message)"
                raise ContentError(f"{what} reported an error: {said}")
    tables = list(vt.iter_tables())
    if not tables:
        raise ContentError(f"{what} sent a VOTable without a TABLE")
    vot = tables[0]
    descriptions = {f.name: " ".join(str(f.description or "").split()) for f in vot.fields}
    t = vot.to_table(use_names_over_ids=True)
    columns = []
    for name in t.colnames:
        c = t[name]
        mask = np.asarray(getattr(c, "mask", np.zeros(len(c), bool)), dtype=bool)
        data = np.asarray(getattr(c, "data", c))
        unit = str(c.unit) if c.unit is not None else ""
        desc = descriptions.get(name, "")
        if mask.ndim > 1:
            mask = mask.any(axis=tuple(range(1, mask.ndim)))
        if data.ndim == 1 and data.dtype.kind in "iu":
            vals = [None if m else int(v) for v, m in zip(data.tolist(), mask, strict=True)]
            columns.append(Column(name, "int", vals, unit, desc))
        elif data.ndim == 1 and data.dtype.kind == "f":
            vals = [float("nan") if m else float(v) for v, m in zip(data, mask, strict=True)]
            columns.append(Column(name, "float", vals, unit, desc))
        else:
            vals = []
            for v, m in zip(data, mask, strict=True):
                if m:
                    vals.append(None)
                    continue
                if isinstance(v, bytes):
                    v = v.decode("utf-8", "replace")
                if isinstance(v, np.ndarray):
                    v = " ".join(str(x) for x in v.tolist())
                s = str(v)
                vals.append(s if s else None)
            columns.append(Column(name, "string", vals, unit, desc))
    return Table(columns), status


def fits_validator(what: str) -> Callable[[Path, dict[str, str]], None]:
    """A download `validate` hook: the body must be FITS (plain, gzip or Unix-compress)."""

    def validate(tmp: Path, headers: dict[str, str]) -> None:
        from astrobio_cli.net.content import check_body

        with open(tmp, "rb") as fh:
            head = fh.read(4096)
        if head.startswith((b"SIMPLE  =", *COMPRESSED)):
            return
        check_body(head, what=what, content_type=headers.get("content-type", ""))
        raise ContentError(f"{what}: not a FITS file (starts {head[:40]!r})")

    return validate


# magic bytes of compressed FITS (gzip .fits.gz, Unix compress .fits.Z as ESO serves raw frames)
COMPRESSED = {b"\x1f\x8b": ".gz", b"\x1f\x9d": ".Z"}


def compressed_suffix(path: Path) -> str:
    with open(path, "rb") as fh:
        return COMPRESSED.get(fh.read(2), "")


def safe_filename(name: str) -> str:
    """A file name for a product id (':' and '/' as '_', like ESO's own downloads)."""
    out = re.sub(r"[^A-Za-z0-9._+-]", "_", name).strip("._") or "product"
    return out[:200]


def download_products(
    *,
    source: str,
    client: Any,
    cache: Any,
    products: Sequence[Product],
    files_dir: Path,
    headers: dict[str, str],
    authenticated: bool,
    refresh: bool,
    progress: bool | None,
    fetched: list[Any],
    validate: Callable[[str], Callable[[Path, dict[str, str]], None]] = fits_validator,
    hint: str = "",
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Download each product through the cache (Range resume, sha256) and copy it into
    `files_dir` atomically. Proprietary products (release date in the future, no token) and
    products the archive refuses (401/403, an error document) are skipped with a reason."""
    import shutil

    from astrobio_cli.net.files import atomic_path
    from astrobio_data_sources._remote import (
        Fetched,
        HttpStatusError,
        NotFoundError,
        Steps,
        cached,
    )

    files: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    now = dt.datetime.now(dt.UTC)
    with Steps(f"{source}: files", total=len(products), enabled=progress) as steps:
        for p in products:
            if p.proprietary(now) and not authenticated:
                skipped.append(
                    {
                        "id": p.ident,
                        "reason": f"proprietary until {p.release:%Y-%m-%d} (release date in "
                        f"the future){hint}",
                    }
                )
                steps.advance()
                continue
            shown = client.full_url(p.path, p.params or None)
            what = f"{source} product {p.ident}"
            refused: list[str] = []

            def checked(tmp: Path, hdrs: dict[str, str], base=validate(what), refused=refused):
                try:
                    base(tmp, hdrs)
                except Refused as exc:  # the download layer re-raises it as a ContentError
                    refused.append(str(exc))
                    raise

            try:
                hit = cached(
                    cache,
                    client,
                    source,
                    p.path,
                    params=p.params or None,
                    headers=headers,
                    key={"file": p.ident, "url": client.url(p.path), "params": p.params},
                    refresh=refresh,
                    validate=checked,
                    progress=progress,
                )
            except ContentError:
                if not refused:
                    raise
                skipped.append({"id": p.ident, "reason": client.redact(refused[0]) + hint})
                steps.advance()
                continue
            except HttpStatusError as exc:
                if exc.status in (401, 403):
                    skipped.append(
                        {
                            "id": p.ident,
                            "reason": f"the archive refused it (HTTP {exc.status}: proprietary "
                            f"or no permission){hint}",
                        }
                    )
                    steps.advance()
                    continue
                if exc.status in (404, 410):
                    raise NotFoundError(
                        f"{what} not found at {shown} (HTTP {exc.status}); the listing and the "
                        "files already downloaded stay in the cache; nothing written"
                    ) from None
                raise
            fetched.append(Fetched(f"GET {shown}", hit))
            dest = files_dir / p.filename
            suffix = compressed_suffix(hit.path)
            if suffix and not dest.name.endswith(suffix):
                dest = dest.with_name(dest.name + suffix)
            with atomic_path(dest) as tmp:
                shutil.copyfile(hit.path, tmp)
            files.append(
                {
                    "id": p.ident,
                    "path": str(dest),
                    "bytes": hit.entry.bytes,
                    "sha256": hit.entry.sha256,
                    "url": shown,
                    "from_cache": bool(hit.from_cache),
                }
            )
            steps.advance()
    return files, skipped


def finish(
    *,
    source: str,
    table: Any,
    out: Path,
    adql: str,
    fetched: list[Any],
    client: Any,
    files: list[dict[str, Any]],
    skipped: list[dict[str, str]],
    files_dir: Path | None,
    status: str | None,
    extra: dict[str, Any],
) -> ArchiveResult:
    """Listing -> Parquet + provenance (every request, every file, every skip)."""
    from astrobio_cli.net.tables import columns_doc
    from astrobio_data_sources._remote import traffic, write_outputs

    notes = []
    if status == "OVERFLOW":
        notes.append(
            f"the archive cut the answer at {table.num_rows} rows (QUERY_STATUS OVERFLOW): "
            "narrow the query or give --limit"
        )
    if skipped:
        notes.append(
            f"skipped {len(skipped)} product(s): "
            + "; ".join(f"{s['id']}: {s['reason']}" for s in skipped[:5])
            + (" ..." if len(skipped) > 5 else "")
        )
    doc = {**extra, "query_status": status, "files": files, "skipped": skipped}
    sidecar, _ = write_outputs(
        table, out, source=source, query=adql, fetched=fetched, client=client, extra=doc
    )
    outputs = [("table", out), ("provenance", sidecar)]
    if files and files_dir is not None:
        outputs.append(("files", files_dir))
        notes.append(f"{len(files)} file(s) downloaded (verified, sha256 in the provenance)")
    return ArchiveResult(
        source=source,
        rows=table.num_rows,
        columns=columns_doc(table),
        outputs=outputs,
        **traffic(fetched),
        notes=notes,
        query=adql,
        files=files,
        skipped=skipped,
    )


def show(result: ArchiveResult, as_json: bool = False) -> None:
    """The command's summary: the rich table, or one JSON object with --json."""
    if as_json:
        import json

        import typer

        typer.echo(json.dumps(result.doc()))
        return
    from astrobio_data_sources._remote import render

    render(result)  # type: ignore[arg-type]


def files_dir_for(out: Path) -> Path:
    return out.with_name(out.stem + "_files")


# -- ESO ---------------------------------------------------------------------------------------


def _token() -> str | None:
    from astrobio_cli.settings import get_settings

    s = get_settings().source(SOURCE)
    return s.api_key.get_secret_value() if s.api_key is not None else None


def _client():
    from astrobio_data_sources._remote import make_client

    return make_client(SOURCE, BASE_URL, default_rate=RATE)


def _file_base() -> str:
    """The data portal; a base_url setting (a mirror, a test server) serves the files too."""
    from astrobio_cli.settings import get_settings

    base = get_settings().source(SOURCE).base_url
    return (base or DATAPORTAL).rstrip("/") + "/" + FILE_PATH


def _auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _tap(client: Any):
    from astrobio_cli.net.tap import TapService

    return TapService(client, sync_path=TAP_SYNC, async_path=TAP_ASYNC)


def plan(q: EsoQuery, download: bool = False) -> list[str]:
    """What --dry-run prints: the ADQL and the exact URLs. No network; the token is never shown."""
    with _client() as client:
        adql = q.adql()
        lines = [f"ADQL: {adql}", f"GET {_tap(client).sync_url(adql, 'votable')}"]
        if download:
            lines.append(f"GET {_file_base()}/<dp_id>  (each public product, FITS)")
        if _token():
            lines.append("token: set (sent as 'Authorization: Bearer ***')")
        return lines


def default_out(q: EsoQuery) -> Path:
    from astrobio_data_sources._remote import default_out as _default_out

    return _default_out(SOURCE, q.stem(), q.adql())


def products_of(table: Any) -> list[Product]:
    from urllib.parse import quote as urlquote

    names = table.names
    if "dp_id" not in names:
        raise ContentError("the ESO listing has no dp_id column; cannot download its products")
    ids = table.column("dp_id").values
    rel = (
        table.column("obs_release_date").values
        if "obs_release_date" in names
        else [None] * len(ids)
    )
    base = _file_base()
    out, seen = [], set()
    for ident, release in zip(ids, rel, strict=True):
        if not ident or ident in seen:
            continue
        seen.add(ident)
        out.append(
            Product(
                ident,
                safe_filename(ident) + ".fits",
                f"{base}/{urlquote(ident, safe=':')}",
                {},
                parse_time(release),
            )
        )
    return out


def fetch(
    q: EsoQuery,
    *,
    out: Path | None = None,
    download: bool = False,
    files_dir: Path | None = None,
    refresh: bool = False,
    progress: bool | None = None,
) -> ArchiveResult:
    token = _token()
    return fetch_listing(
        source=SOURCE,
        q=q,
        out=out,
        download=download,
        files_dir=files_dir,
        refresh=refresh,
        progress=progress,
        client_factory=_client,
        tap_factory=_tap,
        fmt="votable",
        parse=votable_table,
        secret=bool(token),
        headers=_auth_headers(token),
        service="ESO TAP service",
        not_found=lambda: (
            f"ESO has no {TABLE} products for {q.describe()}; nothing written "
            "(check the instrument and target names, or widen --date/--radius)"
        ),
        hint="" if token else "; set sources.eso.api_key to an ESO token to fetch your own",
        extra=lambda client: {
            "table": TABLE,
            "authenticated": bool(token),
            "service": client.url(TAP_SYNC),
        },
        default_out=default_out,
        products_of=products_of,
    )


def fetch_listing(
    *,
    source: str,
    q: Any,
    out: Path | None,
    download: bool,
    files_dir: Path | None,
    refresh: bool,
    progress: bool | None,
    client_factory: Callable[[], Any],
    tap_factory: Callable[[Any], Any],
    fmt: str,
    parse: Callable[[Path, str], tuple[Any, str | None]],
    secret: bool,
    headers: dict[str, str],
    service: str,
    not_found: Callable[[], str],
    hint: str,
    extra: Callable[[Any], dict[str, Any]],
    default_out: Callable[[Any], Path],
    products_of: Callable[[Any], list[Product]],
    validate_file: Any = None,
) -> ArchiveResult:
    """An archive's TAP listing (cached, validated before it is cached) to Parquet and, with
    `download`, its public products: the flow `eso` and `koa` share."""
    from astrobio_cli.net.cache import Cache
    from astrobio_cli.settings import get_settings
    from astrobio_data_sources._remote import Fetched, NotFoundError, check_out

    out = check_out(out) if out is not None else default_out(q)
    adql = q.adql()
    cache = Cache(get_settings().cache_dir)
    with client_factory() as client:
        tap = tap_factory(client)
        what = f"the {service} ({client.host})"
        parsed: dict[str, Any] = {}

        def validate(tmp: Path, _headers: dict[str, str]) -> None:
            parsed["table"] = parse(tmp, what)

        def get(dest: Path):
            return tap.fetch_sync(
                adql, dest, fmt, validate=validate, headers=headers, progress=progress
            )

        request = {**tap.cache_request(adql, fmt), "authenticated": secret}
        hit = cache.fetch(source, request, get, refresh=refresh, extra={"query": adql})
        if "table" not in parsed:  # a cache hit
            try:
                parsed["table"] = parse(hit.path, f"the cached copy {hit.path}")
            except ContentError as exc:
                raise ContentError(f"{exc}; run again with --refresh to download it anew") from None
        table, status = parsed["table"]
        fetched = [Fetched(f"GET {tap.sync_url(adql, fmt)}", hit)]
        if table.num_rows == 0:
            raise NotFoundError(not_found())
        files: list[dict[str, Any]] = []
        skipped: list[dict[str, str]] = []
        fdir = None
        if download:
            fdir = files_dir if files_dir is not None else files_dir_for(out)
            files, skipped = download_products(
                source=source,
                client=client,
                cache=cache,
                products=products_of(table),
                files_dir=fdir,
                headers=headers,
                authenticated=secret,
                refresh=refresh,
                progress=progress,
                fetched=fetched,
                hint=hint,
                **({"validate": validate_file} if validate_file is not None else {}),
            )
        return finish(
            source=source,
            table=table,
            out=out,
            adql=adql,
            fetched=fetched,
            client=client,
            files=files,
            skipped=skipped,
            files_dir=fdir,
            status=status,
            extra=extra(client),
        )


class Eso:
    """The source object (DataSourceSpec.factory)."""

    name = SOURCE

    def query(self, **options: Any) -> EsoQuery:
        return EsoQuery.from_options(**options)

    def fetch(self, query: EsoQuery, **kw: Any) -> ArchiveResult:
        return fetch(query, **kw)
