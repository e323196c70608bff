"""`astrobio serve MODEL --checkpoint PATH`: a thin command over astrobio_cli.serve."""

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class Device(StrEnum):
    cpu = "cpu"
    cuda = "cuda"


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)


def serve_command(
    model: Annotated[str, typer.Argument(help="Model name, e.g. cube-unet.")],
    checkpoint: Annotated[
        Path, typer.Option(help="A run directory, its checkpoints/ or a step-NNNNNN directory.")
    ],
    host: Annotated[
        str, typer.Option(help="Address to bind. Loopback by default; the API has no auth.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    device: Annotated[
        Device | None, typer.Option(help="Run the model here (default: cuda if usable).")
    ] = None,
    max_request_bytes: Annotated[
        int, typer.Option(min=1, help="Larger request bodies get 413.")
    ] = 1_000_000,
    max_batch: Annotated[int, typer.Option(min=1, help="Most instances per request.")] = 64,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Most instances concurrent requests share in one forward pass "
            "(default: --max-batch).",
        ),
    ] = None,
    max_wait_ms: Annotated[
        float,
        typer.Option(
            min=0,
            max=1000,
            help="How long a request may wait for others to share its forward pass. 0: none "
            "(requests that arrive while the model runs share the next pass).",
        ),
    ] = 0.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve a trained checkpoint over HTTP: /health, /v1/models, /v1/predict (and
    /v1/generate for text models)."""
    from rich.console import Console

    from astrobio_cli.cli import current_host
    from astrobio_cli.serve import LOOPBACK, create_app, load_served

    spec = current_host().get("model", model)  # unknown names: exit 2 with "did you mean"
    if not checkpoint.exists():
        from astrobio_cli.errors import UsageError

        raise UsageError(f"--checkpoint {checkpoint} does not exist; pass a run directory")
    served = load_served(spec, checkpoint, device=device.value if device else None)
    app = create_app(
        served,
        max_request_bytes=max_request_bytes,
        max_batch=max_batch,
        batch_size=batch_size,
        max_wait_ms=max_wait_ms,
    )
    console = Console(stderr=True, highlight=False)
    if host not in LOOPBACK:
        console.print(
            f"[yellow]warning:[/] binding {host}: the API has no authentication; put it behind "
            "a reverse proxy or keep it on loopback"
        )
    console.print(
        f"serving [bold]{model}[/] from {served.checkpoint} on {served.device} at "
        f"http://{host}:{port} (docs: /docs)"
    )
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
