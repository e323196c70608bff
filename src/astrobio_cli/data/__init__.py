"""Datasets that feed training: climate datacubes, exoplanet tables, reproducible splits.

Importing this package is light (no torch, no xarray): import the submodules you need.

- `astrobio_cli.data.climate`: the climate-cube schema (stated once) and `open_climate_cube`, the
  one reader of raw ensembles and `astrobio preprocess` stores (split rule, stats, lazy
  per-item reads, augmentations in the native kernels).
- `astrobio_cli.data.splits`: `make_splits`, `Splits` (saved to and loaded from JSON).
- `astrobio_cli.data.datasets`: `CubeDataset` (NetCDF/Zarr -> (input, target) tensors, train-split
  normalisation, rank x worker sharding via `.shard()`), `ExoplanetTable` (Parquet -> tensors).
"""
