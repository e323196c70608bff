"""`astrobio --help` stays light: the plugin registry cache, shell completion, no heavy imports.

Speed itself is a benchmark (`python benchmarks/startup.py`), not a timed test; here we check
the mechanisms: the cache is written, read, and invalidated by an install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import astrobio_exe


def _run(*args, env=None):
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run(
        [astrobio_exe(), *args], capture_output=True, text=True, env=full, timeout=120
    )


def test_registry_cache_is_used_and_an_install_invalidates_it(tmp_path):
    site = tmp_path / "site"  # stands in for a site-packages directory on sys.path
    site.mkdir()
    before = os.stat(site)
    env = {"ASTROBIO_REGISTRY_CACHE": str(tmp_path / "reg"), "PYTHONPATH": str(site)}
    first = _run("plugins", "list", "--json", env=env)
    assert first.returncode == 0, first.stderr
    (cache,) = (tmp_path / "reg").glob("registry-*.json")
    rows = json.loads(cache.read_text())
    assert {r["name"] for r in rows} >= {"models", "data-sources", "attention"}

    # The next start reads the cache, not the installed metadata: an entry point that exists
    # only in the cache (a plugin module on PYTHONPATH) shows up.
    (site / "cached_only_plugin.py").write_text(
        "from astrobio_cli.hookspecs import hookimpl\n"
        "from astrobio_cli.specs import DataSourceSpec\n"
        "@hookimpl(specname='register_data_sources')\n"
        "def reg(register):\n"
        "    register(DataSourceSpec(name='cached-only', description='x', factory=object))\n"
    )
    rows.append({"name": "cached-only", "value": "cached_only_plugin", "dist": "d", "version": "1"})
    cache.write_text(json.dumps(rows))
    os.utime(site, ns=(before.st_atime_ns, before.st_mtime_ns))  # as if nothing was installed
    seen = _run("plugins", "list", "--json", env=env)
    assert "cached-only" in {p["name"] for p in json.loads(seen.stdout)}

    # "Installing" into a sys.path directory changes its mtime: a new key, a fresh scan.
    (site / "new_dist-1.0.dist-info").mkdir()
    fresh = _run("plugins", "list", "--json", env=env)
    assert "cached-only" not in {p["name"] for p in json.loads(fresh.stdout)}
    assert len(list((tmp_path / "reg").glob("registry-*.json"))) == 2


def test_help_imports_no_heavy_module_and_no_package_metadata(tmp_path):
    code = (
        "import sys\n"
        "sys.argv = ['astrobio', '--help']\n"
        "from astrobio_cli.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = ('torch', 'triton', 'numpy', 'pandas', 'pyarrow', 'httpx', 'astropy',\n"
        "         'importlib.metadata', 'platformdirs', 'hashlib')\n"
        "print([m for m in heavy if m in sys.modules], file=sys.stderr)\n"
    )
    env = dict(os.environ, ASTROBIO_REGISTRY_CACHE=str(tmp_path / "reg"))
    for _ in range(2):  # the first run writes the registry cache, the second reads it
        res = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
        )
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip().splitlines()[-1] == "[]"
    assert "--install-completion" in res.stdout


def test_shell_completion_completes_commands_and_sources():
    env = {"_ASTROBIO_COMPLETE": "complete_bash", "COMP_WORDS": "astrobio fe", "COMP_CWORD": "1"}
    res = _run(env=env)
    assert res.stdout.split() == ["fetch"]
    env.update(COMP_WORDS="astrobio fetch nasa", COMP_CWORD="2")
    assert _run(env=env).stdout.split() == ["nasa-exoplanet"]
    script = _run("--show-completion", "bash", env={"SHELL": "/bin/bash"})
    assert "_astrobio_completion" in script.stdout
