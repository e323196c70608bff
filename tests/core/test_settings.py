"""Settings precedence (flag > environment > file > default) and every error message."""

from __future__ import annotations

from pathlib import Path

import pytest

from astrobio_cli.errors import SettingsError
from astrobio_cli.settings import default_config_path, effective, load_settings


def write(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


def test_defaults_without_any_file():
    ls = load_settings()
    assert ls.settings.threads is None
    assert ls.settings.native is True
    assert ls.settings.attention.backend == "auto"
    assert ls.config_path == default_config_path()
    assert not ls.config_exists
    assert all(r["source"] == "default" for r in effective(ls))


def test_default_file_location_is_read():
    path = default_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path, "threads = 4\n")
    ls = load_settings()
    assert ls.settings.threads == 4 and ls.origins["threads"] == str(path)


def test_precedence_flag_over_env_over_file(tmp_path, monkeypatch):
    cfg = write(
        tmp_path / "a.toml", 'log_level = "WARNING"\nthreads = 2\n[attention]\nbackend = "sdpa"\n'
    )
    monkeypatch.setenv("ASTROBIO_THREADS", "5")
    monkeypatch.setenv("ASTROBIO_ATTENTION__BACKEND", "eager")
    ls = load_settings(cfg, {"log_level": "ERROR"})
    s = ls.settings
    assert s.log_level == "ERROR" and ls.origins["log_level"] == "flag --log-level"
    assert s.threads == 5 and ls.origins["threads"] == "env ASTROBIO_THREADS"
    assert (
        s.attention.backend == "eager"
        and ls.origins["attention.backend"] == "env ASTROBIO_ATTENTION__BACKEND"
    )


def test_file_beats_default_and_env_var_names_the_file(tmp_path, monkeypatch):
    cfg = write(tmp_path / "b.toml", "native = false\n")
    monkeypatch.setenv("ASTROBIO_CONFIG", str(cfg))
    ls = load_settings()
    assert ls.settings.native is False
    assert ls.config_origin == "env ASTROBIO_CONFIG"


def test_per_source_settings_from_env_and_file(tmp_path, monkeypatch):
    cfg = write(
        tmp_path / "c.toml",
        '[sources.nasa-exoplanet]\nbase_url = "http://127.0.0.1:9"\ntimeout = 2.5\n',
    )
    monkeypatch.setenv("ASTROBIO_SOURCES__NASA_EXOPLANET__RATE_LIMIT", "3")
    monkeypatch.setenv("ASTROBIO_SOURCES__NCBI__API_KEY", "abc123")
    s = load_settings(cfg).settings
    src = s.source("nasa-exoplanet")
    assert src.base_url == "http://127.0.0.1:9" and src.timeout == 2.5 and src.rate_limit == 3
    assert s.source("ncbi").api_key.get_secret_value() == "abc123"
    assert "abc123" not in repr(s) and "abc123" not in str(s.model_dump())
    assert s.source("uniprot").timeout == 30.0  # defaults for an unconfigured source


@pytest.mark.parametrize(
    ("layer", "expect"),
    [
        (
            "env",
            "setting 'threads' = '0' (from env ASTROBIO_THREADS) is invalid: Input should be greater than 0",
        ),
        ("file", "setting 'threads' = 0 (from {cfg}) is invalid: Input should be greater than 0"),
        (
            "flag",
            "setting 'threads' = 0 (from flag --threads) is invalid: Input should be greater than 0",
        ),
    ],
)
def test_bad_value_names_key_value_origin_and_expectation(layer, expect, tmp_path, monkeypatch):
    cfg = tmp_path / "d.toml"
    flags = None
    if layer == "env":
        monkeypatch.setenv("ASTROBIO_THREADS", "0")
    elif layer == "file":
        write(cfg, "threads = 0\n")
    else:
        flags = {"threads": 0}
    with pytest.raises(SettingsError) as exc:
        load_settings(cfg if layer == "file" else None, flags)
    assert str(exc.value) == expect.format(cfg=cfg)
    assert exc.value.exit_code == 2


def test_bad_literal_lists_the_choices(monkeypatch):
    monkeypatch.setenv("ASTROBIO_LOG_LEVEL", "loud")
    with pytest.raises(
        SettingsError, match=r"'log_level' = 'LOUD' .*'DEBUG', 'INFO', 'WARNING' or 'ERROR'"
    ):
        load_settings()


def test_bad_secret_value_is_not_echoed(monkeypatch):
    monkeypatch.setenv("ASTROBIO_SOURCES__NCBI__API_KEY", "")
    monkeypatch.setenv("ASTROBIO_SOURCES__NCBI__TIMEOUT", "-1")
    with pytest.raises(SettingsError) as exc:
        load_settings()
    assert "sources.ncbi.timeout" in str(
        exc.value
    ) and "env ASTROBIO_SOURCES__NCBI__TIMEOUT" in str(exc.value)


def test_unknown_key_in_file_is_named(tmp_path):
    cfg = write(tmp_path / "e.toml", "data_dri = '/x'\n")
    with pytest.raises(SettingsError, match=rf"unknown setting 'data_dri' \(from {cfg}\)"):
        load_settings(cfg)


def test_missing_explicit_file(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_invalid_toml(tmp_path):
    cfg = write(tmp_path / "f.toml", "threads = = 3\n")
    with pytest.raises(SettingsError, match="is not valid TOML"):
        load_settings(cfg)


def test_cli_reports_bad_file_in_one_line(tmp_path, run_cli):
    cfg = write(tmp_path / "g.toml", "threads = -2\n")
    res = run_cli("--config", str(cfg), "config", "show")
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: setting 'threads' = -2")
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) <= 2
