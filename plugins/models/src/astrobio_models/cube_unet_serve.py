"""Serving cube-unet: the adapter `astrobio serve cube-unet` uses (`CubeUNetPlugin.serve_adapter`).

The serving contract (input_model, predict, describe) is documented in `astrobio_cli.serve`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class CubeUNetAdapter:
    """Planet parameters in, the predicted climate (air temperature and humidity) out.

    An instance is what `synthetic-climate` samples for one planet: stellar_flux, rotation_period,
    obliquity, greenhouse_factor, surface_albedo and an optional land mask (lat x lon of 0/1,
    default all ocean). Inputs are turned into the model's channels by the plugin's own
    `to_tensors`, with the training split's statistics (the training samples are kept in memory
    for that: the standardisation is then exactly the one the model was trained with).
    """

    def __init__(self, plugin: Any, model: Any, datasets: Any) -> None:
        import numpy as np
        from pydantic import BaseModel, ConfigDict, Field, field_validator

        from astrobio_models import cube_unet as cu
        from astrobio_models._common import split_indices

        self.cu, self.model = cu, model
        path = datasets.provenance.get("path") or str(cu.default_data_path())
        arrays, _ = cu.load_cube(Path(path))
        n = arrays["ta"].shape[0]
        train_idx, _ = split_indices(n, plugin.config["val_fraction"], plugin.config["split_seed"])
        # Only what to_tensors reads, for the training samples (stats come from these alone).
        per_sample = [k for k in arrays if k not in ("lat", "plev")]
        self.train = {k: arrays[k][train_idx] for k in per_sample}
        self.lat, self.plev = arrays["lat"], arrays["plev"]
        nlat, nlon = arrays["land_mask"].shape[1:]
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
        shape = (k, *self.train["ta"].shape[1:])
        new["ta"], new["hus"] = np.zeros(shape), np.zeros(shape)  # targets: unused here
        joined = {n: np.concatenate([self.train[n], new[n]]) for n in self.train}
        joined["lat"], joined["plev"] = self.lat, self.plev
        n_train = self.train["ta"].shape[0]
        ctx = self.cu.to_tensors(joined, list(range(n_train)))
        x = ctx["x"][n_train:]
        device = next(self.model.parameters()).device
        with torch.no_grad():
            y = self.model(x.to(device)).float().cpu()
        phys = self.cu.unscale(y, ctx).double().numpy()  # (k, 2, Z, Y, X)
        area = ctx["area"].double().numpy()  # (Y,) weights summing to 1
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
