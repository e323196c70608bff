"""MAST (Mikulski Archive for Space Telescopes): TESS/Kepler light curves and JWST x1d spectra.

    q = LightCurveQuery.from_options(target="TIC 261136679", sector=[1, 2], cadence="short")
    fetch_lightcurves(q)      # Parquet: time, flux, flux_err, quality, mission, sector, ...
    s = SpectrumQuery.from_options(proposal="1366")
    fetch_spectra(s)          # Parquet: wavelength, flux, flux_error (units in the metadata)

How it talks to MAST (https://mast.stsci.edu/api/v0/, "MAST API"):
1. `POST /api/v0/invoke` with form field `request=<JSON>`; services used:
   - `Mast.Name.Lookup` resolves a target name to (ra, dec);
   - `Mast.Caom.Filtered.Position` / `Mast.Caom.Filtered` find observations (CAOM) by position
     or by column filters (obs_collection, dataproduct_type, target_name, sequence_number,
     proposal_id), `pagesize`/`page` paging through `paging.pagesFiltered`;
   - `Mast.Caom.Products` lists each observation's files (dataURI, productSubGroupDescription).
   A response whose `status` is `EXECUTING` is asked again; `ERROR` quotes `msg`.
2. `GET /api/v0.1/Download/file?uri=mast:...` downloads each product; the original FITS stays in
   the cache (verified, sha256) and the provenance lists each one.

Light curves (TESS SPOC `*_lc.fits` / `*_fast-lc.fits`, Kepler `*_llc.fits` / `*_slc.fits`): the
LIGHTCURVE extension's TIME, (PDC)SAP_FLUX(_ERR) and QUALITY (Kepler: SAP_QUALITY) columns,
with MISSION, SECTOR/QUARTER from the primary header and the cadence from TIMEDEL. Kepler
quarters are only known from the header, so --quarter filters after download.
Spectra (JWST `*_x1d.fits`): every EXTRACT1D extension's WAVELENGTH, FLUX, FLUX_ERROR, DQ.
A FITS file without the expected extension or columns is an error naming the file.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astrobio_cli.errors import UsageError
from astrobio_cli.net.pool import DEFAULT_JOBS  # products downloaded at once

BASE_URL = "https://mast.stsci.edu/api"
INVOKE = "v0/invoke"
DOWNLOAD = "v0.1/Download/file"
LC_SOURCE = "mast-lightcurve"
SPEC_SOURCE = "mast-jwst-spectrum"
RATE = 5.0  # MAST publishes no figure; stay polite
PAGE_SIZE = 2000
MISSIONS = {"tess": "TESS", "kepler": "Kepler"}
# productSubGroupDescription of each cadence (TESS SPOC and Kepler pipeline light curves)
CADENCES = {
    "fast": ("FAST-LC",),  # TESS 20 s
    "short": ("LC", "SLC"),  # TESS 120 s, Kepler 60 s
    "long": ("LLC",),  # Kepler 30 min
}
FLUXES = ("pdcsap", "sap")

_TIC = re.compile(r"^\s*tic[\s_-]*(\d{1,10})\s*$", re.I)
_KIC = re.compile(r"^\s*(?:kic[\s_-]*|kplr)(\d{1,9})\s*$", re.I)
_PROPOSAL = re.compile(r"^\d{1,5}$")


def _ints(values: Any, opt: str) -> tuple[int, ...]:
    items = [values] if isinstance(values, (str, int)) else (values or [])
    out = []
    for item in items:
        for tok in str(item).split(","):
            tok = tok.strip()
            if not tok:
                continue
            if not tok.isdigit():
                raise UsageError(f"{opt} {tok!r} is not a number, e.g. {opt} 1,2,3")
            out.append(int(tok))
    return tuple(out)


@dataclass(frozen=True)
class LightCurveQuery:
    target: str
    mission: str | None = None  # "TESS" | "Kepler" | None (both)
    tic: int | None = None
    kic: int | None = None
    sectors: tuple[int, ...] = ()
    quarters: tuple[int, ...] = ()
    cadence: str = "any"
    flux: str = "pdcsap"
    radius_arcsec: float = 2.0

    @classmethod
    def from_options(
        cls,
        target: str,
        mission: str | None = None,
        sector: Any = None,
        quarter: Any = None,
        cadence: str = "any",
        flux: str = "pdcsap",
        radius: float = 2.0,
    ) -> LightCurveQuery:
        target = (target or "").strip()
        if not target:
            raise UsageError("give a target: a name (TOI-700), 'TIC 150428135' or 'KIC 11446443'")
        m = None
        if mission:
            m = MISSIONS.get(mission.lower())
            if m is None:
                raise UsageError(f"--mission {mission!r} is not known: use tess or kepler")
        tic = kic = None
        if mt := _TIC.match(target):
            tic = int(mt.group(1))
            if m == "Kepler":
                raise UsageError(f"{target!r} is a TESS Input Catalog id but --mission is kepler")
            m = "TESS"
        elif mk := _KIC.match(target):
            kic = int(mk.group(1))
            if m == "TESS":
                raise UsageError(f"{target!r} is a Kepler Input Catalog id but --mission is tess")
            m = "Kepler"
        sectors, quarters = _ints(sector, "--sector"), _ints(quarter, "--quarter")
        if sectors and m == "Kepler":
            raise UsageError("--sector is for TESS; Kepler has --quarter")
        if quarters and m == "TESS":
            raise UsageError("--quarter is for Kepler; TESS has --sector")
        if sectors and m is None:
            m = "TESS"
        if quarters and m is None:
            m = "Kepler"
        if cadence not in (*CADENCES, "any"):
            raise UsageError(f"--cadence {cadence!r}: use any, fast (TESS 20 s), short, long")
        if flux not in FLUXES:
            raise UsageError(f"--flux {flux!r}: use pdcsap or sap")
        if not 0 < radius <= 600:
            raise UsageError(f"--radius {radius} must be in (0, 600] arcseconds")
        return cls(target, m, tic, kic, sectors, quarters, cadence, flux, radius)

    @property
    def missions(self) -> list[str]:
        return [self.mission] if self.mission else ["TESS", "Kepler"]

    def filters(self) -> list[dict[str, Any]]:
        f: list[dict[str, Any]] = [
            {"paramName": "obs_collection", "values": self.missions},
            {"paramName": "dataproduct_type", "values": ["timeseries"]},
        ]
        if self.tic is not None:
            f.append({"paramName": "target_name", "values": [str(self.tic)]})
        if self.kic is not None:
            f.append({"paramName": "target_name", "values": [f"kplr{self.kic:09d}"]})
        if self.sectors:
            f.append({"paramName": "sequence_number", "values": list(self.sectors)})
        return f

    def wants_product(self, p: dict[str, Any]) -> bool:
        name = str(p.get("productFilename", ""))
        sub = str(p.get("productSubGroupDescription", "")).upper()
        if not name.endswith("lc.fits") or p.get("productType", "SCIENCE") != "SCIENCE":
            return False
        if sub not in {s for v in CADENCES.values() for s in v}:
            return False
        return self.cadence == "any" or sub in CADENCES[self.cadence]


@dataclass(frozen=True)
class SpectrumQuery:
    target: str | None = None
    proposal: str | None = None
    radius_arcsec: float = 3.0
    level: int | None = None

    @classmethod
    def from_options(
        cls,
        target: str | None = None,
        proposal: str | None = None,
        radius: float = 3.0,
        level: int | None = None,
    ) -> SpectrumQuery:
        target = target.strip() if target and target.strip() else None
        proposal = proposal.strip() if proposal and proposal.strip() else None
        if bool(target) == bool(proposal):
            raise UsageError("give --target (WASP-39) or --proposal (1366), one of them")
        if proposal and not _PROPOSAL.match(proposal):
            raise UsageError(f"--proposal {proposal!r} is not a JWST program number, e.g. 1366")
        if level not in (None, 2, 3):
            raise UsageError(f"--level {level} must be 2 (per exposure) or 3 (combined)")
        if not 0 < radius <= 600:
            raise UsageError(f"--radius {radius} must be in (0, 600] arcseconds")
        return cls(target, proposal, radius, level)

    @property
    def missions(self) -> list[str]:
        return ["JWST"]

    def filters(self) -> list[dict[str, Any]]:
        f: list[dict[str, Any]] = [
            {"paramName": "obs_collection", "values": ["JWST"]},
            {"paramName": "dataproduct_type", "values": ["spectrum"]},
        ]
        if self.proposal:
            f.append({"paramName": "proposal_id", "values": [self.proposal]})
        return f

    def wants_product(self, p: dict[str, Any]) -> bool:
        name = str(p.get("productFilename", ""))
        if not name.endswith("_x1d.fits"):
            return False
        level = _int(p.get("calib_level"))
        return self.level is None or level is None or level == self.level


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


# -- requests ----------------------------------------------------------------------------------


def lookup_request(name: str) -> dict[str, Any]:
    return {
        "service": "Mast.Name.Lookup",
        "params": {"input": name, "format": "json"},
        "format": "json",
    }


def search_request(
    q: Any, position: str | None, page: int, pagesize: int | None = None
) -> dict[str, Any]:
    params: dict[str, Any] = {"columns": "*", "filters": q.filters()}
    service = "Mast.Caom.Filtered"
    if position is not None:
        params["position"] = position
        service = "Mast.Caom.Filtered.Position"
    return {
        "service": service,
        "params": params,
        "format": "json",
        "pagesize": pagesize or PAGE_SIZE,
        "page": page,
    }


def products_request(obsids: list[str], page: int, pagesize: int | None = None) -> dict[str, Any]:
    return {
        "service": "Mast.Caom.Products",
        "params": {"obsid": ",".join(obsids)},
        "format": "json",
        "pagesize": pagesize or PAGE_SIZE,
        "page": page,
    }


def _client(source: str):
    from astrobio_data_sources._remote import make_client

    return make_client(source, BASE_URL, default_rate=RATE)


def _needs_lookup(q: Any) -> bool:
    if isinstance(q, LightCurveQuery):
        return q.tic is None and q.kic is None
    return q.target is not None


def plan(q: Any, source: str) -> list[str]:
    """The exact first requests, and the shape of the ones that depend on their answers."""
    with _client(source) as c:
        url = c.full_url(INVOKE)
        lines = []
        if _needs_lookup(q):
            lines.append(f"POST {url}  request={encode(lookup_request(q.target))}")
            pos = f"<ra>, <dec>, {q.radius_arcsec / 3600:.6f}"
            lines.append(f"POST {url}  request={encode(search_request(q, pos, 1))}")
        else:
            lines.append(f"POST {url}  request={encode(search_request(q, None, 1))}")
        lines.append(f"POST {url}  request={encode(products_request(['<obsid>', '...'], 1))}")
        lines.append(f"GET {c.full_url(DOWNLOAD)}?uri=<dataURI of each product>")
        return lines


def encode(request: dict[str, Any]) -> str:
    """The `request` form field exactly as sent (and as --dry-run prints it)."""
    return json.dumps(request, sort_keys=True)


class _Executing(Exception):
    """MAST answered `status: EXECUTING`: ask again (not cached)."""


def _check_mast(doc: Any, what: str) -> None:
    from astrobio_cli.net.errors import ContentError

    if not isinstance(doc, dict):
        raise ContentError(f"{what}: expected a JSON object, got {str(doc)[:200]!r}")
    status = str(doc.get("status", "")).upper()
    if status == "EXECUTING":
        raise _Executing()
    if status == "ERROR":
        raise ContentError(f"{what}: MAST reported an error: {doc.get('msg') or doc}")


class Mast:
    """One fetch's conversation with MAST: cached invoke calls and product downloads."""

    def __init__(
        self,
        source: str,
        client: Any,
        refresh: bool,
        progress: bool | None,
        sleep=time.sleep,
        jobs: int = 1,
    ):
        from astrobio_cli.net.cache import Cache
        from astrobio_cli.settings import get_settings

        self.source, self.client, self.refresh, self.progress = source, client, refresh, progress
        self.jobs = jobs
        self.cache = Cache(get_settings().cache_dir)
        self.fetched: list[Any] = []
        self.sleep = sleep
        self.what = f"MAST ({client.host})"

    def invoke(self, request: dict[str, Any]) -> dict[str, Any]:
        from astrobio_data_sources._remote import Fetched, cached, json_body, json_validator

        service = request["service"]
        what = f"{self.what} {service}"
        data = {"request": encode(request)}
        refresh = self.refresh
        for attempt in range(30):
            try:
                hit = cached(
                    self.cache,
                    self.client,
                    self.source,
                    INVOKE,
                    method="POST",
                    data=data,
                    key={"invoke": request},
                    refresh=refresh,
                    validate=json_validator(what, lambda d: _check_mast(d, what)),
                    progress=False,
                )
            except _Executing:
                self.sleep(min(0.5 * 2**attempt, 10.0))
                refresh = True
                continue
            self.fetched.append(
                Fetched(f"POST {self.client.full_url(INVOKE)} request={data['request']}", hit)
            )
            return json_body(hit.path, what)
        from astrobio_cli.net.errors import NetworkError

        raise NetworkError(f"{what}: still EXECUTING after 30 polls; try again later")

    def paged(self, make: Any) -> list[dict[str, Any]]:
        """All rows of a paged service: make(page) -> request."""
        rows: list[dict[str, Any]] = []
        page = 1
        while True:
            doc = self.invoke(make(page))
            rows += list(doc.get("data") or [])
            pages = _int((doc.get("paging") or {}).get("pagesFiltered")) or 1
            if page >= pages:
                return rows
            page += 1

    def resolve(self, name: str) -> tuple[float, float]:
        from astrobio_data_sources._remote import NotFoundError

        doc = self.invoke(lookup_request(name))
        coords = doc.get("resolvedCoordinate") or []
        if not coords:
            raise NotFoundError(
                f"MAST could not resolve target {name!r} (Mast.Name.Lookup found nothing); nothing written"
            )
        return float(coords[0]["ra"]), float(coords[0]["decl"])

    def download(self, product: dict[str, Any]) -> Any:
        """Download one product (through the cache) and record it for the provenance."""
        fetched, hit = self._download(product, self.progress)
        self.fetched.append(fetched)
        return hit

    def download_all(self, products: list[dict[str, Any]], read: Any) -> list[tuple[Any, Any]]:
        """Download every product, `self.jobs` at a time, and `read(hit, product)` each one in
        the worker that fetched it. Returns (hit, read's result) in the order of `products` and
        records the downloads in that order, so the outputs equal those of `jobs=1`."""
        from astrobio_cli.net.pool import download_all

        # One live progress display at a time: byte bars per file only when one at a time.
        progress = self.progress if self.jobs == 1 else False

        def one(p: dict[str, Any]) -> tuple[Any, Any, Any]:
            fetched, hit = self._download(p, progress)
            return fetched, hit, read(hit, p)

        done = download_all(
            products,
            one,
            jobs=self.jobs,
            key=lambda p: p["dataURI"],
            progress=self.progress,
            label=f"{self.source} products",
        )
        self.fetched.extend(f for f, _h, _r in done)
        return [(h, r) for _f, h, r in done]

    def _download(self, product: dict[str, Any], progress: bool | None) -> tuple[Any, Any]:
        from astrobio_cli.net.content import check_body
        from astrobio_cli.net.errors import ContentError
        from astrobio_data_sources._remote import Fetched, HttpStatusError, NotFoundError, cached

        uri = product["dataURI"]
        name = product.get("productFilename") or uri.rsplit("/", 1)[-1]

        def validate(tmp: Path, headers: dict[str, str]) -> None:
            with open(tmp, "rb") as fh:
                head = fh.read(4096)
            if not head.startswith(b"SIMPLE  ="):
                check_body(
                    head, what=f"{self.what} {name}", content_type=headers.get("content-type", "")
                )
                raise ContentError(f"{self.what} {name}: not a FITS file (starts {head[:40]!r})")

        params = {"uri": uri}
        try:
            hit = cached(
                self.cache,
                self.client,
                self.source,
                DOWNLOAD,
                params=params,
                key={"download": uri},
                refresh=self.refresh,
                validate=validate,
                progress=progress,
            )
        except HttpStatusError as exc:
            if exc.status in (404, 410):
                raise NotFoundError(
                    f"MAST product {uri} not found ({exc}); nothing written"
                ) from None
            raise
        return Fetched(self.client.full_url(DOWNLOAD, params), hit), hit

    def products(self, q: Any) -> list[dict[str, Any]]:
        """Observations matching `q`, then their wanted products (sorted, unique by URI)."""
        from astrobio_data_sources._remote import NotFoundError

        position = None
        if _needs_lookup(q):
            ra, dec = self.resolve(q.target)
            position = f"{ra}, {dec}, {q.radius_arcsec / 3600:.6f}"
        obs = self.paged(lambda page: search_request(q, position, page))
        asked = _describe(q)
        if not obs:
            raise NotFoundError(
                f"MAST has no {'/'.join(q.missions)} observations for {asked}; nothing written"
            )
        obsids = sorted({str(o["obsid"]) for o in obs if o.get("obsid") is not None})
        prods: dict[str, dict[str, Any]] = {}
        for i in range(0, len(obsids), 50):  # keep each request small
            chunk = obsids[i : i + 50]
            for p in self.paged(lambda page, chunk=chunk: products_request(chunk, page)):
                if p.get("dataURI") and q.wants_product(p):
                    prods.setdefault(p["dataURI"], p)
        if not prods:
            raise NotFoundError(
                f"MAST found {len(obs)} observation(s) for {asked} but no matching "
                f"{'light-curve' if isinstance(q, LightCurveQuery) else 'x1d'} products; nothing written"
            )
        return [prods[k] for k in sorted(prods)]


