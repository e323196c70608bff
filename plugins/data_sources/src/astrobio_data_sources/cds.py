"""`cds`: ERA5 monthly means (and CMIP6) from the Copernicus Climate Data Store, as a climate cube.

    q = CdsQuery.from_options(dataset="pressure", variables=["t", "q"], years=["2020"])
    result = fetch(q)     # <data_dir>/cds/<dataset>-<hash>.nc + provenance sidecar

The CDS retrieve API (https://cds.climate.copernicus.eu/api, OGC API - Processes, what the
official `cdsapi` / `ecmwf-datastores-client` speak), on the shared net layer:

1. `POST retrieve/v1/processes/{dataset}/execution` with `{"inputs": {...}}` -> a job document
   (`jobID`, `status`: accepted, running, successful, failed, rejected, dismissed);
2. `GET retrieve/v1/jobs/{jobID}` until the status is final: the wait starts at the source's
   `backoff` setting and grows to 30 s; every status change (and a line a minute while queued)
   goes to stderr with the elapsed time; the whole wait is bounded by `command_deadline`;
3. `GET retrieve/v1/jobs/{jobID}/results` -> `{"asset": {"value": {"href": ...}}}` (a failed
   job answers 4xx with the CDS's own `title` / `traceback`, quoted in the error);
4. the asset (NetCDF, or a zip of NetCDF files for CMIP6) is downloaded with retries and Range
   resume, checked (NetCDF/HDF5 magic bytes) and cached, keyed on the dataset and the inputs.

Authentication: the API key in the `PRIVATE-TOKEN` header of the API's requests (not of the
asset download, which may live on another host), from `sources.cds.api_key`
(`ASTROBIO_SOURCES__CDS__API_KEY`); it is never in the cache key, messages or provenance.

Conversion (:func:`to_cube`) to the climate-cube kind (`astrobio_cli.data.climate`): the time
axis (`valid_time` / `time`) becomes `sample` (its dates kept as the `time` coordinate),
`latitude`/`longitude` become `lat` (sorted south to north) / `lon`, `pressure_level` (hPa)
becomes `plev` in Pa (surface first), and ERA5's short names become the schema's / CMIP names
(:data:`RENAME`): t -> ta, q -> hus, skt -> ts, lsm -> land_mask, tisr -> rsdt (zonal mean of the
daily accumulation / 86400 s: W m-2), u -> ua, v -> va, z -> zg (geopotential / g0: m), ...
Every variable keeps its ERA5 attributes plus `era5_name`; the file keeps ERA5's global
attributes plus the request and the job id.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astrobio_cli.errors import UsageError

SOURCE = "cds"
BASE_URL = "https://cds.climate.copernicus.eu/api"
KEY_HEADER = "PRIVATE-TOKEN"
KEY_ENV = "ASTROBIO_SOURCES__CDS__API_KEY"
POLL_MAX = 30.0  # longest wait between two polls of a job, seconds
QUIET_NOTE = 60.0  # a line on stderr at least this often while a job's status does not change
G0 = 9.80665  # m s-2, ECMWF's (and WMO's) standard gravity: geopotential -> height

SINGLE = "reanalysis-era5-single-levels-monthly-means"
PRESSURE = "reanalysis-era5-pressure-levels-monthly-means"
CMIP6 = "projections-cmip6"
ALIASES = {
    "single": SINGLE,
    "era5-single": SINGLE,
    "pressure": PRESSURE,
    "era5-pressure": PRESSURE,
    "cmip6": CMIP6,
}
DEFAULT_VARIABLES = {
    SINGLE: ("skin_temperature", "land_sea_mask"),
    PRESSURE: ("temperature", "specific_humidity"),
}
DEFAULT_LEVELS = ("1000", "850", "500", "250")
MODEL_READY_SINGLE = ("skin_temperature", "land_sea_mask", "toa_incident_solar_radiation")
# Earth's values of the synthetic ensemble's per-planet parameters (`synthetic_climate`: its
# SOLAR_CONSTANT and "Earth ~0.77"; surface_albedo: Earth's Bond albedo, the middle of the
# generator's range). Assumed constants of the energy-balance model, not ERA5 data.
EARTH = {
    "stellar_flux": (1361.0, "W m-2", "total solar irradiance at 1 au"),
    "rotation_period": (1.0, "day", "Earth's rotation period (solar day)"),
    "obliquity": (23.44, "degree", "Earth's obliquity"),
    "greenhouse_factor": (0.77, "1", "Earth's long-wave absorptivity (one-layer grey model)"),
    "surface_albedo": (0.3, "1", "Earth's Bond albedo"),
}
# ERA5 short names (as in the NetCDF files) -> the CDS request names, for --variable t,q
SHORT_TO_REQUEST = {
    "t": "temperature",
    "q": "specific_humidity",
    "u": "u_component_of_wind",
    "v": "v_component_of_wind",
    "z": "geopotential",
    "r": "relative_humidity",
    "w": "vertical_velocity",
    "skt": "skin_temperature",
    "2t": "2m_temperature",
    "t2m": "2m_temperature",
    "sp": "surface_pressure",
    "msl": "mean_sea_level_pressure",
    "lsm": "land_sea_mask",
    "tisr": "toa_incident_solar_radiation",
    "tcc": "total_cloud_cover",
}

# ERA5 NetCDF name -> (cube name, units, scale); scale None: unchanged values.
RENAME: dict[str, tuple[str, str, float | None]] = {
    "t": ("ta", "K", None),
    "q": ("hus", "kg kg-1", None),
    "u": ("ua", "m s-1", None),
    "v": ("va", "m s-1", None),
    "w": ("wap", "Pa s-1", None),
    "r": ("hur", "%", None),
    "z": ("zg", "m", 1.0 / G0),
    "skt": ("ts", "K", None),
    "t2m": ("tas", "K", None),
    "sp": ("ps", "Pa", None),
    "msl": ("psl", "Pa", None),
    "lsm": ("land_mask", "1", None),
    "tcc": ("clt", "1", None),
}
TIME_NAMES = ("valid_time", "time", "date")
LAT_NAMES = ("latitude", "lat")
LON_NAMES = ("longitude", "lon")
LEVEL_NAMES = ("pressure_level", "isobaricInhPa", "level", "plev")
DROP = ("number", "expver", "step", "surface", "realization")

_DATASET = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_VARIABLE = re.compile(r"^[A-Za-z0-9_]+$")
_LEVEL = re.compile(r"^\d+(\.\d+)?$")


@dataclass(frozen=True)
class CdsQuery:
    dataset: str
    inputs: dict[str, Any] = field(hash=False)
    # --model-ready: the single-levels request fetched with this one, and Earth's parameters
    companion: CdsQuery | None = None

    @classmethod
    def from_options(
        cls,
        dataset: str = "pressure",
        variables: list[str] | str | None = None,
        pressure_levels: list[str] | str | None = None,
        years: list[str] | str | None = None,
        months: list[str] | str | None = None,
        area: str | None = None,
        grid: str | None = None,
        extra: list[str] | None = None,
        model_ready: bool = False,
    ) -> CdsQuery:
        """Validate command-line options (no network).

        model_ready: ERA5 pressure levels (t, q by default) plus single levels (skt, lsm,
        tisr) for the same years, months, area and grid, merged into one cube with Earth's
        planet parameters (:data:`EARTH`): everything the cube models read."""
        if model_ready:
            if ALIASES.get(dataset.strip().lower(), dataset.strip()) != PRESSURE:
                raise UsageError(
                    "--model-ready fetches ERA5 pressure and single levels together; leave "
                    "--dataset at its default (pressure)"
                )
            main = cls.from_options(
                PRESSURE, variables, pressure_levels, years, months, area, grid, extra
            )
            missing = [v for v in ("temperature", "specific_humidity") if v not in main.variables]
            if missing:
                raise UsageError(
                    f"--model-ready needs {' and '.join(missing)} among --variable (the models' "
                    "targets ta, hus)"
                )
            single = cls.from_options(
                SINGLE, list(MODEL_READY_SINGLE), None, years, months, area, grid, extra
            )
            return cls(main.dataset, main.inputs, single)
        ds = ALIASES.get(dataset.strip().lower(), dataset.strip())
        if not _DATASET.match(ds):
            raise UsageError(
                f"--dataset {dataset!r} is not a CDS dataset name (lower-case letters, digits "
                f"and -); e.g. {PRESSURE}, {SINGLE} or {CMIP6}, or the short forms "
                f"{', '.join(ALIASES)}"
            )
        inputs: dict[str, Any] = {}
        era5 = ds in (SINGLE, PRESSURE)
        if era5:
            inputs["product_type"] = ["monthly_averaged_reanalysis"]
        names = _split(variables) or list(DEFAULT_VARIABLES.get(ds, ()))
        if not names:
            raise UsageError(f"--dataset {ds}: name the variable(s) with --variable")
        bad = [v for v in names if not _VARIABLE.match(v)]
        if bad:
            raise UsageError(
                f"--variable {bad[0]!r} is not a CDS variable name (letters, digits, _), "
                "e.g. temperature or t"
            )
        names = [SHORT_TO_REQUEST.get(v, v) if era5 else v for v in names]
        if len(set(names)) != len(names):
            raise UsageError("--variable names a variable twice")
        inputs["variable"] = names
        levels = _split(pressure_levels)
        if ds == SINGLE and levels:
            raise UsageError(
                f"--pressure-level is for pressure-level data; {SINGLE} has none (use "
                f"--dataset pressure for {', '.join(levels)} hPa)"
            )
        if ds == PRESSURE and not levels:
            levels = list(DEFAULT_LEVELS)
        for lev in levels:
            if not _LEVEL.match(lev) or not 0 < float(lev) <= 1100:
                raise UsageError(f"--pressure-level {lev!r} must be a pressure in hPa (1-1000)")
        if levels:
            inputs["pressure_level"] = levels
        yrs = _years(years)
        if not yrs:
            raise UsageError("give the year(s): --year 2020, --year 2018-2020 or --year 2019,2021")
        inputs["year"] = yrs
        inputs["month"] = _months(months)
        if era5:
            inputs["time"] = ["00:00"]
        if area:
            inputs["area"] = _area(area)
        if grid:
            inputs["grid"] = _grid(grid)
        for item in extra or []:
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or not key or not _VARIABLE.match(key):
                raise UsageError(
                    f"--input {item!r} must be KEY=VALUE (VALUE may be a comma list), e.g. "
                    "--input experiment=historical"
                )
            vals = [v.strip() for v in value.split(",") if v.strip()]
            inputs[key] = vals if len(vals) != 1 else vals[0]
        inputs.setdefault("data_format", "netcdf")
        if era5:
            inputs.setdefault("download_format", "unarchived")
        return cls(ds, inputs)

    def request(self) -> dict[str, Any]:
        return {"inputs": self.inputs}

    @property
    def variables(self) -> list[str]:
        return list(self.inputs["variable"])

    def parts(self) -> list[CdsQuery]:
        """The CDS requests this query makes (two with --model-ready)."""
        return [self] if self.companion is None else [self, self.companion]

    def describe(self) -> str:
        return f"CDS {self.dataset} ({', '.join(self.inputs['variable'])})"

    def short(self) -> str:
        if self.companion is not None:
            return "era5-model-ready"
        return {SINGLE: "era5-single", PRESSURE: "era5-pressure"}.get(self.dataset, self.dataset)


def _split(values: list[str] | str | None) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [v.strip() for item in values for v in str(item).split(",") if v.strip()]


def _years(values: list[str] | str | None) -> list[str]:
    out: list[str] = []
    for item in _split(values):
        m = re.fullmatch(r"(\d{4})(?:-(\d{4}))?", item)
        if m is None:
            raise UsageError(f"--year {item!r}: use a year (2020) or a range (2018-2020)")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if b < a or not 1900 <= a <= 2200:
            raise UsageError(f"--year {item!r}: not a range of years between 1900 and 2200")
        out += [str(y) for y in range(a, b + 1) if str(y) not in out]
    return out


def _months(values: list[str] | str | None) -> list[str]:
    items = _split(values)
    if not items:
        return [f"{m:02d}" for m in range(1, 13)]
    out: list[str] = []
    for item in items:
        m = re.fullmatch(r"(\d{1,2})(?:-(\d{1,2}))?", item)
        a, b = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (0, 0)
        if not (1 <= a <= b <= 12):
            raise UsageError(f"--month {item!r}: use months 1-12, e.g. --month 1-3 or 6,7,8")
        out += [f"{k:02d}" for k in range(a, b + 1) if f"{k:02d}" not in out]
    return out


def _area(text: str) -> list[float]:
    parts = [p for p in re.split(r"[/,\s]+", text.strip()) if p]
    try:
        n, w, s, e = (float(p) for p in parts)
    except ValueError:
        raise UsageError(
            f"--area {text!r} must be NORTH/WEST/SOUTH/EAST in degrees, e.g. 60/-10/35/30"
        ) from None
    if not (-90 <= s < n <= 90) or not (-360 <= w < e <= 360):
        raise UsageError(
            f"--area {text!r}: need -90 <= SOUTH < NORTH <= 90 and WEST < EAST (degrees)"
        )
    return [n, w, s, e]


def _grid(text: str) -> list[str]:
    parts = [p for p in re.split(r"[/,x\s]+", text.strip()) if p]
    if len(parts) == 1:
        parts = parts * 2
    try:
        ok = len(parts) == 2 and all(0 < float(p) <= 90 for p in parts)
    except ValueError:
        ok = False
    if not ok:
        raise UsageError(f"--grid {text!r} must be a spacing in degrees: 1.0 or 1.0/1.0")
    return parts


# -- the API ---------------------------------------------------------------------------------


def _client():
    from astrobio_data_sources._remote import make_client

    # The key goes only on the API's own requests (see `_call`), never to the asset's host.
    return make_client(SOURCE, BASE_URL)


def _need_key(client) -> None:
    if not client.api_key:
        raise UsageError(
            "the Copernicus Climate Data Store needs your API key: set the setting "
            f"sources.cds.api_key (environment: {KEY_ENV}=<key>, or `api_key` under "
            "[sources.cds] in config.toml); the key is on your CDS profile page, "
            "https://cds.climate.copernicus.eu/profile"
        )


def execution_path(dataset: str) -> str:
    return f"retrieve/v1/processes/{dataset}/execution"


def job_path(job_id: str) -> str:
    return f"retrieve/v1/jobs/{job_id}"


def plan(q: CdsQuery) -> list[str]:
    """What a fetch asks (no network, no key needed)."""
    lines: list[str] = []
    with _client() as c:
        key = "*** (sources.cds.api_key)" if c.api_key else f"<not set: {KEY_ENV}>"
        for part in q.parts():
            lines += [
                f"POST {c.full_url(execution_path(part.dataset))}",
                f"  header {KEY_HEADER}: {key}",
                f"  body {json.dumps(part.request())}",
                f"  then GET {c.full_url(job_path('<jobID>'))} until the job is successful, "
                f"GET {c.full_url(job_path('<jobID>') + '/results')} and download its asset "
                "(NetCDF) into the cache",
            ]
    what = "merged, converted to a climate cube" if q.companion else "converted to a climate cube"
    if q.companion is not None:
        what += " + Earth's planet parameters (" + ", ".join(EARTH) + ")"
    return [*lines, what]


def _said(body: bytes) -> str:
    """The CDS's words in an error document (title, detail, traceback), one line."""
    from astrobio_cli.net.content import describe_error_body

    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return describe_error_body(body)
    if not isinstance(doc, dict):
        return describe_error_body(body)
    parts = [str(doc[k]).strip() for k in ("title", "detail") if doc.get(k)]
    tb = doc.get("traceback")
    if tb:  # the last meaningful lines of the server's traceback say what was wrong
        lines = [ln.strip() for ln in str(tb).splitlines() if ln.strip()]
        parts.append(" | ".join(lines[-3:]))
    return "; ".join(parts) or describe_error_body(body)


