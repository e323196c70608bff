"""IVOA TAP: synchronous queries and asynchronous (UWS) jobs, over :class:`HttpClient`.

sync:  GET  <base>/TAP/sync?query=ADQL&format=csv            -> the result body
async: POST <base>/TAP/async (query, format, lang, request, phase=RUN) -> 303 to the job URL;
       poll GET <job>/phase with backoff (QUEUED, EXECUTING -> COMPLETED | ERROR | ABORTED);
       fetch the result named in the job document (or <job>/results/result);
       Ctrl-C (KeyboardInterrupt) posts PHASE=ABORT to the job before giving up.

Any archive with a TAP service (NASA Exoplanet Archive, MAST, ...) can reuse this.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from astrobio_cli.errors import UserError
from astrobio_cli.net.content import describe_error_body
from astrobio_cli.net.download import DownloadResult, download
from astrobio_cli.net.errors import ContentError, NetworkError
from astrobio_cli.net.http import HttpClient

_RESULT_HREF = re.compile(
    r"<(?:\w+:)?result\b[^>]*\bid\s*=\s*[\"']result[\"'][^>]*?href\s*=\s*[\"']([^\"']+)[\"']"
    r"|<(?:\w+:)?result\b[^>]*?href\s*=\s*[\"']([^\"']+)[\"'][^>]*\bid\s*=\s*[\"']result[\"']",
    re.I,
)
_PHASE_IN_DOC = re.compile(r"<(?:\w+:)?phase>\s*(\w+)\s*</(?:\w+:)?phase>", re.I)
_JOB_ID = re.compile(r"<(?:\w+:)?jobId>\s*([^<\s]+)\s*</(?:\w+:)?jobId>", re.I)


def normalise_adql(adql: str) -> str:
    """Collapse whitespace outside string literals (so equivalent queries share a cache key)."""
    parts = re.split(r"('(?:[^']|'')*')", adql.strip())
    return "".join(p if i % 2 else " ".join(p.split()) for i, p in enumerate(parts))


@dataclass(frozen=True)
class PollPolicy:
    """Waits between phase polls: first, then x factor, capped; give up after max_wait."""

    first: float = 1.0
    factor: float = 1.5
    cap: float = 15.0
    max_wait: float = 3600.0


class TapService:
    def __init__(
        self, client: HttpClient, sync_path: str = "TAP/sync", async_path: str = "TAP/async"
    ) -> None:
        self.client = client
        self.sync_path = sync_path
        self.async_path = async_path

    def sync_params(self, adql: str, fmt: str = "csv") -> dict[str, str]:
        return {"query": adql, "format": fmt}

    def sync_url(self, adql: str, fmt: str = "csv") -> str:
        """The exact GET URL of a sync query (key redacted): what --dry-run prints."""
        return self.client.full_url(self.sync_path, self.sync_params(adql, fmt))

    def cache_request(self, adql: str, fmt: str = "csv") -> dict[str, Any]:
        """The normalised request used as cache key: sync and async share it (same answer)."""
        return {
            "service": self.client.url(self.sync_path),
            "query": normalise_adql(adql),
            "format": fmt,
        }

    # -- sync ------------------------------------------------------------------------------

    def fetch_sync(self, adql: str, dest: Path, fmt: str = "csv", **kw: Any) -> DownloadResult:
        return download(self.client, self.sync_path, dest, params=self.sync_params(adql, fmt), **kw)

    # -- async (UWS) ------------------------------------------------------------------------

    def submit(self, adql: str, fmt: str = "csv") -> str:
        """Create and start a job; return its URL."""
        r = self.client.post(
            self.async_path,
            data={
                "request": "doQuery",
                "lang": "ADQL",
                "query": adql,
                "format": fmt,
                "phase": "RUN",
            },
            follow_redirects=False,
        )
        where = r.headers.get("location")
        if where:
            return urljoin(str(r.url), where)
        m = _JOB_ID.search(r.text)
        if m:
            return f"{self.client.url(self.async_path)}/{m.group(1)}"
        said = describe_error_body(r.content, r.headers.get("content-type", ""))
        raise ContentError(
            f"{self.client.host}: submitting the TAP job returned HTTP {r.status_code} without a "
            f"job URL (no Location header, no jobId): {said!r}"
        )

    def phase(self, job: str) -> str:
        r = self.client.get(f"{job}/phase")
        text = r.text.strip()
        m = _PHASE_IN_DOC.search(text)
        return (m.group(1) if m else text).upper()

    def abort(self, job: str) -> bool:
        """Best effort, one try: POST PHASE=ABORT. True when the server accepted it."""
        try:
            r = self.client._client.post(f"{job}/phase", data={"PHASE": "ABORT"}, timeout=10)
            return r.status_code < 400
        except Exception:
            return False

    def result_url(self, job: str) -> str:
        r = self.client.get(job)
        m = _RESULT_HREF.search(r.text)
        if m:
            return urljoin(job + "/", m.group(1) or m.group(2))
        return f"{job}/results/result"

    def error_message(self, job: str) -> str:
        for path in (f"{job}/error", job):
            try:
                r = self.client.get(path)
            except (NetworkError, UserError):
                continue
            said = describe_error_body(r.content, r.headers.get("content-type", ""))
            if said:
                return said
        return "(the server gave no message)"

    def fetch_async(
        self,
        adql: str,
        dest: Path,
        fmt: str = "csv",
        *,
        poll: PollPolicy | None = None,
        on_phase: Callable[[str, str], None] | None = None,
        **kw: Any,
    ) -> DownloadResult:
        """Submit, poll with backoff, download the result. Ctrl-C aborts the job on the server."""
        poll = poll or PollPolicy()
        job = self.submit(adql, fmt)
        if on_phase is None and kw.get("progress") is not False:
            on_phase = PhaseReporter()
        try:
            waited, wait = 0.0, poll.first
            started = False
            while True:
                phase = self.phase(job)
                if on_phase is not None:
                    on_phase(job, phase)
                if phase == "COMPLETED":
                    break
                if phase == "ERROR":
                    raise ContentError(
                        f"the TAP job {job} failed on the server: {self.error_message(job)}"
                    )
                if phase == "ABORTED":
                    raise NetworkError(f"the TAP job {job} was aborted on the server")
                if phase == "PENDING" and not started:
                    self.client.post(f"{job}/phase", data={"PHASE": "RUN"})
                    started = True
                    continue
                if waited >= poll.max_wait:
                    self.abort(job)
                    raise NetworkError(
                        f"the TAP job {job} was still {phase} after {waited:.0f} s; aborted it "
                        "(try a smaller query, or --limit)"
                    )
                self.client.sleep(wait)
                waited += wait
                wait = min(wait * poll.factor, poll.cap)
            return download(self.client, self.result_url(job), dest, **kw)
        except KeyboardInterrupt:
            ok = self.abort(job)
            state = "aborted" if ok else "could not abort"
            raise UserError(
                f"interrupted; {state} the TAP job {job} on the server", exit_code=130
            ) from None


class PhaseReporter:
    """Progress of an async TAP job on stderr: its phase and the time since submission.

    One line per phase change (and a heartbeat every `every` s while it stays the same), so a
    job queued for an hour is never silent; on a terminal the line updates in place.
    """

    def __init__(self, every: float = 30.0, stream=None, clock=time.monotonic) -> None:
        import sys

        self.stream = stream or sys.stderr
        self.every, self.clock = every, clock
        self.t0 = clock()
        self.last: tuple[str, float] | None = None
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, job: str, phase: str) -> None:
        now = self.clock() - self.t0
        if self.last and self.last[0] == phase and now - self.last[1] < self.every:
            if self.tty:
                self.stream.write(f"\rTAP job {job}: {phase}, {now:.0f} s elapsed")
                self.stream.flush()
            return
        self.last = (phase, now)
        end = "" if self.tty else "\n"
        lead = "\r" if self.tty else ""
        self.stream.write(f"{lead}TAP job {job}: {phase}, {now:.0f} s elapsed{end}")
        if self.tty and phase in ("COMPLETED", "ERROR", "ABORTED"):
            self.stream.write("\n")
        self.stream.flush()
