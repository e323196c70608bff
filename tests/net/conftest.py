"""Fixtures for the network layer: a loopback HTTP server and a fast-retrying client."""

from __future__ import annotations

import pytest
from httpserver import LoopbackServer


@pytest.fixture
def loopback():
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture
def sleeps():
    """Waits the client asked for, recorded instead of slept (tests stay fast)."""
    return []


@pytest.fixture
def make_client(loopback, sleeps):
    from astrobio_cli.net.http import HttpClient, RetryPolicy

    clients = []

    def make(**kw):
        kw.setdefault("base_url", loopback.base_url)
        kw.setdefault("timeout", 5.0)
        kw.setdefault("retry", RetryPolicy(retries=3, backoff=0.01))
        kw.setdefault("sleep", sleeps.append)
        c = HttpClient(kw.pop("source", "test-source"), **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
