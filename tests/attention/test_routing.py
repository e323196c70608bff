"""`auto` routing, forcing (argument and setting), explain, and the approximate backends."""

from __future__ import annotations

import pytest
import torch

from astrobio_cli import settings
from astrobio_cli.attention import BackendUnsupportedError, attention, explain
from astrobio_cli.attention.routing import PRIORITY
from astrobio_cli.errors import UnknownNameError
from astrobio_cli.plugins import get_host

from .conftest import make_qkv, max_err

# Every tensor here is on the CPU, so the CPU priority applies on GPU machines too.


def _view(*shape, dtype=torch.float32):
    return torch.empty((1,) * len(shape), dtype=dtype).expand(*shape)


def _qkv_views(B=1, H=8, Hkv=None, T=4096, D=64, dtype=torch.float32):
    return _view(B, H, T, D, dtype=dtype), *(_view(B, Hkv or H, T, D, dtype=dtype),) * 2


@pytest.fixture
def force(monkeypatch):
    def set_backend(name: str) -> None:
        monkeypatch.setenv("ASTROBIO_ATTENTION__BACKEND", name)
        settings.configure(None, None)

    return set_backend


def test_auto_picks_the_cpu_flash_kernel_and_says_why_not_the_others():
    exp = explain(*_qkv_views(Hkv=2), causal=True, mask=_view(1, 4096, dtype=torch.bool))
    assert exp.chosen == "sdpa-flash"
    assert exp.priority == PRIORITY["cpu"]
    why = {c.name: c.reason for c in exp.candidates}
    assert why["sdpa"] == "lower priority than sdpa-flash"
    assert why["eager"] == "lower priority than sdpa-flash"
    assert why["sliding-window"].startswith("inexact")
    assert why["linear"].startswith("inexact")
    assert "needs a CUDA device" in why["sdpa-efficient"]
    assert "not installed" in why["flash-attn"] or "CUDA" in why["flash-attn"]
    assert "TRITON_INTERPRET" in why["triton"]


def test_auto_never_picks_a_third_party_backend_outside_the_priority_list():
    if "example-naive" not in get_host().names("attention"):
        pytest.skip("the example plugin is not installed")
    exp = explain(*_qkv_views(T=16))
    reason = next(c.reason for c in exp.candidates if c.name == "example-naive")
    assert "not in the cpu priority list" in reason
    q, k, v = make_qkv(B=1, Hq=2, Tq=8)
    assert max_err(attention(q, k, v, backend="example-naive"), attention(q, k, v)) < 1e-5


def test_auto_result_matches_eager():
    q, k, v = make_qkv(B=2, Hq=4, Hkv=2, Tq=33, Tk=40)
    pad = torch.rand(2, 40) > 0.2
    assert (
        max_err(
            attention(q, k, v, mask=pad, causal=True),
            attention(q, k, v, mask=pad, causal=True, backend="eager"),
        )
        < 1e-5
    )


def test_setting_forces_a_backend(force):
    force("eager")
    exp = explain(*_qkv_views(T=64))
    assert (exp.chosen, exp.forced_by) == ("eager", "setting")
    reasons = {c.name: c.reason for c in exp.candidates}
    assert reasons["sdpa-flash"] == "not requested (eager was forced by setting)"


def test_forcing_an_unsupported_backend_is_an_error_with_the_reason(force):
    q, k, v = make_qkv(B=1, Hq=2, Tq=8)
    force("sdpa-efficient")
    with pytest.raises(BackendUnsupportedError) as err:
        attention(q, k, v)
    msg = str(err.value)
    assert "ASTROBIO_ATTENTION__BACKEND" in msg and "needs a CUDA device" in msg
    with pytest.raises(BackendUnsupportedError, match="key-padding masks only"):
        attention(q, k, v, mask=torch.ones(8, 8, dtype=torch.bool), backend="linear")


def test_an_unknown_backend_name_gets_a_suggestion():
    q, k, v = make_qkv(B=1, Hq=2, Tq=8)
    with pytest.raises(UnknownNameError, match="did you mean 'sdpa-flash'"):
        attention(q, k, v, backend="sdpa-flsh")