def _call(
    client,
    method: str,
    path: str,
    *,
    body: Mapping[str, Any] | None = None,
    allow: tuple[int, ...] = (400, 401, 403, 404, 422),
) -> tuple[int, Any, bytes]:
    """A small JSON request with retries (429/5xx/connection); a status in `allow` is returned
    with its body, not raised. Returns (status, JSON document or None, raw body)."""
    what = f"{method} {client.full_url(path)}"

    def once(_attempt: int):
        kw: dict[str, Any] = {"headers": {"Accept": "application/json"}}
        if client.api_key:
            kw["headers"][KEY_HEADER] = client.api_key
        if body is not None:
            kw["json"] = dict(body)
        with client.stream(method, client.url(path), **kw) as r:
            raw = r.read()
            if r.status_code not in allow:
                client.check_status(r, what)
            return r.status_code, raw

    status, raw = client.with_retries(what, once)
    try:
        doc = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        doc = None
    if status < 400 and not isinstance(doc, dict):
        from astrobio_cli.net.errors import ContentError

        head = raw[:160].decode("utf-8", "replace")
        raise ContentError(client.redact(f"{what}: the CDS did not answer with JSON: {head!r}"))
    return status, doc, raw


def _refused(client, q: CdsQuery, status: int, raw: bytes, what: str) -> Exception:
    from astrobio_data_sources._remote import NotFoundError

    said = client.redact(_said(raw))
    page = f"https://cds.climate.copernicus.eu/datasets/{q.dataset}?tab=download"
    if status == 404:
        return NotFoundError(
            f"CDS dataset {q.dataset!r} not found ({what}: HTTP 404: {said}); check the name "
            f"on https://cds.climate.copernicus.eu/datasets, e.g. {PRESSURE}"
        )
    if status == 401:
        return UsageError(
            f"the CDS refused the API key ({what}: HTTP 401: {said}); check the setting "
            f"sources.cds.api_key ({KEY_ENV})"
        )
    if status == 403:
        return UsageError(
            f"the CDS refused the request ({what}: HTTP 403: {said}); if the dataset's licence "
            f"is not accepted yet, accept it at {page}"
        )
    return UsageError(
        f"the CDS rejected the request for {q.dataset} ({what}: HTTP {status}: {said}); check "
        f"the options against {page}"
    )


