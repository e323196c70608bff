"""Fixtures for `astrobio fetch`: the loopback archive and the environment pointing at it."""

from __future__ import annotations

import pytest
from httpserver import LoopbackServer


@pytest.fixture
def loopback():
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture
def archive_env(loopback, tmp_path, monkeypatch):
    """Settings (env) for a run against the loopback archive, fast retries; also applied to
    this process so in-process library calls see them."""
    from astrobio_cli import settings

    env = {
        "ASTROBIO_SOURCES__NASA_EXOPLANET__BASE_URL": loopback.base_url,
        "ASTROBIO_SOURCES__NASA_EXOPLANET__BACKOFF": "0.01",
        "ASTROBIO_SOURCES__NASA_EXOPLANET__RETRIES": "2",
        "ASTROBIO_SOURCES__NASA_EXOPLANET__TIMEOUT": "5",
        "ASTROBIO_CACHE_DIR": str(tmp_path / "cache"),
        "ASTROBIO_DATA_DIR": str(tmp_path / "data"),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings.configure(None, None)
    return env
