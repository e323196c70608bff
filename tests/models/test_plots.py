"""`astrobio eval --plot` draws for every built-in model: each plugin's `plot` writes a real PNG
of its held-out evaluation (tiny untrained models on their built-in smoke data)."""

from __future__ import annotations

import pytest

from astrobio_cli.plugins import get_host

# The built-in models (a third-party plugin's plot is optional: eval says plainly it has none).
MODELS = [r["name"] for r in get_host().rows("model") if r["distribution"] == "astrobio-models"]


@pytest.mark.parametrize("name", MODELS)
def test_every_model_plots_its_evaluation(name, tmp_path):
    import matplotlib.image as mpimg
    import torch

    from astrobio_cli.plugins import resolve

    spec = resolve("model", name)
    plugin = spec.factory({})
    plugin = spec.factory(dict(plugin.smoke_config))
    if not hasattr(plugin, "plot"):
        pytest.fail(f"{name} has no plot: `astrobio eval {name} --plot` cannot draw")
    datasets = plugin.make_datasets(None, seed=0, smoke=True)
    torch.manual_seed(0)
    model = plugin.build(datasets)
    if hasattr(model, "eval"):
        model.eval()
    png = tmp_path / f"{name}.png"
    plugin.plot(model, datasets, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(png)
    assert img.shape[0] >= 200 and img.shape[1] >= 200
    assert img[..., :3].std() > 0.01  # not a blank canvas
