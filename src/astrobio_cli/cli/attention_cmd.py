"""`astrobio attention explain`: which backend `auto` picks for a problem, and why no other."""

from enum import StrEnum
from typing import Annotated

import typer

from astrobio_cli.errors import UsageError


class MaskKind(StrEnum):
    none = "none"
    bool = "bool"
    additive = "additive"
    padding = "padding"


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="The attention interface: routing between backends.", no_args_is_help=True
    )

    @group.command("explain")
    def explain_cmd(
        seq: Annotated[int, typer.Option(help="Sequence length (Tq = Tk).")] = 4096,
        q_len: Annotated[
            int | None, typer.Option(help="Query length Tq when it differs (decode: 1).")
        ] = None,
        batch: Annotated[int, typer.Option(help="Batch size B.")] = 1,
        heads: Annotated[int, typer.Option(help="Query heads Hq.")] = 8,
        kv_heads: Annotated[
            int | None, typer.Option(help="Key/value heads Hkv (default: --heads).")
        ] = None,
        head_dim: Annotated[int, typer.Option(help="Head dimension D.")] = 64,
        dtype: Annotated[str, typer.Option(help="fp32, fp16, bf16 or fp64.")] = "fp32",
        causal: Annotated[bool, typer.Option("--causal", help="Causal (bottom-right).")] = False,
        mask: Annotated[MaskKind, typer.Option(help="Mask kind to route for.")] = MaskKind.none,
        training: Annotated[
            bool, typer.Option("--training", help="Route for a call that needs gradients.")
        ] = False,
        device: Annotated[
            str | None, typer.Option(help="cpu or cuda (default: cuda when available).")
        ] = None,
        backend: Annotated[
            str, typer.Option(help="'auto', or a name to see whether it could be forced.")
        ] = "auto",
    ) -> None:
        """Print the backend `auto` picks, then every other backend with why it was not picked.

        Example: astrobio attention explain --seq 4096 --heads 8 --kv-heads 2 --causal --mask padding
        """
        from rich.console import Console

        exp = explain_problem_for(
            seq=seq,
            q_len=q_len,
            batch=batch,
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            dtype=dtype,
            causal=causal,
            mask=mask.value,
            training=training,
            device=device,
            backend=backend,
        )
        render(exp, Console())
        if exp.chosen is None:
            raise typer.Exit(1)

    app.add_typer(group, name="attention")


def explain_problem_for(
    *,
    seq: int,
    q_len: int | None,
    batch: int,
    heads: int,
    kv_heads: int | None,
    head_dim: int,
    dtype: str,
    causal: bool,
    mask: str,
    training: bool,
    device: str | None,
    backend: str,
):
    """Describe the problem with zero-stride views (nothing big is allocated) and explain it."""
    from astrobio_cli.hardware import has_cuda

    names = ("fp32", "fp16", "bf16", "fp64")
    if dtype not in names:
        raise UsageError(f"--dtype must be one of {', '.join(names)}, got '{dtype}'")
    device = device or ("cuda" if has_cuda() else "cpu")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu or cuda, got '{device}'")
    for name, value in (
        ("--seq", seq),
        ("--batch", batch),
        ("--heads", heads),
        ("--head-dim", head_dim),
    ):
        if value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}")
    import torch

    from astrobio_cli.attention import explain

    Tq, Tk, Hkv = q_len or seq, seq, kv_heads or heads
    dt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.get(
        dtype, torch.float64
    )

    def view(*shape, dtype=dt):
        return torch.empty((1,) * len(shape), dtype=dtype, device=device).expand(*shape)

    q = view(batch, heads, Tq, head_dim)
    k = view(batch, Hkv, Tk, head_dim)
    v = view(batch, Hkv, Tk, head_dim)
    m = {
        "none": None,
        "bool": view(Tq, Tk, dtype=torch.bool) if mask == "bool" else None,
        "additive": view(Tq, Tk, dtype=torch.float32) if mask == "additive" else None,
        "padding": view(batch, Tk, dtype=torch.bool) if mask == "padding" else None,
    }[mask]
    try:
        return explain(q, k, v, mask=m, causal=causal, training=training, backend=backend)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def render(exp, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    if exp.chosen:
        how = "auto picks" if exp.requested == "auto" else f"forced by {exp.forced_by}:"
        console.print(f"{how} [bold green]{exp.chosen}[/] for {escape(exp.problem)}")
    else:
        console.print(
            f"[bold red]{escape(exp.requested)} cannot run[/] {escape(exp.problem)}"
            if exp.requested != "auto"
            else f"[bold red]no backend can run[/] {escape(exp.problem)}"
        )
    console.print(f"priority on {exp.device}: {', '.join(exp.priority)}")
    table = Table()
    table.add_column("backend", style="bold", no_wrap=True)
    table.add_column("exact", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("why", overflow="fold")
    for c in exp.candidates:
        if c.chosen:
            verdict = "[green]picked[/]"
        elif not c.available:
            verdict = "[yellow]unavailable[/]"
        elif not c.supported:
            verdict = "[yellow]declines[/]"
        else:
            verdict = "not picked"
        table.add_row(c.name, "yes" if c.exact else "no", verdict, escape(c.reason))
    console.print(table)
