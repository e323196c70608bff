import contextlib
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import astrobio_exe


@pytest.fixture
def installed_host(monkeypatch):
    """The installed plugins, freshly loaded. Attention routing asks the active host (set by
    `build_app(host)` in other tests) or `get_host` for its backends: point both at the
    installed plugins for this test."""
    from astrobio_cli import plugins

    host = plugins.load_host()
    monkeypatch.setattr(plugins, "_ACTIVE", None)
    monkeypatch.setattr(plugins, "get_host", lambda: host)
    return host


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(args: list[str], env: dict[str, str], log: Path, port: int):
    """`astrobio serve ...` (`args` after `serve`, without --port) as a real subprocess on
    `port`: yields the base URL once /health answers 200; stopped on exit. A server that exits
    or does not come up in 180 s fails the test with the end of its log."""
    import subprocess
    import time

    import httpx

    with log.open("w") as fh:
        proc = subprocess.Popen(
            [astrobio_exe(), "serve", *args, "--port", str(port)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"astrobio serve exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline:
                pytest.fail(f"astrobio serve did not come up: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTROBIO_")}
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        (root / var).mkdir(parents=True, exist_ok=True)
        env[var] = str(root / var)
    env["ASTROBIO_DATA_DIR"] = str(root / "data")
    env["ASTROBIO_RUNS_DIR"] = str(root / "runs")
    return env


def _quick_smoke(model: str, run, env) -> subprocess.CompletedProcess:
    """`astrobio train MODEL --quick-smoke --out RUN` in a subprocess."""
    return subprocess.run(
        [astrobio_exe(), "train", model, "--quick-smoke", "--out", str(run)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A cube-unet run directory from `astrobio train cube-unet --quick-smoke`."""
    root = tmp_path_factory.mktemp("serve")
    env = _env(root)
    run = root / "runs" / "quick"
    res = _quick_smoke("cube-unet", run, env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return run, env


@pytest.fixture(scope="session")
def server(trained):
    run, env = trained
    log = run.parent / "serve.log"
    args = ["cube-unet", "--checkpoint", str(run), "--max-request-bytes", "200000",
            "--max-batch", "8", "--device", "cpu"]  # fmt: skip
    with running_server(args, env, log, free_port()) as base:
        yield base, run, env, log
