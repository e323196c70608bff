"""What the remote sources (mast, ncbi, uniprot, ensembl, gtdb) share on top of `astrobio_cli.net`.

The net layer does HTTP, downloads, the cache and provenance; this module adds the few things
these sources need beyond it, without touching the layer:

- :class:`SourceClient`: an :class:`~astrobio_cli.net.http.HttpClient` whose non-retryable 4xx
  errors carry the status (:class:`HttpStatusError`), so a 404/400 can become a clear "not found";
  and :meth:`SourceClient.send`, a small request that returns chosen error statuses instead of
  raising.
- :func:`cached`: one cached, verified request (GET or POST), keyed by method, URL, parameters
  and form data (never the API key).
- :func:`write_outputs`: a typed table to Parquet plus its provenance sidecar, recording every
  request an output was made from.
- :class:`SourceResult` and :func:`render` for the command's rich summary.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astrobio_cli.errors import UserError
from astrobio_cli.net.errors import NetworkError
from astrobio_cli.net.http import HttpClient, RetryPolicy


class NotFoundError(UserError):
    """The archive has nothing for what was asked (unknown target, accession, release...)."""


class HttpStatusError(NetworkError):
    """A non-retryable HTTP error status (4xx other than 429), with the status kept."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class SourceClient(HttpClient):
    """HttpClient whose 4xx errors keep their status; see :meth:`send`."""

    def check_status(self, response, what: str) -> None:
        try:
            super().check_status(response, what)
        except HttpStatusError:
            raise
        except NetworkError as exc:
            raise HttpStatusError(str(exc), response.status_code) from None

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        allow: Sequence[int] = (),
        after: Callable[[Any], None] | None = None,
    ):
        """A small request with retries; a status in `allow` is returned, not raised.

        after(response): called with every response (e.g. to honour X-RateLimit-* headers).
        """
        what = f"{method} {self.full_url(path, params if method == 'GET' else None)}"

        def once(_attempt: int):
            with self.stream(
                method,
                self.url(path),
                params=self.params_with_key(params) or None,
                data=dict(data) if data is not None else None,
                headers=dict(headers or {}),
            ) as r:
                r.read()
                if after is not None:
                    after(r)
                if r.status_code not in allow:
                    self.check_status(r, what)
                return r

        return self.with_retries(what, once)


def make_client(
    source: str,
    default_base_url: str,
    *,
    default_rate: float | None = None,
    keyed_rate: float | None = None,
    **kw: Any,
) -> SourceClient:
    """A client from `settings.source(source)`; the rate limit defaults to the service's published
    one (`keyed_rate` when an API key is set) unless the settings give `rate_limit`."""
    from astrobio_cli.settings import get_settings

    s = get_settings().source(source)
    key = s.api_key.get_secret_value() if s.api_key is not None else None
    rate = s.rate_limit
    if rate is None:
        rate = keyed_rate if (key and keyed_rate) else default_rate
    kw.setdefault("retry", RetryPolicy(retries=s.retries, backoff=s.backoff))
    kw.setdefault("deadline", s.deadline)
    kw.setdefault("command_deadline", s.command_deadline)
    kw.setdefault("max_bytes", s.max_bytes)
    return SourceClient(
        source,
        base_url=s.base_url or default_base_url,
        timeout=s.timeout,
        rate_limit=rate,
        api_key=key,
        **kw,
    )


def keyed(client: HttpClient, key: Mapping[str, Any]) -> dict[str, Any]:
    """A source's own cache key, plus the service's base URL (a mirror or a test server never
    answers for another). Never holds the API key."""
    return {"base_url": client.base_url, **dict(key)}


def request_line(
    client: HttpClient,
    method: str,
    path: str,
    params: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
) -> str:
    """`GET https://...?a=b` or `POST https://... request=...`: what --dry-run prints (redacted)."""
    if method == "GET":
        return f"GET {client.full_url(path, params)}"
    line = f"{method} {client.full_url(path, params)}"
    if data:
        from urllib.parse import urlencode

        line += f"  (form: {client.redact(urlencode(dict(data)))})"
    return line