def _describe(q: Any) -> str:
    if isinstance(q, LightCurveQuery):
        s = f"target {q.target!r}"
        if q.sectors:
            s += f" in sector(s) {', '.join(map(str, q.sectors))}"
        if q.cadence != "any":
            s += f" at {q.cadence} cadence"
        return s
    return f"target {q.target!r}" if q.target else f"proposal {q.proposal}"


# -- FITS readers ------------------------------------------------------------------------------


def read_lightcurve(path: Path, name: str, flux: str = "pdcsap") -> dict[str, Any]:
    """One light-curve FITS -> columns (NumPy) + per-file facts; ContentError naming the file."""
    import numpy as np
    from astropy.io import fits

    from astrobio_cli.net.errors import ContentError

    try:
        hdul = fits.open(path, memmap=False)
    except Exception as exc:
        raise ContentError(f"{name}: not a readable FITS file ({exc})") from None
    with hdul:
        if "LIGHTCURVE" not in hdul:
            raise ContentError(
                f"{name}: no LIGHTCURVE extension (has {', '.join(h.name for h in hdul)})"
            )
        h0, lc = hdul[0].header, hdul["LIGHTCURVE"]
        names = [n.upper() for n in lc.columns.names]
        fcol = f"{flux.upper()}_FLUX"
        qcol = "QUALITY" if "QUALITY" in names else "SAP_QUALITY"
        need = ["TIME", fcol, f"{fcol}_ERR", qcol]
        missing = [c for c in need if c not in names]
        if missing:
            raise ContentError(
                f"{name}: the LIGHTCURVE table lacks {', '.join(missing)} "
                f"(it has {', '.join(names)})"
            )
        data = lc.data

        def unit(col: str) -> str:
            i = names.index(col) + 1
            return str(lc.header.get(f"TUNIT{i}", "")).strip()

        mission = str(h0.get("MISSION") or h0.get("TELESCOP") or "").strip()
        timedel = lc.header.get("TIMEDEL")
        return {
            "time": np.asarray(data["TIME"], dtype=np.float64),
            "flux": np.asarray(data[fcol], dtype=np.float64),
            "flux_err": np.asarray(data[f"{fcol}_ERR"], dtype=np.float64),
            "quality": np.asarray(data[qcol], dtype=np.int64),
            "mission": mission,
            "sector": _int(h0.get("SECTOR")),
            "quarter": _int(h0.get("QUARTER")),
            "cadence": float(timedel) * 86400.0 if timedel is not None else float("nan"),
            "target": str(h0.get("OBJECT") or h0.get("TICID") or h0.get("KEPLERID") or ""),
            "units": {"time": unit("TIME"), "flux": unit(fcol), "flux_err": unit(f"{fcol}_ERR")},
        }


