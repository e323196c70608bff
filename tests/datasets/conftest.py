"""A small synthetic-climate ensemble on disk, shared by the dataset tests."""

from __future__ import annotations

import pytest

CUBE = {"samples": 30, "nlat": 8, "nlon": 16, "nlev": 3, "seed": 11}


@pytest.fixture(scope="session")
def cube_files(tmp_path_factory):
    """(NetCDF path, Zarr path) of the same 30-sample ensemble."""
    from astrobio_data_sources import synthetic_climate as sc

    ds = sc.generate(
        CUBE["samples"], nlat=CUBE["nlat"], nlon=CUBE["nlon"], nlev=CUBE["nlev"], seed=CUBE["seed"]
    )
    root = tmp_path_factory.mktemp("cube")
    return sc.write(ds, root / "cube.nc"), sc.write(ds, root / "cube.zarr", "zarr")


@pytest.fixture(scope="session")
def cube():
    """The ensemble's generation options (samples, nlat, nlon, nlev, seed)."""
    return dict(CUBE)