def _job_failed(client, q: CdsQuery, job: dict[str, Any], results: str) -> Exception:
    """Why a job failed: the results document's words (title, traceback), else the job log."""
    from astrobio_cli.net.errors import NetworkError

    status, _doc, raw = _call(client, "GET", results, allow=tuple(range(400, 500)))
    said = client.redact(_said(raw)) if status >= 400 else ""
    if not said:
        log = (job.get("metadata") or {}).get("log") or []
        said = " | ".join(str(e[-1]) for e in log[-3:] if isinstance(e, list | tuple) and e)
    return NetworkError(
        f"CDS job {job.get('jobID')} for {q.dataset} {job.get('status')}: "
        f"{said or 'the CDS gave no reason'}; check the request (astrobio fetch cds ... --dry-run)"
        " and the dataset's page https://cds.climate.copernicus.eu/datasets/" + q.dataset
    )


def _link(job: dict[str, Any], rel: str) -> str | None:
    for link in job.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == rel and link.get("href"):
            return str(link["href"])
    return None


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_job(
    client,
    q: CdsQuery,
    *,
    say: Callable[[str], None] = _say,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[dict[str, Any], str]:
    """Submit the request and wait for its job. Returns (final job document, asset URL)."""
    from urllib.parse import urljoin

    from astrobio_cli.net.errors import ContentError, NetworkError

    _need_key(client)
    submit = execution_path(q.dataset)
    status, job, raw = _call(client, "POST", submit, body=q.request())
    if status >= 400:
        raise _refused(client, q, status, raw, f"POST {client.full_url(submit)}")
    job_id = job.get("jobID")
    if not job_id:
        raise ContentError(f"the CDS answered the request without a jobID: {str(job)[:200]!r}")
    monitor = _link(job, "monitor") or job_path(job_id)
    start = clock()
    wait = max(min(client.retry.backoff, POLL_MAX), 0.01)
    last_status, last_said = None, start
    while True:
        st = str(job.get("status", "")).lower()
        elapsed = clock() - start
        if st != last_status or clock() - last_said >= QUIET_NOTE:
            say(f"cds: job {job_id} {st or '?'} ({elapsed:.0f} s elapsed)")
            last_status, last_said = st, clock()
        if st == "successful":
            break
        if st in ("failed", "rejected", "dismissed", "deleted"):
            raise _job_failed(client, q, job, _link(job, "results") or f"{monitor}/results")
        if st not in ("accepted", "running"):
            raise ContentError(f"CDS job {job_id}: unknown status {st!r} in {str(job)[:200]!r}")
        stop = client._born + client.command_deadline if client.command_deadline else None
        if stop is not None and time.monotonic() + wait > stop:
            raise NetworkError(
                f"CDS job {job_id} for {q.dataset} is still {st} after {elapsed:.0f} s, and the "
                f"command deadline of {client.command_deadline:g} s is near; the job keeps "
                "running on the CDS: run the same command again later (the CDS answers a "
                "repeated request from its own cache), or raise sources.cds.command_deadline"
            )
        client.sleep(wait)
        wait = min(wait * 1.5, POLL_MAX)
        status, job, raw = _call(client, "GET", monitor)
        if status >= 400:
            raise _refused(client, q, status, raw, f"GET {client.full_url(monitor)}")
    results = _link(job, "results") or f"{monitor}/results"
    status, doc, raw = _call(client, "GET", results)
    if status >= 400:
        raise _job_failed(client, q, job, results)
    asset = ((doc or {}).get("asset") or {}).get("value") or {}
    href = asset.get("href")
    if not href:
        raise ContentError(f"CDS job {job_id}: its results name no asset: {str(doc)[:200]!r}")
    job["asset"] = asset
    return job, urljoin(client.url(results), str(href))


_MAGIC = {
    b"CDF\x01": "netcdf3",
    b"CDF\x02": "netcdf3",
    b"\x89HDF\r\n\x1a\n": "netcdf4",
    b"PK\x03\x04": "zip",
}


def sniff(head: bytes) -> str | None:
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    return None


def _validate(tmp: Path, _headers: dict[str, str]) -> None:
    from astrobio_cli.net.content import describe_error_body
    from astrobio_cli.net.errors import ContentError

    with open(tmp, "rb") as fh:
        head = fh.read(4096)
    if sniff(head):
        return
    if head.startswith(b"GRIB"):
        raise ContentError("the CDS sent GRIB, not NetCDF; ask with --input data_format=netcdf")
    raise ContentError(
        f"the CDS asset is not NetCDF (nor a zip of NetCDF): {describe_error_body(head)!r}"
    )


# -- conversion to the climate-cube kind -----------------------------------------------------


def _open_asset(path: Path):
    """The downloaded asset as one xarray Dataset (a zip: its NetCDF members merged)."""
    import xarray as xr

    with open(path, "rb") as fh:
        head = fh.read(8)
    if sniff(head) != "zip":
        with xr.open_dataset(path, engine="netcdf4", cache=False) as one:
            return one.load()
    import tempfile
    import zipfile

    parts = []
    with zipfile.ZipFile(path) as zf, tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        for name in sorted(zf.namelist()):
            if name.endswith((".nc", ".nc4")) and not name.startswith(("/", "..")):
                member = Path(zf.extract(name, tmp))
                with xr.open_dataset(member, engine="netcdf4", cache=False) as one:
                    parts.append(one.load())
    if not parts:
        raise UsageError(f"the CDS zip {path} holds no NetCDF file")
    return xr.merge(parts, combine_attrs="drop_conflicts", compat="override")


def _first(names: tuple[str, ...], have) -> str | None:
    return next((n for n in names if n in have), None)


def to_cube(ds, *, dataset: str, request: Mapping[str, Any], job_id: str | None):
    """An ERA5 / CMIP6 Dataset as a climate cube (see the module docstring)."""
    import numpy as np

    from astrobio_cli.data.climate import COORDS, KIND, SAMPLE_DIM, SCHEMA

    dims = set(map(str, ds.dims)) | set(map(str, ds.coords))
    tname = _first(TIME_NAMES, dims)
    lat, lon = _first(LAT_NAMES, dims), _first(LON_NAMES, dims)
    if tname is None or lat is None or lon is None:
        raise UsageError(
            f"the CDS file has no time/latitude/longitude axes (it has {sorted(dims)}); "
            "ask for gridded data (data_format netcdf)"
        )
    expver = None
    if "expver" in ds.variables:
        expver = ",".join(sorted({str(x) for x in np.atleast_1d(ds["expver"].values)}))
    ds = ds.drop_vars([v for v in DROP if v in ds.variables])
    for extra_dim in [d for d in ds.dims if ds.sizes[d] == 1 and d in DROP]:
        ds = ds.squeeze(extra_dim, drop=True)
    ds = ds.drop_vars([v for v in ("time_bnds", "lat_bnds", "lon_bnds") if v in ds.variables])
    if "bnds" in ds.dims:
        ds = ds.drop_dims("bnds")
    level = _first(LEVEL_NAMES, set(map(str, ds.dims)))
    renames = {tname: SAMPLE_DIM, lat: "lat", lon: "lon"}
    if level is not None and level != "plev":
        renames[level] = "plev"
    ds = ds.rename(renames)
    times = ds[SAMPLE_DIM].values
    ds = ds.drop_vars(SAMPLE_DIM).assign_coords(time=(SAMPLE_DIM, times))
    ds["time"].attrs.update(long_name="time", standard_name="time")
    if "plev" in ds.dims:
        p = ds["plev"]
        units = str(p.attrs.get("units", "hPa" if level != "plev" else "Pa")).lower()
        scale = 100.0 if units in ("hpa", "mb", "millibars", "mbar") else 1.0
        ds = ds.assign_coords(plev=np.asarray(p.values, dtype=np.float64) * scale)
        ds["plev"].attrs.update(
            units="Pa", standard_name="air_pressure", long_name="pressure", positive="down"
        )
        ds = ds.sortby("plev", ascending=False)  # surface first
    ds = ds.sortby("lat")
    ds["lat"].attrs.update(units=COORDS["lat"], standard_name="latitude", long_name="latitude")
    ds["lon"].attrs.update(units=COORDS["lon"], standard_name="longitude", long_name="longitude")

    out = {}
    for name in list(ds.data_vars):
        da = ds[name]
        attrs = dict(da.attrs)
        if name == "tisr":  # daily accumulation (J m-2 per day) -> zonal-mean W m-2
            new, units = "rsdt", "W m-2"
            da = (da / 86400.0).mean("lon") if "lon" in da.dims else da / 86400.0
        elif name in RENAME:
            new, units, scale = RENAME[name]
            if scale is not None:
                da = da * scale
        else:
            new, units = name, str(attrs.get("units", ""))
        if new in out:
            raise UsageError(f"the CDS file has both {name} and another variable named {new}")
        if new in SCHEMA and SCHEMA[new].dims == ("lat", "lon") and "plev" in da.dims:
            raise UsageError(f"{name} -> {new} has pressure levels; the schema says (lat, lon)")
        attrs.update(units=units, era5_name=name)
        attrs.pop("_FillValue", None)
        if new in SCHEMA:
            attrs["astrobio_schema_units"] = SCHEMA[new].units
        order = [d for d in (SAMPLE_DIM, "plev", "lat", "lon") if d in da.dims]
        da = da.transpose(*order, ...).astype("float32")
        da.attrs = attrs
        da.encoding = {}
        out[new] = da
    cube = ds.drop_vars(list(ds.data_vars)).assign(out)
    cube.attrs = dict(ds.attrs)
    cube.attrs.update(
        astrobio_kind=KIND,
        astrobio_source=SOURCE,
        cds_dataset=dataset,
        cds_request=json.dumps(dict(request), sort_keys=True),
        cds_job_id=job_id or "",
        era5_renamed=json.dumps(
            {str(v.attrs["era5_name"]): k for k, v in out.items() if v.attrs["era5_name"] != k}
        ),
    )
    if expver:
        cube.attrs["era5_expver"] = expver
    for c in cube.coords:
        cube[c].encoding = {}
    return cube


def write_cube(cube, out: Path) -> None:
    """The cube to NetCDF-4 at `out`, atomically (zlib level 1, one chunk per sample)."""
    from astrobio_cli.net.files import atomic_path

    enc = {}
    for name, da in cube.data_vars.items():
        chunks = tuple(1 if d == "sample" else n for d, n in zip(da.dims, da.shape, strict=True))
        enc[name] = {"zlib": True, "complevel": 1, "chunksizes": chunks, "_FillValue": None}
    with atomic_path(out) as tmp:
        cube.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=enc)


