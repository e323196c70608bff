"""`synthetic-climate`: an offline ensemble of planetary climate datacubes from a small physical model.

Each sample is one planet in equilibrium. It is drawn from six inputs and answered with three
outputs on a lat-lon(-pressure) grid, deterministically from a seed, with no network.

Inputs (per sample)
    stellar_flux       S0, W m-2: irradiance at the planet's orbit (Earth: 1361)
    rotation_period    P, day: sets the meridional heat transport (below)
    obliquity          epsilon, degree: sets the annual-mean insolation's latitude profile
    greenhouse_factor  f, 1: long-wave absorptivity of a one-layer grey atmosphere (Earth ~0.77)
    surface_albedo     alpha_s, 1: albedo of ice-free ocean (clouds included); land is brighter
    land_mask          (lat, lon), 1 = land: smooth random continents

Outputs (per sample)
    ts                 (lat, lon) surface temperature, K
    ta                 (plev, lat, lon) air temperature on pressure levels, K
    hus                (plev, lat, lon) specific humidity, kg kg-1 (never negative)
    rsdt               (lat,) annual-mean top-of-atmosphere insolation, W m-2 (a derived forcing)

The model: a 2-D diffusive energy-balance model (North, Cahalan & Coakley 1981) on the sphere,
solved to its annual-mean equilibrium::

    0 = Q(lat) (1 - alpha(T, land)) - (1 - f/2) sigma T^4 + D div(grad T)

- Q: annual-mean daily insolation for a circular orbit, averaged over 360 orbital longitudes
  (declination sin(delta) = sin(epsilon) sin(L)); its global mean is exactly S0/4 for any
  obliquity, and above ~54 degrees obliquity the poles receive more than the equator.
- Outgoing long-wave radiation of a one-layer grey atmosphere, (1 - f/2) sigma T^4 (f = 0: bare
  rock; f = 1: opaque single layer).
- Albedo: alpha_s over ocean, alpha_s + 0.1 over land, and (optional, on by default) a smooth
  ice-albedo feedback towards 0.6 below ~263 K (tanh over 5 K); started from the ice-free
  radiative state, so the warm branch is found when one exists.
- Heat transport: diffusion on the unit sphere with D = 0.4 (P / 1 day)^2 W m-2 K-1, the
  Omega^-2 scaling of Spiegel, Menou & Scharf (2008): fast rotators keep steep equator-to-pole
  gradients, slow rotators are nearly isothermal. Diffusion conserves energy, so at equilibrium
  the global mean absorbed sunlight equals the global mean emission.
- Annual mean equilibrium: heat capacities (land vs. ocean) drop out; land enters through its
  albedo and its drier air.

Numerics: a finite-volume Laplacian on cell-centred lat-lon cells (no flux through the poles).
The operator commutes with longitude shifts, so after an FFT in longitude each zonal wavenumber m
is an independent nlat x nlat symmetric problem, eigen-decomposed once per grid; every iteration
then costs two small batched matrix products for all samples at once. The nonlinear terms
(sigma T^4, ice albedo) are handled by a monotone iteration,
(B + D A^-1 K) T_new = B T + Q (1 - alpha(T)) - OLR(T), with B the largest local d(OLR)/dT,
until every cell changes by less than 1e-6 K.

The atmosphere: surface pressure 1000 hPa everywhere; nlev pressure levels spaced evenly in
log-pressure from 1000 to 200 hPa; air temperature by a constant lapse rate Gamma = 6.5 K km-1
in hydrostatic balance, T(p) = Ts (p / ps)^(R_d Gamma / g); relative humidity after Manabe &
Wetherald (1967), RH(p) = RH_s (p/ps - 0.02) / 0.98 with RH_s = 0.8 over ocean and 0.5 over land;
saturation vapour pressure by the integrated Clausius-Clapeyron relation,
e_s = 611.2 Pa exp(L_v / R_v (1/273.15 K - 1/T)); q = eps e / (p - (1 - eps) e).

Files carry CF-1.10 metadata (units, standard_name, long_name) and no timestamps, so the same
seed and options give the same values (and, for NetCDF, the same bytes).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

GENERATOR_VERSION = 1

# Physical constants (SI)
SIGMA = 5.670374419e-8  # Stefan-Boltzmann, W m-2 K-4
R_DRY = 287.04  # gas constant of dry air, J kg-1 K-1
R_VAPOUR = 461.5  # gas constant of water vapour, J kg-1 K-1
L_VAPOUR = 2.5e6  # latent heat of vaporisation, J kg-1
GRAVITY = 9.81  # m s-2
EPS_WATER = R_DRY / R_VAPOUR  # ratio of molar masses, ~0.622
SOLAR_CONSTANT = 1361.0  # W m-2

# Model parameters
LAPSE_RATE = 6.5e-3  # K m-1
SURFACE_PRESSURE = 100000.0  # Pa
TOP_PRESSURE = 20000.0  # Pa
LAND_ALBEDO_OFFSET = 0.1
ICE_ALBEDO = 0.6
ICE_TEMPERATURE = 263.15  # K, centre of the ice-albedo transition
ICE_WIDTH = 5.0  # K
D_EARTH = 0.4  # W m-2 K-1 on the unit sphere, at a 1-day rotation period
RH_OCEAN = 0.8
RH_LAND = 0.5

# Default ensemble (the dataset `astrobio train cube-unet` uses when given no data)
DEFAULT_SAMPLES = 320
DEFAULT_NLAT = 16
DEFAULT_NLON = 32
DEFAULT_NLEV = 6
DEFAULT_SEED = 0

# Sampling ranges of the inputs
RANGES = {
    "stellar_flux": (0.75 * SOLAR_CONSTANT, 1.25 * SOLAR_CONSTANT),  # uniform, W m-2
    "rotation_period": (0.5, 4.0),  # log-uniform, day
    "obliquity": (0.0, 60.0),  # uniform, degree
    "greenhouse_factor": (0.6, 0.9),  # uniform
    "surface_albedo": (0.2, 0.4),  # uniform
    "land_fraction": (0.1, 0.5),  # uniform; sets the land map
}

INPUT_VARIABLES = (
    "stellar_flux",
    "rotation_period",
    "obliquity",
    "greenhouse_factor",
    "surface_albedo",
    "land_mask",
)
OUTPUT_VARIABLES = ("ts", "ta", "hus")

Format = Literal["netcdf", "zarr"]


# -- the grid ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """Cell-centred lat-lon grid with `nlev` pressure levels (Pa, surface first)."""

    nlat: int
    nlon: int
    nlev: int

    @property
    def lat(self) -> np.ndarray:  # (nlat,) degrees north, south to north
        return -90.0 + (np.arange(self.nlat) + 0.5) * 180.0 / self.nlat

    @property
    def lon(self) -> np.ndarray:  # (nlon,) degrees east
        return (np.arange(self.nlon) + 0.5) * 360.0 / self.nlon

    @property
    def plev(self) -> np.ndarray:  # (nlev,) Pa, decreasing (surface first)
        if self.nlev == 1:
            return np.array([SURFACE_PRESSURE])
        return np.geomspace(SURFACE_PRESSURE, TOP_PRESSURE, self.nlev)

    @property
    def lat_edges(self) -> np.ndarray:  # (nlat + 1,) radians
        return np.deg2rad(np.linspace(-90.0, 90.0, self.nlat + 1))

    def cell_area(self) -> np.ndarray:
        """(nlat,) area of one cell on the unit sphere; sums to 4 pi over the whole grid."""
        e = self.lat_edges
        return (2 * np.pi / self.nlon) * (np.sin(e[1:]) - np.sin(e[:-1]))


def check_grid(nlat: int, nlon: int, nlev: int, samples: int = 1) -> None:
    from astrobio_cli.errors import UsageError

    for name, value, low in (("nlat", nlat, 4), ("nlon", nlon, 4), ("nlev", nlev, 1)):
        if value < low:
            raise UsageError(f"--{name} {value} is too small: use {low} or more")
    if samples < 1:
        raise UsageError(f"--samples {samples} must be at least 1")
    cells = samples * nlev * nlat * nlon
    if cells > 500_000_000:
        raise UsageError(
            f"{samples} samples of {nlev}x{nlat}x{nlon} would need {cells * 8 / 1e9:.0f} GB "
            "in memory; use fewer samples or a coarser grid"
        )


# -- the inputs --------------------------------------------------------------------------------


def sample_inputs(samples: int, grid: Grid, seed: int) -> dict[str, np.ndarray]:
    """Draw every sample's inputs from `seed` (NumPy PCG64): scalars (N,), land_mask (N, lat, lon)."""
    rng = np.random.default_rng(seed)
    lo, hi = RANGES["stellar_flux"]
    stellar_flux = rng.uniform(lo, hi, samples)
    lo, hi = RANGES["rotation_period"]
    rotation_period = np.exp(rng.uniform(np.log(lo), np.log(hi), samples))
    obliquity = rng.uniform(*RANGES["obliquity"], samples)
    greenhouse_factor = rng.uniform(*RANGES["greenhouse_factor"], samples)
    surface_albedo = rng.uniform(*RANGES["surface_albedo"], samples)
    land_fraction = rng.uniform(*RANGES["land_fraction"], samples)
    land_mask = land_map(rng, grid, land_fraction)
    return {
        "stellar_flux": stellar_flux,
        "rotation_period": rotation_period,
        "obliquity": obliquity,
        "greenhouse_factor": greenhouse_factor,
        "surface_albedo": surface_albedo,
        "land_mask": land_mask,
    }