def read_x1d(path: Path, name: str) -> list[dict[str, Any]]:
    """Every EXTRACT1D extension of a JWST x1d file -> columns + units."""
    import numpy as np
    from astropy.io import fits

    from astrobio_cli.net.errors import ContentError

    try:
        hdul = fits.open(path, memmap=False)
    except Exception as exc:
        raise ContentError(f"{name}: not a readable FITS file ({exc})") from None
    out = []
    with hdul:
        h0 = hdul[0].header
        exts = [h for h in hdul if h.name == "EXTRACT1D"]
        if not exts:
            raise ContentError(
                f"{name}: no EXTRACT1D extension (has {', '.join(h.name for h in hdul)})"
            )
        for k, ext in enumerate(exts, 1):
            names = [n.upper() for n in ext.columns.names]
            missing = [c for c in ("WAVELENGTH", "FLUX", "FLUX_ERROR") if c not in names]
            if missing:
                raise ContentError(
                    f"{name}: EXTRACT1D extension {k} lacks {', '.join(missing)} (has {', '.join(names)})"
                )

            def unit(col: str, ext=ext, names=names) -> str:
                return str(ext.header.get(f"TUNIT{names.index(col) + 1}", "")).strip()

            d = ext.data
            out.append(
                {
                    "wavelength": np.asarray(d["WAVELENGTH"], dtype=np.float64),
                    "flux": np.asarray(d["FLUX"], dtype=np.float64),
                    "flux_error": np.asarray(d["FLUX_ERROR"], dtype=np.float64),
                    "dq": np.asarray(d["DQ"], dtype=np.int64) if "DQ" in names else None,
                    "extension": k,
                    "instrument": str(h0.get("INSTRUME", "")).strip(),
                    "target": str(h0.get("TARGPROP") or h0.get("TARGNAME") or "").strip(),
                    "program": str(h0.get("PROGRAM", "")).strip(),
                    "units": {c.lower(): unit(c) for c in ("WAVELENGTH", "FLUX", "FLUX_ERROR")},
                }
            )
    return out


