"""The synthetic-climate generator: deterministic, physically sane, written atomically with CF metadata.

Physics is checked against independent references: closed-form and quadrature insolation, a
dense loop-built finite-volume matrix for the diffusion solve, global energy conservation, and
Bolton's (1980) saturation vapour pressure for the humidity.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import xarray as xr

from astrobio_data_sources import synthetic_climate as sc

SMALL = {"nlat": 8, "nlon": 16, "nlev": 4}


@pytest.fixture(scope="module")
def small():
    return sc.generate(16, seed=7, **SMALL)


def controlled(grid: sc.Grid, n: int, **overrides) -> dict[str, np.ndarray]:
    """Earth-like inputs for n samples, ocean only, with chosen inputs overridden by arrays."""
    base = {
        "stellar_flux": 1361.0,
        "rotation_period": 1.0,
        "obliquity": 23.44,
        "greenhouse_factor": 0.77,
        "surface_albedo": 0.3,
    }
    inputs = {k: np.full(n, v, dtype=np.float64) for k, v in base.items()}
    for k, v in overrides.items():
        inputs[k] = np.asarray(v, dtype=np.float64)
    inputs.setdefault("land_mask", np.zeros((n, grid.nlat, grid.nlon)))
    return inputs


def area_mean(field: np.ndarray, grid: sc.Grid) -> np.ndarray:
    """Area-weighted global mean over the trailing (lat, lon) axes."""
    w = np.broadcast_to(grid.cell_area()[:, None], (grid.nlat, grid.nlon))
    return (field * w).sum(axis=(-2, -1)) / w.sum()


# -- determinism -------------------------------------------------------------------------------


def test_same_seed_same_values_and_bytes(small, tmp_path):
    again = sc.generate(16, seed=7, **SMALL)
    xr.testing.assert_identical(small, again)
    a = sc.write(small, tmp_path / "a.nc")
    b = sc.write(again, tmp_path / "b.nc")
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


def test_different_seed_differs(small):
    other = sc.generate(16, seed=8, **SMALL)
    for name in ("stellar_flux", "land_mask", "ts", "ta", "hus"):
        assert not np.array_equal(small[name].values, other[name].values), name


# -- physics -----------------------------------------------------------------------------------


def test_air_temperature_falls_with_height_and_matches_the_lapse_rate(small):
    ta = small["ta"].values.astype(np.float64)  # (N, lev, lat, lon), surface first
    assert (np.diff(ta, axis=1) < 0).all()
    assert np.allclose(ta[:, 0], small["ts"].values, rtol=1e-6)  # lowest level is the surface
    # Hydrostatic + constant lapse rate: dz between levels from the hypsometric equation,
    # dz = R_d * mean(T) / g * ln(p1/p2); the temperature drop should be Gamma * dz.
    p = small["plev"].values
    t_mean = 0.5 * (ta[:, 1:] + ta[:, :-1])
    dz = 287.04 * t_mean / 9.81 * np.log(p[:-1] / p[1:])[None, :, None, None]
    lapse = -np.diff(ta, axis=1) / dz
    assert np.allclose(lapse, 6.5e-3, rtol=2e-3)


def test_humidity_non_negative_drier_aloft_and_near_the_prescribed_relative_humidity(small):
    q = small["hus"].values.astype(np.float64)
    assert (q >= 0).all() and np.isfinite(q).all()
    assert (np.diff(q, axis=1) < 0).all()  # colder and lower RH aloft
    # Relative humidity from q with an independent saturation formula (Bolton 1980): above
    # 245 K it agrees with constant-L Clausius-Clapeyron to within 10% (colder, the two part
    # ways: Bolton's is an empirical fit over liquid water). RH_s = 0.8 ocean, 0.5 land.
    t = small["ta"].values[:, 0].astype(np.float64)
    p = small["plev"].values[0]
    e = q[:, 0] * p / (0.622 + (1 - 0.622) * q[:, 0])
    bolton = 611.2 * np.exp(17.67 * (t - 273.15) / (t - 29.65))
    rh = e / bolton
    land = small["land_mask"].values.astype(bool)
    warm = t > 245.0
    assert (warm & land).sum() > 20 and (warm & ~land).sum() > 20
    assert np.allclose(rh[warm & ~land], 0.8, rtol=0.1)
    assert np.allclose(rh[warm & land], 0.5, rtol=0.1)


def test_warmer_with_more_starlight_everywhere():
    grid = sc.Grid(8, 16, 1)
    flux = np.array([900.0, 1100.0, 1300.0, 1500.0, 1700.0])
    ts, _ = sc.solve_surface_temperature(controlled(grid, 5, stellar_flux=flux), grid)
    assert (np.diff(ts, axis=0) > 0).all()  # every cell warms with flux
    assert (np.diff(area_mean(ts, grid)) > 1.0).all()


def test_warmer_with_more_greenhouse_and_colder_with_higher_albedo():
    grid = sc.Grid(8, 16, 1)
    ts, _ = sc.solve_surface_temperature(
        controlled(grid, 3, greenhouse_factor=[0.6, 0.75, 0.9]), grid
    )
    assert (np.diff(area_mean(ts, grid)) > 0).all()
    ts, _ = sc.solve_surface_temperature(controlled(grid, 3, surface_albedo=[0.2, 0.3, 0.4]), grid)
    assert (np.diff(area_mean(ts, grid)) < 0).all()


def test_poles_colder_than_equator_at_low_obliquity_and_warmer_when_tilted_over():
    grid = sc.Grid(16, 8, 1)
    ts, _ = sc.solve_surface_temperature(controlled(grid, 3, obliquity=[0.0, 10.0, 85.0]), grid)
    zonal = ts.mean(axis=2)  # (N, lat)
    equator = zonal[:, grid.nlat // 2 - 1 : grid.nlat // 2 + 1].mean(axis=1)
    poles = zonal[:, [0, -1]].mean(axis=1)
    assert (poles[:2] < equator[:2] - 10.0).all()
    assert poles[2] > equator[2]  # obliquity 85: the poles get more sunlight per year


def test_faster_rotation_steeper_equator_to_pole_gradient():
    grid = sc.Grid(16, 8, 1)
    ts, _ = sc.solve_surface_temperature(controlled(grid, 3, rotation_period=[0.5, 1.0, 4.0]), grid)
    zonal = ts.mean(axis=2)
    gradient = zonal[:, grid.nlat // 2] - zonal[:, 0]
    assert gradient[0] > gradient[1] > gradient[2] > 0


def test_equilibrium_conserves_energy_globally():
    # Diffusion only moves heat, so at equilibrium absorbed sunlight = emitted long-wave,
    # in the global mean; this fails if the solver did not converge or leaks energy.
    grid = sc.Grid(12, 24, 1)
    inputs = sc.sample_inputs(6, grid, seed=3)
    ts, q = sc.solve_surface_temperature(inputs, grid)
    absorbed = q[:, :, None] * (1 - sc.albedo(ts, inputs["surface_albedo"], inputs["land_mask"]))
    emitted = (1 - inputs["greenhouse_factor"] / 2)[:, None, None] * sc.SIGMA * ts**4
    imbalance = area_mean(absorbed - emitted, grid)
    assert np.abs(imbalance).max() < 1e-4  # W m-2, against ~240 W m-2 absorbed


def test_insolation_against_closed_forms_and_quadrature():
    from scipy.integrate import quad

    s0 = np.array([1361.0, 1361.0, 1000.0])
    obliquity = np.array([0.0, 90.0, 23.44])
    lat = np.array([0.0, 30.0, 60.0, 90.0])
    q = sc.annual_insolation(s0, obliquity, lat)
    # No tilt: the Sun stays on the equator, Q = S0 cos(lat) / pi.
    assert np.allclose(q[0], 1361.0 / math.pi * np.cos(np.deg2rad(lat)), rtol=1e-9, atol=1e-9)
    # Obliquity 90: the pole sees the Sun at elevation |L| for half the year, Q = S0 / pi.
    assert q[1, 3] == pytest.approx(1361.0 / math.pi, rel=1e-4)

    # General case: integrate the daily mean over the orbit with adaptive quadrature.
    def daily(lon_orbit, phi, eps):
        delta = math.asin(math.sin(eps) * math.sin(lon_orbit))
        x = (
            -math.tan(phi) * math.tan(delta)
            if abs(phi) < math.pi / 2
            else -math.copysign(math.inf, phi * delta)
        )
        h0 = math.acos(max(-1.0, min(1.0, x)))
        return (
            h0 * math.sin(phi) * math.sin(delta) + math.cos(phi) * math.cos(delta) * math.sin(h0)
        ) / math.pi

    eps = math.radians(23.44)
    for j, la in enumerate(lat):
        ref = 1000.0 * quad(daily, 0, 2 * math.pi, args=(math.radians(la), eps), limit=200)[0]
        assert q[2, j] == pytest.approx(ref / (2 * math.pi), rel=1e-4)


def test_global_mean_insolation_is_a_quarter_of_the_flux():
    grid = sc.Grid(90, 4, 1)  # fine in latitude: cell-centre sampling error ~ (dlat)^2
    q = sc.annual_insolation(np.array([1361.0] * 3), np.array([0.0, 35.0, 70.0]), grid.lat)
    mean = (q * grid.cell_area()[None]).sum(axis=1) / grid.cell_area().sum()
    assert np.allclose(mean, 1361.0 / 4, rtol=2e-4)


def test_spectral_diffusion_solve_equals_a_dense_loop_built_matrix():
    grid = sc.Grid(6, 10, 1)
    rng = np.random.default_rng(0)
    rhs = rng.normal(size=(2, grid.nlat, grid.nlon))
    diag = np.array([3.0, 2.0])
    diffusivity = np.array([0.4, 5.0])
    lam, vec, sqrt_area = sc._zonal_modes(grid)
    fast = sc._solve_linear(rhs, diag, diffusivity, lam, vec, sqrt_area, grid.nlon)

    # The finite-volume equations cell by cell: area * (b T - rhs) + D sum k (T - T_nb) = 0.
    nlat, nlon = grid.nlat, grid.nlon
    edges = np.deg2rad(np.linspace(-90, 90, nlat + 1))
    dlon, dphi = 2 * math.pi / nlon, math.pi / nlat
    cell = lambda j, i: j * nlon + (i % nlon)  # noqa: E731
    k = np.zeros((nlat * nlon, nlat * nlon))
    for j in range(nlat):
        for i in range(nlon):
            links = [(j, i + 1, dphi / (math.cos((edges[j] + edges[j + 1]) / 2) * dlon))]
            if j + 1 < nlat:
                links.append((j + 1, i, math.cos(edges[j + 1]) * dlon / dphi))
            for jj, ii, c in links:
                a, b = cell(j, i), cell(jj, ii)
                k[a, a] += c
                k[b, b] += c
                k[a, b] -= c
                k[b, a] -= c
    area = np.repeat(dlon * (np.sin(edges[1:]) - np.sin(edges[:-1])), nlon)
    for n in range(2):
        matrix = diag[n] * np.diag(area) + diffusivity[n] * k
        dense = np.linalg.solve(matrix, area * rhs[n].ravel())
        assert np.allclose(fast[n].ravel(), dense, rtol=1e-10, atol=1e-10)


def test_land_maps_have_the_sampled_land_fraction():
    grid = sc.Grid(16, 32, 1)
    rng = np.random.default_rng(1)
    fraction = np.array([0.1, 0.3, 0.5])
    land = sc.land_map(rng, grid, fraction)
    assert set(np.unique(land)) <= {0.0, 1.0}
    assert np.allclose(area_mean(land, grid), fraction, atol=0.02)


def test_inputs_stay_in_their_documented_ranges(small):
    for name in ("stellar_flux", "rotation_period", "obliquity", "greenhouse_factor"):
        lo, hi = sc.RANGES[name]
        v = small[name].values
        assert (v >= np.float32(lo)).all() and (v <= np.float32(hi)).all(), name


# -- files -------------------------------------------------------------------------------------

CF_STANDARD_NAMES = {
    "ts": "surface_temperature",
    "ta": "air_temperature",
    "hus": "specific_humidity",
    "land_mask": "land_binary_mask",
    "surface_albedo": "surface_albedo",
    "rsdt": "toa_incoming_shortwave_flux",
    "stellar_flux": "solar_irradiance",
    "plev": "air_pressure",
    "lat": "latitude",
    "lon": "longitude",
}


@pytest.mark.parametrize("fmt", ["netcdf", "zarr"])
def test_written_file_has_cf_metadata_and_round_trips(small, tmp_path, fmt):
    out = sc.write(small, tmp_path / ("cube.nc" if fmt == "netcdf" else "cube.zarr"), fmt)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary left
    opened = xr.open_zarr(out) if fmt == "zarr" else xr.open_dataset(out)
    with opened as ds:
        assert ds.attrs["Conventions"].startswith("CF-")
        for name in [*ds.data_vars, "plev", "lat", "lon"]:
            assert ds[name].attrs.get("units"), name
            assert ds[name].attrs.get("long_name") or ds[name].attrs.get("standard_name"), name
        for name, standard in CF_STANDARD_NAMES.items():
            assert ds[name].attrs["standard_name"] == standard
        assert ds["ta"].dims == ("sample", "plev", "lat", "lon")
        assert ds["plev"].attrs["units"] == "Pa" and ds["plev"].values[0] == 100000.0
        for name in small.data_vars:
            np.testing.assert_array_equal(ds[name].values, small[name].values)


def test_a_failed_write_leaves_nothing_behind(small, tmp_path):
    bad = small.copy()
    bad.attrs["unserialisable"] = {"a": 1}  # netCDF attributes cannot hold a dict
    with pytest.raises(Exception):  # noqa: B017 - whatever the backend raises
        sc.write(bad, tmp_path / "cube.nc")
    assert list(tmp_path.iterdir()) == []


def test_rewriting_a_zarr_store_replaces_it_whole(small, tmp_path):
    out = tmp_path / "cube.zarr"
    sc.write(small.isel(sample=slice(0, 4)), out, "zarr")
    sc.write(small, out, "zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.zarr"]
    with xr.open_zarr(out) as ds:
        assert ds.sizes["sample"] == 16


def test_ensure_default_generates_once_into_the_data_dir(tmp_path, monkeypatch):
    from astrobio_cli import settings

    settings.configure(None, {"data_dir": tmp_path})
    path = sc.ensure_default()
    assert path.parent == tmp_path / "synthetic-climate" and path.name == sc.default_name()
    stamp = path.stat().st_mtime_ns
    assert sc.ensure_default() == path
    assert path.stat().st_mtime_ns == stamp  # not regenerated
    # the dataset and its provenance sidecar, no temporary
    assert sorted(p.name for p in path.parent.iterdir()) == [
        path.name,
        f"{path.name}.provenance.json",
    ]
    with xr.open_dataset(path) as ds:
        assert ds.sizes == {"sample": 320, "plev": 6, "lat": 16, "lon": 32}
        assert ds.attrs["seed"] == 0


# -- the command -------------------------------------------------------------------------------


def test_fetch_command_writes_the_dataset_offline(run_cli, tmp_path):
    data_dir = tmp_path / "data"
    args = ["--samples", "6", "--nlat", "8", "--nlon", "16", "--nlev", "4", "--seed", "7"]
    r = run_cli("--data-dir", str(data_dir), "fetch", "synthetic-climate", *args)
    assert r.returncode == 0, r.stderr
    out = data_dir / "synthetic-climate" / sc.default_name(6, 8, 16, 4, 7)
    side = out.parent / f"{out.name}.provenance.json"
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name, side.name]
    import hashlib
    import json

    rec = json.loads(side.read_text())
    assert rec["seed"] == 7 and rec["options"]["samples"] == 6
    assert rec["output"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert f"written to {out}" in r.stdout
    with xr.open_dataset(out) as ds:
        xr.testing.assert_identical(ds.load(), sc.generate(6, seed=7, **SMALL))

    zarr_out = tmp_path / "elsewhere" / "cube.zarr"
    r = run_cli("fetch", "synthetic-climate", *args, "--format", "zarr", "--out", str(zarr_out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in zarr_out.parent.iterdir()) == [
        "cube.zarr",
        "cube.zarr.provenance.json",
    ]
    with xr.open_zarr(zarr_out) as ds:
        np.testing.assert_array_equal(ds["ta"].values, sc.generate(6, seed=7, **SMALL)["ta"])


def test_fetch_command_unwritable_out_is_one_line(run_cli, tmp_path):
    (tmp_path / "a-file").write_text("x")
    out = tmp_path / "a-file" / "cube.nc"
    r = run_cli(
        "fetch",
        "synthetic-climate",
        "--samples",
        "2",
        "--nlat",
        "4",
        "--nlon",
        "4",
        "--nlev",
        "1",
        "--out",
        str(out),
    )
    assert r.returncode == 1
    assert f"cannot write {out}" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--format", "hdf"], "--format 'hdf' is not known"),
        (["--nlat", "2"], "--nlat"),
        (["--samples", "0"], "--samples"),
    ],
)
def test_fetch_command_rejects_bad_options(run_cli, tmp_path, args, needle):
    r = run_cli("--data-dir", str(tmp_path), "fetch", "synthetic-climate", *args)
    assert r.returncode == 2
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "synthetic-climate").exists()


def test_registered_as_an_offline_source_of_the_builtin_plugin():
    from astrobio_cli.plugins import resolve

    spec = resolve("data-source", "synthetic-climate")
    assert spec.offline is True
    assert spec.command is not None and callable(spec.command())
    source = spec.factory()
    ds = source.generate(2, nlat=4, nlon=4, nlev=1, seed=0)
    assert ds.sizes == {"sample": 2, "plev": 1, "lat": 4, "lon": 4}


def test_ice_albedo_feedback_cools_cold_planets_and_can_be_switched_off():
    grid = sc.Grid(8, 16, 1)
    inputs = controlled(grid, 2, stellar_flux=[1000.0, 2200.0])
    with_ice, _ = sc.solve_surface_temperature(inputs, grid)
    without, _ = sc.solve_surface_temperature(inputs, grid, ice_albedo=False)
    cold = without[0] < sc.ICE_TEMPERATURE  # frozen cells get brighter and colder still
    assert cold.any() and (with_ice[0][cold] < without[0][cold] - 1.0).all()
    # A hot planet with no cell near freezing barely notices the feedback.
    assert without[1].min() > sc.ICE_TEMPERATURE + 25
    assert np.allclose(with_ice[1], without[1], atol=0.05)
    ds = sc.generate(2, nlat=4, nlon=8, nlev=1, seed=0, ice_albedo=False)
    assert ds.attrs["ice_albedo_feedback"] == 0
    assert sc.default_name(ice_albedo=False).endswith("-noice.nc")
