"""The download cache: one verified file per (source, normalised request).

Layout under `settings.cache_dir`::

    <source>/<key>.body    the response body exactly as downloaded
    <source>/<key>.json    its record: request, URL, time, HTTP status, bytes, sha256, corrupt?

The key is the sha256 of the source name and the request (method, URL and sorted parameters,
the query's whitespace collapsed by the caller, secrets left out), so the same question asked
twice is a hit that needs no network. `verify` recomputes every checksum and marks a mismatch
`corrupt`; a corrupt entry is a miss, so it is fetched again on next use.
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

    @property
    def created(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.record["created"])

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
        return int(self.record.get("bytes", 0))

    def describe(self) -> str:
        """`cached copy from 2026-11-22 10:31 UTC (3 h old) at PATH`."""
        when = self.created.strftime("%Y-%m-%d %H:%M UTC")
        return f"cached copy from {when} ({human_age(self.age_s)} old) at {self.body}"


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
        """The entry for `key`, corrupt or not, or None."""
        body, meta = self._paths(source, key)
        try:
            record = json.loads(meta.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return CacheEntry(source, key, body, record)

    def lookup(self, source: str, key: str) -> CacheEntry | None:
        """A usable entry: present, not marked corrupt, and the body has the recorded size."""
        e = self.entry(source, key)
        if e is None or e.corrupt:
            return None
        try:
            if e.body.stat().st_size != e.bytes:
                return None
        except FileNotFoundError:
            return None
        return e

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
            if old.corrupt:
                hint = f"the cached copy at {old.body} is corrupt ({old.corrupt})"
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
        if not self.root.is_dir():
            return
        dirs = [self.root / source] if source else sorted(p for p in self.root.iterdir())
        for d in dirs:
            if not d.is_dir():
                continue
            for meta in sorted(d.glob("*.json")):
                e = self.entry(d.name, meta.stem)
                if e is not None:
                    yield e

    def verify(self, source: str | None = None) -> list[tuple[CacheEntry, str | None]]:
        """Recompute every checksum; mark mismatches corrupt. Returns (entry, problem or None)."""
        out = []
        for e in self.entries(source):
            problem = None
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
                e.record["corrupt"] = problem
                e.record["verified"] = _now().isoformat(timespec="seconds")
                atomic_write_json(self._paths(e.source, e.key)[1], e.record)
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
    ) -> list[CacheEntry]:
        """Remove entries (all, or only corrupt ones, or those older than a bound)."""
        removed = []
        for e in list(self.entries(source)):
            if corrupt_only and not e.corrupt:
                continue
            if older_than_s is not None and e.age_s < older_than_s:
                continue
            for p in self._paths(e.source, e.key):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            removed.append(e)
        # stray temporary files of a killed process, and partials kept for a resume
        if not corrupt_only and older_than_s is None and self.root.is_dir():
            for pattern in (".*.part", ".*.resume", ".*.resume.json"):
                for part in self.root.glob(f"{source or '*'}/{pattern}"):
                    with contextlib.suppress(FileNotFoundError):
                        part.unlink()
        return removed
