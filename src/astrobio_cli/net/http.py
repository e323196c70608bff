"""The HTTP client every data source uses: retries, backoff, rate limit, secrets kept secret.

- Retries connection errors, timeouts, 429 and 5xx with exponential backoff and full jitter
  (`backoff * 2**attempt * uniform(0.5, 1.5)`, capped), and honours `Retry-After` (seconds or an
  HTTP date) when the server sends one. A wait of a second or more is announced on stderr (what
  for, how long, until when).
- Time limits: `timeout` bounds each attempt's connect + response headers and the longest silence
  while a body streams; `deadline` bounds one request in all (every attempt, wait and byte of the
  body), `command_deadline` every request of the client (one command) together. A slow drip
  cannot outlive them (every socket read is clipped to what is left), and a retry wait that would
  end past them is refused at once, with a message saying when to try again.
- A per-source rate limit (requests per second), shared by every client of that source in the
  process.
- User-Agent `astrobio/<version>`.
- The API key is added as a query parameter or a header, and every message, URL and provenance
  record built through :meth:`HttpClient.redact` shows `***` in its place.

Downloads to disk go through :meth:`HttpClient.download` (see :mod:`astrobio_cli.net.download`).
"""

from __future__ import annotations

import contextlib
import email.utils
import random
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpcore
import httpx

from astrobio_cli import __version__
from astrobio_cli.net.content import describe_error_body
from astrobio_cli.net.errors import NetworkError, OfflineError