def _convert(values: Any, unit: str, to: str, name: str, col: str) -> Any:
    """`values` in `unit` -> `to` (astropy); an error naming the file when incompatible."""
    if unit == to or not unit or not to:
        return values
    import astropy.units as u

    from astrobio_cli.net.errors import ContentError

    try:
        return (values * u.Unit(unit)).to_value(u.Unit(to))
    except (ValueError, u.UnitsError) as exc:
        raise ContentError(
            f"{name}: column {col} is in {unit!r}, not convertible to {to!r} ({exc})"
        ) from None


# -- fetching ----------------------------------------------------------------------------------


def fetch_lightcurves(
    q: LightCurveQuery,
    *,
    out: Path | None = None,
    refresh: bool = False,
    progress: bool | None = None,
    jobs: int = DEFAULT_JOBS,
    quicklook: bool = False,
):
    """Light curves of `q` -> Parquet + provenance. jobs: products downloaded at once;
    quicklook: also a PNG per light curve in `<out stem>.quicklook/`."""
    import numpy as np

    from astrobio_cli.net.content import Column, Table
    from astrobio_cli.net.pool import check_jobs
    from astrobio_data_sources._remote import NotFoundError, check_out, default_out

    check_jobs(jobs)
    out = check_out(out) if out is not None else default_out(LC_SOURCE, q.target, q)
    with _client(LC_SOURCE) as client:
        mast = Mast(LC_SOURCE, client, refresh, progress, jobs=jobs)
        products = mast.products(q)
        parts, used = [], []
        units: dict[str, str] = {}

        def read(hit: Any, p: dict[str, Any]) -> dict[str, Any]:
            return read_lightcurve(hit.path, p.get("productFilename") or p["dataURI"], q.flux)

        for p, (_hit, lc) in zip(products, mast.download_all(products, read), strict=True):
            name = p.get("productFilename") or p["dataURI"]
            if q.quarters and lc["quarter"] not in q.quarters:
                continue  # Kepler quarters are only known from the header
            for col in ("time", "flux", "flux_err"):
                units.setdefault(col, lc["units"][col])
            if lc["units"]["time"] != units["time"]:
                # TESS (BTJD) and Kepler (BKJD) count from different zero points: keep them apart
                units["time"] = "mixed: see time_unit"
            for col in ("flux", "flux_err"):
                lc[col] = _convert(lc[col], lc["units"][col], units[col], name, col.upper())
            lc["file"] = name
            parts.append(lc)
            used.append(p)
        if not parts:
            raise NotFoundError(
                f"MAST: no light curves of {_describe(q)} in quarter(s) {', '.join(map(str, q.quarters))}; nothing written"
            )

        def rep(key: str) -> list[Any]:
            return [v for lc in parts for v in [lc[key]] * len(lc["time"])]

        table = Table(
            [
                Column(
                    "time",
                    "float",
                    np.concatenate([lc["time"] for lc in parts]),
                    units["time"],
                    "Barycentric time (mission's zero point)",
                ),
                Column(
                    "flux",
                    "float",
                    np.concatenate([lc["flux"] for lc in parts]),
                    units["flux"],
                    f"{q.flux.upper()}_FLUX",
                ),
                Column(
                    "flux_err",
                    "float",
                    np.concatenate([lc["flux_err"] for lc in parts]),
                    units["flux_err"],
                    f"{q.flux.upper()}_FLUX_ERR",
                ),
                Column(
                    "quality",
                    "int",
                    np.concatenate([lc["quality"] for lc in parts]),
                    "",
                    "Quality flags (bitmask)",
                ),
                Column("mission", "string", rep("mission"), "", "TESS or Kepler"),
                Column("sector", "int", rep("sector"), "", "TESS sector"),
                Column("quarter", "int", rep("quarter"), "", "Kepler quarter"),
                Column("cadence", "float", rep("cadence"), "s", "Cadence (TIMEDEL)"),
                Column("target", "string", rep("target"), "", "OBJECT header keyword"),
                Column(
                    "time_unit",
                    "string",
                    [lc["units"]["time"] for lc in parts for _ in lc["time"]],
                    "",
                    "TUNIT of TIME",
                ),
                Column(
                    "file",
                    "string",
                    rep("file"),
                    "",
                    "Product file name (original FITS in the cache)",
                ),
            ]
        )
        result = _finish(LC_SOURCE, table, out, mast, client, q.target, used)
    if quicklook:
        _quicklook_lightcurves(parts, out, result)
    return result


