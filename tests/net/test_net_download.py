"""Downloads against a real loopback server with injected faults.

Every failing case asserts the final path holds nothing and no temporary file is left behind.
"""

from __future__ import annotations

import hashlib

import pytest
from httpserver import Reply

from astrobio_cli import __version__
from astrobio_cli.net.errors import ContentError, NetworkError, OfflineError
from astrobio_cli.net.http import HttpClient, RetryPolicy, parse_retry_after

BODY = b"pl_name,pl_rade\n" + b"".join(b'"planet %d",%d.5\n' % (i, i) for i in range(400))


def _nothing_left(dest):
    assert not dest.exists(), "a file was left at the final path"
    leftovers = list(dest.parent.iterdir())
    assert leftovers == [], f"temporary files left behind: {leftovers}"


def test_plain_download_checks_length_and_sha(loopback, make_client, tmp_path):
    loopback.route("GET", "/data", Reply(200, BODY))
    dest = tmp_path / "out" / "data.csv"
    res = make_client().download("data", dest)
    assert dest.read_bytes() == BODY
    assert res.sha256 == hashlib.sha256(BODY).hexdigest()
    assert res.bytes == len(BODY)
    assert res.status == 200
    assert sorted(p.name for p in dest.parent.iterdir()) == ["data.csv"]
    assert loopback.hits("/data")[0].headers["user-agent"] == f"astrobio/{__version__}"


def test_503_then_200(loopback, make_client, sleeps, tmp_path):
    loopback.route("GET", "/data", Reply(503, b"busy"), Reply(200, BODY))
    dest = tmp_path / "d" / "data.csv"
    make_client().download("data", dest)
    assert dest.read_bytes() == BODY
    assert len(loopback.hits("/data")) == 2
    assert len(sleeps) == 1


def test_503_forever_fails_and_leaves_nothing(loopback, make_client, tmp_path):
    loopback.route("GET", "/data", Reply(503, b"<html><title>Service Unavailable</title></html>"))
    dest = tmp_path / "d" / "data.csv"
    with pytest.raises(NetworkError, match=r"HTTP 503.*Service Unavailable.*4 attempts"):
        make_client().download("data", dest)
    assert len(loopback.hits("/data")) == 4
    _nothing_left(dest)


def test_429_honours_retry_after(loopback, make_client, sleeps, tmp_path):
    loopback.route("GET", "/data", Reply(429, headers={"Retry-After": "7"}), Reply(200, BODY))
    dest = tmp_path / "d" / "data.csv"
    make_client().download("data", dest)
    assert sleeps == [7.0]  # the server's wait, not the client's tiny backoff
    assert dest.read_bytes() == BODY


def test_429_forever_leaves_nothing(loopback, make_client, sleeps, tmp_path):
    loopback.route("GET", "/data", Reply(429, b"slow down", headers={"Retry-After": "2"}))
    dest = tmp_path / "d" / "data.csv"
    with pytest.raises(NetworkError, match="HTTP 429"):
        make_client().download("data", dest)
    assert sleeps == [2.0, 2.0, 2.0]
    _nothing_left(dest)


def test_retry_after_http_date():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == 30.0
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("soon") is None


def test_backoff_grows_with_jitter_and_is_capped():
    p = RetryPolicy(backoff=1.0, max_backoff=5.0)
    for attempt, base in [(0, 1.0), (1, 2.0), (2, 4.0)]:
        for _ in range(20):
            assert min(0.5 * base, 5.0) <= p.wait(attempt) <= min(1.5 * base, 5.0)
    assert p.wait(10) == 5.0


def test_connection_reset_mid_body_then_ok(loopback, make_client, tmp_path):
    loopback.route("GET", "/data", Reply(200, BODY, send_bytes=1000, reset=True), Reply(200, BODY))
    dest = tmp_path / "d" / "data.csv"
    res = make_client().download("data", dest)
    assert dest.read_bytes() == BODY
    assert res.sha256 == hashlib.sha256(BODY).hexdigest()


def test_connection_reset_every_time_leaves_nothing(loopback, make_client, tmp_path):
    loopback.route("GET", "/data", Reply(200, BODY, send_bytes=1000, reset=True))
    dest = tmp_path / "d" / "data.csv"
    with pytest.raises(NetworkError, match=r"127\.0\.0\.1"):
        make_client().download("data", dest)
    _nothing_left(dest)


