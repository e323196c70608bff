"""Serving cube-unet: the adapter `astrobio serve cube-unet` uses (`CubeUNetPlugin.serve_adapter`),
and the held-out predictions `astrobio eval --predictions` writes in the same shape.

The serving contract (input_model, predict, describe) is documented in `astrobio_cli.serve`.

A model trained on the tiles of a patched store (`astrobio preprocess --patch`) predicts whole
planets: the request's fields on the store's grid are normalised with the checkpoint's stats,
cut into the same tiles by the same kernel as preprocess (`astrobio_cli.data.climate.cut_tiles`),
predicted tile by tile and stitched back (`stitch_tiles`: the mean where tiles overlap; cells no
tile covers, e.g. the last latitude rows when the tiles do not reach them, are null).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def planet_output(phys: np.ndarray, area: np.ndarray) -> dict[str, Any]:
    """The served answer for one planet from its (2, Z, Y, X) physical prediction (ta in K,
    hus in kg/kg; NaN where no tile covers a cell) and the (Y,) area weights of its rows."""
    ts = phys[0, 0]  # (Y, X): the surface level
    covered = np.isfinite(ts)
    w = np.broadcast_to(np.asarray(area, dtype=np.float64)[:, None] / ts.shape[1], ts.shape)
    cover = float(w[covered].sum())
    ts_mean = float((np.where(covered, ts, 0.0) * w).sum() / cover) if cover > 0 else None
    return {
        "ts_mean": ts_mean,
        "coverage": cover,
        "ta": _listed(np.round(phys[0], 4)),
        "hus": _listed(phys[1]),
    }


def _listed(a: np.ndarray) -> list:
    """Nested lists of floats, None for NaN (JSON has no NaN)."""
    if np.isfinite(a).all():
        return a.tolist()
    return np.where(np.isfinite(a), a, None).tolist()


class CubeGrid:
    """The grid a model's planets live on and how its items tile it (from what the checkpoint's
    data provenance and the data layer carry; no training data is read)."""

    def __init__(self, datasets: Any) -> None:
        from astrobio_models.cube_data import area_weights

        ctx, prov = datasets.context, datasets.provenance
        self.tiled = bool(ctx["tiled"])
        self.plev = ctx["plev"].numpy()
        self.patch = prov.get("patch")
        if self.tiled:
            self.lat = np.asarray(prov["grid"]["full_lat"], dtype=np.float64)
            self.lon = np.asarray(prov["grid"]["full_lon"], dtype=np.float64)
        else:
            self.lat = ctx["lat"].numpy()
            nlon = int(prov["grid"]["item_shape"][1])
            self.lon = np.arange(nlon) * 360.0 / nlon
        self.shape = (self.lat.size, self.lon.size)
        self.area = area_weights(self.lat)

    def stitch(self, tiles: np.ndarray, origins: np.ndarray) -> np.ndarray:
        from astrobio_cli.data.climate import stitch_tiles

        return stitch_tiles(tiles, origins, self.shape)[0]


class CubeUNetAdapter:
    """Planet parameters in, the predicted climate (air temperature and humidity) out.

    An instance is what `synthetic-climate` samples for one planet: stellar_flux, rotation_period,
    obliquity, greenhouse_factor, surface_albedo, an optional land mask (lat x lon land fraction
    on the model's grid, default all ocean) and optional annual-mean insolation per latitude row
    (default: computed from stellar_flux and obliquity at the grid's latitudes). Inputs are
    normalised with the statistics the data layer carries (the training split's; `stats.json`
    of a preprocessed store) and turned into channels by the same transform as in training
    (`astrobio_models.cube_data.UNetItem`); no training data is read.
    """

    def __init__(self, plugin: Any, model: Any, datasets: Any) -> None:
        from pydantic import BaseModel, ConfigDict, Field, field_validator

        from astrobio_models import cube_unet as cu
        from astrobio_models.cube_data import UNetItem

        self.cu, self.model = cu, model
        ctx = datasets.context
        self.ctx, self.stats = ctx, ctx["stats"]
        self.g = CubeGrid(datasets)
        self.transform = UNetItem(self.stats, self.g.plev)
        nlat, nlon = self.g.shape

        class CubeUNetInput(BaseModel):
            # strict: "23.4" and true are not numbers (an integer is a fine float); NaN and
            # Infinity (and 1e400) are rejected as not finite
            model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
            stellar_flux: float = Field(gt=0, le=1e5, description="W m-2 at the orbit (Earth 1361)")
            rotation_period: float = Field(gt=0, le=1e4, description="day")
            obliquity: float = Field(ge=0, le=90, description="degree")
            greenhouse_factor: float = Field(ge=0, le=1, description="grey long-wave absorptivity")
            surface_albedo: float = Field(ge=0, lt=1, description="ice-free ocean albedo")
            land_mask: list[list[float]] | None = Field(
                None, description=f"{nlat} x {nlon} land fraction 0..1; default: all ocean"
            )
            rsdt: list[float] | None = Field(
                None,
                description=f"{nlat} annual-mean insolation values (W m-2), one per latitude "
                "row; default: computed from stellar_flux and obliquity",
            )

            @field_validator("land_mask")
            @classmethod
            def _grid(cls, v):
                if v is None:
                    return v
                if len(v) != nlat or any(len(row) != nlon for row in v):
                    raise ValueError(f"must be {nlat} rows (lat) of {nlon} values (lon)")
                if any(not 0.0 <= x <= 1.0 for row in v for x in row):
                    raise ValueError("values must be land fractions from 0 (ocean) to 1 (land)")
                return v

            @field_validator("rsdt")
            @classmethod
            def _rows(cls, v):
                if v is None:
                    return v
                if len(v) != nlat:
                    raise ValueError(f"must be {nlat} values, one per latitude row")
                if any(not (0.0 <= x <= 1e5) for x in v):
                    raise ValueError("values must be W m-2 from 0 to 1e5")
                return v

        self.input_model = CubeUNetInput

    def describe(self) -> dict[str, Any]:
        out = {
            "outputs": {
                "ta": "air temperature, K, (plev, lat, lon)",
                "hus": "specific humidity, kg kg-1, (plev, lat, lon)",
                "ts_mean": "area-weighted mean surface temperature over the covered cells, K",
                "coverage": "area fraction of the planet the prediction covers",
            },
            "grid": {
                "plev_pa": self.g.plev.tolist(),
                "lat": self.g.lat.tolist(),
                "lon": self.g.lon.tolist(),
            },
            "training_ranges": "see `astrobio fetch synthetic-climate --help`",
        }
        if self.g.tiled:
            out["tiles"] = self.g.patch
        return out

    def predict(self, items: list[Any]) -> list[dict[str, Any]]:
        """One forward pass for every planet of `items` (and every tile of each), then each
        planet's tiles stitched."""
        from astrobio_data_sources.synthetic_climate import annual_insolation

        planets = []
        for it in items:
            scalars = {n: float(getattr(it, n)) for n in self.cu.SCALARS}
            land = (
                np.zeros(self.g.shape)
                if it.land_mask is None
                else np.asarray(it.land_mask, dtype=np.float64)
            )
            rsdt = (
                annual_insolation(
                    np.array([scalars["stellar_flux"]]),
                    np.array([scalars["obliquity"]]),
                    self.g.lat,
                )[0]
                if it.rsdt is None
                else np.asarray(it.rsdt, dtype=np.float64)
            )
            norm = {n: self._normalise(n, v) for n, v in scalars.items()}
            norm["land_mask"] = self._normalise("land_mask", land)
            norm["rsdt"] = self._normalise("rsdt", rsdt)
            planets.append(self._items(norm))
        flat = [x for planet_items, _ in planets for x in planet_items]
        phys = forward(self, flat, whole=not self.g.tiled)
        out, start = [], 0
        for planet_items, origins in planets:
            part = phys[start : start + len(planet_items)]
            start += len(planet_items)
            field = part[0] if origins is None else self.g.stitch(part, origins)
            out.append(planet_output(field, self.g.area))
        return out

    def _items(self, norm: dict[str, np.ndarray]) -> tuple[list[dict[str, Any]], Any]:
        """One planet's normalised fields as the model's items: the whole planet, or its tiles
        (cut as preprocess cuts them) and their origins."""
        from astrobio_cli.data.climate import cut_tiles, tile_lats

        if not self.g.tiled:
            return [{**norm, "lat": self.g.lat}], None
        land, origins = cut_tiles(norm["land_mask"], self.g.patch)
        wide = np.broadcast_to(norm["rsdt"][:, None], self.g.shape)
        rsdt = cut_tiles(wide, self.g.patch)[0][:, :, 0]  # (tiles, plat)
        lats = tile_lats(self.g.lat, origins[:, 0], land.shape[1])
        scal = {n: norm[n] for n in self.cu.SCALARS}
        items = [
            {**scal, "land_mask": land[t], "rsdt": rsdt[t], "lat": lats[t]}
            for t in range(len(land))
        ]
        return items, origins

    def _normalise(self, name: str, value: Any) -> np.ndarray:
        """Physical -> normalised like the data layer: float32 values, the Rust kernel."""
        from astrobio_cli import datacube as dc

        v = np.asarray(value, dtype=np.float32)
        return dc.normalize(v.reshape(1, -1), self.stats.select([name])).reshape(v.shape)


def forward(owner: Any, items: list[dict[str, Any]], *, whole: bool) -> np.ndarray:
    """The model on items (normalised NumPy fields of whole planets or of tiles), in one batch:
    (items, 2, Z, y, x) physical. `owner` has `model`, `transform`, `ctx`, `cu` and `g`."""
    import torch

    z = len(owner.g.plev)
    batch = []
    for it in items:
        shape = (z, *np.shape(it["land_mask"]))
        zeros = torch.zeros(shape)  # targets: unused here
        item = {
            k: torch.from_numpy(np.require(v, dtype=np.float32, requirements="C"))
            for k, v in it.items()
            if k != "lat"
        }
        item.update(ta=zeros, hus=zeros, lat=it["lat"], whole=whole, index=-1)
        batch.append(owner.transform(item)["x"])
    device = next(owner.model.parameters()).device
    with torch.no_grad():
        y = owner.model(torch.stack(batch).to(device)).float().cpu()
    return owner.cu.unscale(y, owner.ctx).double().numpy()


def predict_planet(owner: Any, items: list[dict[str, Any]], origins) -> np.ndarray:
    """One planet's (2, Z, Y, X) physical prediction from its items: the whole planet, or its
    tiles at `origins`, stitched."""
    phys = forward(owner, items, whole=origins is None)
    return phys[0] if origins is None else owner.g.stitch(phys, origins)


class HeldOut:
    """`CubeUNetPlugin.held_out_predictions`: held-out samples as the model sees them in `eval`
    (the data layer's items, normalised), each with the request body that serves it."""

    def __init__(self, plugin: Any, model: Any, datasets: Any) -> None:
        from astrobio_models import cube_unet as cu
        from astrobio_models.cube_data import UNetItem

        self.cu, self.model, self.ctx = cu, model, datasets.context
        self.cube = datasets.context["reader"]
        self.g = CubeGrid(datasets)
        self.transform = UNetItem(self.cube.stats, self.g.plev)

    def records(self, limit: int | None) -> list[dict[str, Any]]:
        from astrobio_cli.data.climate import denormalize

        cube, out = self.cube, []
        samples = list(cube.splits.val)[: limit if limit is not None else None]
        names = (*self.cu.SCALARS, "land_mask", "rsdt")
        for s in samples:
            rows = cube.sample_items(s)
            reads = [cube.read(int(i), names) for i in rows]
            items = [{**{n: r[n] for n in names}, "lat": r["lat"]} for r in reads]
            origins = cube.origins[rows] if cube.tiled else None
            phys = predict_planet(self, items, origins)
            land = self._field([r["land_mask"] for r in reads], origins)
            zonal = [np.broadcast_to(r["rsdt"][:, None], np.shape(r["land_mask"])) for r in reads]
            rsdt = self._field(zonal, origins)[:, 0]
            st = cube.stats
            body: dict[str, Any] = {
                n: float(denormalize(n, np.float64(reads[0][n]), st)) for n in self.cu.SCALARS
            }
            land = np.where(np.isfinite(land), denormalize("land_mask", land, st), 0.0)
            body["land_mask"] = np.clip(land, 0.0, 1.0).tolist()
            rsdt = denormalize("rsdt", rsdt, st)
            if not np.isfinite(rsdt).all():  # rows no tile covers: they reach no prediction
                from astrobio_data_sources.synthetic_climate import annual_insolation

                formula = annual_insolation(
                    np.array([body["stellar_flux"]]), np.array([body["obliquity"]]), self.g.lat
                )[0]
                rsdt = np.where(np.isfinite(rsdt), rsdt, formula)
            body["rsdt"] = np.maximum(rsdt, 0.0).tolist()
            out.append(
                {"sample": int(s), "input": body, "prediction": planet_output(phys, self.g.area)}
            )
        return out

    def _field(self, parts: list[np.ndarray], origins) -> np.ndarray:
        """A (Y, X) field of one sample from its items (stitched tiles, or the one item)."""
        if origins is None:
            return np.asarray(parts[0], dtype=np.float64)
        return self.g.stitch(np.stack(parts), origins)
