"""The plugin host's policy, with toy plugins (tests/plugins/) and the installed distributions."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from astrobio_cli.errors import PluginConflictError, UnknownNameError
from astrobio_cli.plugins import PluginHost, load_host

TOYS = Path(__file__).resolve().parents[1] / "plugins"


@pytest.fixture(autouse=True)
def _toys_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TOYS))


def host_with(*modules: str, **kw) -> PluginHost:
    host = PluginHost(**kw)
    for m in modules:
        host.add_module_path(m.removeprefix("astrobio_toy_").replace("_", "-"), m, dist=f"{m}-dist")
    return host


def test_every_hook_of_a_good_plugin_is_collected():
    host = host_with("astrobio_toy_good")
    assert [s.name for s in host.specs("model")] == ["toy-model"]
    assert [s.name for s in host.specs("data-source")] == ["toy-source"]
    assert [s.name for s in host.specs("attention")] == ["toy-gpu-kernel"]
    assert host.get("model", "toy-model").factory() == "built"
    rows = {r["name"]: r for r in host.rows()}
    assert rows["toy-model"]["status"] == "available"
    assert rows["toy-gpu-kernel"]["status"] == "unavailable"
    assert rows["toy-gpu-kernel"]["reason"] == "needs a CUDA device"
    assert rows["toy-model"]["distribution"] == "astrobio_toy_good-dist"
    host.pm.check_pending()  # every hookimpl matches a hookspec


def test_installed_plugins_match_the_hookspecs():
    host = load_host()
    host.pm.check_pending()
    assert not [r for r in host.rows() if r["status"] == "broken"], host.rows()


def test_import_error_quarantines_only_that_plugin():
    host = host_with("astrobio_toy_broken_import", "astrobio_toy_good")
    broken = [r for r in host.rows() if r["status"] == "broken"]
    assert len(broken) == 1
    assert broken[0]["name"] == "broken-import"
    assert "astrobio_toy_dependency_that_does_not_exist" in broken[0]["reason"]
    assert host.get("model", "toy-model")  # the rest still works


def test_hook_error_quarantines_the_plugin_with_its_error():
    host = host_with("astrobio_toy_broken_hook", "astrobio_toy_good")
    broken = [r for r in host.rows() if r["status"] == "broken"]
    assert [b["name"] for b in broken] == ["broken-hook"]
    assert "toy hook exploded" in broken[0]["reason"]
    assert broken[0]["kind"] == "model"


def test_bad_name_is_rejected_naming_the_rule():
    host = host_with("astrobio_toy_bad_name")
    (row,) = host.rows()
    assert row["status"] == "broken"
    assert "'Bad_Name' is not kebab-case" in row["reason"]


def test_duplicate_names_are_an_error_naming_both_distributions():
    host = host_with("astrobio_toy_dup_a", "astrobio_toy_dup_b")
    with pytest.raises(PluginConflictError) as exc:
        host.get("model", "dup-model")
    msg = str(exc.value)
    assert "astrobio_toy_dup_a-dist" in msg and "astrobio_toy_dup_b-dist" in msg
    rows = [r for r in host.rows() if r["name"] == "dup-model"]
    assert len(rows) == 2 and {r["status"] for r in rows} == {"broken"}


def test_unknown_name_suggests_the_closest():
    host = host_with("astrobio_toy_good")
    with pytest.raises(UnknownNameError) as exc:
        host.get("model", "toy-modl")
    assert str(exc.value).startswith("unknown model 'toy-modl'; did you mean 'toy-model'?")
    assert "Known models: toy-model" in str(exc.value)
    assert exc.value.exit_code == 2


def test_disable_list_blocks_by_plugin_and_by_name():
    host = host_with("astrobio_toy_good", disable=frozenset({"toy-model"}))
    assert host.specs("model") == []
    with pytest.raises(UnknownNameError, match="disabled"):
        host.get("model", "toy-model")
    assert [s.name for s in host.specs("data-source")] == ["toy-source"]


def test_environment_allow_and_block_lists(monkeypatch):
    monkeypatch.setenv("ASTROBIO_LOAD_PLUGINS", "example")
    only = load_host()
    assert {p.name for p in only.plugins} == {"example"}
    monkeypatch.delenv("ASTROBIO_LOAD_PLUGINS")
    monkeypatch.setenv("ASTROBIO_DISABLE_PLUGINS", "example")
    blocked = load_host()
    assert "example" not in {p.name for p in blocked.plugins}
    assert "example-naive" not in {s.name for s in blocked.specs("attention")}


def test_allow_list_by_registered_name(monkeypatch):
    monkeypatch.setenv("ASTROBIO_LOAD_PLUGINS", "example-naive")
    host = load_host()
    assert [s.name for s in host.specs("attention")] == ["example-naive"]
    assert host.specs("data-source") == []


def test_example_distribution_is_listed_with_its_distribution(run_cli):
    res = run_cli("plugins", "list", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    ex = [r for r in rows if r["name"] == "example-naive"]
    assert ex and ex[0]["distribution"] == "astrobio-example-plugin"
    assert ex[0]["version"] == "0.1.0" and ex[0]["kind"] == "attention"
    assert ex[0]["plugin"] == "example"


def _install_fake_dist(root: Path, dist: str, ep_name: str, module: str, source: str) -> None:
    """A real installed distribution as importlib.metadata sees one: a module and a dist-info."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3.0\n")
    (info / "entry_points.txt").write_text(f"[astrobio]\n{ep_name} = {module}\n")


