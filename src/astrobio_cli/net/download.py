"""Atomic, verified, resumable streaming downloads.

The body streams into a temporary file beside the destination while its sha256 is computed; the
byte count is checked against Content-Length; an optional `validate(path, response_headers)`
hook checks the content (HTML instead of data, a TAP error...) before the file is renamed into
place. A transfer that breaks is retried (see :class:`~astrobio_cli.net.http.HttpClient`) and,
when bytes had arrived, resumed with `Range: bytes=N-`: a `206` whose Content-Range starts at N is
appended; anything else starts over. The final path never holds a partial or invalid file, and no
temporary file outlives the call, with one deliberate exception: a large transfer (at least
`keep_partial_over` bytes) from a server that accepts ranges and names a validator (ETag or
Last-Modified) that finally fails, or is interrupted with Ctrl-C, leaves `.<name>.resume` (+ `.json`)
beside the destination, and the next download of the same URL to the same place continues it with
`Range` + `If-Range` (the server sends everything again if the file changed meanwhile).

A process killed mid-transfer (SIGKILL, power loss) cannot clean up: its `.<name>.<pid>.<rand>.part`
stays, with `.part.json` beside it (URL + validator, written as soon as the server has shown it
accepts ranges and named a strong validator). The next download to the same place takes over such a
file when its process is gone and its record matches the URL, and resumes it the same way; a stale
partial it cannot use is deleted. `astrobio cache list` shows partials, `cache clean --partial`
removes them.

Limits: the body may not exceed the client's `max_bytes` (announced or counted; a DownloadError,
not retried), and the transfer ends by the request's deadline (see :class:`HttpClient`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from astrobio_cli.net.content import check_body
from astrobio_cli.net.errors import ContentError, DownloadError, NetworkError
from astrobio_cli.net.files import atomic_write_json, temp_path_for
from astrobio_cli.net.http import HttpClient, Retryable

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.I)
HEAD_BYTES = 65536


@dataclass
class DownloadResult:
    path: Path
    url: str  # redacted
    status: int
    bytes: int
    sha256: str
    headers: dict[str, str] = field(default_factory=dict)  # content-type, etag, last-modified
    resumed: int = 0  # how many times a Range request continued the transfer


def _progress_bar(enabled: bool | None, description: str):
    """A rich progress bar on stderr, or None when stderr is not a terminal."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def download(
    client: HttpClient,
    path: str,
    dest: Path | str,
    *,
    method: str = "GET",
    params: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    validate: Callable[[Path, dict[str, str]], None] | None = check_body,
    expected_sha256: str | None = None,
    resume: bool = True,
    keep_partial_over: int | None = 8 << 20,
    progress: bool | None = None,
    what: str | None = None,
) -> DownloadResult:
    """Stream `path` (relative to the client's base URL, or absolute) to `dest`.

    validate(tmp_path, headers): raise (e.g. ContentError) to reject the body; the default rejects
        HTML pages and TAP error documents. Pass None to skip.
    expected_sha256: when known, a mismatch is a DownloadError.
    progress: True/False, or None for "when stderr is a terminal".
    keep_partial_over: keep a failed transfer of at least this many bytes for the next run to
        resume (None: never keep one).
    """
    if validate is check_body:
        validate = _default_validate(client)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(dest)
    url = client.url(path)
    shown = client.full_url(path, params if method == "GET" else None)
    what = what or f"{method} {shown}"
    base_headers = {"Accept-Encoding": "identity", **dict(headers or {})}
    st: dict[str, Any] = {"received": 0, "sha": hashlib.sha256(), "validator": None, "resumed": 0}
    st["ranges"] = False
    partial, partial_meta = _partial_paths(dest)
    tmp_meta = tmp.with_name(tmp.name + ".json")
    if resume and keep_partial_over is not None:
        _claim_partial(partial, partial_meta, tmp, shown, st)
    if resume and keep_partial_over is not None and not st["received"]:
        _claim_orphan(dest, tmp, shown, st)
    else:
        _remove_orphans(dest)
    bar = _progress_bar(progress, f"{client.source}")

    def restart() -> None:
        st["received"], st["sha"] = 0, hashlib.sha256()
        with open(tmp, "wb"):
            pass

    def once(_attempt: int) -> DownloadResult:
        hdrs = dict(base_headers)
        offset = st["received"]
        if offset and resume:
            hdrs["Range"] = f"bytes={offset}-"
            if st["validator"]:
                hdrs["If-Range"] = st["validator"]
        elif offset:
            restart()
            offset = 0
        with client.stream(
            method,
            url,
            params=client.params_with_key(params) or None,
            data=dict(data) if data is not None else None,
            headers=hdrs,
        ) as r:
            if offset and r.status_code == 416:  # e.g. the file shrank: ask for all of it
                restart()
                raise Retryable(f"the server refused a resume at byte {offset} (HTTP 416)")
            client.check_status(r, what)
            st["ranges"] = st["ranges"] or r.headers.get("accept-ranges", "").lower() == "bytes"
            encoded = r.headers.get("content-encoding", "identity").lower() not in ("", "identity")
            length = r.headers.get("content-length")
            total = int(length) if length and length.isdigit() and not encoded else None
            if offset and r.status_code == 206:
                m = _CONTENT_RANGE.match(r.headers.get("content-range", ""))
                if m is None or int(m.group(1)) != offset:
                    # The server sent some other range: drop what we have, ask for everything.
                    restart()
                    raise Retryable(
                        f"bad Content-Range {r.headers.get('content-range')!r} for a resume "
                        f"at byte {offset}"
                    )
                st["resumed"] += 1
                if total is not None:
                    total += offset
            elif offset:  # 200: the server ignored Range; start over with this body
                restart()
                offset = 0
            elif r.status_code == 206:
                raise DownloadError(f"{what}: the server sent 206 Partial Content unasked")
            if total is not None:
                client.check_size(what, total, announced=True)
            validator = r.headers.get("etag") or r.headers.get("last-modified")
            if validator and not validator.startswith("W/"):  # If-Range needs a strong one
                st["validator"] = validator
            elif not offset:
                st["validator"] = None
            if resume and keep_partial_over is not None and st["ranges"] and st["validator"]:
                # a record for the next run, should this process be killed mid-transfer
                atomic_write_json(tmp_meta, {"url": shown, "validator": st["validator"]})
            task = None
            if bar is not None:
                bar.start()
                task = bar.add_task(client.source, total=total, completed=offset)
            chunks = r.iter_bytes() if encoded else r.iter_raw()
            with open(tmp, "ab" if offset else "wb") as fh:
                try:
                    for chunk in chunks:
                        fh.write(chunk)
                        st["sha"].update(chunk)
                        st["received"] += len(chunk)
                        client.check_size(what, st["received"], announced=False)
                        client.check_deadline(what, f"{st['received']} bytes had arrived")
                        if task is not None:
                            bar.update(task, completed=st["received"])
                except httpx.TransportError as exc:
                    raise Retryable(
                        _short(st["received"], total) + f" ({exc or type(exc).__name__})"
                    ) from None
                finally:
                    fh.flush()
                    if task is not None:
                        bar.remove_task(task)
                os.fsync(fh.fileno())
            if total is not None and st["received"] != total:
                raise Retryable(_short(st["received"], total))
            keep = ("content-type", "etag", "last-modified", "content-length")
            return DownloadResult(
                dest,
                shown,
                r.status_code if not st["resumed"] else 200,
                st["received"],
                "",
                {k: r.headers[k] for k in keep if k in r.headers},
                st["resumed"],
            )

    try:
        try:
            result = client.with_retries(what, once)
        finally:
            if bar is not None:
                bar.stop()
        digest = st["sha"].hexdigest()
        if expected_sha256 and digest != expected_sha256.lower():
            raise DownloadError(
                f"{what}: sha256 {digest} does not match the expected {expected_sha256}"
            )
        if validate is not None:
            try:
                validate(tmp, result.headers)
            except ContentError as exc:  # the server's words may quote the key back
                raise ContentError(client.redact(str(exc))) from None
        os.replace(tmp, dest)
    except (NetworkError, KeyboardInterrupt) as exc:
        big = keep_partial_over is not None and st["received"] >= keep_partial_over
        broken = not isinstance(exc, DownloadError)  # not a complete-but-wrong file
        if resume and broken and big and st["ranges"] and st["validator"] and tmp.exists():
            _keep_partial(tmp, partial, partial_meta, shown, st)
        raise
    finally:
        for p in (tmp, tmp_meta):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    result.sha256 = digest
    return result


