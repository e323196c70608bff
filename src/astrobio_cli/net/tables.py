"""Typed tables to Arrow, Parquet and CSV, with units in the field metadata.

Parquet fields carry `unit` and `description` metadata (bytes, as Arrow stores them); the schema
carries the provenance document under `astrobio.provenance`. Written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from astrobio_cli.net.content import Table
from astrobio_cli.net.files import atomic_path, sha256_file

ARROW_TYPE = {"int": "int64", "float": "float64", "string": "string"}


def columns_doc(table: Table) -> list[dict[str, Any]]:
    """Columns as plain data for provenance: name, Arrow type, unit, description."""
    return [
        {"name": c.name, "type": ARROW_TYPE[c.kind], "unit": c.unit, "description": c.description}
        for c in table.columns
    ]


def to_arrow(table: Table, metadata: dict[str, str] | None = None):
    import pyarrow as pa

    fields, arrays = [], []
    for c in table.columns:
        typ = pa.int64() if c.kind == "int" else pa.float64() if c.kind == "float" else pa.string()
        meta = {"unit": c.unit, "description": c.description}
        fields.append(pa.field(c.name, typ, nullable=True, metadata=meta))
        arrays.append(pa.array(c.values, type=typ))
    schema = pa.schema(fields, metadata=metadata or None)
    return pa.Table.from_arrays(arrays, schema=schema)


def write_table(
    table: Table, dest: Path | str, fmt: str = "parquet", provenance: dict[str, Any] | None = None
) -> str:
    """Write `table` to `dest` as parquet or csv, atomically; returns the file's sha256."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    meta = {"astrobio.provenance": json.dumps(provenance)} if provenance else None
    at = to_arrow(table, meta)
    with atomic_path(dest) as tmp:
        if fmt == "parquet":
            pq.write_table(at, tmp)
        elif fmt == "csv":
            pacsv.write_csv(_blank_nans(at), tmp)  # blanks stay blank, as the archive sent them
        else:
            raise ValueError(f"unknown table format {fmt!r}")
    return sha256_file(dest)


def _blank_nans(at):
    import pyarrow as pa
    import pyarrow.compute as pc

    cols = []
    for col in at.columns:
        if pa.types.is_floating(col.type):
            col = pc.if_else(pc.is_nan(col), pa.scalar(None, col.type), col)
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=at.schema)
