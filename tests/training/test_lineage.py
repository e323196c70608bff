"""Lineage: fetch -> preprocess -> train leave records that `astrobio runs show` chains together,
each file named by a sha256 that hashlib recomputes here."""

from __future__ import annotations

import hashlib
import json

from astrobio_cli.data import lineage


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_generate_preprocess_train_chain(tmp_path, tiny_config, train_env, run_astrobio):
    nc, store = tmp_path / "clim.nc", tmp_path / "clim.zarr"
    r = run_astrobio("fetch", "synthetic-climate", "--samples", "16", "--out", str(nc),
                     env=train_env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    side = json.loads((tmp_path / "clim.nc.provenance.json").read_text())
    assert side["source"] == "synthetic-climate" and side["seed"] == 0
    assert side["output"]["sha256"] == _sha(nc)

    r = run_astrobio("preprocess", str(nc), str(store), "--regrid", "10", env=train_env)
    assert r.returncode == 0, r.stderr
    rec = lineage.input_record(store, kind="climate-cube")
    steps = lineage.chain(rec)
    assert [s["step"] for s in steps] == ["generate", "preprocess"]
    assert steps[0]["sha256"] == _sha(nc) and steps[0]["seed"] == 0
    assert steps[1]["options"]["regrid"] == 10.0
    # the store's fingerprint changes when a file in it changes
    before = lineage.store_fingerprint(store)
    (store / "stats.json").write_text((store / "stats.json").read_text() + " ")
    assert lineage.store_fingerprint(store) != before

    run = tmp_path / "run"
    r = run_astrobio("train", "cube-unet", "--cpu", "--data", str(nc), "--config",
                     str(tiny_config), "--steps", "1", "--out", str(run), env=train_env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    card = json.loads((run / "run_card.json").read_text())
    assert card["inputs"][0]["sha256"] == _sha(nc)
    meta = json.loads((run / "checkpoints" / "step-000001" / "meta.json").read_text())
    assert meta["lineage"]["sha256"] == _sha(nc)

    r = run_astrobio("runs", "show", str(run), "--json", env=train_env)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert [s["step"] for s in info["chain"][0]] == ["generate"]
    assert info["chain"][0][0]["sha256"] == _sha(nc)
    assert [c["step"] for c in info["checkpoints"]] == [1]
    r = run_astrobio("runs", "show", str(run), env=train_env)
    assert r.returncode == 0 and "1. generate" in r.stdout and "2. train" in r.stdout

    r = run_astrobio("runs", "show", str(tmp_path), env=train_env)
    assert r.returncode == 2 and "not a run directory" in r.stderr


def test_fetched_sidecar_is_carried(tmp_path):
    body = tmp_path / "t.parquet"
    body.write_bytes(b"PAR1 not really")
    side = {"source": "nasa-exoplanet", "url": "https://example/TAP/sync?query=x",
            "query": "SELECT pl_name FROM ps", "sha256": "ab" * 32}  # fmt: skip
    (tmp_path / "t.parquet.provenance.json").write_text(json.dumps(side))
    rec = lineage.input_record(body, kind="exoplanet-table")
    assert rec["sha256"] == _sha(body)
    (step,) = lineage.chain(rec)
    assert step["step"] == "fetch" and step["query"] == "SELECT pl_name FROM ps"
    assert step["response_sha256"] == "ab" * 32