def _short(received: int, total: int | None) -> str:
    if total is None:
        return f"the connection broke after {received} bytes"
    return f"body shorter than Content-Length ({received} of {total} bytes)"


def _default_validate(client: HttpClient) -> Callable[[Path, dict[str, str]], None]:
    def validate(tmp: Path, headers: dict[str, str]) -> None:
        with open(tmp, "rb") as fh:
            head = fh.read(HEAD_BYTES)
        check_body(head, what=f"{client.host}", content_type=headers.get("content-type", ""))

    return validate


def _partial_paths(dest: Path) -> tuple[Path, Path]:
    return dest.with_name(f".{dest.name}.resume"), dest.with_name(f".{dest.name}.resume.json")


def _claim_partial(partial: Path, meta: Path, tmp: Path, url: str, st: dict[str, Any]) -> None:
    """Take over a partial left by an earlier run for the same URL (rename: only one run can)."""
    import json

    try:
        record = json.loads(meta.read_text(encoding="utf-8"))
        os.replace(partial, tmp)
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return
    finally:
        with contextlib.suppress(FileNotFoundError):
            meta.unlink()
    if record.get("url") != url or not record.get("validator"):
        tmp.unlink()
        return
    _resume_from(tmp, record["validator"], st)


def _keep_partial(tmp: Path, partial: Path, meta: Path, url: str, st: dict[str, Any]) -> None:
    atomic_write_json(meta, {"url": url, "validator": st["validator"], "bytes": st["received"]})
    os.replace(tmp, partial)