def test_broken_third_party_plugin_does_not_stop_env(tmp_path, run_cli):
    _install_fake_dist(
        tmp_path,
        "astrobio-broken-thing",
        "broken-thing",
        "broken_thing_mod",
        "raise RuntimeError('I am broken on purpose')\n",
    )
    env = {"PYTHONPATH": str(tmp_path)}
    res = run_cli("env", "--json", env=env)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["plugins"]["broken"] == 1
    (b,) = report["plugins_broken"]
    assert b["distribution"] == "astrobio-broken-thing"
    assert "I am broken on purpose" in b["error"]
    listed = run_cli("plugins", "list", "--json", env=env)
    assert listed.returncode == 0
    assert any(
        r["status"] == "broken" and r["name"] == "broken-thing" for r in json.loads(listed.stdout)
    )


def test_third_party_duplicate_of_a_builtin_is_reported(tmp_path, run_cli):
    _install_fake_dist(
        tmp_path,
        "astrobio-copycat",
        "copycat",
        "copycat_mod",
        """
        from astrobio_cli.hookspecs import hookimpl
        from astrobio_cli.specs import AttentionBackendSpec

        @hookimpl
        def register_attention_backends(register):
            register(AttentionBackendSpec(name="example-naive", description="copy", factory=object))
        """,
    )
    res = run_cli(
        "plugins", "show", "example-naive", "--kind", "attention", env={"PYTHONPATH": str(tmp_path)}
    )
    assert res.returncode == 2
    assert "astrobio-copycat" in res.stderr and "astrobio-example-plugin" in res.stderr


def test_plugin_command_clash_is_quarantined(tmp_path, run_cli):
    _install_fake_dist(
        tmp_path,
        "astrobio-clash",
        "clash",
        "astrobio_toy_bad_cmd",
        (TOYS / "astrobio_toy_bad_cmd.py").read_text(),
    )
    env = {"PYTHONPATH": str(tmp_path)}
    res = run_cli("plugins", "list", "--json", env=env)
    assert res.returncode == 0, res.stderr
    broken = [r for r in json.loads(res.stdout) if r["status"] == "broken"]
    assert (
        broken
        and "already exist" in broken[0]["reason"]
        and broken[0]["distribution"] == "astrobio-clash"
    )
    assert run_cli("env", "--json", env=env).returncode == 0


def test_python_dash_m_is_the_same_cli(run_cli):
    import subprocess

    res = subprocess.run(
        [sys.executable, "-m", "astrobio_cli", "--version"], capture_output=True, text=True
    )
    assert res.returncode == 0
    assert res.stdout == run_cli("--version").stdout
