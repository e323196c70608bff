"""`astrobio fetch synthetic-climate`: the command's options (light: numpy/xarray load on run)."""

from pathlib import Path
from typing import Annotated

import typer


def fetch_synthetic_climate(
    samples: Annotated[
        int, typer.Option(min=1, help="Number of planets (ensemble members).")
    ] = 320,
    nlat: Annotated[int, typer.Option(min=4, help="Latitude cells.")] = 16,
    nlon: Annotated[int, typer.Option(min=4, help="Longitude cells.")] = 32,
    nlev: Annotated[int, typer.Option(min=1, help="Pressure levels, 1000 to 200 hPa.")] = 6,
    seed: Annotated[int, typer.Option(min=0, help="Random seed: same seed, same data.")] = 0,
    format: Annotated[
        str, typer.Option("--format", help="netcdf (one .nc file) or zarr (a .zarr store).")
    ] = "netcdf",
    ice_albedo: Annotated[
        bool, typer.Option(help="Ice-albedo feedback (ice brightens below ~263 K).")
    ] = True,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where to write. Default: <data_dir>/synthetic-climate/v1-n<samples>-"
            "<nlev>x<nlat>x<nlon>-seed<seed>.nc (the default set is what "
            "`astrobio train cube-unet` uses when given no --data)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (paths, sizes, summary).")
    ] = False,
) -> None:
    """Generate planetary climate datacubes offline from a 2-D energy-balance model.

    Inputs per planet: stellar flux, rotation period, obliquity, greenhouse factor, surface
    albedo and a land map; outputs: surface temperature, air temperature and specific humidity
    on pressure levels. Deterministic from --seed; written atomically with CF metadata.
    """
    import time

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from astrobio_cli.errors import UsageError
    from astrobio_cli.settings import get_settings
    from astrobio_data_sources import synthetic_climate as sc

    fmt = format.lower()
    if fmt not in ("netcdf", "zarr"):
        raise UsageError(f"--format {format!r} is not known: use netcdf or zarr")
    sc.check_grid(nlat, nlon, nlev, samples)
    if out is None:
        name = sc.default_name(samples, nlat, nlon, nlev, seed, fmt, ice_albedo)  # type: ignore[arg-type]
        out = get_settings().data_dir / "synthetic-climate" / name
    if out.exists() and out.is_dir() != (fmt == "zarr"):
        kind = "a directory" if out.is_dir() else "a file"
        raise UsageError(f"--out {out} is {kind}; choose another path for --format {fmt}")

    import xarray  # noqa: F401 - imported before the clock starts

    start = time.perf_counter()
    ds = sc.generate(samples, nlat=nlat, nlon=nlon, nlev=nlev, seed=seed, ice_albedo=ice_albedo)
    path = sc.write(ds, out, fmt)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    sidecar = sc.write_sidecar(
        path,
        seed=seed,
        options={
            "samples": samples,
            "nlat": nlat,
            "nlon": nlon,
            "nlev": nlev,
            "ice_albedo": ice_albedo,
            "format": fmt,
        },
    )

    info = sc.summary(ds)
    size = (
        sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        if path.is_dir()
        else (path.stat().st_size)
    )
    lo, hi = info["ts_range"]
    if as_json:
        import json

        doc = {
            "source": "synthetic-climate",
            "out": str(path),
            "provenance": str(sidecar),
            "format": fmt,
            "samples": info["samples"],
            "grid": {"nlev": nlev, "nlat": nlat, "nlon": nlon},
            "seed": seed,
            "ice_albedo": ice_albedo,
            "inputs": list(sc.INPUT_VARIABLES),
            "outputs": ["ts", "ta", "hus", "rsdt"],
            "ts_min_k": lo,
            "ts_max_k": hi,
            "ts_mean_k": info["ts_mean"],
            "bytes": size,
            "seconds": round(elapsed, 3),
            "files": [str(path), str(sidecar)],
        }
        typer.echo(json.dumps(doc))
        return
    table = Table(title="synthetic-climate", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("samples", str(info["samples"]))
    table.add_row("grid", info["grid"])
    table.add_row("seed", str(seed))
    table.add_row("ice-albedo feedback", "on" if ice_albedo else "off")
    table.add_row("inputs", ", ".join(sc.INPUT_VARIABLES))
    table.add_row("outputs", "ts, ta, hus (+ rsdt insolation)")
    table.add_row("surface temperature", f"{lo:.1f} to {hi:.1f} K (mean {info['ts_mean']:.1f} K)")
    table.add_row("format", f"{fmt}, {size / 1e6:.1f} MB, generated in {elapsed:.1f} s")
    console = Console(soft_wrap=True)
    console.print(table)
    console.print(f"written to [bold]{escape(str(path))}[/]")
