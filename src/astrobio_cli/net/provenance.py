"""Provenance sidecars: where a file came from, exactly.

Every file a source writes gets `<file>.provenance.json` beside it::

    {"source": "nasa-exoplanet", "url": "https://.../TAP/sync?query=...&format=csv",
     "query": "SELECT ... FROM pscomppars", "retrieved_at": "2026-11-22T10:31:02+00:00",
     "http_status": 200, "bytes": 51234, "sha256": "<of the response body>",
     "from_cache": false, "rows": 5, "columns": [{"name": "pl_rade", "type": "float64",
     "unit": "Earth radii", "description": "..."}], "output": {...}, "astrobio_version": "..."}

Secrets: URLs come from the client's redacted form, and :func:`write_sidecar` takes a `redact`
function that is applied to the whole document before it is written.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from astrobio_cli import __version__
from astrobio_cli.net.files import atomic_write_bytes

SIDECAR_SUFFIX = ".provenance.json"


def sidecar_path(output: Path | str) -> Path:
    output = Path(output)
    return output.with_name(output.name + SIDECAR_SUFFIX)


def record(
    *,
    source: str,
    url: str,
    query: str | None,
    hit: Any,
    columns: list[dict[str, Any]] | None = None,
    rows: int | None = None,
    output: Path | None = None,
    output_format: str | None = None,
    output_sha256: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The provenance document for an output made from a cache `Hit`."""
    entry = hit.entry
    rec: dict[str, Any] = {
        "source": source,
        "url": url,
        "query": query,
        "retrieved_at": entry.record.get("created"),
        "http_status": entry.record.get("status"),
        "bytes": entry.bytes,
        "sha256": entry.sha256,
        "from_cache": bool(hit.from_cache),
        "cache_entry": str(entry.body),
        "rows": rows,
        "columns": columns or [],
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "astrobio_version": __version__,
    }
    if output is not None:
        rec["output"] = {"path": str(output), "format": output_format, "sha256": output_sha256}
    rec.update(dict(extra or {}))
    return rec


def write_sidecar(
    output: Path | str, rec: Mapping[str, Any], redact: Callable[[str], str] = lambda s: s
) -> Path:
    path = sidecar_path(output)
    atomic_write_bytes(path, (redact(json.dumps(rec, indent=2)) + "\n").encode())
    return path
