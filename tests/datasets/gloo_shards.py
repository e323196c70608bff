"""Run as a script by test_cube_dataset.py: one rank of a real gloo process group.

Builds CubeDataset.shard() with NO explicit rank (it must find torch.distributed's), iterates it
through a DataLoader with 2 workers, gathers every rank's sample indices and (on rank 0) writes
them as JSON.
"""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from astrobio_cli.data.datasets import CubeDataset


def main(path: str, out: str) -> None:
    dist.init_process_group("gloo")  # MASTER_ADDR/PORT, RANK, WORLD_SIZE from the environment
    ds = CubeDataset(path, "train", inputs=("stellar_flux",), targets=("ts",), normalize=False)
    flux_to_index = {float(ds._dataset()["stellar_flux"].values[i]): i for i in range(ds.n_samples)}
    loader = DataLoader(ds.shard(shuffle=True, seed=3, epoch=1), batch_size=4, num_workers=2)
    seen = [flux_to_index[float(x[0, 0, 0, 0])] for xb, _ in loader for x in xb]
    gathered: list[list[int]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(gathered, seen)
    if dist.get_rank() == 0:
        with open(out, "w") as f:
            json.dump({"ranks": gathered, "train": list(ds.indices)}, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], sys.argv[2])
