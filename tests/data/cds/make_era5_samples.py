"""Write the two small ERA5-like NetCDF files of this folder (run from the repo root:
`uv run --no-sync python tests/data/cds/make_era5_samples.py`).

They follow the layout of what the current CDS (2024-) delivers for
reanalysis-era5-{pressure,single}-levels-monthly-means with data_format=netcdf: dims
valid_time / pressure_level / latitude / longitude, `valid_time` as int64 seconds since 1970,
`pressure_level` in hPa stored decreasing (1000 first), `latitude` stored decreasing (90
first), scalar `number` and string `expver(valid_time)` coordinates, float32 fields with
_FillValue NaN and cfgrib's GRIB_* attributes, CF-1.7 global attributes. The values are a
smooth, seeded, physically plausible climate (lapse-rate temperatures, humidity from a
relative humidity), only there to be converted and checked.
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np

HERE = Path(__file__).resolve().parent
TIMES = np.array(["2020-01-01", "2020-02-01", "2020-03-01", "2020-04-01"], dtype="datetime64[s]")
LEVELS = np.array([1000.0, 850.0, 500.0])  # hPa, stored decreasing like the CDS
LAT = np.array([90.0, 60.0, 30.0, 0.0, -30.0, -60.0, -90.0])  # stored decreasing
LON = np.arange(0.0, 360.0, 30.0)
HISTORY = (
    "2025-01-14T10:12:41 GRIB to CDM+CF via cfgrib-0.9.14.1/ecCodes-2.38.3 with "
    '{"source": "tmpdata/data.grib", "filter_by_keys": {"stream": ["moda"], "stepType": '
    '["avgua"]}, "encode_cf": ["parameter", "time", "geography", "vertical"]}'
)


def grib_attrs(param: int, short: str, name: str, units: str, std: str | None, level: str):
    a = {
        "GRIB_paramId": np.int64(param),
        "GRIB_dataType": "an",
        "GRIB_numberOfPoints": np.int64(LAT.size * LON.size),
        "GRIB_typeOfLevel": level,
        "GRIB_stepUnits": np.int64(1),
        "GRIB_stepType": "avgua",
        "GRIB_gridType": "regular_ll",
        "GRIB_uvRelativeToGrid": np.int64(0),
        "GRIB_NV": np.int64(0),
        "GRIB_Nx": np.int64(LON.size),
        "GRIB_Ny": np.int64(LAT.size),
        "GRIB_cfName": std or "unknown",
        "GRIB_cfVarName": short,
        "GRIB_gridDefinitionDescription": "Latitude/Longitude Grid",
        "GRIB_iDirectionIncrementInDegrees": 30.0,
        "GRIB_jDirectionIncrementInDegrees": 30.0,
        "GRIB_missingValue": 3.4028234663852886e38,
        "GRIB_name": name,
        "GRIB_shortName": short,
        "GRIB_units": units,
        "long_name": name,
        "units": units,
    }
    if std:
        a["standard_name"] = std
    return a


def common(nc: netCDF4.Dataset, levels: bool) -> None:
    nc.setncatts(
        {
            "GRIB_centre": "ecmf",
            "GRIB_centreDescription": "European Centre for Medium-Range Weather Forecasts",
            "GRIB_subCentre": np.int64(0),
            "Conventions": "CF-1.7",
            "institution": "European Centre for Medium-Range Weather Forecasts",
            "history": HISTORY,
        }
    )
    nc.createDimension("valid_time", TIMES.size)
    if levels:
        nc.createDimension("pressure_level", LEVELS.size)
    nc.createDimension("latitude", LAT.size)
    nc.createDimension("longitude", LON.size)
    v = nc.createVariable("number", "i8")
    v.setncatts(
        {"long_name": "ensemble member numerical id", "units": "1", "standard_name": "realization"}
    )
    v.assignValue(0)
    v = nc.createVariable("valid_time", "i8", ("valid_time",))
    v.setncatts(
        {
            "long_name": "time",
            "standard_name": "time",
            "units": "seconds since 1970-01-01",
            "calendar": "proleptic_gregorian",
        }
    )
    v[:] = TIMES.astype(np.int64)
    if levels:
        v = nc.createVariable("pressure_level", "f8", ("pressure_level",))
        v.setncatts(
            {
                "_FillValue": np.nan,
                "long_name": "pressure",
                "units": "hPa",
                "positive": "down",
                "stored_direction": "decreasing",
                "standard_name": "air_pressure",
            }
        )
        v[:] = LEVELS
    v = nc.createVariable("latitude", "f8", ("latitude",), fill_value=np.nan)
    v.setncatts(
        {
            "units": "degrees_north",
            "standard_name": "latitude",
            "long_name": "latitude",
            "stored_direction": "decreasing",
        }
    )
    v[:] = LAT
    v = nc.createVariable("longitude", "f8", ("longitude",), fill_value=np.nan)
    v.setncatts({"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"})
    v[:] = LON
    v = nc.createVariable("expver", str, ("valid_time",))
    v.setncatts({"long_name": "experiment version"})
    for i in range(TIMES.size):
        v[i] = "0001"


def field(nc, name, dims, values, attrs) -> None:
    v = nc.createVariable(name, "f4", dims, fill_value=np.float32(np.nan), zlib=True, complevel=1)
    v.setncatts(
        {
            "coordinates": "number valid_time latitude longitude expver"
            + (" pressure_level" if "pressure_level" in dims else "")
        }
        | attrs
    )
    v[:] = values.astype(np.float32)


def main() -> None:
    rng = np.random.default_rng(20200101)
    month = np.arange(TIMES.size)[:, None, None]
    coslat = np.cos(np.deg2rad(LAT))[None, :, None]
    lon = np.deg2rad(LON)[None, None, :]
    ts = 250.0 + 50.0 * coslat + 3.0 * np.sin(lon) + 1.5 * month + rng.normal(0, 0.5, (4, 7, 12))
    lapse = (LEVELS / 1000.0) ** (287.0 * 0.0065 / 9.81)  # T(p) = Ts (p/ps)^(R Gamma / g)
    ta = ts[:, None] * lapse[None, :, None, None]
    es = 611.2 * np.exp(17.67 * (ta - 273.15) / (ta - 29.65))
    p = LEVELS[None, :, None, None] * 100.0
    hus = 0.622 * 0.7 * es / (p - 0.378 * 0.7 * es)
    lsm = (np.sin(lon) * coslat > 0.3).astype(float) * np.ones((4, 1, 1))
    day = 86400.0 * 1361.0 / np.pi * coslat * np.ones((4, 1, LON.size))  # J m-2 per day

    with netCDF4.Dataset(HERE / "era5-pressure-levels-monthly-means.nc", "w") as nc:
        common(nc, levels=True)
        dims = ("valid_time", "pressure_level", "latitude", "longitude")
        field(
            nc,
            "t",
            dims,
            ta,
            grib_attrs(130, "t", "Temperature", "K", "air_temperature", "isobaricInhPa"),
        )
        field(
            nc,
            "q",
            dims,
            hus,
            grib_attrs(
                133, "q", "Specific humidity", "kg kg**-1", "specific_humidity", "isobaricInhPa"
            ),
        )
    with netCDF4.Dataset(HERE / "era5-single-levels-monthly-means.nc", "w") as nc:
        common(nc, levels=False)
        dims = ("valid_time", "latitude", "longitude")
        field(nc, "skt", dims, ts, grib_attrs(235, "skt", "Skin temperature", "K", None, "surface"))
        field(
            nc,
            "lsm",
            dims,
            lsm,
            grib_attrs(172, "lsm", "Land-sea mask", "(0 - 1)", "land_binary_mask", "surface"),
        )
        field(
            nc,
            "tisr",
            dims,
            day,
            grib_attrs(212, "tisr", "TOA incident solar radiation", "J m**-2", None, "nominalTop"),
        )


if __name__ == "__main__":
    main()
