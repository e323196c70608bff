"""Serving cube-unet: the adapter `astrobio serve cube-unet` uses (`CubeUNetPlugin.serve_adapter`).

The serving contract (input_model, predict, describe) is documented in `astrobio_cli.serve`.
"""

from __future__ import annotations

from typing import Any


class CubeUNetAdapter:
    """Planet parameters in, the predicted climate (air temperature and humidity) out.

    An instance is what `synthetic-climate` samples for one planet: stellar_flux, rotation_period,
    obliquity, greenhouse_factor, surface_albedo and an optional land mask (lat x lon of 0/1,
    default all ocean). Inputs are normalised with the statistics the data layer carries (the
    training split's; `stats.json` of a preprocessed store) and turned into channels by the same
    transform as in training (`astrobio_models.cube_data.UNetItem`); no training data is read.
    """

    def __init__(self, plugin: Any, model: Any, datasets: Any) -> None:
        import numpy as np
        from pydantic import BaseModel, ConfigDict, Field, field_validator

        from astrobio_models import cube_unet as cu
        from astrobio_models.cube_data import UNetItem

        self.cu, self.model = cu, model
        # What the data layer carries (stats of the training split, grid): no second read of
        # the training data. The same transform as training turns an instance into channels.
        ctx = datasets.context
        self.ctx, self.stats = ctx, ctx["stats"]
        self.lat, self.plev = ctx["lat"].numpy(), ctx["plev"].numpy()
        self.transform = UNetItem(self.stats, self.plev)
        self.whole = not ctx["tiled"]
        nlat, nlon = (int(n) for n in datasets.provenance["grid"]["item_shape"])
        self.nlat, self.nlon = nlat, nlon
        lon = np.arange(nlon) * 360.0 / nlon
        self.grid = {"plev_pa": self.plev.tolist(), "lat": self.lat.tolist(), "lon": lon.tolist()}

        class CubeUNetInput(BaseModel):
            model_config = ConfigDict(extra="forbid")
            stellar_flux: float = Field(gt=0, le=1e5, description="W m-2 at the orbit (Earth 1361)")
            rotation_period: float = Field(gt=0, le=1e4, description="day")
            obliquity: float = Field(ge=0, le=90, description="degree")
            greenhouse_factor: float = Field(ge=0, le=1, description="grey long-wave absorptivity")
            surface_albedo: float = Field(ge=0, lt=1, description="ice-free ocean albedo")
            land_mask: list[list[float]] | None = Field(
                None, description=f"{nlat} x {nlon} of 0 (ocean) or 1 (land); default: all ocean"
            )

            @field_validator("land_mask")
            @classmethod
            def _grid(cls, v):
                if v is None:
                    return v
                if len(v) != nlat or any(len(row) != nlon for row in v):
                    raise ValueError(f"must be {nlat} rows (lat) of {nlon} values (lon)")
                if any(x not in (0.0, 1.0) for row in v for x in row):
                    raise ValueError("values must be 0 (ocean) or 1 (land)")
                return v

        self.input_model = CubeUNetInput

    def describe(self) -> dict[str, Any]:
        return {
            "outputs": {
                "ta": "air temperature, K, (plev, lat, lon)",
                "hus": "specific humidity, kg kg-1, (plev, lat, lon)",
                "ts_mean": "area-weighted global mean surface temperature, K",
            },
            "grid": self.grid,
            "training_ranges": "see `astrobio fetch synthetic-climate --help`",
        }

    def predict(self, items: list[Any]) -> list[dict[str, Any]]:
        import numpy as np
        import torch

        from astrobio_data_sources.synthetic_climate import annual_insolation

        k = len(items)
        new: dict[str, np.ndarray] = {}
        for name in self.cu.SCALARS:
            new[name] = np.array([getattr(it, name) for it in items], dtype=np.float64)
        land = np.zeros((k, self.nlat, self.nlon))
        for i, it in enumerate(items):
            if it.land_mask is not None:
                land[i] = np.asarray(it.land_mask, dtype=np.float64)
        new["land_mask"] = land
        new["rsdt"] = annual_insolation(new["stellar_flux"], new["obliquity"], self.lat)
        zeros = torch.zeros((len(self.plev), self.nlat, self.nlon))  # targets: unused here
        batch = []
        for i in range(k):
            item = {n: torch.from_numpy(self._normalise(n, new[n][i])) for n in new}
            item.update(ta=zeros, hus=zeros, lat=self.lat, whole=self.whole, index=-1)
            batch.append(self.transform(item)["x"])
        x = torch.stack(batch)
        device = next(self.model.parameters()).device
        with torch.no_grad():
            y = self.model(x.to(device)).float().cpu()
        phys = self.cu.unscale(y, self.ctx).double().numpy()  # (k, 2, Z, Y, X)
        area = self.ctx["area"].double().numpy()  # (Y,) weights summing to 1
        out = []
        for i in range(k):
            ts = phys[i, 0, 0]  # surface level
            out.append(
                {
                    "ts_mean": float((ts.mean(axis=1) * area).sum()),
                    "ta": np.round(phys[i, 0], 4).tolist(),
                    "hus": phys[i, 1].tolist(),
                }
            )
        return out

    def _normalise(self, name: str, value: Any) -> Any:
        """Physical -> normalised like the data layer: float32 values, the Rust kernel."""
        import numpy as np

        from astrobio_cli import datacube as dc

        v = np.asarray(value, dtype=np.float32)
        return dc.normalize(v.reshape(1, -1), self.stats.select([name])).reshape(v.shape)
