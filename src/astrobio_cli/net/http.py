"""The HTTP client every data source uses: retries, backoff, rate limit, secrets kept secret.

- Retries connection errors, timeouts, 429 and 5xx with exponential backoff and full jitter
  (`backoff * 2**attempt * uniform(0.5, 1.5)`, capped), and honours `Retry-After` (seconds or an
  HTTP date) when the server sends one.
- A per-source rate limit (requests per second), shared by every client of that source in the
  process.
- User-Agent `astrobio/<version>`.
- The API key is added as a query parameter or a header, and every message, URL and provenance
  record built through :meth:`HttpClient.redact` shows `***` in its place.

Downloads to disk go through :meth:`HttpClient.download` (see :mod:`astrobio_cli.net.download`).
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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
    max_retry_after: float = 600.0

    def wait(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempt counts from 0)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
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


class Retryable(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(self, reason: str, retry_after: float | None = None, offline: bool = False):
        super().__init__(reason)
        self.reason, self.retry_after, self.offline = reason, retry_after, offline


class HttpClient:
    """An httpx client with astrobio's policy. Use it as a context manager.

    source: the data source's name (for the rate limiter and messages).
    base_url: joined to relative URLs.
    api_key, api_key_param / api_key_header: where the key goes; it is redacted everywhere.
    sleep: injectable (tests record waits instead of sleeping).
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
    ) -> None:
        self.source = source
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
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
            transport=transport,
        )

    @classmethod
    def from_settings(cls, source: str, default_base_url: str, **kwargs: Any) -> HttpClient:
        """A client configured from `settings.source(source)` (base_url, key, timeout, limits)."""
        from astrobio_cli.settings import get_settings

        s = get_settings().source(source)
        key = s.api_key.get_secret_value() if s.api_key is not None else None
        kwargs.setdefault("retry", RetryPolicy(retries=s.retries, backoff=s.backoff))
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

    def with_retries(self, what: str, attempt_fn: Callable[[int], Any]) -> Any:
        """Call `attempt_fn(attempt)` until it returns; it raises `Retryable` (via
        :meth:`check_status`) or an httpx transport error to ask for another attempt."""
        last: Retryable | None = None
        for attempt in range(self.retry.retries + 1):
            if attempt:
                self.sleep(self.retry.wait(attempt - 1, last.retry_after if last else None))
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
        assert last is not None
        tries = self.retry.retries + 1
        msg = self.redact(
            f"{what}: {last.reason} (host {self.host}, {tries} attempt{'s' if tries > 1 else ''})"
        )
        raise (OfflineError if last.offline else NetworkError)(msg)

    def check_status(self, response: httpx.Response, what: str) -> None:
        """Raise `Retryable` for 429/5xx, a NetworkError quoting the server for other failures."""
        status = response.status_code
        if status < 400:
            return
        if not response.is_stream_consumed:
            response.read()
        said = describe_error_body(response.content, response.headers.get("content-type", ""))
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
            r = self._client.request(
                method,
                url,
                params=self.params_with_key(params) or None,
                data=dict(data) if data is not None else None,
                headers=dict(headers or {}),
                follow_redirects=follow_redirects,
            )
            self.check_status(r, what)
            return r

        return self.with_retries(what, once)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def stream(self, method: str, path: str, **kw: Any):
        """The underlying httpx stream (no retries; :meth:`download` adds them)."""
        return self._client.stream(method, self.url(path), **kw)

    def download(self, path: str, dest, **kw: Any):
        """Stream `path` to `dest` atomically; see :func:`astrobio_cli.net.download.download`."""
        from astrobio_cli.net.download import download

        return download(self, path, dest, **kw)
