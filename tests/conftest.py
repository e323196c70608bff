"""Fixtures shared by every test area.

Every test runs with its own XDG config/data/cache directories so the user's real settings and
cache never leak in, and subprocesses inherit the same isolation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """Ctrl-C works in the tests however pytest was started. A shell starts a background job
    (`cmd &` without job control, nohup, some CI runners) with SIGINT ignored, which Python and
    every child process then inherit: the Ctrl-C tests would test nothing. Python's own handler
    is installed instead; children get the default action back at exec."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


SHARED_DATA = REPO.parent / "shared" / "data"
TEST_DATA = Path(__file__).resolve().parent / "data"


def astrobio_exe() -> str:
    """The installed `astrobio` script of this environment."""
    exe = Path(sys.executable).with_name("astrobio")
    if exe.exists():
        return str(exe)
    found = shutil.which("astrobio")
    if not found:
        raise RuntimeError("the astrobio script is not installed in this environment")
    return found


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    for var, sub in (
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
    ):
        (home / sub).mkdir()
        monkeypatch.setenv(var, str(home / sub))
    for var in list(os.environ):
        if var.startswith("ASTROBIO_") and var not in ("ASTROBIO_TEST_KEEP",):
            monkeypatch.delenv(var, raising=False)
    from astrobio_cli import cli, settings

    settings.configure(None, None)
    yield
    settings.configure(None, None)
    cli._set_host(None)  # an app built with a toy host must not leak it into the next test


@pytest.fixture
def run_cli():
    """Run the installed `astrobio` script in a subprocess: run_cli(*args, env=..., cwd=...)."""

    def run(
        *args: str, env: dict[str, str] | None = None, cwd=None, timeout: float = 300, input=None
    ):
        full_env = dict(os.environ)
        full_env.update(env or {})
        return subprocess.run(
            [astrobio_exe(), *args],
            capture_output=True,
            text=True,
            env=full_env,
            cwd=cwd,
            timeout=timeout,
            input=input,
        )

    return run