def test_body_shorter_than_content_length(loopback, make_client, tmp_path):
    loopback.route("GET", "/data", Reply(200, BODY, send_bytes=500))
    dest = tmp_path / "d" / "data.csv"
    with pytest.raises(
        NetworkError, match=rf"shorter than Content-Length \(500 of {len(BODY)} bytes"
    ):
        make_client().download("data", dest)
    _nothing_left(dest)


def test_html_with_200_quotes_the_page(loopback, make_client, tmp_path):
    page = b"<!DOCTYPE html><html><head><title>Scheduled maintenance</title></head></html>"
    loopback.route("GET", "/data", Reply(200, page, content_type="text/html"))
    dest = tmp_path / "d" / "data.csv"
    with pytest.raises(ContentError, match=r"HTML page.*Scheduled maintenance"):
        make_client().download("data", dest)
    _nothing_left(dest)


TAP_ERROR = b"""<?xml version="1.0" encoding="UTF-8"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">
<RESOURCE type="results">
<INFO name="QUERY_STATUS" value="ERROR">
ORA-00904: "PL_RADEE": invalid identifier
</INFO>
</RESOURCE>
</VOTABLE>
"""


def test_tap_error_document_with_200(loopback, make_client, tmp_path):
    loopback.route("GET", "/data", Reply(200, TAP_ERROR, content_type="text/xml"))
    dest = tmp_path / "d" / "data.csv"
    with pytest.raises(ContentError, match=r'reported an error: ORA-00904: "PL_RADEE": invalid'):
        make_client().download("data", dest)
    assert len(loopback.hits("/data")) == 1  # a content error is not retried
    _nothing_left(dest)


def test_tap_error_with_400_quotes_the_server(loopback, make_client, tmp_path):
    loopback.route("GET", "/data", Reply(400, TAP_ERROR, content_type="text/xml"))
    dest = tmp_path / "d" / "data.csv"
    with pytest.raises(NetworkError, match=r"HTTP 400 Bad Request: ORA-00904"):
        make_client().download("data", dest)
    _nothing_left(dest)


def test_server_slower_than_timeout(loopback, make_client, tmp_path):
    loopback.route("GET", "/data", Reply(200, BODY, delay=1.0))
    dest = tmp_path / "d" / "data.csv"
    client = make_client(timeout=0.2, retry=RetryPolicy(retries=1, backoff=0.01))
    with pytest.raises(NetworkError, match=r"timed out after 0.2 s"):
        client.download("data", dest)
    _nothing_left(dest)


def test_resume_with_range(loopback, make_client, tmp_path):
    loopback.route(
        "GET",
        "/data",
        Reply(200, BODY, send_bytes=3000, ranges=True),
        Reply(200, BODY, ranges=True),
    )
    dest = tmp_path / "d" / "data.csv"
    res = make_client().download("data", dest)
    first, second = loopback.hits("/data")
    assert "range" not in first.headers
    assert second.headers["range"] == "bytes=3000-"
    assert res.resumed == 1
    assert dest.read_bytes() == BODY
    assert res.sha256 == hashlib.sha256(BODY).hexdigest()
    assert list(dest.parent.iterdir()) == [dest]


def test_resume_starts_over_when_range_is_ignored(loopback, make_client, tmp_path):
    loopback.route("GET", "/data", Reply(200, BODY, send_bytes=3000), Reply(200, BODY))
    dest = tmp_path / "d" / "data.csv"
    res = make_client().download("data", dest)
    assert loopback.hits("/data")[1].headers["range"] == "bytes=3000-"  # asked, got a 200
    assert res.resumed == 0
    assert dest.read_bytes() == BODY


def test_resume_starts_over_on_wrong_content_range(loopback, make_client, tmp_path):
    loopback.route(
        "GET",
        "/data",
        Reply(200, BODY, send_bytes=3000, ranges=True),
        Reply(200, BODY, ranges=True, bad_range=True),
        Reply(200, BODY, ranges=True),
    )
    dest = tmp_path / "d" / "data.csv"
    make_client().download("data", dest)
    hits = loopback.hits("/data")
    assert len(hits) == 3 and "range" not in hits[2].headers
    assert dest.read_bytes() == BODY


