"""The Python API's examples run: the docstrings of `astrobio_cli.api` and docs/python.md, with
doctest, against real files, a real training run and a loopback archive (its recorded answer)."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest
from httpserver import LoopbackServer, Reply

import astrobio_cli.api as api
from astrobio_cli.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
BODY = (ROOT / "tests" / "data" / "nasa-exoplanet-archive" / "pscomppars-default.csv").read_bytes()
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    from astrobio_cli import settings

    with LoopbackServer() as srv:
        srv.route("GET", "/TAP/sync", Reply(200, BODY, content_type="text/csv"))
        for k, v in {
            "ASTROBIO_SOURCES__NASA_EXOPLANET__BASE_URL": srv.base_url,
            "ASTROBIO_CACHE_DIR": str(tmp_path / "cache"),
            "ASTROBIO_DATA_DIR": str(tmp_path / "data"),
            "ASTROBIO_RUNS_DIR": str(tmp_path / "runs"),
            "ASTROBIO_THREADS": "1",
        }.items():
            monkeypatch.setenv(k, v)
        settings.configure(None, None)
        yield tmp_path
    settings.configure(None, None)


def _check(results: doctest.TestResults, what: str) -> None:
    assert results.attempted > 0, f"{what}: no examples found"
    assert results.failed == 0, f"{what}: {results.failed} of {results.attempted} examples failed"


def test_docs_python_md_examples_run(sandbox):
    res = doctest.testfile(
        str(ROOT / "docs" / "python.md"),
        module_relative=False,
        globs={"tmp": sandbox},
        optionflags=FLAGS,
    )
    _check(res, "docs/python.md")
    assert res.attempted >= 20


def test_api_docstring_examples_run(sandbox):
    res = doctest.testmod(api, extraglobs={"tmp": sandbox}, optionflags=FLAGS)
    _check(res, "astrobio_cli.api")


def test_api_errors_are_user_errors_with_the_cli_message(sandbox):
    with pytest.raises(UserError, match=r"--samples many: .*valid integer"):
        api.fetch("synthetic-climate", samples="many", out=sandbox / "x.nc")
    with pytest.raises(UserError, match=r"No such command .no-such-source"):
        api.fetch("no-such-source")
    with pytest.raises(UserError, match="kind"):
        api.open(sandbox / "table.parquet")
