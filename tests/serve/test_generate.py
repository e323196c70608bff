"""Text generation (/v1/generate, the llm-lora adapter) on a tiny causal LM built from a config,
served by a real uvicorn server on loopback (in a thread: there is no llm-lora checkpoint to
start `astrobio serve` with yet). Streaming through the KV cache is checked against greedy
decoding that recomputes the whole sequence at every step (no cache)."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from astrobio_cli.serve import CausalLMAdapter, Served, create_app  # noqa: E402

ALPHABET = "abcdefghijklmnopqrstuvwxyz .,"


class CharTokenizer:
    """One token per character; id 0 is the end of text."""

    eos_token_id = 0

    def encode(self, text: str) -> list[int]:
        return [ALPHABET.index(c) + 1 for c in text.lower() if c in ALPHABET]

    def decode(self, ids: list[int]) -> str:
        return "".join(ALPHABET[i - 1] for i in ids if i > 0)


@pytest.fixture(scope="module")
def tiny_lm():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=len(ALPHABET) + 1, n_positions=64, n_embd=32, n_layer=2, n_head=2
    )
    model = transformers.GPT2LMHeadModel(cfg).eval()
    # Push the end-of-text logit down so generations run their full length.
    with torch.no_grad():
        model.lm_head.weight[0] -= 10.0 * model.lm_head.weight[0].norm()
    return model


def _greedy_without_cache(model, tok, prompt: str, n: int) -> str:
    ids = tok.encode(prompt)
    out = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=torch.tensor([ids + out])).logits[0, -1]
            t = int(logits.argmax())
            if t == tok.eos_token_id:
                break
            out.append(t)
    return tok.decode(out)


@pytest.fixture(scope="module")
def lm_server(tiny_lm):
    import uvicorn

    adapter = CausalLMAdapter(None, tiny_lm, None, tokenizer=CharTokenizer())
    served = Served("llm-lora", Path("in-memory"), {"step": 0}, None, adapter, "cpu")
    app = create_app(served, max_request_bytes=20_000, max_batch=4)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield base
    server.should_exit = True
    thread.join(timeout=10)


def _stream(base: str, body: dict) -> list[str]:
    pieces = []
    with httpx.stream("POST", f"{base}/v1/generate", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: ") :]
            if data == "[DONE]":
                pieces.append(None)
                break
            pieces.append(json.loads(data)["token"])
    return pieces


def test_streamed_tokens_equal_decoding_without_cache(lm_server, tiny_lm):
    want = _greedy_without_cache(tiny_lm, CharTokenizer(), "the planet is", 20)
    assert len(want) == 20
    pieces = _stream(lm_server, {"prompt": "the planet is", "max_new_tokens": 20})
    assert pieces[-1] is None  # the stream ends with [DONE]
    assert len(pieces) - 1 == 20  # one event per token
    assert "".join(pieces[:-1]) == want


def test_non_streaming_generate_and_predict(lm_server, tiny_lm):
    want = _greedy_without_cache(tiny_lm, CharTokenizer(), "habitable", 8)
    r = httpx.post(
        f"{lm_server}/v1/generate",
        json={"prompt": "habitable", "max_new_tokens": 8, "stream": False},
    )
    assert r.status_code == 200 and r.json()["text"] == want
    r = httpx.post(
        f"{lm_server}/v1/predict",
        json={"instances": [{"prompt": "habitable", "max_new_tokens": 8}, {"prompt": "a"}]},
    )
    assert r.status_code == 200
    assert r.json()["predictions"][0]["text"] == want
    (m,) = httpx.get(f"{lm_server}/v1/models").json()["data"]
    assert m["generates_text"] is True


def test_concurrent_streams_and_bad_requests(lm_server, tiny_lm):
    want = _greedy_without_cache(tiny_lm, CharTokenizer(), "exoplanet", 12)
    with ThreadPoolExecutor(max_workers=4) as pool:
        outs = list(
            pool.map(
                lambda _: _stream(lm_server, {"prompt": "exoplanet", "max_new_tokens": 12}),
                range(4),
            )
        )
    assert all("".join(p[:-1]) == want for p in outs)
    r = httpx.post(f"{lm_server}/v1/generate", json={"max_new_tokens": 3})
    assert r.status_code == 422 and ["body", "prompt"] in [d["loc"] for d in r.json()["detail"]]
    r = httpx.post(f"{lm_server}/v1/generate", json={"prompt": "x", "max_new_tokens": 0})
    assert r.status_code == 422 and ["body", "max_new_tokens"] in [
        d["loc"] for d in r.json()["detail"]
    ]
    r = httpx.post(f"{lm_server}/v1/generate", json={"prompt": "x" * 30_000})
    assert r.status_code == 413
    assert httpx.get(f"{lm_server}/health").status_code == 200


def test_long_prompt_keeps_its_end_within_the_context(tiny_lm):
    adapter = CausalLMAdapter(None, tiny_lm, None, tokenizer=CharTokenizer())
    long = "abc " * 40  # 160 tokens > 64 positions
    text = "".join(adapter.generate(long, 10, 0.0))
    assert text == _greedy_without_cache(tiny_lm, CharTokenizer(), long[-54:], 10)
