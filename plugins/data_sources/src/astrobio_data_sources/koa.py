"""The Keck Observatory Archive (KOA) through its public TAP service: a listing + public files.

    q = KoaQuery.from_options(instrument="HIRES", target="HD 209458", date="2010-01-01/2012-12-31")
    q.adql()   # "SELECT koaid, instrume, targname, ... FROM koa_hires WHERE targname = 'HD 209458' ..."
    fetch(q, download=True)   # listing -> typed Parquet; public FITS -> cache + <out>_files/

How it talks to KOA (https://koa.ipac.caltech.edu/UserGuide/, the nexsciTAP server PyKOA uses):
1. `GET https://koa.ipac.caltech.edu/TAP/sync?query=<ADQL>&format=csv` on the instrument's table
   (`--instrument HIRES` -> `koa_hires`; NIRSPEC -> koa_nirspec, OSIRIS -> koa_osiris, ...).
2. `GET https://koa.ipac.caltech.edu/cgi-bin/getKOA/nph-getKOA?return_mode=json&filehand=<filehand>`
   downloads one file (FITS), with Range resume, verified into the cache, then copied into the
   files folder. KOA answers a file it will not give (proprietary, unknown) with a JSON document
   `{"status": "error", "msg": ...}` (or HTTP 401/403): that file is skipped with its message.

Credentials: setting `sources.koa.api_key` (env `ASTROBIO_SOURCES__KOA__API_KEY`) holds the KOA
session cookie (`NAME=VALUE`, as KOA's login service `cgi-bin/KoaAPI/nph-koaLogin` or PyKOA's
`login()` saves it); it is sent as a `Cookie` header and never printed, logged, cached or
written to provenance (`astrobio config show` masks it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astrobio_cli.errors import UsageError
from astrobio_cli.net.errors import ContentError
from astrobio_data_sources.eso import (
    ArchiveResult,
    Product,
    Refused,
    check_limit,
    check_position,
    fetch_listing,
    fits_validator,
    parse_dates,
    quote,
    safe_filename,
    show,
)

__all__ = ["Koa", "KoaQuery", "fetch", "plan", "show"]

SOURCE = "koa"
BASE_URL = "https://koa.ipac.caltech.edu"
DOWNLOAD = "cgi-bin/getKOA/nph-getKOA"
RATE = 2.0  # KOA publishes no figure; stay polite

# --instrument -> the KOA TAP table of its raw files
INSTRUMENTS = {
    "HIRES": "koa_hires",
    "NIRSPEC": "koa_nirspec",
    "OSIRIS": "koa_osiris",
    "NIRC2": "koa_nirc2",
    "MOSFIRE": "koa_mosfire",
    "LRIS": "koa_lris",
    "DEIMOS": "koa_deimos",
    "ESI": "koa_esi",
    "KCWI": "koa_kcwi",
    "NIRES": "koa_nires",
}

# column -> (kind, unit, description): what the listing asks for
COLUMNS: dict[str, tuple[str, str, str]] = {
    "koaid": ("string", "", "KOA file id (INSTR.YYYYMMDD.SSSSS.fits)"),
    "instrume": ("string", "", "Instrument (INSTRUME)"),
    "targname": ("string", "", "Target name (TARGNAME)"),
    "ra": ("float", "deg", "Right ascension (J2000)"),
    "dec": ("float", "deg", "Declination (J2000)"),
    "date_obs": ("string", "", "UT date of the observation (DATE-OBS)"),
    "ut": ("string", "", "UT time of the observation"),
    "elaptime": ("float", "s", "Elapsed exposure time"),
    "koaimtyp": ("string", "", "KOA image type (object, flatlamp, arclamp, bias, dark, ...)"),
    "progid": ("string", "", "Program id"),
    "semid": ("string", "", "Semester id"),
    "filehand": ("string", "", "File handle (the download key)"),
}
IMTYPES = ("object", "flatlamp", "arclamp", "bias", "dark", "focus", "fringe", "undefined")


@dataclass(frozen=True)
class KoaQuery:
    instrument: str
    target: str | None = None
    position: tuple[float, float] | None = None
    radius: float = 0.1  # degrees
    start: Any = None
    end: Any = None
    imtype: str | None = None
    limit: int | None = None

    @classmethod
    def from_options(
        cls,
        instrument: str,
        target: str | None = None,
        ra: float | None = None,
        dec: float | None = None,
        radius: float = 0.1,
        date: str | None = None,
        imtype: str | None = None,
        limit: int | None = None,
    ) -> KoaQuery:
        inst = (instrument or "").strip().upper()
        if inst not in INSTRUMENTS:
            raise UsageError(
                f"--instrument {instrument!r} is not a KOA instrument: use "
                + ", ".join(INSTRUMENTS)
            )
        target = target.strip() if target and target.strip() else None
        position = check_position(ra, dec, radius)
        if target and position:
            raise UsageError("give --target or --ra/--dec, not both")
        start, end = parse_dates(date)
        if imtype is not None:
            imtype = imtype.strip().lower()
            if imtype not in IMTYPES:
                raise UsageError(f"--imtype {imtype!r} is not known: use {', '.join(IMTYPES)}")
        return cls(inst, target, position, radius, start, end, imtype, check_limit(limit))

    @property
    def table(self) -> str:
        return INSTRUMENTS[self.instrument]

    def adql(self) -> str:
        w = []
        if self.target:
            w.append(f"targname = {quote(self.target)}")
        if self.position:
            ra, dec = self.position
            w.append(
                f"CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra!r}, {dec!r}, "
                f"{self.radius!r})) = 1"
            )
        if self.start:
            w.append(f"date_obs >= {quote(self.start.isoformat())}")
        if self.end:
            w.append(f"date_obs <= {quote(self.end.isoformat())}")
        if self.imtype:
            w.append(f"koaimtyp = {quote(self.imtype)}")
        top = f"TOP {self.limit} " if self.limit else ""
        sql = f"SELECT {top}{', '.join(COLUMNS)} FROM {self.table}"
        if w:
            sql += " WHERE " + " AND ".join(w)
        return sql + " ORDER BY koaid"

    def describe(self) -> str:
        parts = [self.instrument]
        if self.target:
            parts.append(f"target {self.target!r}")
        if self.position:
            parts.append(f"within {self.radius:g} deg of ({self.position[0]}, {self.position[1]})")
        if self.start or self.end:
            parts.append(f"dates {self.start or '...'}/{self.end or '...'}")
        if self.imtype:
            parts.append(f"image type {self.imtype}")
        return ", ".join(parts)

    def stem(self) -> str:
        return "-".join(p for p in (self.instrument, self.target, self.imtype) if p)


def _cookie() -> str | None:
    from astrobio_cli.settings import get_settings

    s = get_settings().source(SOURCE)
    value = s.api_key.get_secret_value().strip() if s.api_key is not None else ""
    if value and "=" not in value:
        raise UsageError(
            "setting sources.koa.api_key must be the KOA session cookie as NAME=VALUE (what "
            "KOA's login service sets); it is not shown here"
        )
    return value or None


def _client():
    from astrobio_data_sources._remote import make_client

    return make_client(SOURCE, BASE_URL, default_rate=RATE)


def _headers(cookie: str | None) -> dict[str, str]:
    return {"Cookie": cookie} if cookie else {}


def plan(q: KoaQuery, download: bool = False) -> list[str]:
    """What --dry-run prints: the ADQL and the exact URLs. No network; the cookie never shown."""
    from astrobio_cli.net.tap import TapService

    with _client() as client:
        adql = q.adql()
        lines = [f"ADQL: {adql}", f"GET {TapService(client).sync_url(adql)}"]
        if download:
            url = client.full_url(DOWNLOAD, {"return_mode": "json", "filehand": "<filehand>"})
            lines.append(f"GET {url}  (each file of the listing)")
        if _cookie():
            lines.append("cookie: set (sent as a Cookie header, ***)")
        return lines


def default_out(q: KoaQuery) -> Path:
    from astrobio_data_sources._remote import default_out as _default_out

    return _default_out(SOURCE, q.stem(), q.adql())


def _parse(path: Path, what: str):
    from astrobio_cli.net.content import parse_delimited_file

    try:
        table = parse_delimited_file(
            path,
            expected_columns=list(COLUMNS),
            kinds={k: v[0] for k, v in COLUMNS.items()},  # type: ignore[misc]
            what=what,
        )
    except UnicodeDecodeError as exc:
        raise ContentError(f"{what} sent a body that is not UTF-8 text: {exc}") from None
    for col in table.columns:
        info = COLUMNS.get(col.name.lower())
        if info is not None:
            col.unit, col.description = info[1], info[2]
    return table


def file_validator(what: str):
    """KOA's answer to a file request: FITS, or a JSON `{"status": "error", "msg": ...}`."""
    fits = fits_validator(what)

    def validate(tmp: Path, headers: dict[str, str]) -> None:
        with open(tmp, "rb") as fh:
            head = fh.read(65536)
        if head.lstrip().startswith(b"{"):
            try:
                doc = json.loads(head.decode("utf-8", "replace"))
            except ValueError:
                doc = {}
            msg = doc.get("msg") if isinstance(doc, dict) else None
            raise Refused(f"KOA refused it: {msg or head[:200].decode('utf-8', 'replace')}")
        fits(tmp, headers)

    return validate


