"""`astrobio bench attention`: every attention backend, its error and its timings, in one table."""

from pathlib import Path
from typing import Annotated

import typer

from astrobio_cli.errors import UsageError

STATUS_STYLE = {"ran": "green", "skipped": "yellow", "failed": "bold red", "out of memory": "red"}


def _ints(values: list[str], flag: str) -> list[int]:
    out = []
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(int(part))
            except ValueError:
                raise UsageError(
                    f"{flag} takes integers, e.g. {flag} 128,512; got '{part}'"
                ) from None
    return out


def register(group: typer.Typer) -> None:
    @group.command("attention")
    def bench_attention(
        seq: Annotated[
            list[str],
            typer.Option(
                "--seq", help="Sequence length(s): --seq 4096, --seq 128,512 or repeated."
            ),
        ] = ["4096"],  # noqa: B006 (Typer reads the default; it is never mutated)
        batch: Annotated[int, typer.Option(help="Batch size B.")] = 1,
        heads: Annotated[int, typer.Option(help="Query heads Hq.")] = 8,
        kv_heads: Annotated[
            int | None, typer.Option(help="Key/value heads Hkv (default: --heads).")
        ] = None,
        head_dim: Annotated[int, typer.Option(help="Head dimension D.")] = 64,
        dtype: Annotated[str, typer.Option(help="fp32, fp16 or bf16.")] = "fp32",
        causal: Annotated[bool, typer.Option("--causal", help="Causal (bottom-right).")] = False,
        mode: Annotated[str, typer.Option(help="fwd or fwd+bwd.")] = "fwd",
        backends: Annotated[
            str | None,
            typer.Option(help="Comma-separated backends (default: every registered one)."),
        ] = None,
        repeats: Annotated[int, typer.Option(help="Timed calls after one warm-up.")] = 5,
        device: Annotated[
            str | None, typer.Option(help="cpu or cuda (default: cuda when available).")
        ] = None,
        json_path: Annotated[
            Path | None, typer.Option("--json", help="Write the results as JSON here.")
        ] = None,
        plot: Annotated[
            Path | None,
            typer.Option(help="Write a PNG of time and memory against sequence length."),
        ] = None,
        decode: Annotated[
            bool,
            typer.Option(
                "--decode",
                help="Decode: one new token against a KV cache of --cache-len (GQA ratios "
                "1, 4, 8, or --kv-heads): tokens/s, cache bytes, error.",
            ),
        ] = False,
        cache_len: Annotated[int, typer.Option(help="With --decode: the KV cache length.")] = 4096,
        mixer: Annotated[
            str,
            typer.Option(help="attention, or ssm: time the selective SSM mixer layer instead."),
        ] = "attention",
        procs: Annotated[
            int | None,
            typer.Option(
                "--procs",
                help="Run the `ring` backend (context parallel) on N processes, each holding "
                "1/N of the sequence (gloo on the CPU, NCCL on GPUs); 1: its one-process "
                "baseline. Without it the ring row is skipped.",
            ),
        ] = None,
    ) -> None:
        """Time every attention backend against a float64 reference: status, error, ms, FLOP/s, memory.

        Example: astrobio bench attention --seq 4096 --backends eager,sdpa-flash --json out.json
        """
        from rich.console import Console

        from astrobio_cli.attention.bench import BenchConfig, run_bench, write_json, write_plot

        if device not in (None, "cpu", "cuda"):
            raise UsageError(f"--device must be cpu or cuda, got '{device}'")
        if mixer not in ("attention", "ssm"):
            raise UsageError(f"--mixer must be attention or ssm, got '{mixer}'")
        if decode or mixer == "ssm":  # the two extra benchmarks (issue 17), below
            kw = dict(seq=seq, batch=batch, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                      dtype=dtype, mode=mode, backends=backends, repeats=repeats, device=device,
                      json_path=json_path)  # fmt: skip
            if decode and mixer == "ssm":
                raise UsageError("--decode measures attention; drop --mixer ssm")
            _decode(cache_len, **kw) if decode else _ssm(**kw)
            return
        names = [b.strip() for b in backends.split(",") if b.strip()] if backends else None
        config = BenchConfig(
            seqs=_ints(seq, "--seq"),
            batch=batch,
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            dtype=dtype,
            causal=causal,
            mode=mode,
            backends=names,
            repeats=repeats,
            device=device,
            procs=procs,
        )
        err = Console(stderr=True)
        with err.status("benchmarking attention...") as status:
            doc = run_bench(config, progress=lambda msg: status.update(f"benchmarking {msg}"))
        out = Console()
        if not out.is_terminal:  # piped or logged: keep every column readable, not 80 wide
            out = Console(width=200)
        render(doc, out)
        if json_path is not None:
            write_json(doc, json_path)
            err.print(f"wrote {json_path}")
        if plot is not None:
            if len(config.seqs) < 2:
                err.print("[yellow]--plot needs two or more --seq values; no plot written[/]")
            else:
                write_plot(doc, plot)
                err.print(f"wrote {plot}")


