"""Every built-in model: the plugin contract, forward, backward, one optimizer step, a safetensors
round trip and a short training that lowers the loss."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from astrobio_cli.plugins import resolve
from astrobio_cli.training.plugin import check_plugin

MODELS = [
    "cube-unet",
    "datacube-cnn",
    "spectral-transformer",
    "graph-vae",
    "llm-lora",
    "planet-mass",
]


@pytest.fixture(params=MODELS)
def setup(request, climate_nc):
    spec = resolve("model", request.param)
    plugin = spec.factory(dict(spec.factory({}).smoke_config))
    data = climate_nc if request.param in ("cube-unet", "datacube-cnn") else None
    torch.manual_seed(0)
    datasets = plugin.make_datasets(data, seed=0, smoke=True)
    model = plugin.build(datasets)
    collate = datasets.collate or torch.utils.data.default_collate
    n = 4 if plugin.data_kind == "climate-cube" else 64  # cubes are big; edges and texts small
    batch = collate([datasets.train[i] for i in range(min(n, len(datasets.train)))])
    return spec, plugin, datasets, model, batch


def test_contract_and_registration(setup):
    spec, plugin, datasets, _, _ = setup
    assert check_plugin(plugin) == []
    assert plugin.data_kind in spec.data_kinds
    assert len(datasets.train) > 0 and len(datasets.val) > 0
    assert plugin.primary_metric[1] in ("lower", "higher")


def test_backward_and_one_step(setup):
    _, plugin, datasets, model, batch = setup
    loss = plugin.loss(model, batch, datasets)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3).step()
    after = [p.detach() for p in model.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_safetensors_round_trip(setup, tmp_path):
    _, plugin, datasets, model, _ = setup
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "m.safetensors")
    )
    twin = plugin.build(datasets)
    twin.load_state_dict(load_file(str(tmp_path / "m.safetensors")))
    model.eval()
    twin.eval()
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(1)
        a = plugin.evaluate(model, datasets)
        torch.manual_seed(1)
        b = plugin.evaluate(twin, datasets)
    assert a == b


def test_short_training_lowers_the_loss(setup):
    _, plugin, datasets, model, batch = setup
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    torch.manual_seed(0)
    first = plugin.loss(model, batch, datasets).item()
    for _ in range(25):
        opt.zero_grad()
        plugin.loss(model, batch, datasets).backward()
        opt.step()
    torch.manual_seed(0)
    assert plugin.loss(model, batch, datasets).item() < 0.8 * first
