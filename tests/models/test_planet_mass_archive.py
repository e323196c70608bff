"""planet-mass on a NASA Exoplanet Archive `ps` table fetched by the installed `astrobio fetch
nasa-exoplanet` from a loopback TAP server, then `astrobio train` and `astrobio eval` on it, all
as subprocesses. The body replayed is made of real catalogue rows (tests/data/README.md)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from httpserver import LoopbackServer, Reply

from astrobio_cli.data.tables import FETCH_COLUMNS, measured_mass_radius, read_exoplanet_table

BODY = Path(__file__).resolve().parents[1] / "data" / "planets" / "nasa_ps_from_catalogues.csv"
WHERE = "pl_bmasse > 0 and pl_rade > 0"


@pytest.fixture
def loopback():
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture
def archive_env(loopback, tmp_path):
    return {
        "ASTROBIO_SOURCES__NASA_EXOPLANET__BASE_URL": loopback.base_url,
        "ASTROBIO_SOURCES__NASA_EXOPLANET__BACKOFF": "0.01",
        "ASTROBIO_SOURCES__NASA_EXOPLANET__RETRIES": "2",
        "ASTROBIO_SOURCES__NASA_EXOPLANET__TIMEOUT": "5",
        "ASTROBIO_CACHE_DIR": str(tmp_path / "cache"),
        "ASTROBIO_DATA_DIR": str(tmp_path / "data"),
        "ASTROBIO_THREADS": "1",
    }


def test_fetch_train_eval_on_an_archive_table(loopback, archive_env, run_cli, tmp_path):
    loopback.route("GET", "/TAP/sync", Reply(200, BODY.read_bytes(), content_type="text/csv"))
    parquet = tmp_path / "ps.parquet"
    fetch = run_cli(
        "fetch", "nasa-exoplanet", "--table", "ps", "--columns", FETCH_COLUMNS,
        "--where", WHERE, "--out", str(parquet), env=archive_env,
    )  # fmt: skip
    assert fetch.returncode == 0, fetch.stderr
    adql = f"SELECT {FETCH_COLUMNS.replace(',', ', ')} FROM ps WHERE {WHERE}"
    assert loopback.requests[0].q("query") == adql
    sidecar = json.loads((tmp_path / "ps.parquet.provenance.json").read_text())
    digest = hashlib.sha256(parquet.read_bytes()).hexdigest()
    assert sidecar["output"]["sha256"] == digest

    # the data layer reads the fetched Parquet as an archive table
    table = read_exoplanet_table(parquet)
    assert table.attrs["catalogue"] == "nasa-exoplanet-archive" and len(table) == 117
    measured = measured_mass_radius(table)
    assert 60 <= len(measured) < len(table) and measured["pl_name"].is_unique

    run = tmp_path / "run"
    train = run_cli(
        "train", "planet-mass", "--data", str(parquet), "--cpu", "--steps", "60",
        "--batch-size", "16", "--seed", "1", "--out", str(run), env=archive_env,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    card = json.loads((run / "run_card.json").read_text())
    data = card["data"]
    assert data["source"] == str(parquet) and data["sha256"] == digest
    assert data["planets"] == len(measured) and data["split"] == "by host system"
    assert data["fetch"]["output_sha256"] == digest and data["fetch"]["matches_file"]
    assert data["fetch"]["query"] == adql and data["fetch"]["source"] == "nasa-exoplanet"
    assert data["selection"]["dropped"]["mass not measured (pl_bmassprov)"] > 0
    assert data["selection"]["dropped"]["duplicate rows of a planet"] > 0

    ev = run_cli("eval", "planet-mass", "--checkpoint", str(run), "--json", env=archive_env)
    assert ev.returncode == 0, ev.stderr
    out = json.loads(ev.stdout)
    assert out["seeds"] == [1] and out["samples"] == data["val"] > 10
    assert out["data"]["source"] == str(parquet)
    assert set(out["baselines"]) == {"forecaster", "power-law-refit", "boosted-trees"}
    for metrics in (out["model"], *out["baselines"].values()):
        for key in ("rmse_log10", "nll", "crps", "cover68", "cover95"):
            assert key in metrics
        assert 0 <= metrics["cover68"] <= metrics["cover95"] <= 1
