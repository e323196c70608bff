"""Which backend runs a call: `auto` routing by a per-device priority, forcing, and `explain`.

Priority (first exact backend that is installed, available here and supports the call wins):

- cuda: flash-attn, sdpa-flash, triton, sdpa-cudnn, xformers, sdpa-efficient, sdpa, eager
- cpu (and any other device): sdpa-flash, sdpa, eager

Why: fused kernels first, because they never materialise the (Tq, Tk) score matrix; the Dao
flash-attn library first on CUDA as the most tuned; our Triton kernel ahead of cuDNN and xFormers
because it is tested here against the float64 reference on every shape it accepts; `sdpa`
(unpinned: PyTorch chooses) and `eager` last as catch-alls. On the CPU PyTorch's blocked
flash kernel is the only fused one; Triton runs there only under its interpreter, which is for
correctness, never for speed. Inexact backends (linear, sliding-window) and third-party backends
that are not in this list are never picked by `auto`: name them to use them.

Forcing: `backend=NAME` in the call, or the setting `attention.backend` (environment
`ASTROBIO_ATTENTION__BACKEND`) when the call says `auto`. A forced backend that cannot run the
call is an error that gives its reason; there is no silent fallback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from astrobio_cli.errors import UsageError

PRIORITY: dict[str, tuple[str, ...]] = {
    "cuda": (
        "flash-attn",
        "sdpa-flash",
        "triton",
        "sdpa-cudnn",
        "xformers",
        "sdpa-efficient",
        "sdpa",
        "eager",
    ),
    "cpu": ("sdpa-flash", "sdpa", "eager"),
}


def priority_for(device_type: str) -> tuple[str, ...]:
    return PRIORITY.get(device_type, PRIORITY["cpu"])


class BackendUnsupportedError(UsageError, ValueError):
    """A forced backend cannot run this call (the message says why)."""


@dataclass
class Candidate:
    """One backend's verdict for one call."""

    name: str
    exact: bool
    rank: int | None  # position in the device's priority list, None when not listed
    available: bool
    supported: bool
    reason: str  # why it cannot run, or why auto did not pick it
    chosen: bool = False


@dataclass
class Explanation:
    """What `auto` (or the forced backend) does for one call, and why every other backend not."""

    problem: str
    device: str
    requested: str  # "auto" or the forced name
    forced_by: str  # "" | "argument" | "setting"
    chosen: str | None
    priority: tuple[str, ...]
    candidates: list[Candidate] = field(default_factory=list)


_INSTANCES: dict[int, tuple[Any, Any]] = {}


def backend_instance(spec: Any) -> Any:
    """The live backend object of a spec, built once per process."""
    hit = _INSTANCES.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    obj = spec.factory()
    _INSTANCES[id(spec)] = (spec, obj)
    return obj


def plugin_host():
    """The host whose backends route: the one passed to `build_app(host=...)` or
    `plugins.set_active_host` (tests, notebooks), else the process-wide one."""
    from astrobio_cli import plugins

    return plugins.active_host()


def _requested(backend: str) -> tuple[str, str]:
    if backend != "auto":
        return backend, "argument"
    from astrobio_cli.settings import get_settings

    forced = get_settings().attention.backend
    if forced and forced != "auto":
        return forced, "setting"
    return "auto", ""


def _verdict(spec: Any, q, k, v, problem) -> tuple[bool, bool, str]:
    from astrobio_cli.plugins import _status

    st = _status(spec)
    if st.state != "available":
        return False, False, st.reason or st.state
    try:
        obj = backend_instance(spec)
        ok, reason = obj.supports(q, k, v, problem.mask, problem.causal, problem.training)
    except Exception as exc:  # a broken third-party backend must not break routing
        return True, False, f"supports() raised {type(exc).__name__}: {exc}"
    if ok and problem.dropout_p > 0:
        # `supports_dropout`: a bool, or a callable(q) for backends where it depends on device.
        flag = getattr(obj, "supports_dropout", True)
        if not (flag(q) if callable(flag) else flag):
            return True, False, f"does not implement dropout (dropout_p > 0) on {q.device.type}"
    return True, bool(ok), "" if ok else str(reason)


def explain_problem(q, k, v, problem, backend: str = "auto", host: Any = None) -> Explanation:
    """Judge every registered backend for a validated call."""
    host = host or plugin_host()
    requested, forced_by = _requested(backend)
    prio = priority_for(problem.device.type)
    out = Explanation(
        problem=problem.describe(),
        device=problem.device.type,
        requested=requested,
        forced_by=forced_by,
        chosen=None,
        priority=prio,
    )
    if requested != "auto":
        spec = host.get("attention", requested)  # UnknownNameError with a suggestion
    specs = {s.name: s for s in host.specs("attention")}
    order = [n for n in prio if n in specs] + sorted(n for n in specs if n not in prio)
    for name in order:
        spec = specs[name]
        rank = prio.index(name) if name in prio else None
        available, supported, reason = _verdict(spec, q, k, v, problem)
        out.candidates.append(Candidate(name, spec.exact, rank, available, supported, reason))
    if requested != "auto":
        for c in out.candidates:
            if c.name == requested and c.available and c.supported:
                c.chosen = True
                out.chosen = c.name
            elif c.name != requested and c.available and c.supported:
                c.reason = f"not requested ({requested} was forced by {forced_by})"
        return out
    for c in out.candidates:
        if not (c.available and c.supported):
            continue
        if not c.exact:
            c.reason = "inexact: auto never picks it (name it to use it)"
        elif c.rank is None:
            c.reason = f"not in the {problem.device.type} priority list (name it to use it)"
        elif out.chosen is None:
            c.chosen = True
            out.chosen = c.name
        else:
            c.reason = f"lower priority than {out.chosen}"
    return out


def select_backend(q, k, v, problem, backend: str = "auto", host: Any = None) -> Any:
    """The backend object that runs this call, or an error that says why none can."""
    host = host or plugin_host()
    requested, forced_by = _requested(backend)
    if requested != "auto":
        spec = host.get("attention", requested)
        available, supported, reason = _verdict(spec, q, k, v, problem)
        if not (available and supported):
            via = (
                "the setting attention.backend (ASTROBIO_ATTENTION__BACKEND)"
                if forced_by == "setting"
                else "backend="
            )
            raise BackendUnsupportedError(
                f"attention backend '{requested}' (forced by {via}) cannot run "
                f"{problem.describe()}: {reason}"
            )
        return backend_instance(spec)
    specs = {s.name: s for s in host.specs("attention")}
    for name in priority_for(problem.device.type):
        spec = specs.get(name)
        if spec is None or not spec.exact:
            continue
        available, supported, _ = _verdict(spec, q, k, v, problem)
        if available and supported:
            return backend_instance(spec)
    exp = explain_problem(q, k, v, problem, "auto", host)
    why = "; ".join(f"{c.name}: {c.reason}" for c in exp.candidates)
    raise BackendUnsupportedError(f"no attention backend can run {problem.describe()} ({why})")
