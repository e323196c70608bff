"""Built-in model plugins: fixtures that give each model its tiny data."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def climate_nc(tmp_path_factory) -> Path:
    from astrobio_data_sources.synthetic_climate import ensure_default

    return ensure_default(tmp_path_factory.mktemp("climate"))


def small(name: str) -> dict:
    """Model options for fast tests (the plugin's smoke config)."""
    from astrobio_cli.plugins import resolve

    spec = resolve("model", name)
    return dict(spec.factory({}).smoke_config)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """One intra-op thread: the test machine's cores are shared, and OpenMP threads spinning
    against other jobs make small CPU kernels 10x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
