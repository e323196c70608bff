"""llm-lora's baselines and data: the Kneser-Ney n-gram (normalised, hand-checked, scored on the
model's own predictions), the exoplanet.eu corpus and its split by host star, and the figure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from astrobio_models.llm_lora import (
    corpus,
    extract_exoplanet_eu,
    factory,
    sentence,
    split_by_group,
    system_of,
)
from astrobio_models.ngram import KneserNey, blocks_positions, fit_selected


def test_kneser_ney_distributions_sum_to_one():
    rng = np.random.default_rng(0)
    # a skewed, repetitive stream (like templated text) over 100 tokens, 3 of them never seen
    ids = np.concatenate([rng.choice(20, 30) for _ in range(200)] + [rng.integers(0, 97, 500)])
    lm = KneserNey(100, 8).fit(ids)
    for k in range(1, 9):
        for _ in range(10):
            n = int(rng.integers(0, 12))
            start = int(rng.integers(0, len(ids) - n))
            seen = ids[start : start + n].tolist()  # a context from the text
            unseen = rng.integers(0, 100, n).tolist()  # mostly never seen
            for ctx in (seen, unseen):
                p = lm.distribution(ctx, order=k)
                assert p.shape == (100,) and (p > 0).all()
                assert abs(p.sum() - 1.0) < 1e-12, (k, ctx, p.sum())
    # no singletons at all (the textbook discounts are undefined): still proper and positive
    lm = KneserNey(5, 3).fit(np.tile([1, 2, 3], 100))
    for ctx in ([], [1], [2, 3], [0, 4]):
        p = lm.distribution(ctx)
        assert (p > 0).all() and abs(p.sum() - 1.0) < 1e-12


def test_kneser_ney_order_2_by_hand():
    """eebdbbedbcdeedabceabbbbc over a..f (f never seen), by hand:
    bigram counts ab 2, bb 4, bc 3, bd 1, be 1, cd 1, ce 1, da 1, db 2, de 1, ea 1, eb 1, ed 2,
    ee 2: counts of counts n1..n4 = 8, 4, 1, 1, so Y = 8/16, D1 = 1 - 2Y 4/8 = 1/2,
    D2 = 2 - 3Y 1/4 = 13/8, D3+ = 3 - 4Y 1/1 = 1.
    Continuation counts (distinct predecessors): a 2, b 4, c 1, d 3, e 4 (total 14): n1..n4 =
    1, 1, 1, 2, so Y = 1/3, D1 = 1/3, D2 = 2 - 3Y = 1, D3+ = 3 - 4Y 2 = 1/3;
    gamma = (1/3 + 1 + 3 x 1/3) / 14 = 1/6 of the uniform 1/6."""
    ids = ["abcdef".index(c) for c in "eebdbbedbcdeedabceabbbbc"]
    lm = KneserNey(6, 2).fit(ids)
    low = np.array([(2 - 1) / 14, (4 - 1 / 3) / 14, (1 - 1 / 3) / 14, (3 - 1 / 3) / 14,
                    (4 - 1 / 3) / 14, 0.0]) + 1 / 36  # fmt: skip
    assert low.sum() == pytest.approx(1.0, abs=1e-15)
    # after b: bb 4, bc 3, bd 1, be 1 (total 9); gamma = (1/2 x 2 + 1 x 2) / 9 = 1/3
    after_b = np.array([0, (4 - 1) / 9, (3 - 1) / 9, 0.5 / 9, 0.5 / 9, 0]) + low / 3
    # after e: ea 1, eb 1, ed 2, ee 2 (total 6); gamma = (1/2 x 2 + 13/8 x 2) / 6
    after_e = np.array([0.5 / 6, 0.5 / 6, 0, (2 - 13 / 8) / 6, (2 - 13 / 8) / 6, 0])
    after_e += (0.5 * 2 + 13 / 8 * 2) / 6 * low
    np.testing.assert_allclose(lm.distribution([1]), after_b, rtol=1e-13)
    np.testing.assert_allclose(lm.distribution([4]), after_e, rtol=1e-13)
    np.testing.assert_allclose(lm.distribution([5]), low, rtol=1e-13)  # f: never a context
    np.testing.assert_allclose(lm.distribution([0, 1]), after_b, rtol=1e-13)  # order 2: 1 back
    # the same through logprobs, as the baseline calls it
    lp = lm.logprobs([4, 3, 1, 1], positions=[1, 3], starts=[0, 0])
    np.testing.assert_allclose(np.exp(lp), [after_e[3], after_b[1]], rtol=1e-13)


def test_context_stops_at_the_block_start():
    ids = np.array([1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3])
    lm = KneserNey(5, 3).fit(ids)
    pos, starts = blocks_positions(3, 4)
    assert pos.tolist() == [1, 2, 3, 5, 6, 7, 9, 10, 11]
    assert starts.tolist() == [0, 0, 0, 4, 4, 4, 8, 8, 8]
    lp = lm.logprobs(ids, pos, starts)
    # position 5 (block 2's second token) sees only ids[4], not ids[3]
    assert lp[3] == pytest.approx(math.log(lm.distribution([ids[4]])[ids[5]]), abs=1e-14)
    assert lp[4] == pytest.approx(math.log(lm.distribution(ids[4:6])[ids[6]]), abs=1e-14)


def test_order_is_chosen_on_held_out_training_text():
    rng = np.random.default_rng(1)
    # a 4th-order Markov source: the best order is >= 3, and unigrams are worse than that
    words = [rng.choice(8, 6).tolist() for _ in range(30)]
    text = [t for _ in range(2000) for t in words[int(rng.integers(30))]]
    lm, info = fit_selected(text, text[:8000], text[8000:], block=32, vocab_size=8)
    assert info["order"] >= 3 and lm.order == info["order"]
    ppl = info["selection_perplexity"]
    assert ppl[info["order"]] == min(ppl.values()) < ppl[1]


def test_exoplanet_eu_extract_loads_and_splits_by_host():
    lines, groups, prov = corpus(None)
    assert prov["planets"] == len(lines) == len(groups) > 7000
    assert "exoplanet.eu" in prov["table"]
    by_name = {ln.split(" orbits ")[0]: ln for ln in lines}
    assert by_name["Kepler-22 b"].startswith(
        "Kepler-22 b orbits Kepler-22, was found by primary transit in 2011, its year lasts"
    )
    assert all(ln.isascii() for ln in lines)
    tr, va = split_by_group(groups, 0.2, 0)
    assert sorted(tr + va) == list(range(len(lines)))
    assert not {groups[i] for i in tr} & {groups[i] for i in va}
    assert len(va) >= 500
    trappist = [i for i, ln in enumerate(lines) if ln.startswith("TRAPPIST-1 ")]
    assert len(trappist) == 7 and len({i in va for i in trappist}) == 1


def test_planets_without_a_host_group_by_system():
    assert system_of({"pl_name": "2M1510 Ab"}) == system_of({"pl_name": "2M1510 B"})
    assert system_of({"pl_name": "2MASS J0001+1535"}) == "name:2MASS J0001+1535"
    assert system_of({"pl_name": "x b", "hostname": "HD  1"}) == "host:HD 1"


def test_extract_from_an_exoplanet_eu_export(tmp_path):
    src = tmp_path / "eu.csv"
    src.write_text(
        "name,planet_status,radius,orbital_period,discovered,detection_type,star_name\n"
        "24 Boo b,Confirmed,1.0,30.3506,2018,Radial Velocity,24 Bo&ouml;\n"
        'Odd  b,Candidate,,,2020,"Primary Transit",Odd\n'
        "Lone,Confirmed,,,2011,Imaging,\n",
        encoding="utf-8",
    )
    assert extract_exoplanet_eu(src, tmp_path / "x.csv.gz") == 2
    lines, groups, prov = corpus(tmp_path / "x.csv.gz")
    assert lines == [
        "24 Boo b orbits 24 Boo, was found by radial velocity in 2018, its year lasts 30.35 "
        "days, its radius is 11.21 Earth radii.",
        "Lone, was found by imaging in 2011.",
    ]
    assert groups == ["host:24 Boo", "name:Lone"] and prov["planets"] == 2


def test_parquet_tables_as_fetch_writes_them(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"pl_name": ["K2-18 b", "X b"], "hostname": ["K2-18", None],
                      "disc_year": [2015, None], "discoverymethod": ["Transit", "Imaging"],
                      "pl_orbper": [32.94, float("nan")], "pl_rade": [float("nan"), 1.0]})  # fmt: skip
    pq.write_table(table, tmp_path / "t.parquet")
    lines, groups, _ = corpus(tmp_path / "t.parquet")
    assert groups == ["host:K2-18", "name:X"]
    assert lines == [
        "K2-18 b orbits K2-18, was found by transit in 2015, its year lasts 32.94 days.",
        "X b, was found by imaging, its radius is 1.00 Earth radii.",
    ]
    assert sentence({"pl_name": "Y", "pl_rade": float("nan")}) == "Y."


@pytest.fixture(scope="module")
def tiny():
    p = factory({"hidden": 32, "layers": 1, "heads": 2, "block": 32, "repeats": 1})
    ds = p.make_datasets(None, seed=3, smoke=True)
    torch.manual_seed(0)
    return p, ds, p.build(ds)


def test_baselines_score_the_models_predictions(tiny):
    p, ds, model = tiny
    assert ds.seed == 3
    model.eval()
    with torch.no_grad():
        metrics = p.evaluate(model, ds)
        base = p.baseline(ds)
    n = len(ds.val) * (len(ds.val[0]) - 1)
    assert metrics["predictions"] == base["kneser-ney"]["predictions"] == n
    assert base["base-model"]["predictions"] == n
    assert 1 <= base["kneser-ney"]["order"] <= 8
    assert 1.0 < base["kneser-ney"]["perplexity"] < base["base-model"]["perplexity"]
    # the model's mean NLL is the HF loss over the same tokens
    with torch.no_grad():
        ids = torch.stack(list(ds.val))
        loss = float(model(input_ids=ids, labels=ids).loss)
    assert math.log(metrics["perplexity"]) == pytest.approx(loss, rel=1e-5)
    # the n-gram's NLL: one token by hand (the 5th of the 2nd block: 4 tokens of context)
    lm, info = p.ngram(ds)
    nll = p._ngram_nll(lm, ds.val)
    blk = ds.val[1].tolist()
    ctx = blk[max(0, 4 - (info["order"] - 1)) : 4]
    assert nll[1, 3] == pytest.approx(-math.log(lm.distribution(ctx)[blk[4]]), rel=1e-12)


def test_held_out_hosts_are_not_in_training(tiny):
    _, ds, _ = tiny
    train_hosts = {ln.split(" orbits ")[1].split(",")[0] for ln in ds.context["train_lines"]
                   if " orbits " in ln}  # fmt: skip
    val_hosts = {ln.split(" orbits ")[1].split(",")[0] for ln in ds.context["val_lines"]
                 if " orbits " in ln}  # fmt: skip
    assert val_hosts and not train_hosts & val_hosts


def test_plot_writes_a_png(tiny, tmp_path):
    p, ds, model = tiny
    out = tmp_path / "llm.png"
    p.plot(model, ds, out)
    assert out.stat().st_size > 1000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _reference_kn(text: list[int], order: int, vocab: int):
    """Interpolated modified Kneser-Ney straight from the formulas, with dicts (slow, clear)."""
    from collections import Counter

    raw = {k: Counter(tuple(text[i - k + 1 : i + 1]) for i in range(k - 1, len(text)))
           for k in range(1, order + 1)}  # fmt: skip
    cont = {k: Counter(g[1:] for g in raw[k + 1]) for k in range(1, order)}

    def discounts(counts):
        n = [sum(1 for c in counts.values() if c == r) for r in (1, 2, 3, 4)]
        y = n[0] / (n[0] + 2 * n[1]) if n[0] and n[1] else 0.5
        out = []
        for r in (1, 2, 3):
            v = r - (r + 1) * y * n[r] / n[r - 1] if n[r - 1] else y
            out.append(v if 0 < v < r else y)
        return out

    disc = {("raw", k): discounts(raw[k]) for k in raw}
    disc |= {("cont", k): discounts(cont[k]) for k in cont}

    def p(w, h, top):
        k = len(h) + 1
        kind = "raw" if top else "cont"
        table = raw[k] if top else cont[k]
        lower = 1 / vocab if k == 1 else p(w, h[1:], False)
        seen = {g: c for g, c in table.items() if g[:-1] == tuple(h)}
        if not seen:
            return lower
        d = disc[(kind, k)]
        total = sum(seen.values())
        gamma = sum(d[min(c, 3) - 1] for c in seen.values()) / total
        c = seen.get((*h, w), 0)
        return max(c - d[min(max(c, 1), 3) - 1], 0) / total + gamma * lower

    return lambda w, h: p(w, tuple(h[max(0, len(h) - (order - 1)) :] if order > 1 else ()), True)


def test_kneser_ney_matches_the_formulas_at_order_4():
    rng = np.random.default_rng(2)
    words = [rng.choice(6, int(rng.integers(2, 6))).tolist() for _ in range(12)]
    text = [t for _ in range(150) for t in [*words[int(rng.integers(12))], 6]]
    ref = _reference_kn(text, 4, 8)
    lm = KneserNey(8, 4).fit(text)
    for h in ([], [6], [0, 1], [6, 2, 3], [5, 5, 5], [1, 7, 2], [0, 1, 2, 3, 4]):
        want = np.array([ref(w, h) for w in range(8)])
        np.testing.assert_allclose(lm.distribution(h), want, rtol=1e-12)


def test_fetched_sequences_build_the_corpus():
    """GenBank / FASTA as `astrobio fetch ncbi|uniprot` write them become llm-lora's corpus,
    through the core reader, split by organism."""
    from pathlib import Path

    from astrobio_cli.data.sequences import corpus_lines as seq_lines
    from astrobio_cli.data.sequences import read_sequences
    from astrobio_cli.training.data import check_data
    from astrobio_models import llm_lora

    gb = Path(__file__).resolve().parents[1] / "data" / "ncbi" / "cor6_6.gb"
    lines, groups, prov = llm_lora.corpus(gb)
    assert lines == seq_lines(read_sequences(gb))
    assert prov["records"] == 6 and prov["split"] == "by organism"
    tr, va = llm_lora.split_by_group(groups, 0.3, 0)
    assert tr and va and not {groups[i] for i in tr} & {groups[i] for i in va}
    assert check_data("llm-lora", ("exoplanet-table", "text-corpus", "sequences"), str(gb)) == (
        "sequences"
    )