def _pid_of(part: Path, dest: Path) -> int | None:
    """The process id in `.<name>.<pid>.<rand>.part` (None when the name has none)."""
    middle = part.name[len(dest.name) + 2 : -len(".part")]
    pid = middle.split(".")[0]
    return int(pid) if pid.isdigit() else None


def process_alive(pid: int | None) -> bool:
    """Whether process `pid` exists (a partial of a live process is someone's running download)."""
    if pid is None:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def _orphans(dest: Path) -> list[Path]:
    """Partials of `dest` left by processes that are gone, largest first."""
    found = []
    for part in dest.parent.glob(f".{glob_escape(dest.name)}.*.part"):
        if not process_alive(_pid_of(part, dest)):
            with contextlib.suppress(FileNotFoundError):
                found.append((part.stat().st_size, part))
    return [p for _, p in sorted(found, reverse=True)]


def glob_escape(name: str) -> str:
    import glob

    return glob.escape(name)


def _remove_orphans(dest: Path, keep: Path | None = None) -> None:
    for part in _orphans(dest):
        if part == keep:
            continue
        for p in (part, part.with_name(part.name + ".json")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _claim_orphan(dest: Path, tmp: Path, url: str, st: dict[str, Any]) -> None:
    """Take over the partial of a killed download of the same URL (its record names the URL and
    a strong validator); delete the ones that cannot be used."""
    import json

    claimed = None
    for part in _orphans(dest):
        meta = part.with_name(part.name + ".json")
        try:
            record = json.loads(meta.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError, UnicodeDecodeError):
            continue
        if not isinstance(record, dict) or record.get("url") != url:
            continue
        if not record.get("validator"):
            continue
        try:
            os.replace(part, tmp)  # rename: only one run can take it
        except FileNotFoundError:
            continue
        claimed = record
        with contextlib.suppress(FileNotFoundError):
            meta.unlink()
        break
    _remove_orphans(dest)
    if claimed is None:
        return
    _resume_from(tmp, claimed["validator"], st)


def _resume_from(tmp: Path, validator: str, st: dict[str, Any]) -> None:
    """Download state that continues after the bytes already in `tmp` (hashed once)."""
    h = hashlib.sha256()
    size = 0
    with open(tmp, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
            size += len(block)
    st.update(received=size, sha=h, validator=validator, ranges=True)
