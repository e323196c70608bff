"""`astrobio predict spectral-transformer` on a spectrum table as `astrobio fetch
mast-jwst-spectrum` writes it: resampled onto the model's grid, errors carried through."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq

from astrobio_cli.net.content import Column, Table
from astrobio_cli.net.tables import to_arrow


def _write(path, wl_um, values, errors, name="flux", unit="Jy"):
    t = Table([
        Column("wavelength", "float", list(wl_um), "um", "WAVELENGTH"),
        Column(name, "float", list(values), unit, name.upper()),
        Column(f"{name}_error", "float", list(errors), unit, "ERROR"),
        Column("dq", "int", [0] * len(wl_um), "", "Data quality flags"),
    ])  # fmt: skip
    pq.write_table(to_arrow(t), path)


def test_predict_from_a_fetched_spectrum(tmp_path, run_cli):
    from astrobio_models import spectral_transformer as st

    run = tmp_path / "run"
    r = run_cli("train", "spectral-transformer", "--quick-smoke", "--out", str(run),
                env={"ASTROBIO_THREADS": "1"})  # fmt: skip
    assert r.returncode == 0, r.stderr
    # a planet from the forward model, sampled finely (3x the model's 32 bins) over 0.55-5.3 um
    wl = np.geomspace(0.55, 5.3, 300)
    depth = st.transit_depth(np.array([[1200.0, -3.0, -6.0, -5.0, -2.0]]), wl)[0]
    small, large = tmp_path / "small.parquet", tmp_path / "large.parquet"
    _write(small, wl, depth, np.full_like(wl, 1e-6), name="depth", unit="")
    _write(large, wl, depth, np.full_like(wl, 3e-4), name="depth", unit="")
    out = {}
    for f in (small, large):
        r = run_cli("predict", "spectral-transformer", "--checkpoint", str(run), "--input",
                    str(f), "--json")  # fmt: skip
        assert r.returncode == 0, r.stderr
        out[f.stem] = json.loads(r.stdout)
    assert out["small"]["bins"] == 32 and out["small"]["samples_used"] == 300
    assert set(out["small"]["parameters"]) == set(st.PARAMS)
    assert "warning" not in out["small"]
    # larger measurement errors propagate into a larger spread of the prediction
    for p in st.PARAMS:
        assert (
            out["large"]["parameters"][p]["std_from_errors"]
            > out["small"]["parameters"][p]["std_from_errors"]
        )
    # a flux spectrum (what x1d files hold) is accepted with a plain warning
    flux = tmp_path / "flux.parquet"
    _write(flux, wl, 1e-3 * (1 + 0.01 * np.sin(wl)), np.full_like(wl, 1e-5))
    r = run_cli("predict", "spectral-transformer", "--checkpoint", str(run), "--input",
                str(flux), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "not a transit depth" in json.loads(r.stdout)["warning"]
    # a spectrum that leaves the model's grid uncovered is refused in one line
    narrow = tmp_path / "narrow.parquet"
    _write(narrow, wl[:50], depth[:50], np.full(50, 1e-6), name="depth", unit="")
    r = run_cli("predict", "spectral-transformer", "--checkpoint", str(run), "--input",
                str(narrow))  # fmt: skip
    assert r.returncode != 0 and "leaves" in r.stderr and "Traceback" not in r.stderr