def products_of(table: Any) -> list[Product]:
    if "filehand" not in table.names or "koaid" not in table.names:
        raise ContentError("the KOA listing has no koaid/filehand columns; cannot download")
    out, seen = [], set()
    for koaid, fh in zip(
        table.column("koaid").values, table.column("filehand").values, strict=True
    ):
        if not koaid or not fh or koaid in seen:
            continue
        seen.add(koaid)
        name = safe_filename(koaid)
        if not name.lower().endswith((".fits", ".fits.gz", ".fits.fz")):
            name += ".fits"
        out.append(Product(koaid, name, DOWNLOAD, {"return_mode": "json", "filehand": fh}))
    return out


def fetch(
    q: KoaQuery,
    *,
    out: Path | None = None,
    download: bool = False,
    files_dir: Path | None = None,
    refresh: bool = False,
    progress: bool | None = None,
) -> ArchiveResult:
    from astrobio_cli.net.tap import TapService

    cookie = _cookie()
    return fetch_listing(
        source=SOURCE,
        q=q,
        out=out,
        download=download,
        files_dir=files_dir,
        refresh=refresh,
        progress=progress,
        client_factory=_client,
        tap_factory=TapService,
        fmt="csv",
        parse=lambda path, what: (_parse(path, what), None),
        secret=bool(cookie),
        headers=_headers(cookie),
        service="KOA TAP service",
        not_found=lambda: (
            f"KOA has no {q.table} files for {q.describe()}; nothing written "
            "(check the target name, or widen --date/--radius)"
        ),
        hint="" if cookie else "; set sources.koa.api_key to your KOA session cookie",
        extra=lambda client: {
            "table": q.table,
            "authenticated": bool(cookie),
            "service": client.url("TAP/sync"),
        },
        default_out=default_out,
        products_of=products_of,
        validate_file=file_validator,
    )


class Koa:
    """The source object (DataSourceSpec.factory)."""

    name = SOURCE

    def query(self, **options: Any) -> KoaQuery:
        return KoaQuery.from_options(**options)

    def fetch(self, query: KoaQuery, **kw: Any) -> ArchiveResult:
        return fetch(query, **kw)
