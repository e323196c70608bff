"""The command line through Typer's CliRunner, on a freshly built app per test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from astrobio_cli import __version__
from astrobio_cli.cli import build_app
from astrobio_cli.plugins import PluginHost

TOYS = Path(__file__).resolve().parents[1] / "plugins"


@pytest.fixture
def toy_host(monkeypatch) -> PluginHost:
    monkeypatch.syspath_prepend(str(TOYS))
    host = PluginHost()
    host.add_module_path("good", "astrobio_toy_good", dist="toy-good-dist")
    host.add_module_path("broken-hook", "astrobio_toy_broken_hook", dist="toy-broken-dist")
    return host


def invoke(host, *args):
    return CliRunner().invoke(
        build_app(host), list(args), prog_name="astrobio", env={"COLUMNS": "200"}
    )


def test_version(toy_host):
    res = invoke(toy_host, "--version")
    assert res.exit_code == 0
    assert res.stdout.strip() == f"astrobio {__version__}"


def test_help_lists_core_and_plugin_commands(toy_host):
    res = invoke(toy_host, "--help")
    assert res.exit_code == 0
    for cmd in ("env", "plugins", "config", "toy-hello"):
        assert cmd in res.stdout


def test_plugin_command_runs(toy_host):
    res = invoke(toy_host, "toy-hello", "--name", "Europa")
    assert res.exit_code == 0 and res.stdout.strip() == "toy hello Europa"


def test_plugins_list_json_has_every_field_and_status(toy_host):
    res = invoke(toy_host, "plugins", "list", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    by = {(r["kind"], r["name"]): r for r in rows}
    assert by[("model", "toy-model")]["status"] == "available"
    assert by[("model", "toy-model")]["distribution"] == "toy-good-dist"
    assert by[("attention", "toy-gpu-kernel")]["status"] == "unavailable"
    assert by[("attention", "toy-gpu-kernel")]["reason"] == "needs a CUDA device"
    assert by[("model", "broken-hook")]["status"] == "broken"
    assert "toy hook exploded" in by[("model", "broken-hook")]["reason"]
    for r in rows:
        assert set(r) == {
            "kind",
            "name",
            "description",
            "plugin",
            "distribution",
            "version",
            "status",
            "reason",
        } | _data_fields(r)


def _data_fields(row: dict) -> set[str]:
    """The data-kind links a row carries: models what they read, sources what they write."""
    if row["status"] == "broken" and "fed_by" not in row and "feeds" not in row:
        return set()
    return {"model": {"data_kinds", "fed_by"}, "data-source": {"produces", "feeds"}}.get(
        row["kind"], set()
    )


def test_plugins_list_kind_filter(toy_host):
    res = invoke(toy_host, "plugins", "list", "--kind", "attention", "--json")
    assert {r["kind"] for r in json.loads(res.stdout)} == {"attention"}


def test_plugins_list_table(toy_host):
    res = invoke(toy_host, "plugins", "list")
    assert res.exit_code == 0
    assert "toy-model" in res.stdout and "needs a CUDA device" in res.stdout


def test_unknown_name_exits_2_with_suggestion(toy_host):
    res = invoke(toy_host, "plugins", "show", "toy-modle")
    assert res.exit_code == 2
    assert "unknown model 'toy-modle'; did you mean 'toy-model'?" in res.stderr
    assert "Traceback" not in res.output


def test_plugins_show(toy_host):
    res = invoke(toy_host, "plugins", "show", "toy-gpu-kernel", "--kind", "attention", "--json")
    assert res.exit_code == 0
    assert json.loads(res.stdout)["reason"] == "needs a CUDA device"


def test_config_show_json_sources(toy_host, tmp_path, monkeypatch):
    cfg = tmp_path / "c.toml"
    cfg.write_text('threads = 3\n[sources.nasa-exoplanet]\napi_key = "s3cret-key"\n')
    monkeypatch.setenv("ASTROBIO_LOG_LEVEL", "debug")
    res = invoke(
        toy_host,
        "--config",
        str(cfg),
        "--runs-dir",
        str(tmp_path / "r"),
        "config",
        "show",
        "--json",
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)["settings"]
    assert out["threads"] == {"value": 3, "source": str(cfg)}
    assert out["log_level"] == {"value": "DEBUG", "source": "env ASTROBIO_LOG_LEVEL"}
    assert out["runs_dir"] == {"value": str(tmp_path / "r"), "source": "flag --runs-dir"}
    assert out["native"]["source"] == "default"
    assert out["sources.nasa_exoplanet.api_key"]["value"] == "**********"
    assert "s3cret-key" not in res.output


def test_bad_setting_exits_2_naming_key_value_origin(toy_host, monkeypatch):
    monkeypatch.setenv("ASTROBIO_THREADS", "many")
    res = invoke(toy_host, "config", "show")
    assert res.exit_code == 2
    assert "setting 'threads' = 'many' (from env ASTROBIO_THREADS) is invalid" in res.stderr
    assert "integer" in res.stderr


def test_env_json_reports_everything(toy_host):
    res = invoke(toy_host, "env", "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["astrobio"] == __version__
    assert rep["cpu"]["cores"] >= 1
    assert rep["torch"]["installed"] and rep["torch"]["build"]
    for lib in (
        "triton",
        "flash-attn",
        "xformers",
        "transformers",
        "peft",
        "torch-geometric",
        "accelerate",
    ):
        assert lib in rep["libraries"]
    assert rep["libraries"]["flash-attn"] == "not installed"
    assert rep["native"]["present"] and rep["native"]["build_profile"] in ("release", "debug")
    assert {"config_file", "data_dir", "cache_dir", "runs_dir"} <= set(rep["settings"])
    assert rep["plugins"] == {"available": 2, "unavailable": 1, "broken": 1}


def test_env_table(toy_host):
    res = invoke(toy_host, "env")
    assert res.exit_code == 0
    assert "native extension" in res.stdout and "plugins" in res.stdout
