"""`astrobio bench train`: both loops run and report comparable numbers."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from astrobio_cli.cli import build_app


def test_bench_train_reports_both_loops():
    r = CliRunner().invoke(
        build_app(),
        ["bench", "train", "spectral-transformer", "--steps", "3", "--batch-size", "8",
         "--repeats", "1", "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["minimal_samples_per_s"] > 0 and out["astrobio_samples_per_s"] > 0
    assert out["ratio"] == out["astrobio_samples_per_s"] / out["minimal_samples_per_s"]
    r = CliRunner().invoke(build_app(), ["bench", "train", "spectral-transfomer"])
    assert r.exit_code == 2 and "did you mean 'spectral-transformer'" in r.output
