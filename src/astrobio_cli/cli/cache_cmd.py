"""`astrobio cache list|verify|clean`: look after the download cache (settings.cache_dir)."""

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="The download cache: list entries, verify checksums, clean.", no_args_is_help=True
    )
    group.command("list")(cache_list)
    group.command("verify")(cache_verify)
    group.command("clean")(cache_clean)
    app.add_typer(group, name="cache")


SourceOpt = Annotated[str | None, typer.Option("--source", help="Only this data source.")]


def _cache():
    from astrobio_cli.net.cache import Cache

    return Cache.from_settings()


def _console():
    from rich.console import Console

    return Console(soft_wrap=True, highlight=False)


def _print_partials(console, partials, escape) -> None:
    if not partials:
        return
    total = sum(p.bytes for p in partials)
    n = len(partials)
    console.print(
        f"{n} partial download{'s' if n != 1 else ''}, {total} bytes "
        "(a running download, or left by one that was killed or interrupted; the next fetch of "
        "the same request resumes a valid one, `astrobio cache clean --partial` removes them):"
    )
    for p in partials:
        state = "running" if p.live else "left over"
        console.print(f"  {p.bytes:>10}  {state:<9}  {escape(str(p.path))}")


def _entry_doc(e) -> dict:
    req = e.record.get("request", {})
    return {
        "source": e.source,
        "key": e.key,
        "bytes": e.bytes,
        "sha256": e.sha256 or None,
        "created": e.created.isoformat(),
        "age_s": round(e.age_s, 3),
        "state": "corrupt" if e.corrupt else "ok",
        "corrupt": e.corrupt,
        "broken": e.broken,
        "url": e.record.get("url"),
        "request": req if isinstance(req, dict) else None,
        "path": str(e.body),
    }


def cache_list(
    source: SourceOpt = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print one JSON object (cache, entries, partials, totals) instead."
        ),
    ] = False,
) -> None:
    """List cached downloads: source, key, size, age, state and the request; then any partial
    downloads."""
    from rich.markup import escape

    from astrobio_cli.net.cache import human_age

    cache = _cache()
    entries = list(cache.entries(source))
    partials = cache.partials(source)
    if as_json:
        import json

        doc = {
            "cache": str(cache.root),
            "source": source,
            "entries": [_entry_doc(e) for e in entries],
            "partials": [{"path": str(p.path), "bytes": p.bytes, "live": p.live} for p in partials],
            "total_entries": len(entries),
            "total_bytes": sum(e.bytes for e in entries),
        }
        typer.echo(json.dumps(doc, indent=2, default=str))
        return
    console = _console()
    if not entries:
        empty = "has no entries" if partials else "is empty"
        console.print(f"the cache at {escape(str(cache.root))} {empty}")
        _print_partials(console, partials, escape)
        return
    # Plain aligned lines, not a rich table: keys and paths stay whole and greppable.
    console.print(f"cache: {escape(str(cache.root))}")
    header = f"{'source':<16} {'key':<12} {'bytes':>10} {'age':>7}  {'state':<8} request"
    console.print(f"[bold]{header}[/]")
    for e in entries:
        req = e.record.get("request", {})
        req = req if isinstance(req, dict) else {}
        what = str(req.get("query") or e.record.get("url", "") or e.broken or "")
        what = what if len(what) <= 70 else what[:67] + "..."
        state = "[red]corrupt[/] " if e.corrupt else "ok      "
        console.print(
            f"{e.source:<16} {e.key[:12]:<12} {e.bytes:>10} {human_age(e.age_s):>7}  "
            f"{state} {escape(what)}"
        )
    total = sum(e.bytes for e in entries)
    console.print(f"{len(entries)} entries, {total} bytes")
    _print_partials(console, partials, escape)


def cache_verify(source: SourceOpt = None) -> None:
    """Recompute every checksum and check every record; mark problems corrupt (those entries
    are downloaded again on next use).

    Exits 1 when a corrupt entry was found.
    """
    from rich.markup import escape

    results = _cache().verify(source)
    console = _console()
    bad = [(e, p) for e, p in results if p]
    for e, problem in bad:
        console.print(
            f"[red]corrupt[/] {e.source} {e.key[:12]} {escape(str(e.body))}: {escape(problem)}"
        )
    console.print(
        f"verified {len(results)} entries: {len(results) - len(bad)} ok, {len(bad)} corrupt"
        + (" (marked; they will be downloaded again on next use)" if bad else "")
    )
    if bad:
        raise typer.Exit(1)


def cache_clean(
    source: SourceOpt = None,
    corrupt: Annotated[
        bool, typer.Option("--corrupt", help="Only entries marked corrupt.")
    ] = False,
    older_than: Annotated[
        float | None, typer.Option(help="Only entries older than this many days.", min=0)
    ] = None,
    partial: Annotated[
        bool,
        typer.Option(
            "--partial", help="Only partial downloads left by killed or interrupted downloads."
        ),
    ] = False,
) -> None:
    """Remove cached downloads (all, or those selected by the options). Without options, also
    the partial downloads of processes that are gone."""
    if partial and (corrupt or older_than is not None):
        from astrobio_cli.errors import UsageError

        raise UsageError("--partial cannot be combined with --corrupt or --older-than")
    cache = _cache()
    removed = cache.clean(
        source,
        corrupt_only=corrupt,
        older_than_s=older_than * 86400 if older_than is not None else None,
        partial_only=partial,
    )
    parts = cache.removed_partials
    n = len(parts)
    said = f"{n} partial download{'s' if n != 1 else ''} ({sum(p.bytes for p in parts)} bytes)"
    if partial:
        _console().print(f"removed {said}")
        return
    total = sum(e.bytes for e in removed)
    _console().print(
        f"removed {len(removed)} entries ({total} bytes)" + (f" and {said}" if n else "")
    )
