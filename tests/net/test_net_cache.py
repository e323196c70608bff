"""The download cache against a real loopback server: hits, refresh, verify, offline."""

from __future__ import annotations

import hashlib
import json

import pytest
from httpserver import Reply

from astrobio_cli.net.cache import Cache, request_key
from astrobio_cli.net.errors import NetworkError

BODY = b'pl_name\n"a b"\n"c d"\n'
REQ = {"service": "x", "query": "select pl_name from ps", "format": "csv"}


@pytest.fixture
def cache(tmp_path):
    return Cache(tmp_path / "cache")


def _fetch(cache, client, refresh=False):
    return cache.fetch(
        "nasa-exoplanet", REQ, lambda dest: client.download("sync", dest), refresh=refresh
    )


def test_miss_then_hit_without_network(loopback, make_client, cache):
    loopback.route("GET", "/sync", Reply(200, BODY))
    client = make_client()
    first = _fetch(cache, client)
    assert not first.from_cache
    assert first.path.read_bytes() == BODY
    assert first.entry.sha256 == hashlib.sha256(BODY).hexdigest()
    assert first.entry.record["status"] == 200

    loopback.route("GET", "/sync", Reply(500, b"must not be asked"))
    second = _fetch(cache, client)
    assert second.from_cache
    assert second.path == first.path
    assert 0 <= second.entry.age_s < 60
    assert len(loopback.hits("/sync")) == 1


def test_refresh_downloads_again(loopback, make_client, cache):
    loopback.route("GET", "/sync", Reply(200, BODY), Reply(200, BODY + b'"e f"\n'))
    client = make_client()
    _fetch(cache, client)
    again = _fetch(cache, client, refresh=True)
    assert not again.from_cache
    assert again.path.read_bytes().endswith(b'"e f"\n')
    assert len(loopback.hits("/sync")) == 2


def test_key_depends_on_source_and_request_not_order():
    a = request_key("s", {"a": 1, "b": 2})
    assert a == request_key("s", {"b": 2, "a": 1})
    assert a != request_key("t", {"a": 1, "b": 2})
    assert a != request_key("s", {"a": 1, "b": 3})


def test_verify_marks_corrupt_and_next_use_refetches(loopback, make_client, cache):
    loopback.route("GET", "/sync", Reply(200, BODY))
    client = make_client()
    hit = _fetch(cache, client)
    assert [p for _, p in cache.verify()] == [None]

    data = bytearray(hit.path.read_bytes())
    data[3] ^= 0x20  # same size, different bytes: only a checksum finds it
    hit.path.write_bytes(bytes(data))
    results = cache.verify()
    assert len(results) == 1 and "sha256" in results[0][1]
    meta = json.loads(hit.path.with_suffix(".json").read_text())
    assert meta["corrupt"]

    again = _fetch(cache, client)
    assert not again.from_cache
    assert again.path.read_bytes() == BODY
    assert again.entry.corrupt is None
    assert len(loopback.hits("/sync")) == 2
    assert [p for _, p in cache.verify()] == [None]


def test_offline_error_names_the_cached_copy(loopback, make_client, cache):
    loopback.route("GET", "/sync", Reply(200, BODY))
    client = make_client()
    hit = _fetch(cache, client)
    loopback.route("GET", "/sync", Reply(503, b"down"))
    with pytest.raises(NetworkError) as info:
        _fetch(cache, client, refresh=True)
    msg = str(info.value)
    assert "host 127.0.0.1" in msg
    assert str(hit.path) in msg and "cached copy from 20" in msg
    assert hit.path.read_bytes() == BODY  # the old copy survives a failed refresh


def test_clean_corrupt_only_then_all(loopback, make_client, cache):
    loopback.route("GET", "/sync", Reply(200, BODY))
    client = make_client()
    hit = _fetch(cache, client)
    other = cache.fetch("other", {"q": 1}, lambda dest: client.download("sync", dest))
    hit.path.write_bytes(b"x" * len(BODY))
    cache.verify()
    removed = cache.clean(corrupt_only=True)
    assert [e.source for e in removed] == ["nasa-exoplanet"]
    assert not hit.path.exists() and other.path.exists()
    assert len(cache.clean()) == 1
    assert list(cache.entries()) == []


def test_clean_older_than_keeps_recent_entries(loopback, make_client, cache):
    loopback.route("GET", "/sync", Reply(200, BODY))
    client = make_client()
    old = cache.fetch("s", {"q": "old"}, lambda dest: client.download("sync", dest))
    new = cache.fetch("s", {"q": "new"}, lambda dest: client.download("sync", dest))
    meta = old.path.with_suffix(".json")
    record = json.loads(meta.read_text())
    record["created"] = "2020-01-01T00:00:00+00:00"
    meta.write_text(json.dumps(record))
    removed = cache.clean(older_than_s=86400)
    assert [e.key for e in removed] == [old.entry.key]
    assert new.path.exists() and not old.path.exists()
