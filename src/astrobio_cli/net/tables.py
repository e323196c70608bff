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


def _validity(mask):
    """Arrow validity bitmap (1 = present) from a numpy bool mask of nulls, or None if none."""
    import numpy as np
    import pyarrow as pa

    if not mask.any():
        return None, 0
    return pa.py_buffer(np.packbits(~mask, bitorder="little")), int(mask.sum())


def _arrow_array(values: list[Any], kind: str, nan_as_null: bool = False):
    """One typed column, built from buffers.

    Why not `pa.array(values)`: it imports pandas to sniff the input (about half a second of a
    fetch's start-up); from_buffers needs only numpy.
    """
    import numpy as np
    import pyarrow as pa

    n = len(values)
    if kind == "float":
        data = np.array(values, dtype=np.float64).reshape(n)
        validity, nulls = _validity(np.isnan(data)) if nan_as_null else (None, 0)
        return pa.Array.from_buffers(pa.float64(), n, [validity, pa.py_buffer(data)], nulls)
    mask = np.fromiter((v is None for v in values), dtype=bool, count=n)
    validity, nulls = _validity(mask)
    if kind == "int":
        data = np.fromiter((0 if v is None else v for v in values), dtype=np.int64, count=n)
        return pa.Array.from_buffers(pa.int64(), n, [validity, pa.py_buffer(data)], nulls)
    encoded = [b"" if v is None else str(v).encode("utf-8") for v in values]
    lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    big = offsets[-1] > np.iinfo(np.int32).max
    typ = pa.large_string() if big else pa.string()
    offsets = offsets if big else offsets.astype(np.int32)
    buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(typ, n, buffers, nulls)


def to_arrow(table: Table, metadata: dict[str, str] | None = None, nan_as_null: bool = False):
    import pyarrow as pa

    fields, arrays = [], []
    for c in table.columns:
        arr = getattr(c, "array", None)  # an ArrowColumn: already typed, no Python values
        if arr is None:
            arr = _arrow_array(c.values, c.kind, nan_as_null)
        elif c.kind == "float" and nan_as_null:
            import pyarrow.compute as pc

            arr = pc.if_else(pc.is_nan(arr), pa.scalar(None, pa.float64()), arr)
        meta = {"unit": c.unit, "description": c.description}
        fields.append(pa.field(c.name, arr.type, nullable=True, metadata=meta))
        arrays.append(arr)
    schema = pa.schema(fields, metadata=metadata or None)
    return pa.Table.from_arrays(arrays, schema=schema)


def write_table(
    table: Table, dest: Path | str, fmt: str = "parquet", provenance: dict[str, Any] | None = None
) -> str:
    """Write `table` to `dest` as parquet or csv, atomically; returns the file's sha256."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    meta = {"astrobio.provenance": json.dumps(provenance)} if provenance else None
    with atomic_path(dest) as tmp:
        if fmt == "parquet":
            pq.write_table(to_arrow(table, meta), tmp)
        elif fmt == "csv":  # blanks stay blank, as the archive sent them
            pacsv.write_csv(to_arrow(table, meta, nan_as_null=True), tmp)
        else:
            raise ValueError(f"unknown table format {fmt!r}")
    return sha256_file(dest)
