"""Data kinds: sources declare what they write, models what they read; the host links them, and
the core reaches built-in data through the contract, never by importing a plugin."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from astrobio_cli.data import kinds
from astrobio_cli.errors import UserError
from astrobio_cli.plugins import PluginHost, load_host
from astrobio_cli.specs import DataSourceSpec, ModelSpec

SRC = Path(__file__).resolve().parents[2] / "src" / "astrobio_cli"
PLUGIN_PACKAGES = ("astrobio_models", "astrobio_data_sources", "astrobio_attention")


def _toy_host(tmp_path) -> PluginHost:
    made = tmp_path / "made.nc"

    class Toy:
        @staticmethod
        def register_models(register):
            register(ModelSpec(name="reader", description="r", factory=dict,
                               data_kinds=("climate-cube",)))  # fmt: skip
            register(ModelSpec(name="table-model", description="t", factory=dict,
                               data_kinds=("exoplanet-table",)))  # fmt: skip

        @staticmethod
        def register_data_sources(register):
            register(DataSourceSpec(name="maker", description="m", factory=dict,
                                    produces=("climate-cube",),
                                    default_data=lambda d: made))  # fmt: skip
            register(DataSourceSpec(name="archive", description="a", factory=dict,
                                    produces=("exoplanet-table", "climate-cube")))  # fmt: skip

    from astrobio_cli.hookspecs import hookimpl

    Toy.register_models = hookimpl(Toy.register_models)
    Toy.register_data_sources = hookimpl(Toy.register_data_sources)
    host = PluginHost()
    host.add_module("toy", Toy)
    return host, made


def test_host_links_models_and_sources(tmp_path):
    host, made = _toy_host(tmp_path)
    rows = {r["name"]: r for r in host.rows()}
    assert rows["reader"]["fed_by"] == ["archive", "maker"]
    assert rows["table-model"]["fed_by"] == ["archive"]
    assert rows["archive"]["feeds"] == ["reader", "table-model"]
    assert rows["maker"]["produces"] == ["climate-cube"]
    assert kinds.default_data("climate-cube", host) == made
    with pytest.raises(UserError, match="no installed data source makes built-in exoplanet-table"):
        kinds.default_data("exoplanet-table", host)
    assert "`astrobio fetch archive` writes exoplanet-table" in kinds.how_to_get(
        host, ("exoplanet-table",)
    )


def test_installed_sources_declare_known_kinds():
    host = load_host()
    for spec in host.specs("data-source"):
        for k in spec.produces:
            assert k in kinds.KINDS, (spec.name, k)
    for spec in host.specs("model"):
        for k in spec.data_kinds:
            assert k in kinds.KINDS, (spec.name, k)
    rows = {r["name"]: r for r in host.rows()}
    assert "synthetic-climate" in rows["cube-unet"]["fed_by"]
    assert "cube-unet" in rows["synthetic-climate"]["feeds"]


def test_plugins_list_json_shows_the_links(run_cli):
    r = run_cli("plugins", "list", "--kind", "model", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["datacube-cnn"]["data_kinds"] == ["climate-cube"]
    assert "synthetic-climate" in rows["datacube-cnn"]["fed_by"]


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_the_core_imports_no_plugin():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        for mod in _imported_modules(path):
            if mod.split(".")[0] in PLUGIN_PACKAGES:
                offenders.append(f"{path.relative_to(SRC.parent)} imports {mod}")
    assert offenders == [], "the core must reach plugins through the host only:\n" + "\n".join(
        offenders
    )


def test_the_import_scan_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from astrobio_models import cube_unet\n")
    assert "astrobio_models" in _imported_modules(bad)
