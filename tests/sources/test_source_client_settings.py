"""Every archive client built by the data sources honours the per-source download limits
(`deadline`, `command_deadline`, `max_bytes`) from the settings, not only the TAP clients."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("source", ["ncbi", "uniprot", "ensembl", "gtdb", "mast"])
def test_make_client_takes_the_download_limits_from_the_settings(source, monkeypatch):
    from astrobio_cli import settings
    from astrobio_data_sources._remote import make_client

    env = source.upper().replace("-", "_")
    monkeypatch.setenv(f"ASTROBIO_SOURCES__{env}__DEADLINE", "7")
    monkeypatch.setenv(f"ASTROBIO_SOURCES__{env}__COMMAND_DEADLINE", "11")
    monkeypatch.setenv(f"ASTROBIO_SOURCES__{env}__MAX_BYTES", "12345")
    settings.configure(None, None)
    try:
        client = make_client(source, "http://127.0.0.1:9")
        try:
            assert client.deadline == 7
            assert client.command_deadline == 11
            assert client.max_bytes == 12345
        finally:
            client.close()
    finally:
        monkeypatch.undo()
        settings.configure(None, None)
