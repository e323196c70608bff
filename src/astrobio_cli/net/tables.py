"""Typed tables to Arrow, Parquet, CSV and ECSV, with units the astronomy stack reads.

Parquet fields carry `unit` and `description` metadata (bytes, as Arrow stores them); the schema
carries the provenance document under `astrobio.provenance` and astropy's own table header under
`table_meta_yaml`, so `astropy.table.QTable.read(path)` gives Quantity columns while pandas and
pyarrow read the same file as plain columns. ECSV (astropy's text format) carries the same
header. Everything is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from astrobio_cli.net.content import Table
from astrobio_cli.net.files import atomic_path, sha256_file

ARROW_TYPE = {"int": "int64", "float": "float64", "string": "string"}
FORMATS = ("parquet", "csv", "ecsv")


def astropy_header(table: Table, extra: dict[str, str] | None = None) -> list[str]:
    """astropy's table header (the YAML of ECSV and of Parquet's `table_meta_yaml`): each
    column's name, datatype, unit and description. JSON strings are valid YAML scalars."""
    lines = [f"{k}: {json.dumps(v)}" for k, v in (extra or {}).items()]
    lines.append("datatype:")
    for c in table.columns:
        parts = [f"name: {json.dumps(c.name)}"]
        if c.unit:
            parts.append(f"unit: {json.dumps(c.unit)}")
        parts.append(f"datatype: {ARROW_TYPE[c.kind]}")
        if c.description:
            parts.append(f"description: {json.dumps(c.description)}")
        lines.append("- {" + ", ".join(parts) + "}")
    return lines


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


def _string_lengths(arrow) -> dict[str, str]:
    """astropy's `table::len::<column>`: the longest string of each string column, in bytes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = {}
    for f, col in zip(arrow.schema, arrow.columns, strict=True):
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            longest = pc.max(pc.binary_length(col)).as_py() if len(col) else 0
            out[f"table::len::{f.name}"] = str(max(longest or 0, 1))
    return out


def write_table(
    table: Table, dest: Path | str, fmt: str = "parquet", provenance: dict[str, Any] | None = None
) -> str:
    """Write `table` to `dest` as parquet or csv, atomically; returns the file's sha256."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    meta = {"astrobio.provenance": json.dumps(provenance)} if provenance else {}
    with atomic_path(dest) as tmp:
        if fmt == "parquet":
            meta["table_meta_yaml"] = "\n".join(astropy_header(table))
            arrow = to_arrow(table, meta)
            pq.write_table(arrow.replace_schema_metadata({**meta, **_string_lengths(arrow)}), tmp)
        elif fmt == "csv":  # blanks stay blank, as the archive sent them
            pacsv.write_csv(to_arrow(table, meta or None, nan_as_null=True), tmp)
        elif fmt == "ecsv":  # astropy's ECSV 1.0: a YAML header, then CSV (blank = missing)
            head = ["%ECSV 1.0", "---", *astropy_header(table, {"delimiter": ","})]
            head.append("schema: astropy-2.0")
            with open(tmp, "wb") as fh:
                fh.write("".join(f"# {line}\n" for line in head).encode("utf-8"))
                pacsv.write_csv(to_arrow(table, None, nan_as_null=True), fh)
        else:
            raise ValueError(f"unknown table format {fmt!r}")
    return sha256_file(dest)