def fetch_spectra(
    q: SpectrumQuery,
    *,
    out: Path | None = None,
    refresh: bool = False,
    progress: bool | None = None,
    jobs: int = DEFAULT_JOBS,
    quicklook: bool = False,
):
    """x1d spectra of `q` -> Parquet + provenance. jobs: products downloaded at once;
    quicklook: also a PNG per x1d file in `<out stem>.quicklook/`."""
    import numpy as np

    from astrobio_cli.net.content import Column, Table
    from astrobio_cli.net.pool import check_jobs
    from astrobio_data_sources._remote import check_out, default_out

    check_jobs(jobs)
    out = (
        check_out(out)
        if out is not None
        else default_out(SPEC_SOURCE, q.target or f"proposal-{q.proposal}", q)
    )
    with _client(SPEC_SOURCE) as client:
        mast = Mast(SPEC_SOURCE, client, refresh, progress, jobs=jobs)
        products = mast.products(q)
        parts: list[dict[str, Any]] = []
        units: dict[str, str] = {}

        def read(hit: Any, p: dict[str, Any]) -> list[dict[str, Any]]:
            return read_x1d(hit.path, p.get("productFilename") or p["dataURI"])

        for p, (_hit, spectra) in zip(products, mast.download_all(products, read), strict=True):
            name = p.get("productFilename") or p["dataURI"]
            for sp in spectra:
                for col in ("wavelength", "flux", "flux_error"):
                    units.setdefault(col, sp["units"][col])
                    sp[col] = _convert(sp[col], sp["units"][col], units[col], name, col.upper())
                sp["file"] = name
                sp["obs_id"] = str(p.get("obs_id") or p.get("obsID") or "")
                if sp["dq"] is None:
                    sp["dq"] = np.zeros(len(sp["wavelength"]), dtype=np.int64)
                parts.append(sp)

        def rep(key: str) -> list[Any]:
            return [v for sp in parts for v in [sp[key]] * len(sp["wavelength"])]

        table = Table(
            [
                Column(
                    "wavelength",
                    "float",
                    np.concatenate([s["wavelength"] for s in parts]),
                    units["wavelength"],
                    "WAVELENGTH",
                ),
                Column(
                    "flux",
                    "float",
                    np.concatenate([s["flux"] for s in parts]),
                    units["flux"],
                    "FLUX",
                ),
                Column(
                    "flux_error",
                    "float",
                    np.concatenate([s["flux_error"] for s in parts]),
                    units["flux_error"],
                    "FLUX_ERROR",
                ),
                Column(
                    "dq", "int", np.concatenate([s["dq"] for s in parts]), "", "Data quality flags"
                ),
                Column("instrument", "string", rep("instrument"), "", "INSTRUME"),
                Column("target", "string", rep("target"), "", "TARGPROP"),
                Column("program", "string", rep("program"), "", "JWST program (PROGRAM)"),
                Column("obs_id", "string", rep("obs_id"), "", "MAST observation id"),
                Column(
                    "extension",
                    "int",
                    rep("extension"),
                    "",
                    "EXTRACT1D extension number in the file",
                ),
                Column(
                    "file",
                    "string",
                    rep("file"),
                    "",
                    "Product file name (original FITS in the cache)",
                ),
            ]
        )
        result = _finish(
            SPEC_SOURCE, table, out, mast, client, q.target or f"proposal {q.proposal}", products
        )
    if quicklook:
        _quicklook_spectra(parts, units, out, result)
    return result


