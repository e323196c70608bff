"""`--json` on `astrobio cache list` and `astrobio preprocess`: one JSON object on stdout (progress
and notes stay on stderr), checked against the files the commands actually wrote. Run through the
installed script."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import xarray as xr

from tests.httpserver import LoopbackServer
from tests.sources.test_source_ncbi import Eutils

NCEP = Path(__file__).resolve().parents[1] / "data" / "climate" / "NCEP_06_climo.nc"


def test_cache_list_json_matches_the_cache_files(run_cli, tmp_path):
    cache_dir = tmp_path / "cache"
    env = {"ASTROBIO_CACHE_DIR": str(cache_dir)}
    r = run_cli("cache", "list", "--json", env=env)
    assert r.returncode == 0, r.stderr
    empty = json.loads(r.stdout)
    assert empty["entries"] == [] and empty["total_bytes"] == 0 and empty["partials"] == []

    with LoopbackServer() as srv:
        Eutils(srv)
        env |= {
            "ASTROBIO_SOURCES__NCBI__BASE_URL": srv.base_url,
            "ASTROBIO_SOURCES__NCBI__RATE_LIMIT": "1000",
        }
        out = tmp_path / "two.parquet"
        args = ["fetch", "ncbi", "--id", "X55053,X62281", "--batch-size", "1", "--out", str(out)]
        r = run_cli(*args, env=env)
        assert r.returncode == 0, r.stderr

    r = run_cli("cache", "list", "--json", env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # nothing but the object on stdout
    assert Path(doc["cache"]) == cache_dir
    bodies = sorted((cache_dir / "ncbi").glob("*.body"))
    assert len(bodies) == 2 and doc["total_entries"] == 2
    assert sorted(Path(e["path"]) for e in doc["entries"]) == bodies
    for e in doc["entries"]:
        body = Path(e["path"])
        assert e["source"] == "ncbi" and e["state"] == "ok" and e["corrupt"] is None
        assert e["key"] == body.stem
        assert e["bytes"] == body.stat().st_size
        assert e["sha256"] == hashlib.sha256(body.read_bytes()).hexdigest()
        record = json.loads(body.with_suffix(".json").read_text())
        assert e["request"] == record["request"] and e["url"] == record["url"]
        assert e["age_s"] >= 0
    assert doc["total_bytes"] == sum(b.stat().st_size for b in bodies)
    # The records file is the two bodies, in order.
    assert out.with_suffix(".gb").stat().st_size == doc["total_bytes"]

    r = run_cli("cache", "list", "--json", "--source", "uniprot", env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["entries"] == []


@pytest.mark.filterwarnings("ignore:.*multiple fill values")
def test_preprocess_json_matches_the_store(run_cli, tmp_path):
    out = tmp_path / "ncep.zarr"
    r = run_cli("preprocess", str(NCEP), str(out), "--vars", "T,PS", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert Path(doc["out"]) == out and Path(doc["stats"]) == out / "stats.json"
    assert doc["backend"] in ("rust", "numpy") and doc["seconds"] > 0
    stats = json.loads((out / "stats.json").read_text())["variables"]
    by_name = {v["name"]: v for v in doc["variables"]}
    assert set(by_name) == {"T", "PS"} == set(stats)
    assert {g["label"]: g["variables"] for g in doc["groups"]} == {"lev": ["T"], "surface": ["PS"]}
    store = xr.open_zarr(out)
    for name, v in by_name.items():
        for k in ("count", "mean", "std", "min", "max", "units"):
            assert v[k] == stats[name][k], (name, k)
        assert tuple(v["shape"]) == store[name].shape
    assert by_name["T"]["group"] == "lev" and by_name["PS"]["group"] == "surface"
    assert by_name["PS"]["units"] == "millibars"
    assert "stats:" not in r.stdout  # no table, no trailing lines
