"""Datasets that feed training: climate datacubes, exoplanet tables, reproducible splits.

Importing this package is light (no torch, no xarray): import the submodules you need.

- `astrobio_cli.data.splits`: `make_splits`, `Splits` (saved to and loaded from JSON).
- `astrobio_cli.data.datasets`: `CubeDataset` (NetCDF/Zarr -> (input, target) tensors, train-split
  normalisation, rank x worker sharding via `.shard()`), `ExoplanetTable` (Parquet -> tensors).
"""