# -- quick-looks -------------------------------------------------------------------------------


def _quicklook_lightcurves(parts: list[dict[str, Any]], out: Path, result: Any) -> list[Any]:
    """One PNG per light-curve file (normalised flux, flagged points left out)."""
    import numpy as np

    from astrobio_cli.data.lightcurves import LightCurve
    from astrobio_cli.quicklook import light_curve_png, png_name, quicklook_dir

    done = []
    for lc in parts:
        n = len(lc["time"])
        period = f"sector {lc['sector']}" if lc["sector"] is not None else ""
        period = period or (f"quarter {lc['quarter']}" if lc["quarter"] is not None else "")
        curve = LightCurve(
            time=lc["time"],
            flux=np.asarray(lc["flux"], dtype=np.float64),
            flux_err=np.asarray(lc["flux_err"], dtype=np.float64),
            quality=lc["quality"],
            sector=np.full(n, -1 if lc["sector"] is None else lc["sector"], np.int64),
            quarter=np.full(n, -1 if lc["quarter"] is None else lc["quarter"], np.int64),
            cadence_s=np.full(n, lc["cadence"]),
            mission=lc["mission"],
            target=lc["target"],
            time_system=lc["units"]["time"],
            time_offset=float("nan"),
            flux_unit=lc["units"]["flux"],
            meta={"path": lc["file"]},
        )
        title = " | ".join(
            x for x in (lc["target"], f"{lc['mission']} {period}".strip(), lc["file"]) if x
        )
        done.append(light_curve_png(curve, quicklook_dir(out) / png_name(lc["file"]), title=title))
    _note_quicklooks(done, out, result)
    return done