# -- fetching --------------------------------------------------------------------------------


@dataclass
class CdsResult:
    source: str
    dataset: str
    job_id: str | None
    output: Path
    provenance: Path
    variables: dict[str, dict[str, Any]]
    samples: int
    grid: dict[str, int]
    requests: int
    cached: int
    bytes: int
    asset_url: str
    request: dict[str, Any]

    @property
    def from_cache(self) -> bool:
        return self.requests == 0 and self.cached > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "dataset": self.dataset,
            "job_id": self.job_id,
            "out": str(self.output),
            "output": str(self.output),
            "provenance": str(self.provenance),
            "samples": self.samples,
            "grid": self.grid,
            "variables": self.variables,
            "from_cache": self.from_cache,
            "downloaded_bytes": self.bytes,
            "asset_url": self.asset_url,
            "request": self.request,
        }


def _one(client, cache, q: CdsQuery, *, refresh: bool, progress: bool | None, say):
    """One CDS request through the cache: (hit, job document or None when cached)."""
    from astrobio_cli.net.download import download
    from astrobio_data_sources._remote import keyed

    state: dict[str, Any] = {}

    def fetch_asset(dest: Path):
        job, href = run_job(client, q, say=say)
        state["job"] = job
        res = download(client, href, dest, validate=_validate, progress=progress)
        res.headers["cds-job-id"] = str(job.get("jobID"))
        return res

    key = keyed(client, {"dataset": q.dataset, "inputs": q.inputs})
    hit = cache.fetch(SOURCE, key, fetch_asset, refresh=refresh)
    if hit.from_cache:
        say(f"cds: {q.dataset}: cache hit ({hit.entry.describe()}); --refresh asks again")
    return hit, state.get("job")