def land_map(rng: np.random.Generator, grid: Grid, land_fraction: np.ndarray) -> np.ndarray:
    """(N, lat, lon) 0/1 continents: smooth random fields cut at each sample's land fraction.

    The field is a sum of a few low-order waves on the sphere in Cartesian coordinates
    (continuous across the date line and the poles), so continents are blobs, not noise.
    """
    n = land_fraction.shape[0]
    lat = np.deg2rad(grid.lat)[:, None]
    lon = np.deg2rad(grid.lon)[None, :]
    xyz = np.stack(  # (3, lat, lon) unit vectors of the cell centres
        np.broadcast_arrays(np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat))
    )
    waves = 6
    k = rng.normal(0.0, 2.5, (n, waves, 3))  # wave vectors: a few cycles around the globe
    phase = rng.uniform(0.0, 2 * np.pi, (n, waves))
    amp = rng.uniform(0.5, 1.0, (n, waves))
    arg = np.einsum("nwc,cij->nwij", k, xyz) + phase[:, :, None, None]
    field = np.einsum("nw,nwij->nij", amp, np.cos(arg))  # (N, lat, lon)
    # Cut each field at its area-weighted (1 - land_fraction) quantile.
    weights = np.broadcast_to(grid.cell_area()[:, None], field.shape[1:]).ravel()
    flat = field.reshape(n, -1)
    order = np.argsort(flat, axis=1)
    cum = np.cumsum(weights[order], axis=1) / weights.sum()
    cut_idx = (cum < 1.0 - land_fraction[:, None]).sum(axis=1).clip(0, flat.shape[1] - 1)
    threshold = np.take_along_axis(flat, order, axis=1)[np.arange(n), cut_idx]
    return (field > threshold[:, None, None]).astype(np.float64)