def _quicklook_spectra(
    parts: list[dict[str, Any]], units: dict[str, str], out: Path, result: Any
) -> list[Any]:
    """One PNG per x1d file (every EXTRACT1D extension; DQ-flagged samples left out)."""
    from astrobio_cli.quicklook import Segment, png_name, quicklook_dir, spectrum_png

    files: dict[str, list[dict[str, Any]]] = {}
    for sp in parts:
        files.setdefault(sp["file"], []).append(sp)
    done = []
    for name, sps in files.items():
        segments = [
            Segment(
                sp["wavelength"], sp["flux"], sp["flux_error"], sp["dq"], f"ext {sp['extension']}"
            )
            for sp in sps
        ]
        head = sps[0]
        title = " | ".join(x for x in (head["target"], head["instrument"], name) if x)
        done.append(
            spectrum_png(
                segments,
                quicklook_dir(out) / png_name(name),
                title=title,
                wavelength_unit=units.get("wavelength", ""),
                flux_unit=units.get("flux", ""),
            )
        )
    _note_quicklooks(done, out, result)
    return done


def _note_quicklooks(done: list[Any], out: Path, result: Any) -> None:
    from astrobio_cli.quicklook import quicklook_dir

    written = [d for d in done if d.path is not None]
    if written:
        result.outputs.append(("quicklook", quicklook_dir(out)))
        result.notes.append(f"{len(written)} quick-look PNG(s) in {quicklook_dir(out)}")
    for d in done:
        if d.path is None:
            result.notes.append(f"no quick-look for {d.title}: {d.skipped}")