def cached(
    cache: Any,
    client: SourceClient,
    source: str,
    path: str,
    *,
    method: str = "GET",
    params: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    key: Mapping[str, Any] | None = None,
    refresh: bool = False,
    validate: Callable[[Path, dict[str, str]], None] | None = None,
    progress: bool | None = None,
    extra: Mapping[str, Any] | None = None,
):
    """One request through the cache. Returns the cache `Hit` (hit.path is the verified body).

    key: the cache request mapping; default: method, URL (no key), params, form data, Accept.
    validate(tmp, headers): raise to reject a body before it enters the cache.
    """
    from astrobio_cli.net.download import download

    request = (
        keyed(client, key)
        if key is not None
        else {
            "method": method,
            "url": client.url(path),
            "params": sorted((str(k), str(v)) for k, v in (params or {}).items()),
            "data": sorted((str(k), str(v)) for k, v in (data or {}).items()),
            "accept": (headers or {}).get("Accept", ""),
        }
    )
    kw: dict[str, Any] = {"method": method, "params": params, "data": data, "headers": headers}
    if validate is not None:
        kw["validate"] = validate

    def fetch(dest: Path):
        return download(client, path, dest, progress=progress, **kw)

    return cache.fetch(source, request, fetch, refresh=refresh, extra=extra)


def json_body(path: Path, what: str) -> Any:
    """The JSON document at `path`; a ContentError quoting its start when it is not JSON."""
    from astrobio_cli.net.errors import ContentError

    raw = path.read_bytes()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        head = raw[:120].decode("utf-8", "replace")
        raise ContentError(f"{what} did not send JSON ({exc}): {head!r}") from None


def json_validator(what: str, check: Callable[[Any], None] | None = None):
    """A download `validate` hook: the body must be JSON (and pass `check`)."""

    def validate(tmp: Path, _headers: dict[str, str]) -> None:
        doc = json_body(tmp, what)
        if check is not None:
            check(doc)

    return validate


