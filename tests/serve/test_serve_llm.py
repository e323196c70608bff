"""`astrobio serve llm-lora`: a real server from a `astrobio train llm-lora --quick-smoke` checkpoint
streams tokens that equal the plugin's own greedy generation (Hugging Face `generate` with the KV
cache) computed in this process from the same checkpoint."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest

from tests.conftest import astrobio_exe
from tests.serve.test_serve import _env, _free_port, _quick_smoke


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-llm")
    env = _env(root)
    run = root / "runs" / "llm"
    res = _quick_smoke("llm-lora", run, env)
    if res.returncode != 0 and "unknown model 'llm-lora'" in res.stderr:
        pytest.skip("llm-lora is not registered in this installation")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    port = _free_port()
    log = root / "serve.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [astrobio_exe(), "serve", "llm-lora", "--checkpoint", str(run), "--port", str(port)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"astrobio serve exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        yield base, run
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _plugin_generation(host, run, prompt: str, n: int) -> str:
    """The plugin's own generate() on the checkpoint (HF generate, greedy, KV cache)."""
    import torch

    from astrobio_cli.training import checkpoint as ckpt

    path = ckpt.resolve_checkpoint(run)
    meta = ckpt.load_meta(path)
    plugin = host.get("model", "llm-lora").factory(meta["model_options"])
    datasets = plugin.make_datasets(None, seed=meta["seed"])
    model = plugin.build(datasets)
    model.load_state_dict(ckpt.load_weights(path))
    model.eval()
    with torch.no_grad():
        return plugin.generate(model, prompt, n)


def test_generate_streams_the_plugins_own_greedy_text(llm_server, installed_host):
    base, run = llm_server
    prompt, n = "Kepler-22 b orbits", 24
    want = _plugin_generation(installed_host, run, prompt, n)
    pieces, done = [], False
    with httpx.stream(
        "POST", f"{base}/v1/generate", json={"prompt": prompt, "max_new_tokens": n}, timeout=120
    ) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line == "data: [DONE]":
                done = True
                break
            if line.startswith("data: "):
                pieces.append(json.loads(line[6:])["token"])
    assert done and len(pieces) >= 1
    assert "".join(pieces) == want
    r = httpx.post(
        f"{base}/v1/generate", json={"prompt": prompt, "max_new_tokens": n, "stream": False}
    )
    assert r.status_code == 200 and r.json()["text"] == want
    (m,) = httpx.get(f"{base}/v1/models").json()["data"]
    assert m["id"] == "llm-lora" and m["generates_text"] is True
    assert m["run_card"]["model"] == "llm-lora"