def _finish(
    source: str,
    table: Any,
    out: Path,
    mast: Mast,
    client: Any,
    query: str,
    products: list[dict[str, Any]],
):
    from astrobio_cli.net.tables import columns_doc
    from astrobio_data_sources._remote import SourceResult, traffic, write_outputs

    originals = [f for f in mast.fetched if "Download/file" in f.url]
    extra = {
        "products": [p.get("dataURI") for p in products],
        "originals": [str(f.hit.path) for f in originals],
    }
    sidecar, _ = write_outputs(
        table, out, source=source, query=query, fetched=mast.fetched, client=client, extra=extra
    )
    return SourceResult(
        source=source,
        rows=table.num_rows,
        columns=columns_doc(table),
        outputs=[("table", out), ("provenance", sidecar)],
        **traffic(mast.fetched),
        notes=[
            f"{len(products)} product file(s); original FITS kept in the cache ({originals[0].hit.path.parent})"
        ]
        if originals
        else [],
    )


class MastLightCurves:
    name = LC_SOURCE

    def query(self, **options: Any) -> LightCurveQuery:
        return LightCurveQuery.from_options(**options)

    def fetch(self, query: LightCurveQuery, **kw: Any):
        return fetch_lightcurves(query, **kw)


class MastJwstSpectra:
    name = SPEC_SOURCE

    def query(self, **options: Any) -> SpectrumQuery:
        return SpectrumQuery.from_options(**options)

    def fetch(self, query: SpectrumQuery, **kw: Any):
        return fetch_spectra(query, **kw)
