"""Checkpoints: round trip, atomic names, keep-last-K, RNG state, no unpickling of code."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch

from astrobio_cli.errors import UserError
from astrobio_cli.training import checkpoint as ckpt


def _save(d, step, keep=3):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    path = ckpt.save_checkpoint(
        d,
        step,
        model_state=model.state_dict(),
        train_state={
            "optimizer": opt.state_dict(),
            "rng": [ckpt.rng_state()],
            "step": step,
            "position": 3 * step,
        },
        meta={"model": "toy"},
        keep_last=keep,
    )
    return model, opt, path


def test_round_trip(tmp_path):
    model, opt, path = _save(tmp_path, 5)
    w = ckpt.load_weights(path)
    for k, v in model.state_dict().items():
        assert torch.equal(w[k], v)
    state = ckpt.load_train_state(path)
    assert state["step"] == 5 and state["position"] == 15
    opt2 = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters())
    opt2.load_state_dict(state["optimizer"])
    assert torch.equal(
        opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )
    meta = ckpt.load_meta(path)
    assert set(meta.pop("files")) == {"model.safetensors", "state.pt"}  # sha256 + size each
    assert meta == {"step": 5, "model": "toy"}


def test_keep_last_and_incomplete_ignored(tmp_path):
    for s in (1, 2, 3, 4, 5):
        _save(tmp_path, s, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-000004", "step-000005"]
    # a half-written checkpoint (a run killed while saving) is never picked
    (tmp_path / ".tmp-abc").mkdir()
    (tmp_path / ".tmp-abc" / "model.safetensors").write_bytes(b"partial")
    assert ckpt.latest_checkpoint(tmp_path).name == "step-000005"
    _save(tmp_path, 6, keep=2)
    assert not (tmp_path / ".tmp-abc").exists()


def test_rng_state_round_trip():
    state = ckpt.rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_state_loading_refuses_pickled_code(tmp_path, capsys):
    _, _, path = _save(tmp_path, 1)
    with (path / "state.pt").open("wb") as fh:
        torch.save({"x": Evil()}, fh, pickle_module=pickle)
    # the replaced file fails its checksum; unverified, weights_only refuses it
    with pytest.raises(ckpt.CheckpointCorrupt, match=r"state\.pt"):
        ckpt.load_train_state(path)
    with pytest.raises(ckpt.CheckpointCorrupt, match="refused"):
        ckpt.load_train_state(path, verify=False)
    assert "pwned" not in capsys.readouterr().out


def test_resolve_checkpoint(tmp_path):
    _save(tmp_path / "run" / "checkpoints", 2)
    _save(tmp_path / "run" / "checkpoints", 4)
    assert ckpt.resolve_checkpoint(tmp_path / "run").name == "step-000004"
    with pytest.raises(UserError, match="no checkpoint found"):
        ckpt.resolve_checkpoint(tmp_path / "nothing")