def short_hash(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def slug(text: str, limit: int = 40) -> str:
    out = "".join(ch.lower() if ch.isalnum() else "-" for ch in text)
    out = "-".join(p for p in out.split("-") if p)
    return out[:limit].strip("-") or "query"


def default_out(source: str, stem: str, *parts: Any, suffix: str = ".parquet") -> Path:
    from astrobio_cli.settings import get_settings

    return get_settings().data_dir / source / f"{slug(stem)}-{short_hash(*parts)}{suffix}"


def check_out(out: Path, suffix: str = ".parquet") -> Path:
    from astrobio_cli.errors import UsageError

    out = Path(out)
    if out.is_dir():
        raise UsageError(
            f"--out {out} is a directory; give a file name such as {out / 'x'}{suffix}"
        )
    return out


@dataclass
class Fetched:
    """One request an output was made from (for provenance)."""

    url: str
    hit: Any

    def doc(self) -> dict[str, Any]:
        e = self.hit.entry
        return {
            "url": self.url,
            "retrieved_at": e.record.get("created"),
            "http_status": e.record.get("status"),
            "bytes": e.bytes,
            "sha256": e.sha256,
            "from_cache": bool(self.hit.from_cache),
            "cache_entry": str(e.body),
        }


def provenance_record(
    *,
    source: str,
    query: str,
    fetched: list[Fetched],
    table: Any = None,
    output: Path,
    output_format: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The provenance document for an output made from one or more cached requests."""
    from astrobio_cli.net import provenance
    from astrobio_cli.net.tables import columns_doc

    first = fetched[0]
    rec = provenance.record(
        source=source,
        url=first.url,
        query=query,
        hit=first.hit,
        columns=columns_doc(table) if table is not None else None,
        rows=table.num_rows if table is not None else None,
        output=output,
        output_format=output_format,
        extra=extra,
    )
    rec["from_cache"] = all(f.hit.from_cache for f in fetched)
    rec["bytes"] = sum(f.hit.entry.bytes for f in fetched)
    rec["requests"] = [f.doc() for f in fetched]
    return rec


def write_outputs(
    table: Any,
    out: Path,
    *,
    source: str,
    query: str,
    fetched: list[Fetched],
    client: HttpClient,
    extra: Mapping[str, Any] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """`table` -> Parquet at `out` (atomic) + `<out>.provenance.json`. Returns (sidecar, record)."""
    from astrobio_cli.net import provenance
    from astrobio_cli.net.tables import write_table

    rec = provenance_record(
        source=source,
        query=query,
        fetched=fetched,
        table=table,
        output=out,
        output_format="parquet",
        extra=extra,
    )
    # The record inside the Parquet schema is redacted like the sidecar.
    safe = json.loads(client.redact(json.dumps(rec)))
    rec["output"]["sha256"] = write_table(table, out, "parquet", provenance=safe)
    return provenance.write_sidecar(out, rec, redact=client.redact), rec


def write_file_with_provenance(
    chunks: Sequence[Path | bytes],
    out: Path,
    *,
    source: str,
    query: str,
    fetched: list[Fetched],
    client: HttpClient,
    output_format: str,
    rows: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Concatenate `chunks` (verified bodies, or bytes) into `out` atomically + provenance."""
    import shutil

    from astrobio_cli.net import provenance
    from astrobio_cli.net.files import atomic_path, sha256_file

    with atomic_path(out) as tmp, open(tmp, "wb") as dst:
        for c in chunks:
            if isinstance(c, bytes):
                dst.write(c)
                continue
            with open(c, "rb") as src:
                shutil.copyfileobj(src, dst)
    rec = provenance_record(
        source=source,
        query=query,
        fetched=fetched,
        output=out,
        output_format=output_format,
        extra=extra,
    )
    rec["rows"] = rows
    rec["output"]["sha256"] = sha256_file(out)
    return provenance.write_sidecar(out, rec, redact=client.redact)


@dataclass
class SourceResult:
    """What a remote source's fetch returns; :func:`render` prints it."""

    source: str
    rows: int
    columns: list[dict[str, Any]]
    outputs: list[tuple[str, Path]]  # (label, path)
    requests: int  # requests that went to the network
    cached: int  # requests answered by the cache
    bytes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def from_cache(self) -> bool:
        return self.requests == 0 and self.cached > 0


def traffic(fetched: Sequence[Fetched]) -> dict[str, int]:
    """SourceResult's request counts for what a fetch did: network requests, cache hits, bytes."""
    net = [f for f in fetched if not f.hit.from_cache]
    return {
        "requests": len(net),
        "cached": len(fetched) - len(net),
        "bytes": sum(f.hit.entry.bytes for f in net),
    }


def render(r: SourceResult) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(soft_wrap=True)
    if r.from_cache:
        console.print(
            f"cache hit: all {r.cached} request(s) answered from the cache, no network used; "
            "--refresh downloads again",
            highlight=False,
        )
    t = Table(title=r.source, show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    t.add_row("rows", str(r.rows))
    names = [c["name"] + (f" [{c['unit']}]" if c.get("unit") else "") for c in r.columns]
    t.add_row("columns", escape(f"{len(names)}: " + ", ".join(names)))
    t.add_row(
        "requests",
        f"{r.requests} downloaded ({r.bytes} bytes), {r.cached} from the cache",
    )
    for label, path in r.outputs:
        t.add_row(label, escape(str(path)))
    for note in r.notes:
        t.add_row("note", escape(note))
    console.print(t, highlight=False)


def echo_plan(lines: Sequence[str]) -> None:
    import typer

    for line in lines:
        typer.echo(line)


def result_doc(r: SourceResult) -> dict[str, Any]:
    """A remote source's `--json` summary: what :func:`render` shows, paths as strings.

    out: the table (or summary) Parquet, the path `--out` names; provenance: its sidecar;
    records / records_provenance: the records file beside it (FASTA, GenBank, JSON) and its
    sidecar; files: every file written outside the cache; originals: cached source files.
    """
    from astrobio_cli.net.provenance import sidecar_path

    out = next(p for label, p in r.outputs if label in ("table", "summary"))
    doc: dict[str, Any] = {"source": r.source, "out": str(out)}
    more: dict[str, Any] = {}
    files = [Path(out)]
    for label, p in r.outputs:
        if label in ("table", "summary"):
            continue
        if label == "original":
            more.setdefault("originals", []).append(str(p))
            continue
        if label == "quicklook":
            more["quicklook"] = str(p)
            files += sorted(Path(p).glob("*.png"))
            continue
        key = label
        if label == "provenance":
            key = "provenance" if Path(p) == sidecar_path(out) else "records_provenance"
        more[key] = str(p)
        files.append(Path(p))
    return {
        **doc,
        **({"provenance": more.pop("provenance")} if "provenance" in more else {}),
        "rows": r.rows,
        "columns": r.columns,
        "requests": r.requests,
        "cached": r.cached,
        "bytes": r.bytes,
        "from_cache": r.from_cache,
        **more,
        "files": [str(f) for f in files],
        "notes": list(r.notes),
    }


def show(r: SourceResult, as_json: bool = False) -> None:
    """The command's summary: the rich table, or one JSON object on one line with --json."""
    if as_json:
        import typer

        typer.echo(json.dumps(result_doc(r)))
    else:
        render(r)


def plan_doc(source: str, lines: Sequence[str]) -> dict[str, Any]:
    """`--dry-run --json`: the planned requests of :func:`echo_plan`'s lines as one object.

    `GET <url>  (then ...)` -> {"method", "url", "then"}; `POST <url>  request={json}` ->
    {"method", "url", "request": {...}}; `note: ...` lines -> "notes".
    """
    requests: list[dict[str, Any]] = []
    notes: list[str] = []
    for line in lines:
        method, _, rest = line.partition(" ")
        if not method.isupper() or not rest:
            notes.append(line.removeprefix("note: "))
            continue
        url, _, detail = rest.partition("  ")
        item: dict[str, Any] = {"method": method, "url": url}
        detail = detail.strip()
        if detail.startswith("request="):
            try:
                item["request"] = json.loads(detail[len("request=") :])
            except json.JSONDecodeError:
                item["request"] = detail[len("request=") :]
        elif detail.startswith("(form: "):
            item["form"] = detail[len("(form: ") : -1]
        elif detail:
            item["then"] = detail.removeprefix("(").removesuffix(")")
        requests.append(item)
    return {"dry_run": True, "source": source, "requests": requests, "notes": notes}


def show_plan(source: str, lines: Sequence[str], as_json: bool = False) -> None:
    """--dry-run's output: the request lines, or one JSON object (:func:`plan_doc`)."""
    if as_json:
        import typer

        typer.echo(json.dumps(plan_doc(source, lines)))
    else:
        echo_plan(lines)


class RateLimitHeaders:
    """Honour `X-RateLimit-Remaining` / `X-RateLimit-Reset` (seconds until the window resets):
    when a response says no requests remain, the next request waits for the reset."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep, max_wait: float = 600.0):
        self.sleep, self.max_wait = sleep, max_wait
        self.until: float = 0.0
        self.waited: list[float] = []

    def __call__(self, response: Any) -> None:
        h = response.headers
        try:
            remaining = int(float(h.get("x-ratelimit-remaining", "1")))
            reset = float(h.get("x-ratelimit-reset", "0"))
        except ValueError:
            return
        if remaining <= 0 and reset > 0:
            self.until = time.monotonic() + min(reset, self.max_wait)

    def wait(self) -> None:
        left = self.until - time.monotonic()
        if left > 0:
            self.waited.append(left)
            self.sleep(left)
        self.until = 0.0


@dataclass
class SmallResult:
    """A DownloadResult look-alike for :func:`cached_small` (kept headers included)."""

    url: str
    status: int
    bytes: int
    sha256: str
    headers: dict[str, str]


def cached_small(
    cache: Any,
    client: SourceClient,
    source: str,
    path: str,
    *,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    key: Mapping[str, Any],
    refresh: bool = False,
    validate: Callable[[bytes, dict[str, str]], None] | None = None,
    keep_headers: Sequence[str] = (),
    allow: Sequence[int] = (),
    after: Callable[[Any], None] | None = None,
    before: Callable[[], None] | None = None,
):
    """A small GET through the cache that keeps chosen response headers (e.g. `Link`) in the
    cache record (`hit.entry.record["headers"]`), which a streamed download does not.

    A status in `allow` raises HttpStatusError with the server's words *before* anything is
    cached, so callers can turn a 400/404 into "not found". validate(body, headers) rejects a
    body before it is cached.
    """
    from astrobio_cli.net.content import describe_error_body
    from astrobio_cli.net.files import atomic_write_bytes

    def fetch(dest: Path) -> SmallResult:
        if before is not None:
            before()
        r = client.send(
            "GET", path, params=params, headers=headers, allow=tuple(allow), after=after
        )
        shown = client.full_url(path, params)
        if r.status_code in allow:
            said = describe_error_body(r.content, r.headers.get("content-type", ""))
            raise HttpStatusError(
                client.redact(f"GET {shown}: HTTP {r.status_code}: {said}"), r.status_code
            )
        hdrs = {k.lower(): r.headers[k] for k in ("content-type", *keep_headers) if k in r.headers}
        body = r.content
        if validate is not None:
            validate(body, hdrs)
        atomic_write_bytes(dest, body)
        return SmallResult(shown, r.status_code, len(body), hashlib.sha256(body).hexdigest(), hdrs)

    return cache.fetch(source, keyed(client, key), fetch, refresh=refresh)


class Steps:
    """A rich progress bar counting requests (pages, lookups) on stderr, for loops of small
    requests that have no byte-level bar. Silent when stderr is not a terminal (or `enabled`
    is False). Use as a context manager; `advance()` after each step."""

    def __init__(self, description: str, total: int | None = None, enabled: bool | None = None):
        import sys

        self.description, self.total = description, total
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Steps:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total)
        return self

    def advance(self, n: int = 1, total: int | None = None) -> None:
        if self._progress is not None:
            if total is not None:
                self._progress.update(self._task, total=total)
            self._progress.advance(self._task, n)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
