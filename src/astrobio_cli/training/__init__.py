"""Training: one readable loop (`loop.py`) and the helpers it shares as plain functions.

- `plugin.py`   the model plugin interface (what `ModelSpec.factory(config)` returns)
- `config.py`   the resolved run configuration (defaults < model defaults < YAML < flags)
- `data.py`     data-kind detection and the deterministic, rank-sharded batch order
- `optim.py`    optimizers (AdamW, Lion, SGD) and learning-rate schedules
- `checkpoint.py` safetensors weights + training state, temp name + rename, keep last K
- `rundir.py`   run directory: config YAML, run card, metrics JSONL + TensorBoard
- `launch.py`   `--cpu --procs N` / `--gpus N`: N real processes through torchrun + Accelerate
- `evaluate.py` `astrobio eval`: held-out metrics beside a baseline

Importing this package imports nothing heavy; the modules import torch at their top, so command
modules import them inside functions.
"""