def test_dropout_routes_to_a_backend_that_implements_it():
    q, k, v = make_qkv(B=1, Hq=2, Tq=8)
    torch.manual_seed(0)
    out = attention(q, k, v, dropout_p=0.5)
    assert out.shape == q.shape
    exp = explain(q, k, v, dropout_p=0.5)
    assert exp.chosen == "sdpa"  # PyTorch's CPU flash kernel has no dropout
    assert "dropout" in next(c.reason for c in exp.candidates if c.name == "sdpa-flash")
    exp = explain(q, k, v, dropout_p=0.5, backend="linear")
    assert exp.chosen is None
    assert "dropout" in next(c.reason for c in exp.candidates if c.name == "linear")


def test_sliding_window_equals_eager_with_the_band_mask(monkeypatch):
    from astrobio_attention.approximate import SlidingWindowBackend, window_band

    q, k, v = make_qkv(B=2, Hq=4, Hkv=2, Tq=50, Tk=70, D=16, dtype=torch.float64)
    pad = torch.rand(2, 70) > 0.2
    sw = SlidingWindowBackend(window=8)
    for causal in (False, True):
        band = window_band(50, 70, 8, causal, q.device)
        out = sw(q, k, v, mask=pad[:, None, None, :], causal=causal, scale=0.3)
        i = torch.arange(50)[:, None] + 20
        j = torch.arange(70)[None]
        want_band = (i - j >= 0) & (i - j < 8) if causal else (i - j).abs() < 8
        assert torch.equal(band, want_band)
        ref = attention(q, k, v, mask=pad[:, None, None, :] & band, scale=0.3, backend="eager")
        assert max_err(out, ref) < 1e-12
    monkeypatch.setenv("ASTROBIO_ATTENTION__WINDOW", "8")
    settings.configure(None, None)
    assert settings.get_settings().attention.window == 8


def test_linear_attention_matches_its_float64_formula():
    q, k, v = make_qkv(B=1, Hq=4, Hkv=2, Tq=70, Tk=90, D=16, dtype=torch.float64)
    pad = torch.rand(1, 90) > 0.2
    for causal in (False, True):
        out = attention(q, k, v, mask=pad, causal=causal, backend="linear")
        phi_q = torch.nn.functional.elu(q) + 1
        phi_k = (torch.nn.functional.elu(k) + 1).repeat_interleave(2, dim=1)
        a = phi_q @ phi_k.transpose(-1, -2) * pad[:, None, None, :]
        if causal:
            a = a * (torch.arange(90)[None] <= torch.arange(70)[:, None] + 20)
        ref = (a @ v.repeat_interleave(2, dim=1)) / a.sum(-1, keepdim=True)
        assert max_err(out, ref) < 1e-10


def test_explain_command_prints_the_pick_and_every_reason(run_cli):
    res = run_cli(
        "attention",
        "explain",
        "--device",
        "cpu",
        "--seq",
        "1024",
        "--kv-heads",
        "2",
        "--causal",
        "--mask",
        "padding",
        env={"COLUMNS": "200"},
    )
    assert res.returncode == 0, res.stderr
    assert "auto picks sdpa-flash" in res.stdout
    assert "inexact: auto never picks it" in res.stdout
    assert "needs a CUDA device" in res.stdout


def test_explain_command_with_a_forced_unsupported_backend_fails(run_cli):
    res = run_cli(
        "attention",
        "explain",
        "--device",
        "cpu",
        "--seq",
        "64",
        "--mask",
        "bool",
        env={"COLUMNS": "200", "ASTROBIO_ATTENTION__BACKEND": "linear"},
    )
    assert res.returncode == 1
    assert "linear cannot run" in res.stdout
    assert "key-padding masks only" in res.stdout


def test_explain_command_rejects_a_bad_dtype(run_cli):
    res = run_cli("attention", "explain", "--dtype", "fp8")
    assert res.returncode == 2
    assert "--dtype must be one of" in res.stderr
    assert "Traceback" not in res.stderr


def test_routing_uses_the_host_given_to_the_app(monkeypatch):
    from astrobio_cli.plugins import PluginHost
    from astrobio_cli.specs import AttentionBackendSpec

    class OnlyEager:
        from astrobio_cli.hookspecs import hookimpl

        @staticmethod
        @hookimpl
        def register_attention_backends(register):
            from astrobio_attention.eager import EagerBackend

            register(AttentionBackendSpec(name="eager", description="e", factory=EagerBackend))

    host = PluginHost()
    host.add_module("only-eager", OnlyEager)
    import astrobio_cli.plugins

    monkeypatch.setattr(astrobio_cli.plugins, "_ACTIVE", host)
    exp = explain(*_qkv_views(T=64))
    assert exp.chosen == "eager"
    assert [c.name for c in exp.candidates] == ["eager"]
