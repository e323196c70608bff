"""HTTP faults from a real loopback server, end to end through `astrobio fetch` and the net layer.

Each test reproduces one failure found by the adversarial run of issue 13 (Downloads 1-5) and is
bounded in time: deadlines, timeouts and sizes are set small through the settings.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from httpserver import Reply

from tests.conftest import astrobio_exe

ARCHIVE_DATA = Path(__file__).resolve().parents[1] / "data" / "nasa-exoplanet-archive"
DEFAULT_BODY = (ARCHIVE_DATA / "pscomppars-default.csv").read_bytes()
HEADER, *_ROWS = DEFAULT_BODY.splitlines(keepends=True)


@pytest.fixture
def make_client(loopback):
    from astrobio_cli.net.http import HttpClient, RetryPolicy

    clients = []

    def make(**kw):
        kw.setdefault("base_url", loopback.base_url)
        kw.setdefault("timeout", 5.0)
        kw.setdefault("retry", RetryPolicy(retries=3, backoff=0.01))
        c = HttpClient(kw.pop("source", "test-source"), **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def big_body(n_bytes: int) -> bytes:
    block = b"".join(_ROWS)
    return HEADER + block * max(n_bytes // len(block), 1)


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    return lines[0]


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((".part", ".resume", ".resume.json"))]


# -- 1. deadlines ----------------------------------------------------------------------------------


def test_slow_drip_body_stops_at_the_request_deadline(loopback, archive_env, run_cli, tmp_path):
    # one byte every 0.25 s: every read is well inside `timeout`, the whole body takes a minute
    loopback.route("GET", "/TAP/sync", Reply(200, DEFAULT_BODY[:240], drip=0.25))
    env = {
        "ASTROBIO_SOURCES__NASA_EXOPLANET__TIMEOUT": "2",
        "ASTROBIO_SOURCES__NASA_EXOPLANET__DEADLINE": "3",
    }
    t = time.monotonic()
    res = run_cli("fetch", "nasa-exoplanet", env=env, timeout=25)
    took = time.monotonic() - t
    assert res.returncode == 1
    line = _one_line(res.stderr)
    assert "gave up after" in line and "deadline of 3 s" in line, line
    assert "sources.nasa-exoplanet.deadline" in line, line
    assert took < 12, took
    assert not _leftovers(tmp_path)


def test_slow_drip_headers_time_out_per_attempt(loopback, make_client, tmp_path):
    from astrobio_cli.net.errors import NetworkError
    from astrobio_cli.net.http import RetryPolicy

    loopback.route("GET", "/data", Reply(200, b"a,b\n1,2\n", header_drip=0.15))
    client = make_client(timeout=1.0, retry=RetryPolicy(retries=1, backoff=0.01))
    t = time.monotonic()
    with pytest.raises(NetworkError, match=r"timed out after 1 s"):
        client.download("data", tmp_path / "d.csv")
    assert time.monotonic() - t < 6
    assert list(tmp_path.iterdir()) == []


def test_command_deadline_bounds_every_retry(loopback, archive_env, run_cli):
    loopback.route("GET", "/TAP/sync", Reply(503, b"busy", headers={"Retry-After": "1"}))
    env = {
        "ASTROBIO_SOURCES__NASA_EXOPLANET__RETRIES": "10",
        "ASTROBIO_SOURCES__NASA_EXOPLANET__COMMAND_DEADLINE": "2.5",
    }
    t = time.monotonic()
    res = run_cli("fetch", "nasa-exoplanet", env=env, timeout=25)
    assert res.returncode == 1
    line = res.stderr.strip().splitlines()[-1]
    assert "sources.nasa-exoplanet.command_deadline" in line, res.stderr
    assert time.monotonic() - t < 12
    assert len(loopback.hits("/TAP/sync")) <= 3


# -- 2. Retry-After --------------------------------------------------------------------------------


def test_retry_after_beyond_the_deadline_is_refused_at_once(loopback, archive_env, run_cli):
    loopback.route(
        "GET", "/TAP/sync", Reply(503, b"maintenance", headers={"Retry-After": "100000"})
    )
    t = time.monotonic()
    res = run_cli("fetch", "nasa-exoplanet", timeout=20)
    assert res.returncode == 1
    line = _one_line(res.stderr)
    assert "Retry-After" in line and "100000 s" in line and "deadline" in line, line
    assert "try again after" in line, line
    assert time.monotonic() - t < 10
    assert len(loopback.hits("/TAP/sync")) == 1


def test_a_wait_is_announced_with_its_reason_and_end(loopback, archive_env, run_cli, tmp_path):
    loopback.route(
        "GET",
        "/TAP/sync",
        Reply(503, b"busy", headers={"Retry-After": "1"}),
        Reply(200, DEFAULT_BODY),
    )
    res = run_cli("fetch", "nasa-exoplanet", "--out", str(tmp_path / "p.parquet"), timeout=25)
    assert res.returncode == 0, res.stderr
    assert "HTTP 503" in res.stderr and "waiting 1 s" in res.stderr, res.stderr
    assert "until" in res.stderr and "Retry-After" in res.stderr, res.stderr


# -- 3. size cap and memory ------------------------------------------------------------------------


@pytest.mark.parametrize("content_length", [False, True], ids=["streamed", "content-length"])
def test_response_larger_than_max_bytes_is_refused(
    loopback, archive_env, run_cli, tmp_path, content_length
):
    loopback.route("GET", "/TAP/sync", Reply(200, big_body(300_000), content_length=content_length))
    env = {"ASTROBIO_SOURCES__NASA_EXOPLANET__MAX_BYTES": "100000"}
    res = run_cli("fetch", "nasa-exoplanet", "--out", str(tmp_path / "p.parquet"), env=env)
    assert res.returncode == 1
    line = _one_line(res.stderr)
    assert "larger than" in line and "100000 bytes" in line, line
    assert "sources.nasa-exoplanet.max_bytes" in line, line
    assert len(loopback.hits("/TAP/sync")) == 1  # not retried
    assert not (tmp_path / "p.parquet").exists()
    assert not list((tmp_path / "cache").rglob("*.body")) and not _leftovers(tmp_path)


def _peak_rss_kb(args: list[str], env: dict[str, str]) -> int:
    """Peak RSS of `astrobio ARGS` alone (a fresh parent, so no other child counts)."""
    probe = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True)\n"
        "sys.stderr.write(r.stderr.decode())\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(r.returncode)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", probe, astrobio_exe(), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    return int(res.stdout.split()[-1])


def test_peak_memory_grows_a_small_multiple_of_the_body(loopback, archive_env, tmp_path):
    # Two sizes, both parsed the same way: the slope is what each extra byte of body costs.
    small, big = big_body(4_000_000), big_body(20_000_000)
    loopback.route("GET", "/small/TAP/sync", Reply(200, small, content_length=False))
    loopback.route("GET", "/TAP/sync", Reply(200, big, content_length=False))
    low = _peak_rss_kb(
        ["fetch", "nasa-exoplanet", "--out", str(tmp_path / "s.parquet")],
        {"ASTROBIO_SOURCES__NASA_EXOPLANET__BASE_URL": loopback.url("/small")},
    )
    high = _peak_rss_kb(["fetch", "nasa-exoplanet", "--out", str(tmp_path / "b.parquet")], {})
    per_byte = (high - low) * 1024 / (len(big) - len(small))
    # before: ~28 bytes of memory per byte of body (a Python object per cell); now a few
    assert per_byte < 10, f"peak RSS grows {per_byte:.1f} bytes per byte of body"


# -- 4. leftover partial downloads -----------------------------------------------------------------


def _cache_entry(loopback, tmp_path):
    from astrobio_data_sources import nasa_exoplanet as nx

    loopback.route("GET", "/TAP/sync", Reply(200, DEFAULT_BODY))
    res = nx.fetch(nx.ExoplanetQuery.from_options(), out=tmp_path / "p.parquet")
    return res.cache_path


def test_cache_list_shows_partials_and_clean_partial_removes_them(
    loopback, archive_env, run_cli, tmp_path
):
    body = _cache_entry(loopback, tmp_path)
    dead = body.with_name(f".{body.name}.999999999.0badc0de.part")  # no such process
    dead.write_bytes(b"x" * 1234)
    listed = run_cli("cache", "list")
    assert listed.returncode == 0, listed.stderr
    assert "1 partial download" in listed.stdout and "1234 bytes" in listed.stdout, listed.stdout
    assert dead.name in listed.stdout, listed.stdout
    cleaned = run_cli("cache", "clean", "--partial")
    assert cleaned.returncode == 0, cleaned.stderr
    assert "1 partial" in cleaned.stdout, cleaned.stdout
    assert not dead.exists() and body.exists()


def test_a_killed_download_is_resumed_with_range_by_the_next_run(
    loopback, archive_env, run_cli, tmp_path
):
    body = big_body(400_000)
    etag = '"v1"'
    first = Reply(200, body, ranges=True, headers={"ETag": etag}, send_bytes=150_000, stall=30)
    loopback.route("GET", "/TAP/sync", first, Reply(200, body, ranges=True, headers={"ETag": etag}))
    proc = subprocess.Popen(
        [astrobio_exe(), "fetch", "nasa-exoplanet", "--out", str(tmp_path / "p.parquet")],
        env={**os.environ, **archive_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cache = tmp_path / "cache" / "nasa-exoplanet"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            parts = list(cache.glob(".*.part")) if cache.is_dir() else []
            if parts and parts[0].stat().st_size >= 140_000:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the first run never wrote its partial download")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    size = parts[0].stat().st_size
    res = run_cli("fetch", "nasa-exoplanet", "--out", str(tmp_path / "p.parquet"), timeout=25)
    assert res.returncode == 0, res.stderr
    second = loopback.hits("/TAP/sync")[1]
    assert second.headers.get("range") == f"bytes={size}-", second.headers
    assert second.headers.get("if-range") == etag
    assert next(cache.glob("*.body")).read_bytes() == body
    assert not _leftovers(tmp_path)


def test_a_stale_partial_without_a_record_is_removed_by_the_next_run(
    loopback, archive_env, run_cli, tmp_path
):
    body = _cache_entry(loopback, tmp_path)
    stale = body.with_name(f".{body.name}.999999999.0badc0de.part")
    stale.write_bytes(b"junk")
    alive = body.with_name(f".{body.name}.{os.getpid()}.0badc0de.part")  # a live process's
    alive.write_bytes(b"busy")
    res = run_cli("fetch", "nasa-exoplanet", "--refresh", "--out", str(tmp_path / "p.parquet"))
    assert res.returncode == 0, res.stderr
    assert not stale.exists()
    assert alive.exists()


# -- 5. cache record corruption --------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["garbage", "empty", "not-an-object", "missing"])
def test_unreadable_record_fails_verify_shows_in_list_and_is_refetched(
    loopback, archive_env, run_cli, tmp_path, damage
):
    body = _cache_entry(loopback, tmp_path)
    record = body.with_suffix(".json")
    if damage == "missing":
        record.unlink()
    else:
        record.write_bytes({"garbage": b"\x00{\xff", "empty": b"", "not-an-object": b"[1]"}[damage])
    verify = run_cli("cache", "verify")
    assert verify.returncode == 1, verify.stdout
    assert "1 corrupt" in verify.stdout and body.name[:12] in verify.stdout, verify.stdout
    assert "record" in verify.stdout, verify.stdout
    listed = run_cli("cache", "list")
    assert "empty" not in listed.stdout and body.name[:12] in listed.stdout, listed.stdout
    assert "corrupt" in listed.stdout, listed.stdout

    res = run_cli("fetch", "nasa-exoplanet", "--out", str(tmp_path / "p.parquet"))
    assert res.returncode == 0, res.stderr
    assert len(loopback.hits("/TAP/sync")) == 2
    again = run_cli("cache", "verify")
    assert again.returncode == 0 and "1 ok, 0 corrupt" in again.stdout, again.stdout


@pytest.mark.parametrize("damage", ["truncated", "flipped-byte"])
def test_corrupt_body_and_failing_server_does_not_advise_the_cached_copy(
    loopback, archive_env, run_cli, tmp_path, damage
):
    body = _cache_entry(loopback, tmp_path)
    data = bytearray(body.read_bytes())
    if damage == "truncated":
        del data[-10:]
    else:
        data[-3] ^= 0x01
    body.write_bytes(bytes(data))
    loopback.route("GET", "/TAP/sync", Reply(503, b"down"))
    res = run_cli("fetch", "nasa-exoplanet", "--out", str(tmp_path / "p.parquet"))
    assert res.returncode == 1
    line = _one_line(res.stderr)
    assert "HTTP 503" in line and "corrupt" in line, line
    assert "to use it" not in line and "exists" not in line, line


def test_record_written_by_verify_stays_valid_json(loopback, archive_env, run_cli, tmp_path):
    body = _cache_entry(loopback, tmp_path)
    body.with_suffix(".json").write_text("{", encoding="utf-8")
    run_cli("cache", "verify")
    json.loads(body.with_suffix(".json").read_text(encoding="utf-8"))


# -- 3b. the Arrow fast path gives the pure-Python parser's answer ----------------------------------

_TOKENS = ["1", "-2", "+3", "1.5", "1.", ".5", "1e5", "-1E-3", "nan", "NaN", "inf", "-Infinity",
           "", " ", " 7 ", '"x"', '"5"', '""', '"a,b"', '"q""q"', "abc", "123456789012345678901",
           "999999999999999999", "1_0", "0x1", "é", '"unterminated', 'a"b', "  ", "1e", "--1"]  # fmt: skip


def _outcome(text: str, **kw):
    import math

    from astrobio_cli.net.content import parse_delimited
    from astrobio_cli.net.errors import ContentError

    try:
        t = parse_delimited(text, **kw)
    except ContentError as exc:
        return str(exc)
    out = []
    for c in t.columns:
        vals = [
            ("nan",) if isinstance(v, float) and math.isnan(v) else (type(v), v) for v in c.values
        ]
        out.append((c.name, c.kind, vals))
    return out


@pytest.mark.parametrize("delimiter", [",", "\t"], ids=["csv", "tsv"])
def test_arrow_parse_matches_the_python_parser(monkeypatch, delimiter):
    import random

    from astrobio_cli.net import content

    rng = random.Random(7)
    for _ in range(1500):
        ncol = rng.randint(1, 3)
        lines = ["# comment"] * rng.randint(0, 1) + [delimiter.join(f"h{i}" for i in range(ncol))]
        for _ in range(rng.randint(0, 5)):
            if rng.random() < 0.1:
                lines.append(rng.choice(["", "   "]))
                continue
            pool = _TOKENS[: rng.randint(1, len(_TOKENS))]
            lines.append(delimiter.join(rng.choice(pool) for _ in range(ncol)))
        text = rng.choice(["\n", "\r\n"]).join(lines) + rng.choice(["", "\n"])
        kw = {"delimiter": delimiter}
        if rng.random() < 0.3:
            kw["kinds"] = {"h0": rng.choice(["int", "float", "string"])}
        monkeypatch.setattr(content, "ARROW_MIN_BYTES", 1 << 60)
        ref = _outcome(text, **kw)
        monkeypatch.setattr(content, "ARROW_MIN_BYTES", 0)
        assert _outcome(text, **kw) == ref, (text, kw)


def test_parse_delimited_file_streams_the_real_bodies(monkeypatch):
    from astrobio_cli.net import content

    monkeypatch.setattr(content, "ARROW_MIN_BYTES", 0)
    for name, delimiter in [("csv.txt", ","), ("tsv.txt", "\t"), ("limit.txt", ",")]:
        path = ARCHIVE_DATA / name
        got = content.parse_delimited_file(path, delimiter=delimiter)
        assert all(isinstance(c, content.ArrowColumn) for c in got.columns)
        monkeypatch.setattr(content, "ARROW_MIN_BYTES", 1 << 60)
        ref = content.parse_delimited(path.read_text(encoding="utf-8"), delimiter=delimiter)
        monkeypatch.setattr(content, "ARROW_MIN_BYTES", 0)
        assert [(c.name, c.kind, c.values) for c in got.columns] == [
            (c.name, c.kind, c.values) for c in ref.columns
        ]