def _fmt(x, spec: str) -> str:
    return "" if x is None else format(x, spec)


def render(doc: dict, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    env, cfg = doc["env"], doc["config"]
    cpu = cfg["device"] == "cpu"
    unit, mult = ("GFLOP/s", 1e3) if cpu else ("TFLOP/s", 1.0)
    console.print(
        f"[bold]env[/] torch {env['torch']} (CUDA {env['cuda'] or 'none'}), "
        f"{escape(env['device_name'])}, {env['cpu_threads']} threads; triton {env['triton']}, "
        f"flash-attn {env['flash_attn'] or 'not installed'}, "
        f"xformers {env['xformers'] or 'not installed'}"
    )
    for seq in sorted({r["seq"] for r in doc["results"]}):
        table = Table(
            title=f"attention {cfg['mode']} {cfg['dtype']} B={cfg['batch']} Hq={cfg['heads']} "
            f"Hkv={cfg['kv_heads']} T={seq} D={cfg['head_dim']}"
            f"{' causal' if cfg['causal'] else ''} on {cfg['device']}"
        )
        table.add_column("backend", style="bold", no_wrap=True)
        table.add_column("status", overflow="fold", min_width=24)
        for col in ("max abs err", "ms median", "ms min", unit, "peak MB", "x eager", "mem/eager"):
            table.add_column(col, justify="right", no_wrap=True)
        for r in doc["results"]:
            if r["seq"] != seq:
                continue
            style = STATUS_STYLE.get(r["status"], "")
            status = r["status"] + (f": {r['reason']}" if r["reason"] else "")
            table.add_row(
                r["backend"],
                f"[{style}]{escape(status)}[/]",
                _fmt(r["max_abs_err"], ".1e"),
                _fmt(r["ms_median"], ".2f"),
                _fmt(r["ms_min"], ".2f"),
                _fmt(None if r["tflops"] is None else r["tflops"] * mult, ".3g"),
                _fmt(r["peak_mem_mb"], ".1f"),
                _fmt(r["speedup_vs_eager"], ".2f"),
                _fmt(r["mem_ratio_vs_eager"], ".3f"),
            )
        console.print(table)
    if cpu:
        console.print(
            "CPU peak memory: process RSS high-water mark above the RSS before the call "
            "(psutil, sampled every 0.5 ms). No GPU on this machine: no GPU figures."
        )


# -- `--decode` and `--mixer ssm` (issue 17) ----------------------------------------------------


def _console():
    from rich.console import Console

    out = Console()
    return out if out.is_terminal else Console(width=200)


def _decode(cache_len, *, seq, batch, heads, kv_heads, head_dim, dtype, mode, backends, repeats,
            device, json_path) -> None:  # fmt: skip
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from astrobio_cli.attention.bench import BenchConfig, run_decode_bench, write_json

    if mode != "fwd":
        raise UsageError("--decode times the forward step only; drop --mode")
    names = [b.strip() for b in backends.split(",") if b.strip()] if backends else None
    config = BenchConfig(seqs=[cache_len], batch=batch, heads=heads, kv_heads=kv_heads,
                         head_dim=head_dim, dtype=dtype, causal=True, backends=names,
                         repeats=repeats, device=device)  # fmt: skip
    err = Console(stderr=True)
    with err.status("benchmarking decode...") as status:
        doc = run_decode_bench(config, cache_len, progress=lambda m: status.update(m))
    cfg, env, out = doc["config"], doc["env"], _console()
    out.print(f"[bold]env[/] torch {env['torch']}, {escape(env['device_name'])}, "
              f"{env['cpu_threads']} threads")  # fmt: skip
    for kv in cfg["kv_heads"]:
        table = Table(
            title=f"decode {cfg['dtype']} B={cfg['batch']} Hq={cfg['heads']} Hkv={kv} "
            f"(GQA {cfg['heads'] // kv}) cache {cache_len} D={cfg['head_dim']} on {cfg['device']}"
        )
        table.add_column("backend", style="bold", no_wrap=True)
        table.add_column("status", overflow="fold", min_width=24)
        for col in ("max abs err", "ms median", "ms min", "tokens/s", "cache bytes"):
            table.add_column(col, justify="right", no_wrap=True)
        for r in (r for r in doc["results"] if r["kv_heads"] == kv):
            style = STATUS_STYLE.get(r["status"], "")
            status = r["status"] + (f": {r['reason']}" if r["reason"] else "")
            table.add_row(r["backend"], f"[{style}]{escape(status)}[/]",
                          _fmt(r["max_abs_err"], ".1e"), _fmt(r["ms_median"], ".3f"),
                          _fmt(r["ms_min"], ".3f"), _fmt(r["tokens_per_s"], ".4g"),
                          f"{r['cache_bytes']:,}")  # fmt: skip
        out.print(table)
    if json_path is not None:
        write_json(doc, json_path)
        err.print(f"wrote {json_path}")


def _ssm(*, seq, batch, heads, kv_heads, head_dim, dtype, mode, backends, repeats, device,
         json_path) -> None:  # fmt: skip
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from astrobio_cli.attention.bench import write_json
    from astrobio_cli.attention.ssm import run_ssm_bench

    if dtype != "fp32":
        raise UsageError("--mixer ssm measures fp32 only; drop --dtype")
    names = [b.strip() for b in backends.split(",") if b.strip()] if backends else None
    err = Console(stderr=True)
    with err.status("benchmarking the SSM mixer..."):
        doc = run_ssm_bench(_ints(seq, "--seq"), batch=batch, heads=heads, head_dim=head_dim,
                            mode=mode, repeats=repeats, device=device, scans=names)  # fmt: skip
    cfg, env, out = doc["config"], doc["env"], _console()
    out.print(f"[bold]env[/] torch {env['torch']}, {escape(env['device_name'])}, "
              f"{env['cpu_threads']} threads")  # fmt: skip
    table = Table(
        title=f"SSM mixer {cfg['mode']} fp32 B={cfg['batch']} width {cfg['dim']} (inner "
        f"{cfg['inner']}, state {cfg['d_state']}) on {cfg['device']}"
    )
    for col in ("T", "backend", "status"):
        table.add_column(col, no_wrap=col != "status", overflow="fold")
    for col in ("max abs err", "ms median", "ms min", "tokens/s"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in doc["results"]:
        style = STATUS_STYLE.get(r["status"], "")
        status = r["status"] + (f": {r['reason']}" if r["reason"] else "")
        table.add_row(str(r["seq"]), r["backend"], f"[{style}]{escape(status)}[/]",
                      _fmt(r["max_abs_err"], ".1e"), _fmt(r["ms_median"], ".2f"),
                      _fmt(r["ms_min"], ".2f"), _fmt(r["tokens_per_s"], ".4g"))  # fmt: skip
    out.print(table)
    if json_path is not None:
        write_json(doc, json_path)
        err.print(f"wrote {json_path}")
