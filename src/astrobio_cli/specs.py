"""The small typed records a plugin registers.

A spec describes a plugin's contribution without building it: `factory` imports heavy modules
(torch, transformers, ...) only when it is called, and `check` says cheaply whether the thing can
run here. Registering a spec must never import torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

NAME_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")

Availability = tuple[bool, str]
"""`(True, "")` when usable here, else `(False, "why not")`, e.g. `(False, "needs a CUDA device")`."""


def always_available() -> Availability:
    return True, ""


@dataclass(frozen=True, kw_only=True)
class Spec:
    """Fields shared by every kind of spec.

    name: kebab-case, the name used on the command line (`cube-unet`, `nasa-exoplanet`).
    description: one line for `astrobio plugins list`.
    factory: builds the live object; called only when a command needs it. Import heavy modules
        inside it, not at the top of the plugin module.
    check: returns `(ok, reason)`; must be cheap and must not import torch (it runs for
        `astrobio plugins list`). Use `astrobio_cli.hardware` to ask about CUDA devices.
    """

    kind: ClassVar[str] = ""
    name: str
    description: str
    factory: Callable[..., Any]
    check: Callable[[], Availability] = always_available
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise ValueError(
                f"{type(self).__name__} name {self.name!r} is not kebab-case "
                "(lowercase letters, digits and single dashes, e.g. 'cube-unet')"
            )
        if not callable(self.factory):
            raise ValueError(f"{type(self).__name__} {self.name!r}: factory must be callable")
        if not callable(self.check):
            raise ValueError(f"{type(self).__name__} {self.name!r}: check must be callable")


@dataclass(frozen=True, kw_only=True)
class ModelSpec(Spec):
    """A trainable model (`astrobio train NAME`).

    data_kinds: the kinds of data the model accepts (e.g. `("climate-cube",)`); a mismatch between
        model and data is reported before any training starts.
    factory(config) -> a model plugin object: the contract is in `astrobio_cli.training.plugin`
    and the guide in docs/training.md ("Writing a model plugin").
    """

    kind: ClassVar[str] = "model"
    data_kinds: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class DataSourceSpec(Spec):
    """A data source (`astrobio fetch NAME`).

    factory() -> the source object. `command` (optional) returns a plain function whose
    signature Typer turns into the options of `astrobio fetch NAME`; it is imported lazily.
    offline: True when the source needs no network (e.g. a generator).
    produces: the data kinds its output is (`astrobio_cli.data.kinds.KINDS`, e.g.
        `("exoplanet-table",)`): `astrobio plugins list` shows which models it can feed.
    default_data: optional `(data_dir or None) -> Path`, for an offline source that makes the
        built-in data of its kind (what a model trains on without `--data`); imported lazily.
    """

    kind: ClassVar[str] = "data-source"
    command: Callable[[], Callable[..., Any]] | None = None
    offline: bool = False
    produces: tuple[str, ...] = ()
    default_data: Callable[[Any], Any] | None = None


@dataclass(frozen=True, kw_only=True)
class AttentionBackendSpec(Spec):
    """An attention backend (`attention(..., backend=NAME)`).

    factory() -> a backend object with `supports(q, k, v, mask, causal, training) -> (ok, reason)`
    and `__call__(q, k, v, *, mask, causal, scale, dropout_p)`.
    exact: False for approximations (linear, sliding-window); `auto` never picks those.
    """

    kind: ClassVar[str] = "attention"
    exact: bool = True


SPEC_TYPES: dict[str, type[Spec]] = {
    ModelSpec.kind: ModelSpec,
    DataSourceSpec.kind: DataSourceSpec,
    AttentionBackendSpec.kind: AttentionBackendSpec,
}
KINDS: tuple[str, ...] = tuple(SPEC_TYPES)
