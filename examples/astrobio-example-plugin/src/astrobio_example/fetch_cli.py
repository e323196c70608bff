"""`astrobio fetch example-constants`: the command's options.

`astrobio --help` builds every fetch command, so this module stays light: typer and the
standard library at the top; pyarrow and the table only inside the function.
"""

from pathlib import Path
from typing import Annotated

import typer


def fetch_example_constants(
    out: Annotated[
        Path, typer.Option(help="Where to write the table: a .csv or .parquet file.")
    ] = Path("example-constants.csv"),
) -> None:
    """Write a few Solar System planets' radii and orbits to a table (offline)."""
    import csv

    from astrobio_cli.errors import UsageError
    from astrobio_cli.net.files import atomic_path
    from astrobio_example.source import SolarSystemConstants

    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        # A user mistake: one line saying what was wrong and what to do, exit status 1.
        raise UsageError(f"--out {out}: unknown file type {suffix!r}; use a .csv or .parquet name")
    source = SolarSystemConstants()
    rows = source.rows()
    # atomic_path yields a temporary name beside `out` and renames it into place only once
    # the write succeeded: a reader never sees half a file, a failure leaves nothing behind.
    with atomic_path(out) as tmp:
        if suffix == ".csv":
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(source.columns)
                writer.writerows(rows)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            columns = {c: [r[i] for r in rows] for i, c in enumerate(source.columns)}
            fields = [
                pa.field(c, pa.string() if c == "pl_name" else pa.float64(),
                         metadata={"unit": source.units[c]} if c in source.units else None)
                for c in source.columns
            ]  # fmt: skip
            pq.write_table(pa.table(columns, schema=pa.schema(fields)), tmp)
    typer.echo(f"wrote {len(rows)} planets to {out}")


def command():
    """What `DataSourceSpec(command=...)` calls: returns the function Typer turns into options."""
    return fetch_example_constants
