"""`astrobio runs list [DIR]` over two tiny real planet-mass runs, run through the installed script;
every value is checked against the run's own files."""

from __future__ import annotations

import json
import time

import pytest


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    import os
    import subprocess

    from tests.conftest import astrobio_exe

    root = tmp_path_factory.mktemp("runs")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTROBIO_")}
    env["ASTROBIO_THREADS"] = "1"
    for name, steps in (("a", "5"), ("b", "3")):
        if name == "b":
            time.sleep(1.1)  # started_utc has one-second resolution: b is the newer run
        r = subprocess.run(
            [astrobio_exe(), "train", "planet-mass", "--cpu", "--steps", steps,
             "--out", str(root / name)],
            capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
    (root / "not-a-run").mkdir()  # ignored
    return root


def test_runs_list_json_matches_the_run_files(run_cli, two_runs):
    r = run_cli("runs", "list", str(two_runs), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [x["name"] for x in doc["runs"]] == ["b", "a"]  # newest first
    for row in doc["runs"]:
        d = two_runs / row["name"]
        summary = json.loads((d / "summary.json").read_text())
        card = json.loads((d / "run_card.json").read_text())
        last = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        assert row["model"] == "planet-mass" == card["model"]
        assert row["steps"] == summary["steps"] == {"a": 5, "b": 3}[row["name"]]
        assert row["final_loss"] == summary["final_loss"]
        assert row["final_loss"] == [m["loss"] for m in last if "loss" in m][-1]
        assert (row["metric"], row["better"]) == ("nll", "lower")  # planet-mass's primary metric
        assert row["value"] == summary["eval"]["nll"]
        assert row["value"] == [m["val_nll"] for m in last if "val_nll" in m][-1]
        assert row["data"] == card["data"]["source"]
        assert row["started_utc"] == card["started_utc"] and row["finished"] is True


def test_runs_list_table_and_runs_dir_setting(run_cli, two_runs, tmp_path):
    r = run_cli("runs", "list", env={"ASTROBIO_RUNS_DIR": str(two_runs), "COLUMNS": "250"})
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if "planet-mass" in ln]
    assert len(lines) == 2 and " b " in lines[0] and " a " in lines[1]
    assert "nll" in lines[0] and "not-a-run" not in r.stdout
    assert "list" in run_cli("runs", "--help").stdout
    empty = run_cli("runs", "list", str(tmp_path), "--json")
    assert empty.returncode == 0 and json.loads(empty.stdout)["runs"] == []
    missing = run_cli("runs", "list", str(tmp_path / "nope"))
    assert missing.returncode != 0 and "not a directory" in missing.stderr


def test_runs_list_plot_draws_every_runs_loss_curve(run_cli, two_runs, tmp_path):
    from astrobio_cli.cli.runs_cmd import plot_curves

    png = tmp_path / "curves.png"
    r = run_cli("runs", "list", str(two_runs), "--plot", str(png))
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # what is drawn is each run's metrics.jsonl, read independently here
    drawn = plot_curves([two_runs / "a", two_runs / "b"], tmp_path / "again.png")
    for name in ("a", "b"):
        recs = [json.loads(x) for x in (two_runs / name / "metrics.jsonl").read_text().splitlines()]
        loss = [(m["step"], m["loss"]) for m in recs if "loss" in m]
        assert list(zip(*drawn[name]["loss"], strict=True)) == loss
        nll = [(m["step"], m["val_nll"]) for m in recs if "val_nll" in m]
        assert list(zip(*drawn[name]["val_nll"], strict=True)) == nll
    empty = run_cli("runs", "list", str(tmp_path / "none"), "--plot", str(png))
    assert empty.returncode == 2 and "not a directory" in empty.stderr
