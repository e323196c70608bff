"""Cut the small real datacube that `astrobio smoke` ships (run once; the output is committed).

    .venv/bin/python tests/smoke/make_ncep_slice.py ../shared/data/climate/NCEP_06_climo.nc

From the NCEP/NCAR reanalysis June climatology (public domain, NOAA; as kept in
NCAR/geocat-datafiles, Apache-2.0): air temperature T and specific humidity SHUM on the 8 levels
1000-300 hPa, every 4th latitude and longitude (16 x 32). Points below the ground (level pressure
above the surface pressure PS, e.g. over the Himalaya and Antarctica) are set to NaN, the way
reanalysis output on pressure levels marks missing levels; so the check meets real NaN patterns.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

OUT = Path(__file__).resolve().parents[2] / "src/astrobio_cli/smoke_data/ncep_june_slice.npz"


def main(src: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the file declares two fill values per variable
        ds = xr.open_dataset(src)
    lev = ds["lev2"].values.astype(np.float64)  # hPa
    t = ds["T"].sel(lev=ds["lev2"].values).values[0, :, ::4, ::4]  # (8, 16, 32) K
    q = ds["SHUM"].values[0, :, ::4, ::4]  # (8, 16, 32) g/kg
    ps = ds["PS"].values[0, ::4, ::4]  # (16, 32) hPa
    below = lev[:, None, None] > ps[None]
    cube = np.stack([t, q]).astype(np.float32)  # (var=2, lev=8, lat=16, lon=32)
    cube[:, below] = np.nan
    np.savez_compressed(
        OUT,
        cube=cube[None],  # (sample=1, var, lev, lat, lon)
        variables=np.array(["T", "SHUM"]),
        units=np.array(["K", "g/kg"]),
        lev_hpa=lev,
        lat=ds["lat"].values[::4].astype(np.float64),
        lon=ds["lon"].values[::4].astype(np.float64),
    )
    print(f"{OUT}: {cube.shape}, {int(np.isnan(cube).sum())} NaN, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/climate/NCEP_06_climo.nc")