def annual_insolation(stellar_flux: np.ndarray, obliquity_deg: np.ndarray, lat_deg: np.ndarray):
    """(N, lat) annual-mean daily insolation (W m-2) for a circular orbit.

    Daily mean: Q = S0/pi (h0 sin(phi) sin(delta) + cos(phi) cos(delta) sin(h0)), with the
    sunset hour angle cos(h0) = -tan(phi) tan(delta); averaged over 360 orbital longitudes.
    """
    orbit = (np.arange(360) + 0.5) * 2 * np.pi / 360  # (L,)
    eps = np.deg2rad(obliquity_deg)[:, None, None]  # (N, 1, 1)
    phi = np.deg2rad(lat_deg)[None, :, None]  # (1, lat, 1)
    delta = np.arcsin(np.sin(eps) * np.sin(orbit))  # (N, 1, L)
    cos_h0 = np.clip(-np.tan(phi) * np.tan(delta), -1.0, 1.0)
    h0 = np.arccos(cos_h0)
    daily = (h0 * np.sin(phi) * np.sin(delta) + np.cos(phi) * np.cos(delta) * np.sin(h0)) / np.pi
    return stellar_flux[:, None] * daily.mean(axis=2)


# -- the energy-balance solver -----------------------------------------------------------------


def _zonal_modes(grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per zonal wavenumber m, the eigen-decomposition of A^-1/2 K_m A^-1/2.

    K is the finite-volume Laplacian's conductance matrix on the unit sphere (D = 1): meridional
    links cos(phi_edge) dlon / dphi, zonal links dphi / (cos(phi) dlon); A the cell areas.
    Returns (lam (M, lat), vec (M, lat, lat), sqrt_area (lat,)), M = nlon // 2 + 1.
    """
    nlat, nlon = grid.nlat, grid.nlon
    dlon = 2 * np.pi / nlon
    dphi = np.pi / nlat
    edges = grid.lat_edges
    k_merid = np.cos(edges[1:-1]) * dlon / dphi  # (nlat - 1,) between rows j and j+1
    k_zonal = dphi / (np.cos(np.deg2rad(grid.lat)) * dlon)  # (nlat,)
    k_base = np.zeros((nlat, nlat))
    idx = np.arange(nlat - 1)
    k_base[idx, idx] += k_merid
    k_base[idx + 1, idx + 1] += k_merid
    k_base[idx, idx + 1] -= k_merid
    k_base[idx + 1, idx] -= k_merid
    m = np.arange(nlon // 2 + 1)
    zonal_eig = 2.0 * (1.0 - np.cos(2 * np.pi * m / nlon))  # (M,) of the periodic 1-D stencil
    k_m = k_base[None] + np.einsum("m,j,jk->mjk", zonal_eig, k_zonal, np.eye(nlat))
    sqrt_area = np.sqrt(grid.cell_area())
    s_m = k_m / sqrt_area[None, :, None] / sqrt_area[None, None, :]
    lam, vec = np.linalg.eigh(s_m)
    return np.clip(lam, 0.0, None), vec, sqrt_area


def albedo(
    temperature: np.ndarray, surface_albedo: np.ndarray, land: np.ndarray, ice: bool = True
) -> np.ndarray:
    """(N, lat, lon) albedo: ocean alpha_s, land alpha_s + 0.1, smoothly to 0.6 when frozen."""
    ice_free = surface_albedo[:, None, None] + LAND_ALBEDO_OFFSET * land
    if not ice:
        return ice_free
    frozen = 0.5 * (1.0 - np.tanh((temperature - ICE_TEMPERATURE) / ICE_WIDTH))
    return ice_free + (ICE_ALBEDO - ice_free) * frozen


def solve_surface_temperature(
    inputs: dict[str, np.ndarray],
    grid: Grid,
    *,
    ice_albedo: bool = True,
    tol: float = 1e-6,
    max_iter: int = 2000,
) -> tuple[np.ndarray, np.ndarray]:
    """Equilibrium surface temperature (N, lat, lon) in K, and the insolation (N, lat).

    ice_albedo=False switches the ice-albedo feedback off (albedo independent of temperature).
    """
    q = annual_insolation(inputs["stellar_flux"], inputs["obliquity"], grid.lat)  # (N, lat)
    emissivity = (1.0 - inputs["greenhouse_factor"] / 2.0)[:, None, None]  # (N, 1, 1)
    diffusivity = D_EARTH * inputs["rotation_period"] ** 2  # (N,)
    land = inputs["land_mask"]
    alpha_s = inputs["surface_albedo"]
    lam, vec, sqrt_area = _zonal_modes(grid)
    q3 = q[:, :, None]

    # Ice-free radiative equilibrium as the warm start.
    ice_free = alpha_s[:, None, None] + LAND_ALBEDO_OFFSET * land
    t = np.maximum(q3 * (1 - ice_free) / (emissivity * SIGMA), 150.0**4) ** 0.25

    # Each step solves (B + D A^-1 K) T_new = B T + net(T), B >= the local slope of the
    # emission. The right side is then increasing in T and (B + D A^-1 K)^-1 has non-negative
    # entries, so the step is order-preserving: from the warm start it descends monotonically
    # to the warmest equilibrium, with no oscillation between ice-free and ice-covered branches.
    # Converged samples leave the active set; slow ones are those near an ice-albedo tipping point.
    active = np.arange(t.shape[0])
    for _ in range(max_iter):
        ta, em = t[active], emissivity[active]
        b = 4 * em[:, 0, 0] * SIGMA * ta.max(axis=(1, 2)) ** 3  # (n,) >= local d(OLR)/dT
        alpha = albedo(ta, alpha_s[active], land[active], ice_albedo)
        net = q3[active] * (1 - alpha) - em * SIGMA * ta**4
        rhs = b[:, None, None] * ta + net
        t_new = _solve_linear(rhs, b, diffusivity[active], lam, vec, sqrt_area, grid.nlon)
        change = np.abs(t_new - ta).max(axis=(1, 2))
        t[active] = t_new
        active = active[change >= tol]
        if active.size == 0:
            break
    else:
        import warnings

        warnings.warn(
            f"synthetic-climate: {active.size} sample(s) not converged to {tol} K after "
            f"{max_iter} iterations",
            RuntimeWarning,
            stacklevel=2,
        )
    return t, q


def _solve_linear(rhs, diag, diffusivity, lam, vec, sqrt_area, nlon):
    """Solve (diag_n I + D_n A^-1 K) T = rhs for every sample n; rhs (N, lat, lon)."""
    f = np.fft.rfft(rhs * sqrt_area[None, :, None], axis=2)  # (N, lat, M) in A^1/2 units
    g = np.einsum("mjk,njm->nkm", vec, f)  # into each mode's eigenbasis
    g /= diag[:, None, None] + diffusivity[:, None, None] * lam.T[None]
    f = np.einsum("mjk,nkm->njm", vec, g)
    return np.fft.irfft(f, n=nlon, axis=2) / sqrt_area[None, :, None]


# -- the atmosphere ----------------------------------------------------------------------------


def saturation_vapour_pressure(t: np.ndarray) -> np.ndarray:
    """Pa, over liquid water, integrated Clausius-Clapeyron with constant L_v."""
    return 611.2 * np.exp(L_VAPOUR / R_VAPOUR * (1.0 / 273.15 - 1.0 / t))


def atmosphere(ts: np.ndarray, land: np.ndarray, plev: np.ndarray):
    """Air temperature and specific humidity (N, lev, lat, lon) from surface temperature."""
    ratio = plev / SURFACE_PRESSURE  # (lev,)
    ta = ts[:, None] * (ratio ** (R_DRY * LAPSE_RATE / GRAVITY))[None, :, None, None]
    rh_surface = RH_OCEAN + (RH_LAND - RH_OCEAN) * land  # (N, lat, lon)
    rh = rh_surface[:, None] * ((ratio - 0.02) / 0.98)[None, :, None, None]
    e = np.minimum(rh * saturation_vapour_pressure(ta), 0.5 * plev[None, :, None, None])
    hus = EPS_WATER * e / (plev[None, :, None, None] - (1 - EPS_WATER) * e)
    return ta, hus


# -- the dataset -------------------------------------------------------------------------------


VARIABLE_ATTRS: dict[str, dict[str, str]] = {
    "stellar_flux": {
        "standard_name": "solar_irradiance",
        "long_name": "stellar irradiance at the planet's orbit",
        "units": "W m-2",
    },
    "rotation_period": {"long_name": "planetary rotation period", "units": "day"},
    "obliquity": {"long_name": "obliquity (axial tilt)", "units": "degree"},
    "greenhouse_factor": {
        "long_name": "long-wave absorptivity of a one-layer grey atmosphere",
        "units": "1",
    },
    "surface_albedo": {
        "standard_name": "surface_albedo",
        "long_name": "albedo of ice-free ocean (land is 0.1 brighter)",
        "units": "1",
    },
    "land_mask": {
        "standard_name": "land_binary_mask",
        "long_name": "land (1) or ocean (0)",
        "units": "1",
    },
    "rsdt": {
        "standard_name": "toa_incoming_shortwave_flux",
        "long_name": "annual-mean top-of-atmosphere insolation",
        "units": "W m-2",
    },
    "ts": {
        "standard_name": "surface_temperature",
        "long_name": "surface temperature",
        "units": "K",
    },
    "ta": {"standard_name": "air_temperature", "long_name": "air temperature", "units": "K"},
    "hus": {
        "standard_name": "specific_humidity",
        "long_name": "specific humidity",
        "units": "kg kg-1",
    },
}


def generate(
    samples: int = DEFAULT_SAMPLES,
    *,
    nlat: int = DEFAULT_NLAT,
    nlon: int = DEFAULT_NLON,
    nlev: int = DEFAULT_NLEV,
    seed: int = DEFAULT_SEED,
    ice_albedo: bool = True,
) -> Any:
    """Generate the ensemble in memory; returns an `xarray.Dataset` (float32 data variables).

    Dimensions: sample, plev (Pa, surface first), lat (south to north), lon.
    Inputs: stellar_flux, rotation_period, obliquity, greenhouse_factor, surface_albedo (sample,),
    land_mask (sample, lat, lon). Outputs: ts (sample, lat, lon), ta and hus
    (sample, plev, lat, lon), plus the derived forcing rsdt (sample, lat).
    """
    import xarray as xr

    check_grid(nlat, nlon, nlev, samples)
    grid = Grid(nlat, nlon, nlev)
    inputs = sample_inputs(samples, grid, seed)
    ts, rsdt = solve_surface_temperature(inputs, grid, ice_albedo=ice_albedo)
    ta, hus = atmosphere(ts, inputs["land_mask"], grid.plev)

    dims = {
        "stellar_flux": ("sample",),
        "rotation_period": ("sample",),
        "obliquity": ("sample",),
        "greenhouse_factor": ("sample",),
        "surface_albedo": ("sample",),
        "land_mask": ("sample", "lat", "lon"),
        "rsdt": ("sample", "lat"),
        "ts": ("sample", "lat", "lon"),
        "ta": ("sample", "plev", "lat", "lon"),
        "hus": ("sample", "plev", "lat", "lon"),
    }
    values = {**inputs, "rsdt": rsdt, "ts": ts, "ta": ta, "hus": hus}
    data_vars = {
        name: (dims[name], values[name].astype(np.float32), VARIABLE_ATTRS[name]) for name in dims
    }
    coords = {
        "sample": ("sample", np.arange(samples, dtype=np.int32), {"long_name": "ensemble member"}),
        "plev": (
            "plev",
            grid.plev,
            {"standard_name": "air_pressure", "units": "Pa", "positive": "down", "axis": "Z"},
        ),
        "lat": (
            "lat",
            grid.lat,
            {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"},
        ),
        "lon": (
            "lon",
            grid.lon,
            {"standard_name": "longitude", "units": "degrees_east", "axis": "X"},
        ),
    }
    attrs = {
        "Conventions": "CF-1.10",
        "title": "astrobio synthetic-climate ensemble",
        "source": f"astrobio synthetic-climate generator v{GENERATOR_VERSION}: 2-D diffusive "
        "energy-balance model, grey atmosphere, ice-albedo feedback, lapse-rate air temperature, "
        "Clausius-Clapeyron humidity",
        "seed": seed,
        "ice_albedo_feedback": int(ice_albedo),
        "generator_version": GENERATOR_VERSION,
        "input_variables": " ".join(INPUT_VARIABLES),
        "output_variables": " ".join(OUTPUT_VARIABLES),
    }
    return xr.Dataset(data_vars, coords, attrs)


def default_name(
    samples: int = DEFAULT_SAMPLES,
    nlat: int = DEFAULT_NLAT,
    nlon: int = DEFAULT_NLON,
    nlev: int = DEFAULT_NLEV,
    seed: int = DEFAULT_SEED,
    fmt: Format = "netcdf",
    ice_albedo: bool = True,
) -> str:
    """The file name `fetch` uses when no --out is given, e.g. `v1-n320-6x16x32-seed0.nc`."""
    suffix = ".zarr" if fmt == "zarr" else ".nc"
    ice = "" if ice_albedo else "-noice"
    return f"v{GENERATOR_VERSION}-n{samples}-{nlev}x{nlat}x{nlon}-seed{seed}{ice}{suffix}"


def write(ds: Any, out: Path, fmt: Format = "netcdf") -> Path:
    """Write `ds` to `out` atomically: a temporary name beside it, then a rename.

    A file-system error (no permission, a file where a directory should be, disk full) is a
    UserError naming the path; nothing is left behind.
    """
    from astrobio_cli.errors import UserError

    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _write(ds, out, tmp, fmt)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UserError(
            f"cannot write {out}: {reason}; choose another --out or --data-dir"
        ) from None
    return out


def write_sidecar(path: Path, *, seed: int, options: dict[str, Any]) -> Path:
    """`<path>.provenance.json`: the generator, its version, seed and options and the output's
    sha256 (a fingerprint for a Zarr directory), so a model trained on it names its data."""
    import datetime as dt

    from astrobio_cli import __version__
    from astrobio_cli.data.lineage import file_sha256, store_fingerprint
    from astrobio_cli.net.provenance import write_sidecar as write_json

    path = Path(path)
    digest = store_fingerprint(path) if path.is_dir() else file_sha256(path)
    rec = {
        "source": "synthetic-climate",
        "generator": f"astrobio_data_sources.synthetic_climate v{GENERATOR_VERSION}",
        "seed": seed,
        "options": options,
        "output": {"path": str(path), "sha256": digest},
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "astrobio_version": __version__,
    }
    return write_json(path, rec)


def _write(ds: Any, out: Path, tmp: Path, fmt: str) -> None:
    try:
        # Chunks along `sample` so a reader of one sample (CubeDataset) decompresses little:
        # NetCDF one sample per chunk, Zarr 8 (fewer, larger files).
        if fmt == "netcdf":
            encoding = {
                name: {"zlib": True, "complevel": 1, "chunksizes": _chunks(ds[name], 1)}
                for name in ds.data_vars
            }
            ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding)
            os.replace(tmp, out)
        elif fmt == "zarr":
            # Zarr format 2 with consolidated metadata: readable by zarr 2 and 3 and by
            # `xarray.open_zarr` without warnings (v3 has no consolidated metadata yet).
            encoding = {name: {"chunks": _chunks(ds[name], 8)} for name in ds.data_vars}
            ds.to_zarr(tmp, mode="w", zarr_format=2, consolidated=True, encoding=encoding)
            _replace_dir(tmp, out)
        else:
            from astrobio_cli.errors import UsageError

            raise UsageError(f"unknown format {fmt!r}: use 'netcdf' or 'zarr'")
    finally:
        if tmp.exists():
            _remove(tmp)


def _chunks(da: Any, per_sample: int) -> tuple[int, ...]:
    """Chunk shape: `per_sample` samples of the full grid; whole array when it has no grid."""
    if da.dims == ("sample",):
        return (da.shape[0],)
    return tuple(
        min(per_sample, n) if d == "sample" else n for d, n in zip(da.dims, da.shape, strict=True)
    )


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move directory `tmp` to `out`; an existing `out` is moved aside first, then removed."""
    if not out.exists():
        os.replace(tmp, out)
        return
    trash = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(out, trash)
    os.replace(tmp, out)
    _remove(trash)


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def ensure_default(data_dir: Path | str | None = None) -> Path:
    """The default dataset's path, generated once (atomically) under `data_dir`.

    `data_dir` defaults to the `data_dir` setting; the file is
    `<data_dir>/synthetic-climate/v1-n320-6x16x32-seed0.nc`. Concurrent callers (e.g. every rank
    of a distributed run) may each generate it; each writes its own temporary file and the
    renames are atomic, so readers never see a partial file.
    """
    if data_dir is None:
        from astrobio_cli.settings import get_settings

        data_dir = get_settings().data_dir
    path = Path(data_dir) / "synthetic-climate" / default_name()
    if not path.exists():
        write(generate(), path)
        options = {"samples": DEFAULT_SAMPLES, "nlat": DEFAULT_NLAT, "nlon": DEFAULT_NLON,
                   "nlev": DEFAULT_NLEV, "ice_albedo": True, "format": "netcdf"}  # fmt: skip
        write_sidecar(path, seed=DEFAULT_SEED, options=options)
    return path


class SyntheticClimate:
    """The source object a DataSourceSpec's factory returns."""

    name = "synthetic-climate"
    generate = staticmethod(generate)
    write = staticmethod(write)
    ensure_default = staticmethod(ensure_default)


def summary(ds: Any) -> dict[str, Any]:
    """A few numbers describing a generated dataset (for the CLI's summary)."""
    ts = ds["ts"].values
    return {
        "samples": int(ds.sizes["sample"]),
        "grid": f"{ds.sizes['plev']} levels x {ds.sizes['lat']} lat x {ds.sizes['lon']} lon",
        "ts_range": (float(ts.min()), float(ts.max())),
        "ts_mean": float(ts.mean()),
        "hus_max": float(ds["hus"].values.max()),
    }