def _converted(hit, q: CdsQuery, job_id: str | None):
    try:
        raw = _open_asset(hit.path)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(
            f"the CDS asset {hit.path} cannot be read ({type(exc).__name__}: {exc}); "
            "run again with --refresh"
        ) from None
    return to_cube(raw, dataset=q.dataset, request=q.inputs, job_id=job_id)


def merge_model_ready(pressure, single):
    """The two ERA5 cubes as one, plus Earth's planet parameters as per-sample scalars."""
    import numpy as np
    import xarray as xr

    for c in ("lat", "lon"):
        a, b = pressure[c].values, single[c].values
        if a.shape != b.shape or not np.allclose(a, b):
            raise UsageError(f"the pressure- and single-level files have different {c} grids")
    ta, ts = pressure["time"].values, single["time"].values
    if ta.shape != ts.shape or not (ta == ts).all():
        raise UsageError("the pressure- and single-level files have different months")
    attrs = dict(pressure.attrs)
    attrs.update(
        cds_dataset=f"{PRESSURE} + {SINGLE}",
        cds_request=json.dumps(
            {
                "pressure": json.loads(pressure.attrs["cds_request"]),
                "single": json.loads(single.attrs["cds_request"]),
            },
            sort_keys=True,
        ),
        cds_job_id=f"{pressure.attrs.get('cds_job_id', '')} {single.attrs.get('cds_job_id', '')}",
        era5_renamed=json.dumps(
            {
                **json.loads(pressure.attrs["era5_renamed"]),
                **json.loads(single.attrs["era5_renamed"]),
            }
        ),
        astrobio_planet_parameters="Earth values assumed (not ERA5 data): "
        + ", ".join(f"{k}={v[0]:g} {v[1]}" for k, v in EARTH.items()),
    )
    merged = xr.merge([pressure, single.drop_vars("time")], combine_attrs="override")
    n = merged.sizes["sample"]
    for name, (value, units, what) in EARTH.items():
        merged[name] = xr.DataArray(
            np.full(n, value, dtype=np.float32),
            dims=("sample",),
            attrs={"units": units, "long_name": what, "astrobio_assumed": "Earth constant"},
        )
    merged.attrs = attrs
    return merged


