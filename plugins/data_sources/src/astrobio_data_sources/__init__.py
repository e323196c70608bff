"""Built-in astrobio data sources plugins.

Registered through the `astrobio` entry-point group, exactly as a third-party plugin is.
This module is imported by `astrobio --help`: keep heavy imports inside factories.
"""

from astrobio_cli.hookspecs import hookimpl

__all__ = ["hookimpl"]


# -- synthetic-climate (offline generator) -----------------------------------------------------


def _synthetic_climate_source():
    from astrobio_data_sources.synthetic_climate import SyntheticClimate

    return SyntheticClimate()


def _synthetic_climate_command():
    from astrobio_data_sources.synthetic_climate_cli import fetch_synthetic_climate

    return fetch_synthetic_climate


def _synthetic_climate_default(data_dir=None):
    from astrobio_data_sources.synthetic_climate import ensure_default

    return ensure_default(data_dir)


@hookimpl(specname="register_data_sources")
def register_synthetic_climate(register):
    from astrobio_cli.specs import DataSourceSpec

    register(
        DataSourceSpec(
            name="synthetic-climate",
            description="Planetary climate datacubes from an energy-balance model, offline.",
            factory=_synthetic_climate_source,
            command=_synthetic_climate_command,
            offline=True,
            produces=("climate-cube",),
            default_data=_synthetic_climate_default,
        )
    )


# -- nasa-exoplanet (NASA Exoplanet Archive, TAP) ----------------------------------------------


def _nasa_exoplanet_source():
    from astrobio_data_sources.nasa_exoplanet import NasaExoplanetArchive

    return NasaExoplanetArchive()


def _nasa_exoplanet_command():
    from astrobio_data_sources.nasa_exoplanet_cli import fetch_nasa_exoplanet

    return fetch_nasa_exoplanet


@hookimpl(specname="register_data_sources")
def register_nasa_exoplanet(register):
    from astrobio_cli.specs import DataSourceSpec

    register(
        DataSourceSpec(
            name="nasa-exoplanet",
            description="NASA Exoplanet Archive (TAP): planets and host stars as typed Parquet.",
            factory=_nasa_exoplanet_source,
            command=_nasa_exoplanet_command,
            produces=("exoplanet-table",),
        )
    )


# -- remote archives: mast-lightcurve, mast-jwst-spectrum, ncbi, uniprot, ensembl, gtdb ---------

# name -> (module, source class, CLI module, command function, description)
_PRODUCES = {
    "mast-lightcurve": ("light-curve",),
    "mast-jwst-spectrum": ("transmission-spectra",),
    "ncbi": ("sequences",),
    "uniprot": ("sequences",),
    "ensembl": ("sequences",),
    "gtdb": ("taxonomy-table",),
}
_REMOTE_SOURCES = {
    "mast-lightcurve": (
        "mast",
        "MastLightCurves",
        "mast_cli",
        "fetch_mast_lightcurve",
        "TESS and Kepler light curves from MAST (FITS kept in the cache) as Parquet.",
    ),
    "mast-jwst-spectrum": (
        "mast",
        "MastJwstSpectra",
        "mast_cli",
        "fetch_mast_jwst_spectrum",
        "JWST 1-D spectra (x1d) from MAST: wavelength, flux, error with units, as Parquet.",
    ),
    "ncbi": (
        "ncbi",
        "Ncbi",
        "ncbi_cli",
        "fetch_ncbi",
        "NCBI nucleotide/protein records (E-utilities): GenBank or FASTA + Parquet summary.",
    ),
    "uniprot": (
        "uniprot",
        "Uniprot",
        "uniprot_cli",
        "fetch_uniprot",
        "UniProtKB entries (REST search/stream, cursor paging): Parquet of fields, or FASTA.",
    ),
    "ensembl": (
        "ensembl",
        "Ensembl",
        "ensembl_cli",
        "fetch_ensembl",
        "Ensembl REST lookups, sequences and regions: JSON or FASTA + Parquet summary.",
    ),
    "gtdb": (
        "gtdb",
        "Gtdb",
        "gtdb_cli",
        "fetch_gtdb",
        "GTDB metadata and taxonomy tables of a release (archaea + bacteria) as Parquet.",
    ),
}


