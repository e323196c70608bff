"""llm-lora: corpus from the table, frozen base, generation with the KV cache."""

from __future__ import annotations

import pytest
import torch

from astrobio_models.llm_lora import CharTokenizer, corpus_lines, factory, sentence


def test_sentences_from_archive_columns(tmp_path):
    assert sentence({"pl_name": "Kepler-22 b", "hostname": "Kepler-22", "discoverymethod": "Transit",
                     "disc_year": "2011", "pl_orbper": "289.86", "pl_rade": ""}) == (
        "Kepler-22 b orbits Kepler-22, was found by transit in 2011, its year lasts 289.86 days."
    )  # fmt: skip
    csv = tmp_path / "t.csv"
    csv.write_text('pl_name,discoverymethod\n"OGLE-2016-BLG-1469L b","Microlensing"\n')
    lines, prov = corpus_lines(csv)
    assert lines == ["OGLE-2016-BLG-1469L b, was found by microlensing."]
    assert prov["planets"] == 1


def test_tokenizer_round_trip():
    tok = CharTokenizer()
    text = "TRAPPIST-1 e orbits TRAPPIST-1."
    assert tok.decode(tok.encode(text)) == text


@pytest.fixture(scope="module")
def tiny():
    p = factory({"hidden": 32, "layers": 1, "heads": 2, "block": 32, "repeats": 2})
    ds = p.make_datasets(None, seed=0)
    torch.manual_seed(0)
    return p, ds, p.build(ds)


def test_only_adapters_head_and_embeddings_train(tiny):
    _, _, model = tiny
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(
        "lora_" in n or ("modules_to_save" in n and ("lm_head" in n or "embed_tokens" in n))
        for n in trainable
    )
    assert any("embed_tokens.modules_to_save" in n for n in trainable)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert any("q_proj.base_layer" in n for n in frozen)
    assert any("embed_tokens.original_module" in n for n in frozen)
    p = factory({"hidden": 32, "layers": 1, "heads": 2, "train_embeddings": False})
    off = p.build(None)
    assert not any("embed_tokens" in n for n, q in off.named_parameters() if q.requires_grad)


def test_generation_with_kv_cache_equals_without(tiny):
    p, ds, model = tiny
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-2)
    batch = torch.stack([ds.train[i] for i in range(16)])
    for _ in range(10):  # move off the random init so the greedy path is not degenerate
        opt.zero_grad()
        p.loss(model, batch, ds).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        cached = p.generate(model, "Kepler-22 b orbits", 20, use_cache=True)
        plain = p.generate(model, "Kepler-22 b orbits", 20, use_cache=False)
    assert cached == plain
    assert len(cached) > 0


def test_held_out_planets_are_not_in_training_text(tiny):
    p, ds, _ = tiny
    tok = p.tokenizer
    train_text = "".join(tok.decode(b.tolist()) for b in ds.train)
    val_text = "".join(tok.decode(b.tolist()) for b in ds.val)
    first_val_name = val_text.split(" orbits")[0].strip(".").strip()
    assert first_val_name and first_val_name not in train_text
