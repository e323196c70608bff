"""Fixtures for the remote data sources: the shared loopback server, settings pointed at it.

The server is the network layer's `tests/httpserver.py` (imported, not copied); each test
points one source's base_url at it through ASTROBIO_SOURCES__<NAME>__BASE_URL, in this process
(`point`) and in `astrobio` subprocesses (the environment is inherited).
"""

from __future__ import annotations

import pytest
from httpserver import LoopbackServer


@pytest.fixture
def server():
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture
def point(monkeypatch):
    """point(source, srv): settings of `source` aim at `srv`, retry fast, no rate limit."""
    from astrobio_cli import settings

    def apply(source: str, srv: LoopbackServer, **more: str) -> dict[str, str]:
        env = source.upper().replace("-", "_")
        values = {"BASE_URL": srv.base_url, "BACKOFF": "0.01", "RATE_LIMIT": "1000", **more}
        for k, v in values.items():
            monkeypatch.setenv(f"ASTROBIO_SOURCES__{env}__{k}", v)
        settings.configure(None, None)
        return {f"ASTROBIO_SOURCES__{env}__{k}": v for k, v in values.items()}

    return apply


@pytest.fixture
def cli():
    """In-process `astrobio ...` through Typer's CliRunner (fast; subprocesses are kept for
    one end-to-end run per source). Returns the click Result (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from astrobio_cli.cli import build_app

    def invoke(*args: str):
        return CliRunner().invoke(
            build_app(), list(args), prog_name="astrobio", env={"COLUMNS": "200"}
        )

    return invoke