USER_AGENT = f"astrobio/{__version__}"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
REDACTED = "***"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. `retries` is the number of extra attempts after the first."""

    retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    max_retry_after: float | None = None  # None: the server's wait, bounded by the deadline

    def wait(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempt counts from 0)."""
        if retry_after is not None:
            wait = max(retry_after, 0.0)
            return wait if self.max_retry_after is None else min(wait, self.max_retry_after)
        return min(self.backoff * (2**attempt) * random.uniform(0.5, 1.5), self.max_backoff)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT` -> seconds (or None)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


class RateLimiter:
    """At most `rate` requests per second: each acquire waits for its slot."""

    def __init__(self, rate: float | None, clock=time.monotonic, sleep=time.sleep) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep

    def acquire(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self._clock()
            slot = max(self._next, now)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


_LIMITERS: dict[tuple[str, float | None], RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def limiter_for(source: str, rate: float | None) -> RateLimiter:
    """The process-wide limiter of a source (every client of `source` shares it)."""
    with _LIMITERS_LOCK:
        return _LIMITERS.setdefault((source, rate), RateLimiter(rate))


class _Limits(threading.local):
    """The time limits of the request running on this thread (monotonic seconds, or None)."""

    stop: float | None = None  # the request's (and command's) deadline
    attempt_stop: float | None = None  # connect + headers of the current attempt


class _ClippedStream(httpcore.NetworkStream):
    """A socket whose every read and write waits at most until the current limits."""

    def __init__(self, inner: httpcore.NetworkStream, limits: _Limits) -> None:
        self._inner, self._limits = inner, limits

    def _clip(self, timeout: float | None, exc: type[Exception]) -> float | None:
        stops = [t for t in (self._limits.stop, self._limits.attempt_stop) if t is not None]
        if not stops:
            return timeout
        left = min(stops) - time.monotonic()
        if left <= 0:
            raise exc("the time limit passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._clip(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._clip(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        timeout = self._clip(timeout, httpcore.ConnectTimeout)
        return _ClippedStream(
            self._inner.start_tls(ssl_context, server_hostname, timeout), self._limits
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _ClippedBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend, limits: _Limits) -> None:
        self._inner, self._limits = inner, limits

    def _clip(self, timeout: float | None) -> float | None:
        return _ClippedStream(None, self._limits)._clip(timeout, httpcore.ConnectTimeout)  # type: ignore[arg-type]

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        stream = self._inner.connect_tcp(
            host, port, self._clip(timeout), local_address, socket_options
        )
        return _ClippedStream(stream, self._limits)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        stream = self._inner.connect_unix_socket(path, self._clip(timeout), socket_options)
        return _ClippedStream(stream, self._limits)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _clipped_transport(limits: _Limits) -> httpx.HTTPTransport:
    """httpx's own transport, its sockets clipped to `limits` (httpx has no total timeout)."""
    transport = httpx.HTTPTransport()
    pool = getattr(transport, "_pool", None)
    inner = getattr(pool, "_network_backend", None)
    if inner is not None:  # else: the per-chunk checks of `download` still bound the body
        pool._network_backend = _ClippedBackend(inner, limits)  # type: ignore[union-attr]
    return transport


def _secs(x: float) -> str:
    return f"{x:.0f}" if x >= 10 or x == int(x) else f"{x:.1f}"


def _clock_at(seconds_from_now: float) -> str:
    fmt = "%H:%M:%S" if seconds_from_now < 12 * 3600 else "%Y-%m-%d %H:%M:%S"
    return time.strftime(fmt + " %Z", time.localtime(time.time() + seconds_from_now)).strip()


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Retryable(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(
        self,
        reason: str,
        retry_after: float | None = None,
        offline: bool = False,
        deadline: bool = False,
    ):
        super().__init__(reason)
        self.reason, self.retry_after, self.offline = reason, retry_after, offline
        self.deadline = deadline


class HttpClient:
    """An httpx client with astrobio's policy. Use it as a context manager.

    source: the data source's name (for the rate limiter and messages).
    base_url: joined to relative URLs.
    api_key, api_key_param / api_key_header: where the key goes; it is redacted everywhere.
    timeout: seconds an attempt may take to connect and get the response headers; also the
        longest silence while a body streams.
    deadline: seconds one request may take in all (attempts, waits, body); None: no limit.
    command_deadline: seconds all requests of this client may take together; None: no limit.
    max_bytes: the largest response body accepted (None: no limit).
    sleep: injectable (tests record waits instead of sleeping).
    notify: where a long wait is announced (default: a line on stderr).
    """

    def __init__(
        self,
        source: str,
        *,
        base_url: str = "",
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        rate_limit: float | None = None,
        api_key: str | None = None,
        api_key_param: str | None = None,
        api_key_header: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        deadline: float | None = 900.0,
        command_deadline: float | None = None,
        max_bytes: int | None = None,
        notify: Callable[[str], None] | None = _stderr,
    ) -> None:
        self.source = source
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.deadline = deadline
        self.command_deadline = command_deadline
        self.max_bytes = max_bytes
        self.notify = notify
        self._born = time.monotonic()
        self._limits = _Limits()
        self.retry = retry or RetryPolicy()
        self.limiter = limiter_for(source, rate_limit)
        self.api_key = api_key or None
        self.api_key_param = api_key_param
        self.api_key_header = api_key_header
        self.sleep = sleep
        headers = {"User-Agent": USER_AGENT}
        if self.api_key and api_key_header:
            headers[api_key_header] = self.api_key
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            headers=headers,
            follow_redirects=True,
            transport=transport if transport is not None else _clipped_transport(self._limits),
        )

    @classmethod
    def from_settings(cls, source: str, default_base_url: str, **kwargs: Any) -> HttpClient:
        """A client configured from `settings.source(source)` (base_url, key, timeout, limits)."""
        from astrobio_cli.settings import get_settings

        s = get_settings().source(source)
        key = s.api_key.get_secret_value() if s.api_key is not None else None
        kwargs.setdefault("retry", RetryPolicy(retries=s.retries, backoff=s.backoff))
        kwargs.setdefault("deadline", s.deadline)
        kwargs.setdefault("command_deadline", s.command_deadline)
        kwargs.setdefault("max_bytes", s.max_bytes)
        return cls(
            source,
            base_url=s.base_url or default_base_url,
            timeout=s.timeout,
            rate_limit=s.rate_limit,
            api_key=key,
            **kwargs,
        )

    # -- context manager -------------------------------------------------------------------

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # -- helpers ---------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """`path` joined to the base URL (absolute URLs pass through)."""
        if "://" in path:
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc or self.base_url

    def params_with_key(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        out = dict(params or {})
        if self.api_key and self.api_key_param:
            out[self.api_key_param] = self.api_key
        return out

    def redact(self, text: str) -> str:
        """`text` with the API key replaced by `***` (also its URL-encoded form)."""
        if self.api_key:
            from urllib.parse import quote, quote_plus

            for form in {self.api_key, quote(self.api_key, safe=""), quote_plus(self.api_key)}:
                text = text.replace(form, REDACTED)
        return text

    def full_url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        """The URL a GET would ask for, with the key redacted (for --dry-run and provenance)."""
        url = self.url(path)
        merged = self.params_with_key(params)
        if not merged:
            return self.redact(url)
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True) + [
            (k, str(v)) for k, v in merged.items()
        ]
        query = [(k, REDACTED if k == self.api_key_param and self.api_key else v) for k, v in query]
        encoded = urlencode(query)  # the same encoding httpx uses: --dry-run shows the real URL
        if self.api_key and self.api_key_param:
            encoded = encoded.replace(
                f"{self.api_key_param}=%2A%2A%2A", f"{self.api_key_param}=***"
            )
        return self.redact(urlunsplit(parts._replace(query=encoded)))

    # -- the retry loop ----------------------------------------------------------------------

    def setting(self, name: str) -> str:
        """How a user names this source's setting `name` (for messages)."""
        return f"setting sources.{self.source}.{name}"

    def _stop(self, start: float) -> tuple[float | None, str, float | None]:
        """(monotonic stop, which limit, its length) for a request starting at `start`."""
        limits = []
        if self.deadline is not None:
            limits.append((start + self.deadline, "deadline", self.deadline))
        if self.command_deadline is not None:
            limits.append(
                (self._born + self.command_deadline, "command_deadline", self.command_deadline)
            )
        if not limits:
            return None, "", None
        return min(limits)

    def _past(self, what: str, start: float, which: str, limit: float, why: str) -> NetworkError:
        label = "request deadline" if which == "deadline" else "command deadline"
        took = time.monotonic() - start
        return NetworkError(
            self.redact(
                f"{what}: gave up after {_secs(took)} s: the {label} of {limit:g} s passed "
                f"({why}; host {self.host}); try again later, or raise {self.setting(which)}"
            )
        )

    def check_deadline(self, what: str, why: str = "") -> None:
        """Raise the deadline error when the running request's limit has passed (the body
        loop of :mod:`download` calls it between chunks)."""
        stop = self._limits.stop
        if stop is not None and time.monotonic() >= stop:
            raise Retryable(why or "the deadline passed", deadline=True)

    def with_retries(self, what: str, attempt_fn: Callable[[int], Any]) -> Any:
        """Call `attempt_fn(attempt)` until it returns; it raises `Retryable` (via
        :meth:`check_status`) or an httpx transport error to ask for another attempt.

        Every attempt, wait and socket read ends by the request's deadline (and the client's
        command deadline); a wait that would end past it is refused at once."""
        start = time.monotonic()
        stop, which, limit = self._stop(start)
        outer = self._limits.stop
        if stop is not None and outer is not None:
            stop = min(stop, outer)
        self._limits.stop = stop
        try:
            return self._retry_loop(what, attempt_fn, start, stop, which, limit)
        finally:
            self._limits.stop = outer

    def _retry_loop(self, what, attempt_fn, start, stop, which, limit) -> Any:
        last: Retryable | None = None
        tries = self.retry.retries + 1
        for attempt in range(tries):
            if attempt:
                assert last is not None
                wait = self.retry.wait(attempt - 1, last.retry_after)
                self._before_wait(what, last, wait, attempt, start, stop, which, limit)
                self.sleep(wait)
            if stop is not None and time.monotonic() >= stop:
                why = last.reason if last else "before the first attempt"
                raise self._past(what, start, which, limit, why)
            self.limiter.acquire()
            try:
                return attempt_fn(attempt)
            except Retryable as exc:
                last = exc
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                raise NetworkError(
                    self.redact(
                        f"{what}: bad URL ({exc}); check base_url in `astrobio config show`"
                    )
                ) from None
            except httpx.TimeoutException as exc:
                last = Retryable(
                    f"timed out after {self.timeout:g} s ({type(exc).__name__})",
                    offline=isinstance(exc, httpx.ConnectTimeout),
                )
            except httpx.ConnectError as exc:
                last = Retryable(f"cannot connect: {exc}", offline=True)
            except httpx.TransportError as exc:
                last = Retryable(f"connection broke: {exc or type(exc).__name__}")
            finally:
                self._limits.attempt_stop = None
            if stop is not None and time.monotonic() >= stop:
                cut = last.deadline or last.reason.startswith("timed out")
                why = f"attempt {attempt + 1} was still running" if cut else last.reason
                raise self._past(what, start, which, limit, why)
        assert last is not None
        msg = self.redact(
            f"{what}: {last.reason} (host {self.host}, {tries} attempt{'s' if tries > 1 else ''})"
        )
        raise (OfflineError if last.offline else NetworkError)(msg)

    def _before_wait(self, what, last, wait, attempt, start, stop, which, limit) -> None:
        """Refuse a wait that ends past the deadline; announce one of a second or more."""
        told = last.retry_after is not None
        why = f"{_secs(wait)} s (Retry-After)" if told else f"{_secs(wait)} s (backoff)"
        if stop is not None and time.monotonic() + wait > stop:
            label = "request deadline" if which == "deadline" else "command deadline"
            ask = "the server asks to wait" if told else "the next retry would wait"
            raise NetworkError(
                self.redact(
                    f"{what}: {last.reason}; {ask} {why}, until {_clock_at(wait)}, past the "
                    f"{label} of {limit:g} s ({self.setting(which)}); try again after "
                    f"{_clock_at(wait)}" + ("" if told else f", or raise {self.setting(which)}")
                )
            )
        if wait >= 1.0 and self.notify is not None:
            self.notify(
                self.redact(
                    f"{self.source}: {last.reason}; waiting {why} until {_clock_at(wait)} "
                    f"before attempt {attempt + 1} of {self.retry.retries + 1}"
                )
            )

    def check_status(self, response: httpx.Response, what: str) -> None:
        """Raise `Retryable` for 429/5xx, a NetworkError quoting the server for other failures."""
        status = response.status_code
        if status < 400:
            return
        if response.is_stream_consumed:
            content = response.content
        else:  # quote at most 64 kB of an error page, however large it is
            buf = bytearray()
            for chunk in response.iter_bytes():
                buf += chunk
                if len(buf) >= 65536:
                    break
            content = bytes(buf)
        said = describe_error_body(content, response.headers.get("content-type", ""))
        reason = f"HTTP {status} {response.reason_phrase}" + (f": {said}" if said else "")
        if status in RETRY_STATUS:
            raise Retryable(reason, parse_retry_after(response.headers.get("retry-after")))
        raise NetworkError(self.redact(f"{what}: the server answered {reason}"))

    # -- requests ----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        follow_redirects: bool = True,
    ) -> httpx.Response:
        """A small request, body read into memory, with retries. Raises for 4xx/5xx."""
        url = self.url(path)
        what = f"{method} {self.full_url(path)}"

        def once(_attempt: int) -> httpx.Response:
            self._limits.attempt_stop = time.monotonic() + self.timeout  # a small request
            req = self._client.build_request(
                method,
                url,
                params=self.params_with_key(params) or None,
                data=dict(data) if data is not None else None,
                headers=dict(headers or {}),
            )
            r = self._client.send(req, stream=True, follow_redirects=follow_redirects)
            try:
                self.check_status(r, what)
                body = bytearray()
                for chunk in r.iter_bytes():
                    body += chunk
                    self.check_size(what, len(body), announced=False)
                r._content = bytes(body)  # what `r.read()` would have set
            finally:
                r.close()
            return r

        return self.with_retries(what, once)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def check_size(self, what: str, size: int, announced: bool) -> None:
        """A DownloadError (not retried) when a body is larger than `max_bytes`."""
        if self.max_bytes is None or size <= self.max_bytes:
            return
        from astrobio_cli.net.errors import DownloadError

        got = f"it announced {size} bytes" if announced else f"stopped after {size} bytes"
        raise DownloadError(
            self.redact(
                f"{what}: the response is larger than {self.max_bytes} bytes ({got}); narrow "
                f"the request (e.g. --limit, --where) or raise {self.setting('max_bytes')}"
            )
        )

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kw: Any):
        """The underlying httpx stream (no retries; :meth:`download` adds them). Connecting and
        the response headers must take at most `timeout` seconds."""
        self._limits.attempt_stop = time.monotonic() + self.timeout
        with self._client.stream(method, self.url(path), **kw) as r:
            self._limits.attempt_stop = None  # the body: `timeout` is the longest silence
            yield r

    def download(self, path: str, dest, **kw: Any):
        """Stream `path` to `dest` atomically; see :func:`astrobio_cli.net.download.download`."""
        from astrobio_cli.net.download import download

        return download(self, path, dest, **kw)
