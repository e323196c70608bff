"""The `astrobio` command line: a Typer app built by a factory, never at import.

Commands are thin: they parse arguments, call one library function and render its result.
Importing this package never imports torch, triton, transformers or the native module.
"""

import contextlib
import importlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from astrobio_cli.errors import UserError

# Core command modules; each defines `register(app)`. Modules are imported when the app is
# built, so they must keep heavy imports inside their command functions.
COMMAND_MODULES = (
    "astrobio_cli.cli.plugins_cmd",
    "astrobio_cli.cli.env_cmd",
    "astrobio_cli.cli.config_cmd",
    "astrobio_cli.cli.fetch_cmd",
    "astrobio_cli.cli.cache_cmd",
    "astrobio_cli.cli.preprocess_cmd",
    "astrobio_cli.cli.attention_cmd",
    "astrobio_cli.cli.bench_cmd",
    "astrobio_cli.cli.train_cmd",
    "astrobio_cli.cli.smoke_cmd",
    "astrobio_cli.cli.serve_cmd",
    "astrobio_cli.cli.runs_cmd",
    "astrobio_cli.cli.predict_cmd",
    "astrobio_cli.cli.catalog_cmd",
)

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


def _version_callback(value: bool) -> None:
    if value:
        from astrobio_cli import __version__

        typer.echo(f"astrobio {__version__}")
        raise typer.Exit()


def build_app(host=None) -> typer.Typer:
    """Build the command-line app. `host` is a PluginHost (default: the installed plugins)."""
    from astrobio_cli import _state

    app = typer.Typer(
        name="astrobio",
        help="Machine learning for astrobiology: fetch archives, preprocess climate datacubes, "
        "train models and benchmark attention kernels.",
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
        cls=AstrobioGroup,
        context_settings=CONTEXT_SETTINGS,
        rich_markup_mode=None,
    )

    @app.callback()
    def root(
        version: Annotated[
            bool,
            typer.Option(
                "--version",
                callback=_version_callback,
                is_eager=True,
                help="Show the version and exit.",
            ),
        ] = False,
        config: Annotated[
            Path | None,
            typer.Option(
                "--config",
                help="Settings file (TOML). Default: ASTROBIO_CONFIG or the user config dir.",
            ),
        ] = None,
        data_dir: Annotated[
            Path | None, typer.Option(help="Where fetched and generated data go.")
        ] = None,
        cache_dir: Annotated[Path | None, typer.Option(help="Download cache.")] = None,
        runs_dir: Annotated[Path | None, typer.Option(help="Where training runs go.")] = None,
        log_level: Annotated[
            str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")
        ] = None,
        debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    ) -> None:
        global _DEBUG
        _DEBUG = debug
        _state.configure(
            config,
            {
                "data_dir": data_dir,
                "cache_dir": cache_dir,
                "runs_dir": runs_dir,
                "log_level": log_level,
            },
        )

    # Each app uses the host it was built with: a given one (tests, notebooks) or the installed
    # plugins. Resetting here keeps one app's host from leaking into the next one built.
    _set_host(host)

    for dotted in COMMAND_MODULES:
        try:
            module = importlib.import_module(dotted)
        except ModuleNotFoundError as exc:
            if exc.name == dotted:  # not written yet in this tree
                continue
            raise
        module.register(app)

    _add_plugin_commands(app)
    return app


def _set_host(host) -> None:
    from astrobio_cli.plugins import set_active_host

    set_active_host(host)


def current_host():
    """The plugin host the running app uses."""
    from astrobio_cli.plugins import active_host

    return active_host()


def _command_names(app: typer.Typer) -> list[str]:
    names = []
    for c in app.registered_commands:
        names.append(c.name or (c.callback.__name__.replace("_", "-") if c.callback else "?"))
    for g in app.registered_groups:
        names.append(g.name or (g.typer_instance.info.name if g.typer_instance else "?") or "?")
    return names


def _add_plugin_commands(app: typer.Typer) -> None:
    from astrobio_cli.plugins import Broken, PluginInfo, _format_error

    host = current_host()
    infos = {p.name: p for p in host.plugins}
    for impl in host.pm.hook.register_commands.get_hookimpls():
        name = host.pm.get_name(impl.plugin) or "?"
        info = infos.get(name, PluginInfo(name, "?", "?", "?"))
        before_cmds, before_groups = len(app.registered_commands), len(app.registered_groups)
        known = _command_names(app)
        try:
            impl.function(app=app)
            added = _command_names(_Slice(app, before_cmds, before_groups))
            clash = sorted({n for n in added if n in known or added.count(n) > 1})
            if clash:
                raise ValueError(
                    f"plugin '{name}' ({info.dist}) adds command(s) {', '.join(clash)} "
                    "that already exist"
                )
        except Exception as exc:
            del app.registered_commands[before_cmds:]
            del app.registered_groups[before_groups:]
            host.broken.append(Broken(info, _format_error(exc)))


class _Slice:
    """The commands and groups a plugin added (for the clash check)."""

    def __init__(self, app: typer.Typer, n_cmds: int, n_groups: int) -> None:
        self.registered_commands = app.registered_commands[n_cmds:]
        self.registered_groups = app.registered_groups[n_groups:]


# What each command needs beyond the light core (`pip install astrobio`): a command whose
# modules are missing stops with one message naming the extra to install (astrobio_cli.extras).
NEEDS: dict[str, tuple[str, ...]] = {
    "train": ("torch",),
    "eval": ("torch",),
    "predict": ("torch",),
    "serve": ("torch", "fastapi", "uvicorn"),
    "attention": ("torch",),
    "bench attention": ("torch",),
    "bench train": ("torch",),
    "bench loader": ("torch",),
}


def _needs(name: str | None, args: list[str]) -> tuple[str, tuple[str, ...]]:
    if name == "bench":
        sub = next((a for a in args if not a.startswith("-")), None)
        name = f"bench {sub}" if sub else name
    return f"astrobio {name}", NEEDS.get(name or "", ())


class AstrobioGroup(TyperGroup):
    """The root click group: turns a UserError from any command into one line and an exit code."""

    def resolve_command(self, ctx, args):
        cmd_name, cmd, rest = super().resolve_command(ctx, args)
        if not ctx.resilient_parsing and not {"-h", "--help"} & set(rest):
            what, modules = _needs(cmd_name, rest)
            if modules:
                from astrobio_cli.extras import require

                require(what, *modules)
        return cmd_name, cmd, rest

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            if _DEBUG or _RAISE or os.environ.get("ASTROBIO_DEBUG") == "1":
                raise
            _err(_escape(str(exc)))
            raise typer.Exit(exc.exit_code) from None


_DEBUG = False
_RAISE = False  # set by `raising()`: the Python API gets the UserError itself


@contextlib.contextmanager
def raising():
    """Within this block, a command's UserError propagates instead of printing and exiting."""
    global _RAISE
    before, _RAISE = _RAISE, True
    try:
        yield
    finally:
        _RAISE = before


def _err(message: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]error:[/] {message}", markup=True
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `astrobio` script."""
    debug = (
        "--debug" in (argv if argv is not None else sys.argv)
        or os.environ.get("ASTROBIO_DEBUG") == "1"
    )
    try:
        app = build_app()
        app(args=argv, prog_name="astrobio")
    except UserError as exc:
        if debug:
            raise
        _err(_escape(str(exc)))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _err("interrupted")
        sys.exit(130)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