def _remote_factory(module: str, cls: str):
    def factory():
        import importlib

        return getattr(importlib.import_module(f"astrobio_data_sources.{module}"), cls)()

    return factory


def _remote_command(module: str, fn: str):
    def command():
        import importlib

        return getattr(importlib.import_module(f"astrobio_data_sources.{module}"), fn)

    return command


@hookimpl(specname="register_data_sources")
def register_remote_archives(register):
    from astrobio_cli.specs import DataSourceSpec

    for name, (module, cls, cli_module, fn, description) in _REMOTE_SOURCES.items():
        register(
            DataSourceSpec(
                name=name,
                description=description,
                factory=_remote_factory(module, cls),
                command=_remote_command(cli_module, fn),
                produces=_PRODUCES.get(name, ()),
            )
        )


# -- exoplanet-eu and exoplanets-org (CSV catalogues) -------------------------------------------


def _csv_catalogue_factory(module: str, cls: str):
    def factory():
        import importlib

        return getattr(importlib.import_module(f"astrobio_data_sources.{module}"), cls)()

    return factory


def _csv_catalogue_command(module: str, fn: str):
    def command():
        import importlib

        return getattr(importlib.import_module(f"astrobio_data_sources.{module}"), fn)

    return command


@hookimpl(specname="register_data_sources")
def register_csv_catalogues(register):
    from astrobio_cli.specs import DataSourceSpec

    for name, module, cls, fn, description in (
        (
            "exoplanet-eu",
            "exoplanet_eu",
            "ExoplanetEu",
            "fetch_exoplanet_eu",
            "The Extrasolar Planets Encyclopaedia (exoplanet.eu) CSV export as typed Parquet.",
        ),
        (
            "exoplanets-org",
            "exoplanets_org",
            "ExoplanetsOrg",
            "fetch_exoplanets_org",
            "The Exoplanet Orbit Database (exoplanets.org) CSV, from a mirror or a local copy.",
        ),
    ):
        register(
            DataSourceSpec(
                name=name,
                description=description,
                factory=_csv_catalogue_factory(module, cls),
                command=_csv_catalogue_command(f"{module}_cli", fn),
                produces=("exoplanet-table",),
            )
        )


# -- cds (Copernicus Climate Data Store: ERA5 monthly means, CMIP6) ----------------------------


@hookimpl(specname="register_data_sources")
def register_cds(register):
    from astrobio_cli.specs import DataSourceSpec

    register(
        DataSourceSpec(
            name="cds",
            description="Copernicus Climate Data Store: ERA5 monthly means (single/pressure "
            "levels), CMIP6, as a climate cube (NetCDF).",
            factory=_remote_factory("cds", "Cds"),
            command=_remote_command("cds_cli", "fetch_cds"),
            produces=("climate-cube",),
        )
    )


# -- eso (ESO Science Archive, TAP ivoa.ObsCore + data portal) ---------------------------------


@hookimpl(specname="register_data_sources")
def register_eso(register):
    from astrobio_cli.specs import DataSourceSpec

    register(
        DataSourceSpec(
            name="eso",
            description="ESO Science Archive (TAP, ivoa.ObsCore): Parquet listing + public FITS.",
            factory=_remote_factory("eso", "Eso"),
            command=_remote_command("eso_cli", "fetch_eso"),
        )
    )


# -- koa (Keck Observatory Archive, TAP koa_<instrument> + getKOA) -----------------------------


@hookimpl(specname="register_data_sources")
def register_koa(register):
    from astrobio_cli.specs import DataSourceSpec

    register(
        DataSourceSpec(
            name="koa",
            description="Keck Observatory Archive (TAP, koa_<instrument>): Parquet listing + files.",
            factory=_remote_factory("koa", "Koa"),
            command=_remote_command("koa_cli", "fetch_koa"),
        )
    )
