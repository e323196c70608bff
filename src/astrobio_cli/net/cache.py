"""The download cache: one verified file per (source, normalised request).

Layout under `settings.cache_dir`::

    <source>/<key>.body    the response body exactly as downloaded
    <source>/<key>.json    its record: request, URL, time, HTTP status, bytes, sha256, corrupt?

The key is the sha256 of the source name and the request (method, URL and sorted parameters,
the query's whitespace collapsed by the caller, secrets left out), so the same question asked
twice is a hit that needs no network. A hit is checked first (size and sha256 as recorded); a body
that fails, a record that cannot be read, or a body without a record is a miss, fetched again
(and a failing server is then reported with the cached copy named corrupt, not offered for use).
`verify` recomputes every checksum, reports unreadable records and orphan bodies, and marks each
problem `corrupt` in a valid record.

Partial downloads (`.<name>.<pid>.<rand>.part` of a transfer in progress or killed,
`.<name>.resume` kept for a resume) are listed by :meth:`Cache.partials` and removed by
:meth:`Cache.clean` (those of running processes are left alone).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astrobio_cli import __version__
from astrobio_cli.net.errors import NetworkError
from astrobio_cli.net.files import atomic_write_json, sha256_file


def request_key(source: str, request: Mapping[str, Any]) -> str:
    """A stable key for `request` (a JSON-able mapping without secrets)."""
    blob = json.dumps({"source": source, "request": request}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def human_age(seconds: float) -> str:
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


@dataclass
class CacheEntry:
    source: str
    key: str
    body: Path
    record: dict[str, Any]
    broken: str | None = None  # why the `.json` record could not be used (then `record` is a stub)

    @property
    def created(self) -> dt.datetime:
        try:
            return dt.datetime.fromisoformat(self.record["created"])
        except (KeyError, TypeError, ValueError):
            try:
                return dt.datetime.fromtimestamp(self.body.stat().st_mtime, dt.UTC)
            except OSError:
                return _now()

    @property
    def age_s(self) -> float:
        return (_now() - self.created).total_seconds()

    @property
    def corrupt(self) -> str | None:
        return self.record.get("corrupt")

    @property
    def sha256(self) -> str:
        return self.record.get("sha256", "")

    @property
    def bytes(self) -> int:
        try:
            return int(self.record.get("bytes", 0))
        except (TypeError, ValueError):
            return 0

    def describe(self) -> str:
        """`cached copy from 2026-11-22 10:31 UTC (3 h old) at PATH`."""
        when = self.created.strftime("%Y-%m-%d %H:%M UTC")
        return f"cached copy from {when} ({human_age(self.age_s)} old) at {self.body}"


@dataclass
class Partial:
    """A partial download in the cache: a transfer in progress or killed, or kept for a resume."""

    path: Path
    bytes: int
    live: bool  # its process is still running


@dataclass
class Hit:
    """What :meth:`Cache.fetch` returns: the entry and whether it came from the cache."""

    entry: CacheEntry
    from_cache: bool

    @property
    def path(self) -> Path:
        return self.entry.body


class Cache:
    """The cache of one process (usually `Cache(get_settings().cache_dir)`)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @classmethod
    def from_settings(cls) -> Cache:
        from astrobio_cli.settings import get_settings

        return cls(get_settings().cache_dir)

    def _paths(self, source: str, key: str) -> tuple[Path, Path]:
        d = self.root / source
        return d / f"{key}.body", d / f"{key}.json"

    def entry(self, source: str, key: str) -> CacheEntry | None:
        """The entry for `key`, corrupt or not, or None. A record that cannot be read (or a body
        without one) gives an entry marked corrupt, with `broken` saying why."""
        body, meta = self._paths(source, key)
        try:
            raw = meta.read_bytes()
        except FileNotFoundError:
            if not body.exists():
                return None
            return self._broken(source, key, body, "its .json record is missing")
        try:
            record = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            why = "empty" if not raw.strip() else f"not JSON ({type(exc).__name__})"
            return self._broken(source, key, body, f"its .json record is unreadable: {why}")
        if not isinstance(record, dict):
            return self._broken(source, key, body, "its .json record is not a JSON object")
        return CacheEntry(source, key, body, record)

    def _broken(self, source: str, key: str, body: Path, why: str) -> CacheEntry:
        try:
            size = body.stat().st_size
        except OSError:
            size = 0
        record = {"source": source, "key": key, "bytes": size, "sha256": "", "corrupt": why}
        return CacheEntry(source, key, body, record, broken=why)

    def problem(self, e: CacheEntry, *, checksum: bool = True) -> str | None:
        """Why entry `e` cannot be used (None when its body matches its record)."""
        if e.broken:
            return e.broken
        if e.corrupt:
            return e.corrupt
        try:
            size = e.body.stat().st_size
        except FileNotFoundError:
            return "body file is missing"
        if size != e.bytes:
            return f"{size} bytes, recorded {e.bytes}"
        if checksum and e.sha256:
            digest = sha256_file(e.body)
            if digest != e.sha256:
                return f"sha256 {digest[:12]}... != recorded {e.sha256[:12]}..."
        return None

    def lookup(self, source: str, key: str) -> CacheEntry | None:
        """A usable entry: present, not marked corrupt, and the body has the recorded size and
        sha256 (an unmarked mismatch is marked corrupt now)."""
        e = self.entry(source, key)
        if e is None:
            return None
        problem = self.problem(e)
        if problem is None:
            return e
        if not e.broken and not e.corrupt and e.body.exists():
            self._mark(e, problem)
        return None

    def _mark(self, e: CacheEntry, problem: str | None) -> None:
        e.record["corrupt"] = problem
        e.record["verified"] = _now().isoformat(timespec="seconds")
        atomic_write_json(self._paths(e.source, e.key)[1], e.record)

    def fetch(
        self,
        source: str,
        request: Mapping[str, Any],
        download: Callable[[Path], Any],
        *,
        refresh: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> Hit:
        """Return the cached body for `request`, or call `download(body_path)` to make it.

        download(path) must write `path` atomically and return an object with `url`, `status`,
        `bytes`, `sha256` and `headers` (a DownloadResult). A network failure names the cached
        copy, if there is one, in its message.
        """
        key = request_key(source, request)
        if not refresh:
            hit = self.lookup(source, key)
            if hit is not None:
                return Hit(hit, True)
        old = self.entry(source, key)
        body, meta = self._paths(source, key)
        try:
            result = download(body)
        except NetworkError as exc:
            if old is None or not old.body.exists():
                raise
            problem = self.problem(old)
            if problem:
                hint = (
                    f"the cached copy at {old.body} is corrupt ({problem}) and cannot stand in; "
                    "it is replaced once the server answers"
                )
            else:
                hint = f"a {old.describe()} exists (run without --refresh to use it)"
            raise type(exc)(f"{exc}; {hint}") from None
        record = {
            "source": source,
            "key": key,
            "request": dict(request),
            "url": result.url,
            "created": _now().isoformat(timespec="seconds"),
            "status": result.status,
            "bytes": result.bytes,
            "sha256": result.sha256,
            "headers": dict(result.headers),
            "astrobio_version": __version__,
            "corrupt": None,
            **dict(extra or {}),
        }
        atomic_write_json(meta, record)
        return Hit(CacheEntry(source, key, body, record), False)

    # -- maintenance ---------------------------------------------------------------------------

    def entries(self, source: str | None = None) -> Iterator[CacheEntry]:
        """Every entry, those with an unreadable record or a body without one included."""
        if not self.root.is_dir():
            return
        dirs = [self.root / source] if source else sorted(p for p in self.root.iterdir())
        for d in dirs:
            if not d.is_dir():
                continue
            keys = {p.stem for p in d.glob("*.json") if not p.name.startswith(".")}
            keys |= {p.stem for p in d.glob("*.body") if not p.name.startswith(".")}
            for key in sorted(keys):
                e = self.entry(d.name, key)
                if e is not None:
                    yield e

    def partials(self, source: str | None = None) -> list[Partial]:
        """Partial downloads: `.part` files (with their `.part.json`) and kept `.resume` files."""
        from astrobio_cli.net.download import process_alive

        if not self.root.is_dir():
            return []
        out = []
        for pattern in (".*.part", ".*.resume"):
            for p in sorted(self.root.glob(f"{source or '*'}/{pattern}")):
                try:
                    size = p.stat().st_size
                except FileNotFoundError:
                    continue
                pid = None
                if p.name.endswith(".part"):
                    fields = p.name[: -len(".part")].split(".")
                    pid = next((int(f) for f in reversed(fields[:-1]) if f.isdigit()), None)
                out.append(Partial(p, size, pid is not None and process_alive(pid)))
        return out

    def verify(self, source: str | None = None) -> list[tuple[CacheEntry, str | None]]:
        """Recompute every checksum; mark problems corrupt (an unreadable record is rewritten as
        a valid one that says so). Returns (entry, problem or None)."""
        out = []
        for e in self.entries(source):
            problem = e.broken
            if problem is None:
                if not e.body.exists():
                    problem = "body file is missing"
                else:
                    digest = sha256_file(e.body)
                    size = e.body.stat().st_size
                    if digest != e.sha256:
                        problem = f"sha256 {digest[:12]}... != recorded {e.sha256[:12]}..."
                        if size != e.bytes:
                            problem += f" ({size} bytes, recorded {e.bytes})"
            if problem:
                self._mark(e, problem)
            elif e.corrupt:  # healed (e.g. restored by hand)
                e.record["corrupt"] = None
                atomic_write_json(self._paths(e.source, e.key)[1], e.record)
            out.append((e, problem))
        return out

    def clean(
        self,
        source: str | None = None,
        *,
        corrupt_only: bool = False,
        older_than_s: float | None = None,
        partial_only: bool = False,
    ) -> list[CacheEntry]:
        """Remove entries (all, or only corrupt ones, or those older than a bound). With no
        filter, or `partial_only` (then no entry), also the partial downloads of processes that
        are gone; :attr:`removed_partials` lists those."""
        removed = []
        for e in [] if partial_only else list(self.entries(source)):
            if corrupt_only and not e.corrupt:
                continue
            if older_than_s is not None and e.age_s < older_than_s:
                continue
            for p in self._paths(e.source, e.key):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            removed.append(e)
        self.removed_partials: list[Partial] = []
        # stray temporary files of a killed process, and partials kept for a resume
        if partial_only or (not corrupt_only and older_than_s is None):
            for part in self.partials(source):
                if part.live:
                    continue
                for p in (part.path, part.path.with_name(part.path.name + ".json")):
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
                self.removed_partials.append(part)
        return removed