def test_offline_names_the_host(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    dest = tmp_path / "d" / "data.csv"
    client = HttpClient(
        "x", base_url=f"http://127.0.0.1:{port}", retry=RetryPolicy(retries=1), sleep=lambda s: None
    )
    with client, pytest.raises(OfflineError, match=rf"cannot connect.*host 127.0.0.1:{port}"):
        client.download("data", dest)
    _nothing_left(dest)


def test_api_key_is_sent_but_never_shown(loopback, make_client, tmp_path):
    loopback.route("GET", "/data", Reply(403, b"bad key sekrit-123 for /data?api_key=sekrit-123"))
    client = make_client(api_key="sekrit-123", api_key_param="api_key")
    dest = tmp_path / "d" / "data.csv"
    with pytest.raises(NetworkError) as info:
        client.download("data", dest, params={"q": "x"})
    assert loopback.hits("/data")[0].query["api_key"] == ["sekrit-123"]
    assert "sekrit" not in str(info.value)
    assert "***" in str(info.value)
    assert "sekrit" not in client.full_url("data", {"q": "x"})


def test_rate_limit_spaces_requests():
    from astrobio_cli.net.http import RateLimiter

    now = [100.0]
    waits = []

    def sleep(s):
        waits.append(s)
        now[0] += s

    lim = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        lim.acquire()
    assert waits == pytest.approx([0.25, 0.25, 0.25, 0.25])


def test_progress_is_silent_when_stderr_is_not_a_terminal(loopback, make_client, tmp_path, capfd):
    loopback.route("GET", "/data", Reply(200, BODY))
    make_client().download("data", tmp_path / "d" / "data.csv")  # progress=None: auto
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_from_settings_and_provenance_keep_the_key_secret(loopback, monkeypatch, tmp_path):
    from astrobio_cli import settings
    from astrobio_cli.net import provenance
    from astrobio_cli.net.cache import Cache

    monkeypatch.setenv("ASTROBIO_SOURCES__TOY_SOURCE__BASE_URL", loopback.base_url)
    monkeypatch.setenv("ASTROBIO_SOURCES__TOY_SOURCE__API_KEY", "k3y-s3cret")
    monkeypatch.setenv("ASTROBIO_SOURCES__TOY_SOURCE__RETRIES", "1")
    monkeypatch.setenv("ASTROBIO_SOURCES__TOY_SOURCE__BACKOFF", "0.01")
    settings.configure(None, None)
    loopback.route("GET", "/data", Reply(503), Reply(200, BODY))
    with HttpClient.from_settings("toy-source", "https://unused.example", api_key_param="key") as c:
        assert c.base_url == loopback.base_url and c.retry.retries == 1
        hit = Cache(tmp_path / "cache").fetch(
            "toy-source", {"path": "data"}, lambda dest: c.download("data", dest)
        )
        rec = provenance.record(
            source="toy-source", url=hit.entry.record["url"], query=None, hit=hit
        )
        side = provenance.write_sidecar(tmp_path / "out.csv", rec, redact=c.redact)
    assert [h.query["key"] for h in loopback.hits("/data")] == [["k3y-s3cret"]] * 2
    for path in [side, *(tmp_path / "cache").rglob("*.json")]:
        text = path.read_text()
        assert "k3y-s3cret" not in text
    assert "key=***" in side.read_text()


@pytest.mark.parametrize(
    "adql",
    [
        "SELECT * FROM ps",
        "SELECT TOP 5 pl_name FROM ps WHERE discoverymethod = 'Transit' AND pl_rade / 2 < 1.5",
        "SELECT pl_name FROM ps WHERE pl_name LIKE 'Kepler-%' ORDER BY pl_name DESC",
    ],
)
def test_shown_url_is_the_url_httpx_sends(adql):
    import httpx

    client = HttpClient("x", base_url="https://archive.example/base")
    with client:
        shown = client.full_url("TAP/sync", {"query": adql, "format": "csv"})
    sent = httpx.Request(
        "GET", "https://archive.example/base/TAP/sync", params={"query": adql, "format": "csv"}
    )
    assert shown == str(sent.url)


BIG = bytes(range(256)) * 1200  # 307,200 bytes


def test_interrupted_large_download_is_resumed_by_the_next_run(loopback, make_client, tmp_path):
    from astrobio_cli.net.cache import Cache

    etag = {"ETag": '"v1"'}
    loopback.route("GET", "/big", Reply(200, BIG, send_bytes=200_000, ranges=True, headers=etag))
    dest = tmp_path / "d" / "big.bin"
    first = make_client(retry=RetryPolicy(retries=0))
    with pytest.raises(NetworkError, match="shorter than Content-Length"):
        first.download("big", dest, keep_partial_over=100_000)
    assert not dest.exists()
    kept = sorted(p.name for p in dest.parent.iterdir())
    assert kept == [".big.bin.resume", ".big.bin.resume.json"]
    assert (dest.parent / ".big.bin.resume").stat().st_size == 200_000

    loopback.route("GET", "/big", Reply(200, BIG, ranges=True, headers=etag))
    res = make_client().download("big", dest, keep_partial_over=100_000)
    second = loopback.hits("/big")[1]
    assert second.headers["range"] == "bytes=200000-"
    assert second.headers["if-range"] == '"v1"'
    assert res.resumed == 1
    assert dest.read_bytes() == BIG
    assert res.sha256 == hashlib.sha256(BIG).hexdigest()
    assert list(dest.parent.iterdir()) == [dest]

    # a partial left in the cache is swept by `cache clean`
    (dest.parent / ".big.bin.resume").write_bytes(b"x")
    Cache(tmp_path).clean("d")
    assert list(dest.parent.iterdir()) == [dest]


def test_small_or_unvalidated_partials_are_not_kept(loopback, make_client, tmp_path):
    # no ETag/Last-Modified: If-Range impossible, so nothing is kept for a later run
    loopback.route("GET", "/big", Reply(200, BIG, send_bytes=200_000, ranges=True))
    dest = tmp_path / "d" / "big.bin"
    with pytest.raises(NetworkError):
        make_client(retry=RetryPolicy(retries=0)).download("big", dest, keep_partial_over=100_000)
    _nothing_left(dest)


def test_a_kept_partial_for_another_url_is_discarded(loopback, make_client, tmp_path):
    etag = {"ETag": '"v1"'}
    loopback.route("GET", "/big", Reply(200, BIG, send_bytes=200_000, ranges=True, headers=etag))
    loopback.route("GET", "/other", Reply(200, BODY, ranges=True, headers=etag))
    dest = tmp_path / "d" / "big.bin"
    with pytest.raises(NetworkError):
        make_client(retry=RetryPolicy(retries=0)).download("big", dest, keep_partial_over=100_000)
    make_client().download("other", dest, keep_partial_over=100_000)
    assert "range" not in loopback.hits("/other")[0].headers
    assert dest.read_bytes() == BODY
    assert list(dest.parent.iterdir()) == [dest]


CTRL_C_SCRIPT = """
import sys
from astrobio_cli.net.http import HttpClient
with HttpClient("x", base_url=sys.argv[1], timeout=30) as c:
    c.download("big", sys.argv[2], keep_partial_over=100_000)
"""


def test_ctrl_c_keeps_a_large_partial_for_the_next_run(loopback, make_client, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    etag = {"ETag": '"v1"'}
    loopback.route(
        "GET", "/big", Reply(200, BIG, send_bytes=200_000, stall=30, ranges=True, headers=etag)
    )
    dest = tmp_path / "d" / "big.bin"
    dest.parent.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_SCRIPT, loopback.base_url, str(dest)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while sum(p.stat().st_size for p in dest.parent.glob(".big.bin.*.part")) < 200_000:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the transfer never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "KeyboardInterrupt" in err
    assert sorted(p.name for p in dest.parent.iterdir()) == [
        ".big.bin.resume",
        ".big.bin.resume.json",
    ]

    loopback.route("GET", "/big", Reply(200, BIG, ranges=True, headers=etag))
    res = make_client().download("big", dest, keep_partial_over=100_000)
    assert res.resumed == 1 and dest.read_bytes() == BIG
    assert list(dest.parent.iterdir()) == [dest]
