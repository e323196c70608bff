"""Lineage: the chain from an archive query to a checkpoint, written where each step happens.

Every step leaves a small JSON record beside (or inside) what it wrote:

- `astrobio fetch SOURCE` writes `<file>.provenance.json` (:mod:`astrobio_cli.net.provenance`:
  source, URL, query, sha256 of the response body, retrieval time, output sha256); an offline
  generator writes the same with its generator, seed and options instead of a URL.
- `astrobio preprocess IN OUT.zarr` writes `OUT.zarr/provenance.json`: the preprocess options
  and :func:`input_record` of IN (which embeds IN's own sidecar).
- `astrobio train` puts :func:`input_record` of `--data` (or of the built-in data) into the run
  card (`run_card.json`, key `inputs`) and into every checkpoint's `meta.json` (key `lineage`).

`astrobio runs show RUN` reads them back as one chain (:func:`chain`). Nothing here imports
torch, xarray or a plugin.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from astrobio_cli.net.provenance import SIDECAR_SUFFIX, sidecar_path

STORE_RECORD = "provenance.json"  # inside a Zarr store written by `astrobio preprocess`
_BLOCK = 1 << 20
# A directory (Zarr store) is fingerprinted by its metadata and file sizes, not by reading every
# chunk: a 100 GB store must not be read again just to be named.
_METADATA_NAMES = (".zarray", ".zattrs", ".zgroup", ".zmetadata", "zarr.json", "stats.json")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def store_fingerprint(path: Path) -> str:
    """sha256 over a directory's relative file names and sizes, and the bytes of its metadata
    files (Zarr `.zarray`/`zarr.json`, `stats.json`, ...): it changes when anything is
    rewritten, added or removed, without reading the data chunks."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            p = Path(root) / name
            rel = p.relative_to(path).as_posix()
            h.update(f"{rel}\0{p.stat().st_size}\0".encode())
            if name in _METADATA_NAMES:
                h.update(p.read_bytes())
    return h.hexdigest()


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def input_record(data: str | Path | None, *, kind: str | None = None) -> dict[str, Any]:
    """What a step read: path, kind, size, sha256 (a fingerprint for a directory) and the
    provenance its producer left (the fetch sidecar, or a preprocessed store's record).
    `data` None means a model's built-in data (recorded as such)."""
    if data is None:
        return {"path": None, "kind": kind, "builtin": True}
    text = str(data)
    path = Path(text)
    rec: dict[str, Any] = {"path": text, "kind": kind}
    if not path.exists():  # e.g. a name such as a cobra built-in network
        rec["builtin"] = True
        return rec
    rec["path"] = str(path.resolve())
    if path.is_dir():
        rec["bytes"] = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        rec["fingerprint"] = store_fingerprint(path)
        inner = read_json(path / STORE_RECORD)
        if inner is not None:
            rec["provenance"] = inner
    else:
        rec["bytes"] = path.stat().st_size
        rec["sha256"] = file_sha256(path)
    side = read_json(sidecar_path(path))
    if side is not None:
        rec["provenance"] = side
    return rec


def write_store_record(store: Path, record: dict[str, Any]) -> Path:
    """Write `record` as `store/provenance.json` (call it on the temporary store before it is
    renamed into place, so the record is atomic with the store)."""
    target = store / STORE_RECORD
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def chain(rec: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The steps behind an input record, oldest first: each a dict with `step` (fetch,
    generate, preprocess, file), and what identifies it."""
    steps: list[dict[str, Any]] = []
    node = rec
    while node:
        prov = node.get("provenance") or {}
        here: dict[str, Any] = {"path": node.get("path"), "kind": node.get("kind")}
        if node.get("sha256"):
            here["sha256"] = node["sha256"]
        if node.get("fingerprint"):
            here["fingerprint"] = node["fingerprint"]
        if node.get("builtin"):
            here["builtin"] = True
        if prov.get("source") == "preprocess":
            here["step"] = "preprocess"
            here["options"] = prov.get("options")
            steps.append(here)
            node = prov.get("input")
            continue
        if prov:
            here["step"] = "generate" if prov.get("generator") else "fetch"
            for key in ("source", "generator", "seed", "options", "url", "query", "retrieved_at",
                        "from_cache", "rows"):  # fmt: skip
                if prov.get(key) is not None:
                    here[key] = prov[key]
            if prov.get("sha256"):
                here["response_sha256"] = prov["sha256"]
        else:
            here["step"] = "built-in data" if node.get("builtin") else "file"
        steps.append(here)
        node = None
    return list(reversed(steps))


__all__ = [
    "SIDECAR_SUFFIX",
    "STORE_RECORD",
    "chain",
    "file_sha256",
    "input_record",
    "store_fingerprint",
    "write_store_record",
]
