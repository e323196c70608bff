"""Data kinds: the contract between the sources that write data and the models that read it.

A data-source plugin declares the kinds it writes (`DataSourceSpec.produces`), a model plugin
the kinds it reads (`ModelSpec.data_kinds`). `astrobio plugins list` shows, for each model,
the sources that can feed it; `astrobio train` refuses data of another kind before any work,
naming the command that writes the right kind. The schemas below are documented in full in
docs/data.md; the readers live in this package (`astrobio_cli.data.*`), not in models.

Importing this module is light: no torch, no xarray, no plugin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DataKind:
    name: str
    description: str
    suffixes: tuple[str, ...]
    schema: str  # one line: what a file of this kind must hold
    reader: str  # where in the core the reader lives


KINDS: dict[str, DataKind] = {
    k.name: k
    for k in (
        DataKind(
            "climate-cube",
            "an ensemble of climate datacubes, raw or preprocessed",
            (".nc", ".nc4", ".zarr"),
            "per sample: stellar_flux, rotation_period, obliquity, greenhouse_factor, "
            "surface_albedo; land_mask (lat, lon); rsdt (lat); ts (lat, lon); ta, hus "
            "(plev, lat, lon); coordinates plev (Pa), lat, lon (degrees)",
            "astrobio_cli.data.climate.open_climate_cube",
        ),
        DataKind(
            "exoplanet-table",
            "one row per planet, NASA Exoplanet Archive column names and units",
            (".parquet", ".csv", ".tsv"),
            "pl_name, hostname; pl_rade (Earth radii), pl_bmasse (Earth masses) with "
            "err1/err2; optional pl_orbper (d), pl_insol, pl_eqt (K), st_mass (Msun), "
            "st_teff (K), st_met (dex); TEPCat and exoplanet.eu exports are converted",
            "astrobio_cli.data.tables.read_exoplanet_table",
        ),
        DataKind(
            "transmission-spectra",
            "spectra on a wavelength grid, with their errors",
            (".npz", ".parquet"),
            "wavelength (um), flux or transit depth, error; .npz: x (N, wavelengths) and targets y",
            "astrobio_cli.data.spectra.read_spectrum (Parquet); .npz by spectral-transformer",
        ),
        DataKind(
            "metabolic-network",
            "a genome-scale metabolic model",
            (".xml", ".sbml", ".json"),
            "SBML or cobra JSON with reactions and metabolites; or a name cobra ships "
            "(textbook, iJO1366, salmonella)",
            "astrobio_cli.data.networks.read_metabolic_network",
        ),
        DataKind(
            "text-corpus",
            "plain text, one record per line",
            (".txt",),
            "UTF-8 lines",
            "plain text",
        ),
        DataKind(
            "light-curve",
            "time series of photometry",
            (".parquet",),
            "time (BTJD/BKJD d), flux, flux_err, quality, mission, sector/quarter, cadence",
            "astrobio_cli.data.lightcurves.read_light_curve",
        ),
        DataKind(
            "sequences",
            "nucleotide or protein records",
            (".fasta", ".fa", ".faa", ".gb", ".gbk", ".parquet"),
            "FASTA or GenBank records; Parquet summary (accession, organism, length, ...)",
            "astrobio_cli.data.sequences.read_sequences",
        ),
        DataKind(
            "taxonomy-table",
            "one row per genome with its taxonomy",
            (".parquet",),
            "accession, gtdb_taxonomy (d__;p__;c__;o__;f__;g__;s__), metadata columns",
            "pyarrow.parquet",
        ),
    )
}


def producers(host: Any, kind: str) -> list[str]:
    """Names of the registered data sources that write `kind`."""
    return sorted(s.name for s in host.specs("data-source") if kind in getattr(s, "produces", ()))


def consumers(host: Any, kind: str) -> list[str]:
    """Names of the registered models that read `kind`."""
    return sorted(s.name for s in host.specs("model") if kind in getattr(s, "data_kinds", ()))


def feeders(host: Any, model_spec: Any) -> list[str]:
    """The data sources whose output `model_spec` can train on."""
    out: set[str] = set()
    for kind in getattr(model_spec, "data_kinds", ()):
        out.update(producers(host, kind))
    return sorted(out)


def how_to_get(host: Any, kinds: tuple[str, ...]) -> str:
    """'`astrobio fetch nasa-exoplanet` (exoplanet-table)' for a usage message."""
    parts = []
    for k in kinds:
        srcs = producers(host, k)
        if srcs:
            parts.append(" or ".join(f"`astrobio fetch {s}`" for s in srcs) + f" writes {k}")
    return "; ".join(parts)


def default_data(kind: str, host: Any = None, data_dir: Path | None = None) -> Path:
    """The built-in data of `kind`, made offline by the first data source that registers a
    `default_data` for it (e.g. synthetic-climate's default ensemble for climate-cube)."""
    from astrobio_cli.errors import UserError
    from astrobio_cli.plugins import active_host

    host = host or active_host()
    for spec in host.specs("data-source"):
        make = getattr(spec, "default_data", None)
        if kind in getattr(spec, "produces", ()) and callable(make):
            return Path(make(data_dir))
    raise UserError(
        f"no installed data source makes built-in {kind} data offline; give --data "
        f"({how_to_get(host, (kind,)) or 'a file of that kind'})"
    )
