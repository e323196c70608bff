"""`astrobio serve llm-lora`: a real server from a `astrobio train llm-lora --quick-smoke` checkpoint
streams tokens that equal the plugin's own greedy generation (Hugging Face `generate` with the KV
cache) computed in this process from the same checkpoint."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.serve.conftest import _env, _quick_smoke, free_port, running_server


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-llm")
    env = _env(root)
    run = root / "runs" / "llm"
    res = _quick_smoke("llm-lora", run, env)
    if res.returncode != 0 and "unknown model 'llm-lora'" in res.stderr:
        pytest.skip("llm-lora is not registered in this installation")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    args = ["llm-lora", "--checkpoint", str(run)]
    with running_server(args, env, root / "serve.log", free_port()) as base:
        yield base, run


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