def fetch(
    q: CdsQuery,
    *,
    out: Path | None = None,
    refresh: bool = False,
    progress: bool | None = None,
    say: Callable[[str], None] = _say,
) -> CdsResult:
    """Run the request(s) (or take them from the cache) and write the cube + provenance."""
    from astrobio_cli.net import provenance
    from astrobio_cli.net.cache import Cache
    from astrobio_cli.net.files import sha256_file
    from astrobio_cli.settings import get_settings
    from astrobio_data_sources._remote import Fetched, check_out, default_out, provenance_record

    out = (
        check_out(out, ".nc")
        if out is not None
        else default_out(
            SOURCE, q.short(), [(p.dataset, p.inputs) for p in q.parts()], suffix=".nc"
        )
    )
    cache = Cache(get_settings().cache_dir)
    with _client() as client:
        fetched, cubes, jobs = [], [], []
        for part in q.parts():
            hit, job = _one(client, cache, part, refresh=refresh, progress=progress, say=say)
            job_id = hit.entry.record.get("headers", {}).get("cds-job-id")
            fetched.append(Fetched(str(hit.entry.record.get("url", "")), hit))
            cubes.append(_converted(hit, part, job_id))
            jobs.append(
                {
                    "dataset": part.dataset,
                    "job_id": job_id,
                    "submit_url": client.full_url(execution_path(part.dataset)),
                    "request": part.request(),
                    **{k: (job or {}).get(k) for k in ("status", "created", "started", "finished")},
                }
            )
        cube = cubes[0] if len(cubes) == 1 else merge_model_ready(*cubes)
        write_cube(cube, out)
        variables = {
            n: {
                "dims": list(map(str, da.dims)),
                "units": da.attrs.get("units", ""),
                "era5_name": da.attrs.get("era5_name"),
            }
            for n, da in cube.data_vars.items()
        }
        rec = provenance_record(
            source=SOURCE,
            query=json.dumps([p.request() for p in q.parts()], sort_keys=True),
            fetched=fetched,
            output=out,
            output_format="netcdf",
            extra={
                "kind": "climate-cube",
                "dataset": " + ".join(p.dataset for p in q.parts()),
                "request": q.request(),
                "job_id": jobs[0]["job_id"],
                "jobs": jobs,
                "variables": variables,
                "assumed": cube.attrs.get("astrobio_planet_parameters"),
            },
        )
        rec["rows"] = int(cube.sizes["sample"])
        rec["output"]["sha256"] = sha256_file(out)
        sidecar = provenance.write_sidecar(out, rec, redact=client.redact)
    net = [f for f in fetched if not f.hit.from_cache]
    return CdsResult(
        source=SOURCE,
        dataset=" + ".join(p.dataset for p in q.parts()),
        job_id=" ".join(str(j["job_id"]) for j in jobs),
        output=out,
        provenance=sidecar,
        variables=variables,
        samples=int(cube.sizes["sample"]),
        grid={d: int(cube.sizes[d]) for d in ("plev", "lat", "lon") if d in cube.sizes},
        requests=len(net),
        cached=len(fetched) - len(net),
        bytes=sum(f.hit.entry.bytes for f in net),
        asset_url=" ".join(f.url for f in fetched),
        request=q.request() if q.companion is None else {"parts": [p.request() for p in q.parts()]},
    )


def render(r: CdsResult) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"cds: {r.dataset}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    t.add_row("job", escape(str(r.job_id)))
    t.add_row("samples", f"{r.samples} (time steps)")
    t.add_row("grid", " x ".join(f"{k} {v}" for k, v in r.grid.items()))
    names = [
        f"{n} [{v['units']}]" + (f" <- {v['era5_name']}" if v["era5_name"] != n else "")
        for n, v in r.variables.items()
    ]
    t.add_row("variables", escape(", ".join(names)))
    t.add_row(
        "download",
        "from the cache, no network" if r.from_cache else f"{r.bytes} bytes",
    )
    t.add_row("cube", escape(str(r.output)))
    t.add_row("provenance", escape(str(r.provenance)))
    Console(soft_wrap=True).print(t, highlight=False)


class Cds:
    """The source object (DataSourceSpec.factory)."""

    name = SOURCE

    def query(self, **options: Any) -> CdsQuery:
        return CdsQuery.from_options(**options)

    def fetch(self, query: CdsQuery, **kw: Any) -> CdsResult:
        return fetch(query, **kw)
