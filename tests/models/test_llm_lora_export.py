"""llm-lora runs end with a PEFT adapter directory that peft loads on its own.

The installed `astrobio train llm-lora` writes <run>/export; peft (not our code) loads it, and
its logits must equal those of the model rebuilt from our own checkpoint.
"""

from __future__ import annotations

import json
import os
import subprocess

import torch

from tests.conftest import astrobio_exe


def test_trained_adapter_loads_with_peft_and_matches_the_checkpoint(tmp_path):
    from peft import AutoPeftModelForCausalLM, PeftModel
    from transformers import AutoModelForCausalLM

    from astrobio_cli.plugins import resolve
    from astrobio_cli.training.checkpoint import latest_checkpoint
    from astrobio_cli.training.evaluate import load_model

    run = tmp_path / "run"
    env = dict(os.environ, ASTROBIO_RUNS_DIR=str(tmp_path), ASTROBIO_THREADS="1")
    res = subprocess.run(
        [astrobio_exe(), "train", "llm-lora", "--quick-smoke", "--cpu", "--out", str(run)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    export = run / "export"
    assert (export / "adapter_config.json").is_file()
    assert (export / "adapter_model.safetensors").is_file()
    assert not list(run.glob(".export.*"))  # the temporary directory was renamed into place
    cfg = json.loads((export / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["base_model_name_or_path"] == str(export / "base")

    ckpt = latest_checkpoint(run / "checkpoints")
    _, _, plugin, _, ours = load_model(resolve("model", "llm-lora"), ckpt)
    ids = torch.tensor([plugin.tokenizer.encode("Kepler-22 b orbits a G star every 290 days.")])

    base = AutoModelForCausalLM.from_pretrained(export / "base")
    theirs = PeftModel.from_pretrained(base, export).eval()
    auto = AutoPeftModelForCausalLM.from_pretrained(export).eval()
    with torch.no_grad():
        want = ours(input_ids=ids).logits
        torch.testing.assert_close(theirs(input_ids=ids).logits, want, rtol=0, atol=1e-5)
        torch.testing.assert_close(auto(input_ids=ids).logits, want, rtol=0, atol=1e-5)
        # and the adapter did change the model: the bare base answers differently
        bare = AutoModelForCausalLM.from_pretrained(export / "base").eval()
        assert (bare(input_ids=ids).logits - want).abs().max() > 1e-3
