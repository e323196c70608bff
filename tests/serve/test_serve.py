"""`astrobio serve`: a real server (subprocess on a free loopback port) answering over HTTP from a
checkpoint trained by `astrobio train cube-unet --quick-smoke`."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest


def _planet(**over):
    p = {
        "stellar_flux": 1361.0,
        "rotation_period": 1.0,
        "obliquity": 23.4,
        "greenhouse_factor": 0.77,
        "surface_albedo": 0.3,
    }
    p.update(over)
    return p


def test_health_and_models(server):
    base, run, _, _ = server
    h = httpx.get(f"{base}/health").json()
    assert h["status"] == "ok" and h["model"] == "cube-unet"
    (m,) = httpx.get(f"{base}/v1/models").json()["data"]
    assert m["id"] == "cube-unet"
    assert Path(m["checkpoint"]).parent == run / "checkpoints"
    assert m["step"] == json.loads((Path(m["checkpoint"]) / "meta.json").read_text())["step"]
    card = json.loads((run / "run_card.json").read_text())
    assert m["run_card"] == card and m["run_card"]["model"] == "cube-unet"
    assert m["limits"] == {
        "max_request_bytes": 200000,
        "max_batch": 8,
        "batch_size": 8,
        "max_wait_ms": 0.0,
    }
    assert "obliquity" in m["input_schema"]["properties"]
    assert m["generates_text"] is False


def test_prediction_equals_the_model_on_a_held_out_planet(server, installed_host):
    """The served prediction for a held-out planet's own parameters equals the checkpoint's
    prediction computed in this process the way `astrobio eval` does (independent path)."""
    import numpy as np
    import torch
    import xarray as xr

    from astrobio_cli.training import checkpoint as ckpt

    base, run, env, _ = server
    path = ckpt.resolve_checkpoint(run)
    meta = ckpt.load_meta(path)
    spec = installed_host.get("model", "cube-unet")
    plugin = spec.factory(meta["model_options"])
    data_file = next((Path(env["ASTROBIO_DATA_DIR"]) / "synthetic-climate").glob("*.nc"))
    datasets = plugin.make_datasets(data_file, seed=meta["seed"])
    model = plugin.build(datasets)
    model.load_state_dict(ckpt.load_weights(path))
    model.eval()
    with torch.no_grad():
        want = plugin.predict(model, datasets.val)[:2]
    from astrobio_models.cube_unet import unscale

    want = unscale(want, datasets.context).double().numpy()  # (2, 2, Z, Y, X)

    with xr.open_dataset(data_file) as ds:
        idx = datasets.val.idx[:2]
        planets = [
            {
                **{
                    k: float(ds[k].values[i])
                    for k in (
                        "stellar_flux",
                        "rotation_period",
                        "obliquity",
                        "greenhouse_factor",
                        "surface_albedo",
                    )
                },
                "land_mask": ds["land_mask"].values[i].astype(float).tolist(),
            }
            for i in idx
        ]
        lat = ds["lat"].values.astype(np.float64)
    r = httpx.post(f"{base}/v1/predict", json={"instances": planets}, timeout=120)
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 2
    for p, w in zip(preds, want, strict=True):
        ta = np.asarray(p["ta"])
        hus = np.asarray(p["hus"])
        assert ta.shape == w[0].shape and hus.shape == w[1].shape
        # rsdt is recomputed in float64 from the planet's parameters (the file holds float32):
        # that moves the standardised input by ~1e-7, the output by far less than 1e-3 K.
        np.testing.assert_allclose(ta, w[0], atol=2e-3)
        np.testing.assert_allclose(hus, w[1], atol=1e-6)
        area = np.diff(np.sin(np.deg2rad(np.linspace(-90, 90, len(lat) + 1))))
        ts_mean = float((ta[0].mean(axis=1) * area).sum() / area.sum())
        assert p["ts_mean"] == pytest.approx(ts_mean, abs=1e-3)


def test_batch_and_concurrent_requests(server):
    base, *_ = server
    one = httpx.post(f"{base}/v1/predict", json={"instances": [_planet()]}, timeout=120)
    assert one.status_code == 200
    ref = one.json()["predictions"][0]
    hot = _planet(stellar_flux=1600.0)
    batch = httpx.post(f"{base}/v1/predict", json={"instances": [_planet(), hot]}, timeout=120)
    assert batch.status_code == 200
    b0, b1 = batch.json()["predictions"]
    assert b0["ts_mean"] == pytest.approx(ref["ts_mean"], abs=1e-4)
    assert b1["ts_mean"] != pytest.approx(ref["ts_mean"], abs=1e-4)

    def call(i):
        body = {"instances": [_planet()] if i % 2 == 0 else [hot]}
        return httpx.post(f"{base}/v1/predict", json=body, timeout=180)

    before = httpx.get(f"{base}/health").json()["batching"]
    with ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(call, range(48)))
    assert [a.status_code for a in answers] == [200] * 48
    for i, a in enumerate(answers):  # each client gets its own planet's answer back
        want = ref["ts_mean"] if i % 2 == 0 else b1["ts_mean"]
        assert a.json()["predictions"][0]["ts_mean"] == pytest.approx(want, abs=1e-4)
    after = httpx.get(f"{base}/health").json()["batching"]
    assert after["requests"] - before["requests"] == 48
    # concurrent requests shared forward passes (dynamic batching), none over the batch size
    assert after["forward_passes"] - before["forward_passes"] < 48
    assert after["largest_batch"] <= 8


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"instances": [_planet(obliquity=123.0)]}, ["body", "instances", 0, "obliquity"]),
        ({"instances": [_planet(stellar_flux="bright")]}, ["body", "instances", 0, "stellar_flux"]),
        ({"instances": [{"stellar_flux": 1361.0}]}, ["body", "instances", 0, "rotation_period"]),
        ({"instances": [_planet(albedo=0.3)]}, ["body", "instances", 0, "albedo"]),
        ({"instances": [_planet(land_mask=[[0, 1]])]}, ["body", "instances", 0, "land_mask"]),
        ({"instances": []}, ["body", "instances"]),
        ({"instances": [_planet()] * 9}, ["body", "instances"]),
        ({"planets": [_planet()]}, ["body", "instances"]),
    ],
)
def test_bad_input_is_422_naming_the_field(server, body, loc):
    base, *_ = server
    r = httpx.post(f"{base}/v1/predict", json=body, timeout=60)
    assert r.status_code == 422, r.text
    assert loc in [d["loc"] for d in r.json()["detail"]], r.json()
    assert httpx.get(f"{base}/health").status_code == 200  # still serving


def test_not_json_is_422(server):
    base, *_ = server
    r = httpx.post(
        f"{base}/v1/predict", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422


def test_oversized_request_is_413_declared_or_chunked(server):
    base, *_ = server
    big = {"instances": [_planet(land_mask=[[0.0] * 32] * 16)] * 200}  # ~ 350 kB > 200 kB
    r = httpx.post(f"{base}/v1/predict", json=big, timeout=60)
    assert r.status_code == 413 and "200000" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        yield b'{"instances": ['
        for _ in range(20000):
            yield b'{"stellar_flux": 1361.0},'
        yield b"{}]}"

    r = httpx.post(
        f"{base}/v1/predict",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 413
    ok = httpx.post(f"{base}/v1/predict", json={"instances": [_planet()]}, timeout=120)
    assert ok.status_code == 200  # and the server keeps serving


def test_generate_is_404_for_a_field_model(server):
    base, *_ = server
    r = httpx.post(f"{base}/v1/generate", json={"prompt": "hello"})
    assert r.status_code == 404 and "llm-lora" in r.json()["detail"]


def _outside_address() -> str | None:
    """This machine's address on its network (not loopback), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for a UDP connect
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def test_binds_loopback_by_default(server):
    base, *_, log = server
    assert "http://127.0.0.1:" in log.read_text()
    addr = _outside_address()
    if addr is None:
        pytest.skip("no non-loopback address on this machine")
    port = int(base.rsplit(":", 1)[1])
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{addr}:{port}/health", timeout=5)


def test_wrong_model_for_checkpoint_and_missing_checkpoint(trained, tmp_path, run_cli):
    run, env = trained
    res = run_cli("serve", "cube-unet", "--checkpoint", str(tmp_path / "nope"), env=env)
    assert res.returncode != 0 and "does not exist" in res.stderr
    assert "Traceback" not in res.stderr
    res = run_cli("serve", "cube-unt", "--checkpoint", str(run), env=env)
    assert res.returncode == 2 and "did you mean 'cube-unet'" in res.stderr
