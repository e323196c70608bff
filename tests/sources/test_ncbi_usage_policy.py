"""NCBI's E-utilities usage policy: every call carries `tool` and `email` (settings
`sources.ncbi.tool`/`sources.ncbi.email`), against the loopback E-utilities server of
test_source_ncbi.py. Neither is part of the cache key, and the email never reaches provenance."""

from __future__ import annotations

import json

import pytest

from tests.sources.test_source_ncbi import GB, Eutils

EMAIL = "ada@example.org"
NOTE = "set sources.ncbi.email"


@pytest.fixture
def ncbi(server, point):
    point("ncbi", server)
    return server


def test_every_call_carries_tool_and_email_and_the_cache_ignores_them(ncbi, run_cli, tmp_path):
    Eutils(ncbi)
    out = tmp_path / "cor.parquet"
    args = ["fetch", "ncbi", "--query", "cor6 AND Brassicaceae[orgn]", "--batch-size", "2"]
    env = {"ASTROBIO_SOURCES__NCBI__EMAIL": EMAIL, "ASTROBIO_SOURCES__NCBI__API_KEY": "k3y"}
    r = run_cli(*args, "--out", str(out), env=env)
    assert r.returncode == 0, r.stderr
    assert len(ncbi.requests) == 4  # one esearch, three efetch pages
    for req in ncbi.requests:
        assert (req.q("tool"), req.q("email"), req.q("api_key")) == ("astrobio", EMAIL, "k3y")
    assert NOTE not in r.stderr
    assert out.with_suffix(".gb").read_text() == GB
    for side in (out, out.with_suffix(".gb")):
        text = side.with_name(side.name + ".provenance.json").read_text()
        assert EMAIL not in text and "k3y" not in text
        urls = [q["url"] for q in json.loads(text)["requests"]]
        assert all("tool=astrobio" in u and "email=***" in u for u in urls), urls
    assert EMAIL not in r.stdout + r.stderr

    # Another tool name and email (or none): same answers, so the cache still serves them all.
    again = {"ASTROBIO_SOURCES__NCBI__TOOL": "mypipeline"}
    r2 = run_cli(*args, "--out", str(tmp_path / "again.parquet"), env=again)
    assert r2.returncode == 0, r2.stderr
    assert len(ncbi.requests) == 4
    assert (tmp_path / "again.gb").read_text() == GB


def test_without_email_the_tool_is_sent_and_a_note_printed_once(ncbi, run_cli, tmp_path):
    Eutils(ncbi)
    out = tmp_path / "two.parquet"
    r = run_cli("fetch", "ncbi", "--id", "X55053,X62281", "--batch-size", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    pages = ncbi.hits("/efetch.fcgi")
    assert len(pages) == 2
    assert [(p.q("tool"), p.q("email")) for p in pages] == [("astrobio", None)] * 2
    assert r.stderr.count(NOTE) == 1 and NOTE not in r.stdout


def test_dry_run_shows_tool_and_masks_email(ncbi, cli, monkeypatch):
    from astrobio_cli import settings

    monkeypatch.setenv("ASTROBIO_SOURCES__NCBI__EMAIL", EMAIL)
    settings.configure(None, None)
    r = cli("fetch", "ncbi", "--id", "X55053", "--dry-run")
    assert r.exit_code == 0, r.stderr
    assert "tool=astrobio" in r.stdout and "email=***" in r.stdout and EMAIL not in r.stdout
    assert ncbi.requests == []


def test_settings_are_checked(monkeypatch):
    from astrobio_cli.errors import SettingsError
    from astrobio_cli.settings import load_settings

    monkeypatch.setenv("ASTROBIO_SOURCES__NCBI__EMAIL", "not an email")
    with pytest.raises(SettingsError, match=r"sources\.ncbi\.email"):
        load_settings()
    monkeypatch.setenv("ASTROBIO_SOURCES__NCBI__EMAIL", EMAIL)
    s = load_settings().settings.source("ncbi")
    assert (s.tool, s.email) == ("astrobio", EMAIL)
    monkeypatch.setenv("ASTROBIO_SOURCES__UNIPROT__EMAIL", EMAIL)
    with pytest.raises(SettingsError, match=r"set sources\.ncbi\.email"):
        load_settings()
