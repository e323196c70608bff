"""`astrobio smoke`: an honest readiness check. Library only: checks return data, nothing prints.

Every check runs the real thing (the installed plugins, the real model architectures at their
`smoke_config` size, the real attention backends, the compiled extension on a real datacube) and
ends in one of three states:

    passed   it ran and the result was checked against an independent reference;
    failed   it ran and something was wrong, or it could not run although it should (the error);
    skipped  it cannot run here (the reason: "no CUDA device", "flash-attn is not installed").

A skip is never a pass: `Report.ok` is False when anything failed or when a `--require`d item was
skipped or did not run. Groups, in order (`--only` takes these names):

    accelerator  what is present (CPU, CUDA devices, capability, memory) and usable
    imports      every plugin loads; a broken one is a failure naming it and its distribution
    native       the Rust extension: loaded, and equal to a float64 NumPy computation on a real
                 NCEP reanalysis slice shipped in `smoke_data/` (with real NaNs below ground)
    data         the offline default data builds; a DataLoader yields batches of the right shapes
    model        per registered model: init, forward, backward, optimizer step
    checkpoint   per model: save (the training checkpoint format), load, identical outputs
    attention    every backend against the float64 reference (values and gradients), and which
                 backend `auto` picks here and why
    precision    per model: bf16 autocast (CPU and GPU) and fp16 (GPU), loss finite and close to
                 the fp32 loss
    plugins      the plugins' own checks (see "Plugin checks" below)

Plugin checks: any spec (model, data source, attention backend) may declare its own checks in
`extras["smoke_checks"]`, a dict of `{name: callable}`. The callable takes no argument and
returns a one-line detail (a string) on success; it raises `astrobio_cli.smoke.Skip("reason")`
when it cannot run here and any other exception on failure. Import heavy modules inside the
callable: this module imports no torch at import, so a plugin can import `Skip` cheaply.

    AttentionBackendSpec(name="mine", ..., extras={"smoke_checks": {"kernel-loads": check_kernel}})

reports as `plugin[mine:kernel-loads]`.
"""

from __future__ import annotations

import os
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from astrobio_cli.errors import UsageError

GROUPS = (
    "accelerator",
    "imports",
    "native",
    "data",
    "model",
    "checkpoint",
    "attention",
    "precision",
    "plugins",
)
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
SMOKE_DATA = Path(__file__).parent / "smoke_data"

# Tolerances against the float64 references. fp32 backends differ from float64 by the rounding
# of a D-term dot product and a softmax: ~1e-6 here; 1e-4 leaves room for blocked kernels (their
# online softmax rescales) without hiding a wrong mask or scale (errors of order 1e-1).
ATOL = {"float32": 1e-4, "float16": 2e-2, "bfloat16": 6e-2}
GRAD_ATOL = {"float32": 1e-3, "float16": 5e-2, "bfloat16": 2e-1}
# Autocast loss vs the fp32 loss on the same batch and weights: bf16 keeps ~3 significant digits,
# a tiny model's loss moves by well under 5% (a broken cast gives NaN or a different scale).
AUTOCAST_RTOL = 0.05


class Skip(Exception):
    """Raised by a check that cannot run here; the message is the reason."""


@dataclass
class CheckResult:
    name: str  # e.g. "model-forward[cube-unet]"
    group: str  # one of GROUPS
    status: str  # passed | failed | skipped
    detail: str  # what was checked (passed), the error (failed) or the reason (skipped)
    seconds: float
    traceback: str = ""  # for failures, the formatted traceback (in the JSON report)
    warnings: list[str] = field(default_factory=list)  # warnings raised while it ran (JSON)


@dataclass
class Requirement:
    item: str
    status: str  # passed | failed
    detail: str


@dataclass
class Report:
    device: str
    checks: list[CheckResult] = field(default_factory=list)
    requirements: list[Requirement] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not any(c.status == FAILED for c in self.checks) and all(
            r.status == PASSED for r in self.requirements
        )

    def counts(self) -> dict[str, int]:
        out = {PASSED: 0, FAILED: 0, SKIPPED: 0}
        for c in self.checks:
            out[c.status] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "device": self.device,
            "seconds": round(self.seconds, 3),
            "counts": self.counts(),
            "checks": [asdict(c) for c in self.checks],
            "requirements": [asdict(r) for r in self.requirements],
        }


def parse_list(raw: str | Sequence[str] | None) -> list[str]:
    """'a,b' or ['a', 'b,c'] -> ['a', 'b', 'c'] (empty items dropped)."""
    if raw is None:
        return []
    items = [raw] if isinstance(raw, str) else list(raw)
    return [p.strip() for item in items for p in item.split(",") if p.strip()]


def check_only(only: Iterable[str]) -> list[str]:
    groups = list(only)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise UsageError(
            f"--only: unknown check group(s) {', '.join(repr(u) for u in unknown)}; "
            f"the groups are: {', '.join(GROUPS)}"
        )
    return groups


# -- the runner ---------------------------------------------------------------------------------


class _Runner:
    def __init__(self, on_check: Callable[[CheckResult], None] | None) -> None:
        self.results: list[CheckResult] = []
        self.on_check = on_check

    def run(self, name: str, group: str, fn: Callable[[], str | None]) -> CheckResult:
        t0 = time.perf_counter()
        tb = ""
        # Library warnings (deprecations in torch or transformers) are kept with the check that
        # raised them, in the JSON report, instead of interleaving with the table.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                detail = fn() or ""
                status = PASSED
            except Skip as exc:
                status, detail = SKIPPED, str(exc)
            except Exception as exc:  # a check's failure is data, never a crash of the whole run
                status = FAILED
                detail = _one_line(exc)
                tb = traceback.format_exc()
        seen = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
        return self.add(
            CheckResult(name, group, status, detail, time.perf_counter() - t0, tb, seen)
        )

    def add(self, result: CheckResult) -> CheckResult:
        self.results.append(result)
        if self.on_check is not None:
            self.on_check(result)
        return result

    def skip(self, name: str, group: str, reason: str) -> CheckResult:
        return self.add(CheckResult(name, group, SKIPPED, reason, 0.0))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- entry point --------------------------------------------------------------------------------


def run_smoke(
    host: Any = None,
    *,
    only: Sequence[str] = (),
    require: Sequence[str] = (),
    device: str | None = None,
    on_check: Callable[[CheckResult], None] | None = None,
) -> Report:
    """Run the checks of `only` (default: every group) and judge `require`.

    device: "cpu", "cuda" or None (cuda when torch sees a CUDA device, else cpu).
    on_check: called with each result as it lands (for a live display).
    """
    if host is None:
        from astrobio_cli.plugins import get_host

        host = get_host()
    groups = check_only(only) if only else list(GROUPS)
    if device not in (None, "cpu", "cuda"):
        raise UsageError(f"--device {device!r}: use cpu or cuda")
    t0 = time.perf_counter()
    runner = _Runner(on_check)
    ctx = _Context(host=host, requested_device=device)
    report = Report(device=device or "auto")

    from astrobio_cli.extras import install_hint, missing

    # The light core (`pip install astrobio`) has no torch: its checks are skipped, saying why.
    no_torch = bool(missing("torch"))
    torch_skip = f"needs {install_hint('torch')}"
    if "accelerator" in groups:
        if no_torch:
            runner.skip("accelerator", "accelerator", torch_skip)
        else:
            _accelerator(runner, ctx)
    if "imports" in groups:
        _imports(runner, ctx)
    if "native" in groups:
        runner.run("native", "native", _native)
    if "data" in groups:
        if no_torch:
            runner.skip("data", "data", torch_skip)
        else:
            runner.run("data", "data", _data)
    model_groups = {"model", "checkpoint", "precision"} & set(groups)
    if model_groups:
        if no_torch:
            for g in sorted(model_groups):
                runner.skip(g, g, torch_skip)
        else:
            _models(runner, ctx, model_groups)
    if "attention" in groups:
        if no_torch:
            runner.skip("attention", "attention", torch_skip)
        else:
            _attention(runner, ctx)
    if "plugins" in groups:
        _plugin_checks(runner, ctx)

    report.device = ctx.device_label()
    report.checks = runner.results
    report.requirements = judge_requirements(runner.results, require, groups)
    report.seconds = time.perf_counter() - t0
    return report


def judge_requirements(
    results: Sequence[CheckResult], require: Sequence[str], groups: Sequence[str]
) -> list[Requirement]:
    """A required item passes when at least one check matches it and every match passed.

    An item matches a check by its full name (`model-forward[cube-unet]`), its group (`model`),
    its base name (`gpu`, `native`, `attention-auto`) or the name in brackets (`triton`,
    `flash-attn`, `cube-unet`).
    """
    out = []
    for item in require:
        matches = [c for c in results if _matches(item, c)]
        if not matches:
            known = sorted({_bracket(c.name) or c.name.split("[")[0] for c in results})
            why = (
                f"no check named {item!r} ran"
                + (f" (--only {','.join(groups)})" if len(groups) < len(GROUPS) else "")
                + (f"; checks that ran: {', '.join(known)}" if known else "")
            )
            out.append(Requirement(item, FAILED, why))
            continue
        bad = [c for c in matches if c.status != PASSED]
        if bad:
            out.append(
                Requirement(
                    item,
                    FAILED,
                    "; ".join(f"{c.name} {c.status}: {c.detail}" for c in bad[:3]),
                )
            )
        else:
            out.append(Requirement(item, PASSED, f"{len(matches)} check(s) passed"))
    return out


def _bracket(name: str) -> str:
    return name[name.index("[") + 1 : -1] if "[" in name and name.endswith("]") else ""


def _matches(item: str, c: CheckResult) -> bool:
    return item in (c.name, c.group, c.name.split("[")[0], _bracket(c.name))


# -- shared state -------------------------------------------------------------------------------


@dataclass
class _Context:
    host: Any
    requested_device: str | None
    _device: Any = None
    _device_error: str | None = None

    def device(self):
        """The torch device the model and attention checks run on (raises when unusable)."""
        if self._device is None and self._device_error is None:
            import torch

            if self.requested_device == "cuda" and not torch.cuda.is_available():
                self._device_error = (
                    f"--device cuda: torch {torch.__version__} sees no usable CUDA device"
                )
            else:
                name = self.requested_device or ("cuda" if torch.cuda.is_available() else "cpu")
                self._device = torch.device(name)
        if self._device_error is not None:
            raise RuntimeError(self._device_error)
        return self._device

    def device_label(self) -> str:
        if self._device is not None:
            return self._device.type
        return self.requested_device or "auto"


# -- 1. accelerator -----------------------------------------------------------------------------


def _accelerator(runner: _Runner, ctx: _Context) -> None:
    def present() -> str:
        import torch

        from astrobio_cli.hardware import cuda_device_count

        driver = cuda_device_count()
        cores = os.cpu_count() or 1
        parts = [f"CPU: {cores} logical cores, torch {torch.__version__}"]
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                parts.append(
                    f"cuda:{i} {p.name}, compute capability {p.major}.{p.minor}, "
                    f"{p.total_memory / 2**30:.1f} GiB"
                )
        elif driver > 0:
            raise RuntimeError(
                f"the CUDA driver reports {driver} device(s) but torch {torch.__version__} "
                f"cannot use them (built for CUDA: {torch.version.cuda}); install a CUDA build "
                "of torch"
            )
        else:
            parts.append("no CUDA device (the driver reports none)")
        return "; ".join(parts)

    def gpu() -> str:
        import torch

        if not torch.cuda.is_available():
            raise Skip("no CUDA device: torch.cuda.is_available() is False")
        a = torch.randn(256, 256, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        want = a @ a
        got = (a.float().cuda() @ a.float().cuda()).double().cpu()
        err = float((got - want).abs().max() / want.abs().max())
        if not err < 1e-4:
            raise RuntimeError(f"a float32 matmul on cuda:0 differs from float64 by {err:.2e}")
        free, total = torch.cuda.mem_get_info(0)
        return (
            f"{torch.cuda.device_count()} device(s) usable; matmul on cuda:0 matches float64 "
            f"(rel. err {err:.1e}); {free / 2**30:.1f} of {total / 2**30:.1f} GiB free"
        )

    runner.run("accelerator", "accelerator", present)
    runner.run("gpu", "accelerator", gpu)


# -- 2. imports ---------------------------------------------------------------------------------


def _imports(runner: _Runner, ctx: _Context) -> None:
    from astrobio_cli.plugins import KIND_LABEL, conflict_message

    host = ctx.host
    broken: dict[str, list[str]] = {}
    for b in host.broken:
        broken.setdefault(b.plugin.name, []).append(b.error)
    for info in host.plugins:
        registered = []
        for k, entries in host.entries.items():
            mine = sorted(n for n, e in entries.items() if e.plugin.name == info.name)
            if mine:
                registered.append(f"{KIND_LABEL[k]}s {', '.join(mine)}")

        def check(info=info, registered=registered) -> str:
            if info.name in broken:
                raise RuntimeError(
                    f"plugin '{info.name}' from '{info.dist}' {info.version} is broken: "
                    + "; ".join(broken[info.name])
                )
            return f"{info.dist} {info.version}: " + ("; ".join(registered) or "no specs")

        runner.run(f"import[{info.name}]", "imports", check)
    for (kind, name), clashing in sorted(host.conflicts.items()):

        def clash(kind=kind, name=name, clashing=clashing) -> str:
            raise RuntimeError(conflict_message(kind, name, clashing))

        runner.run(f"import[{name}]", "imports", clash)
    if not host.plugins:
        runner.add(
            CheckResult(
                "import[plugins]",
                "imports",
                FAILED,
                "no astrobio plugins are installed (the built-in distributions are missing)",
                0.0,
            )
        )


# -- 3. native ----------------------------------------------------------------------------------


def load_ncep_slice() -> dict[str, Any]:
    """The shipped real cube: float32 (1, 2, 8, 16, 32) with NaNs below ground; see README."""
    import numpy as np

    with np.load(SMOKE_DATA / "ncep_june_slice.npz") as z:
        return {k: z[k] for k in z.files}


def _native() -> str:
    import numpy as np

    from astrobio_cli.settings import get_settings

    if not get_settings().native:
        raise Skip(
            "disabled by the setting native = false (ASTROBIO_NATIVE=0): the NumPy twin runs"
        )
    try:
        from astrobio_cli import _native as native
    except ImportError as exc:
        raise RuntimeError(
            f"the Rust extension astrobio_cli._native does not load ({exc}); reinstall astrobio "
            "(it is built by maturin) or set ASTROBIO_NATIVE=0 to use the NumPy twin"
        ) from None
    from astrobio_cli import datacube as dc

    data = load_ncep_slice()
    cube = data["cube"]  # (1, var, lev, lat, lon) float32, NaN below ground
    # An independent float64 reference, written here (not the twin): per-variable moments.
    x = cube.astype(np.float64)
    per_var = np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)  # (var, N)
    valid = ~np.isnan(per_var)
    count = valid.sum(1)
    mean = np.array([row[ok].mean() for row, ok in zip(per_var, valid, strict=True)])
    std = np.array([row[ok].std() for row, ok in zip(per_var, valid, strict=True)])

    st_rs = dc.stats(cube, native=True)
    st_np = dc.stats(cube, native=False)
    for label, st in (("native", st_rs), ("NumPy twin", st_np)):
        if not np.array_equal(st.count, count):
            raise RuntimeError(f"{label} stats count {st.count.tolist()} != {count.tolist()}")
        # float64 accumulation on every side: only the summation order differs.
        if not np.allclose(st.mean, mean, rtol=1e-10, atol=0):
            raise RuntimeError(f"{label} stats mean {st.mean.tolist()} != float64 {mean.tolist()}")
        if not np.allclose(st.std, std, rtol=1e-6, atol=0):
            raise RuntimeError(f"{label} stats std {st.std.tolist()} != float64 {std.tolist()}")

    out_rs, mask_rs = dc.normalize(cube, st_np, fill="mean", mask=True, native=True)
    out_np, mask_np = dc.normalize(cube, st_np, fill="mean", mask=True, native=False)
    shape = (1, -1, 1, 1, 1)
    want = (x - st_np.mean.reshape(shape)) / st_np.std.reshape(shape)
    want = np.where(np.isnan(want), 0.0, want)  # the mean, normalised, is 0
    if not (np.array_equal(mask_rs, ~np.isnan(cube)) and np.array_equal(mask_np, mask_rs)):
        raise RuntimeError("normalize: the validity mask differs from ~isnan(input)")
    err = float(np.abs(out_rs.astype(np.float64) - want).max())
    twin_err = float(np.abs(out_rs.astype(np.float64) - out_np.astype(np.float64)).max())
    if not (err <= 1e-5 and twin_err <= 1e-5):  # float32 output of O(1) values
        raise RuntimeError(
            f"native normalize differs from float64 by {err:.2e}, from the twin by {twin_err:.2e}"
        )

    # Regridding 8 x 16 x 32 onto a 5-degree grid, NaN-aware: native against the twin.
    lat, lon = dc.regular_grid(5.0)
    rg_rs = dc.regrid(cube, data["lat"], data["lon"], lat, lon, native=True)
    rg_np = dc.regrid(cube, data["lat"], data["lon"], lat, lon, native=False)
    if not np.array_equal(np.isnan(rg_rs), np.isnan(rg_np)):
        raise RuntimeError("native regrid puts NaN where the NumPy twin does not (or vice versa)")
    rg_err = float(np.nanmax(np.abs(rg_rs.astype(np.float64) - rg_np) / (np.abs(rg_np) + 1)))
    if not rg_err <= 1e-5:
        raise RuntimeError(f"native regrid differs from the NumPy twin by {rg_err:.2e} (relative)")
    return (
        f"{native.build_profile()} build; on a real NCEP slice {tuple(cube.shape)} with "
        f"{int((~mask_rs).sum())} NaN: stats equal float64 NumPy, normalize (fill=mean) within "
        f"{err:.1e}, regrid to 5 degrees within {rg_err:.1e} of the NumPy twin"
    )


# -- 4. data ------------------------------------------------------------------------------------


def _data() -> str:
    import torch
    from torch.utils.data import DataLoader

    from astrobio_cli.data.datasets import CUBE_INPUTS, CUBE_TARGETS, CubeDataset
    from astrobio_cli.data.kinds import default_data

    try:  # through the contract: whichever installed source makes built-in climate cubes
        path = default_data("climate-cube")
    except ImportError as exc:
        raise RuntimeError(f"the climate-cube data source does not import: {exc}") from None
    ds = CubeDataset(path, "train")
    batch = 4
    loader = DataLoader(
        ds, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    x, y = next(iter(loader))
    z, lat, lon = ds.sample_shape
    want_x = (batch, len(CUBE_INPUTS), z, lat, lon)
    want_y = (batch, len(CUBE_TARGETS), z, lat, lon)
    if tuple(x.shape) != want_x or tuple(y.shape) != want_y:
        raise RuntimeError(
            f"batch shapes {tuple(x.shape)}, {tuple(y.shape)}; expected {want_x}, {want_y}"
        )
    if x.dtype != torch.float32 or not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise RuntimeError("a batch holds non-finite values or is not float32")
    # Normalised with train-split statistics: the train split's targets average ~0, std ~1.
    ys = torch.stack([ds[k][1] for k in range(min(len(ds), 64))]).double()
    m, s = float(ys.mean()), float(ys.std())
    if not (abs(m) < 0.5 and 0.5 < s < 1.5):
        raise RuntimeError(f"train targets are not normalised: mean {m:.3f}, std {s:.3f}")
    return (
        f"{path.name}: {ds.n_samples} samples; DataLoader batch x {want_x}, y {want_y}, "
        f"train targets mean {m:+.2f} std {s:.2f}"
    )


# -- 5-9, 11. models: init, forward, backward, step, checkpoint, precision ----------------------


def _models(runner: _Runner, ctx: _Context, groups: set[str]) -> None:
    specs = ctx.host.specs("model")
    if not specs:
        runner.add(CheckResult("model", "model", FAILED, "no model plugin is registered", 0.0))
        return
    for spec in specs:
        _one_model(runner, ctx, spec, groups)


def _model_steps(groups: set[str]) -> list[tuple[str, str]]:
    steps = []
    if "model" in groups:
        steps += [(s, "model") for s in ("model-init", "model-forward", "model-backward")]
        steps.append(("model-step", "model"))
    if "checkpoint" in groups:
        steps.append(("checkpoint", "checkpoint"))
    if "precision" in groups:
        steps += [("precision-bf16", "precision"), ("precision-fp16", "precision")]
    return steps


def _one_model(runner: _Runner, ctx: _Context, spec: Any, groups: set[str]) -> None:
    steps = _model_steps(groups)
    st = ctx.host.status(spec)
    if st.state != "available":
        for base, group in steps:
            if st.state == "broken":
                runner.add(CheckResult(f"{base}[{spec.name}]", group, FAILED, st.reason, 0.0))
            else:
                runner.skip(f"{base}[{spec.name}]", group, st.reason or st.state)
        return
    m = _ModelRun(spec, ctx)
    done: dict[str, str] = {}
    cause: dict[str, str] = {}  # the first check in the chain that did not pass
    # Each step needs the previous one; a failed step marks the rest as not run (skipped, with
    # the failure named) - the failure itself already makes the report fail.
    order = [
        ("model-init", "model", m.init, None),
        ("model-forward", "model", m.forward, "model-init"),
        ("model-backward", "model", m.backward, "model-forward"),
        ("model-step", "model", m.step, "model-backward"),
        ("checkpoint", "checkpoint", m.checkpoint, "model-init"),
        ("precision-bf16", "precision", lambda: m.autocast("bf16"), "model-init"),
        ("precision-fp16", "precision", lambda: m.autocast("fp16"), "model-init"),
    ]
    wanted = {b for b, _ in steps}
    if wanted - {"model-init"}:
        wanted.add("model-init")  # everything builds the model first
    if wanted & {"model-backward", "model-step"}:
        wanted |= {"model-forward", "model-backward"}
    for base, group, fn, needs in order:
        if base not in wanted:
            continue
        name = f"{base}[{spec.name}]"
        if needs is not None and done.get(needs) != PASSED:
            runner.skip(name, group, f"not run: {cause.get(needs, needs + ' did not run')}")
            done[base], cause[base] = SKIPPED, cause.get(needs, "")
            continue
        done[base] = runner.run(name, group, fn).status
        cause[base] = f"{name} {done[base]}"
    m.close()


class _ModelRun:
    """One model at its smoke size, carried through the model checks."""

    def __init__(self, spec: Any, ctx: _Context) -> None:
        self.spec, self.ctx = spec, ctx
        self.plugin = self.datasets = self.model = self.batch = self.loss = None
        self.optimizer = None
        self._tmp = None

    def init(self) -> str:
        import torch

        from astrobio_cli.training.plugin import check_plugin

        device = self.ctx.device()
        plugin = self.spec.factory({})
        missing = check_plugin(plugin)
        if missing:
            raise RuntimeError(f"not a complete model plugin: it lacks {', '.join(missing)}")
        plugin = self.spec.factory(dict(plugin.smoke_config))
        torch.manual_seed(0)
        self.datasets = plugin.make_datasets(None, seed=0, smoke=True)
        if len(self.datasets.train) == 0:
            raise RuntimeError("make_datasets gave an empty training split")
        self.model = plugin.build(self.datasets).to(device)
        self.plugin = plugin
        collate = self.datasets.collate or torch.utils.data.default_collate
        n = min(2, len(self.datasets.train))
        self.batch = _to_device(collate([self.datasets.train[i] for i in range(n)]), device)
        params = sum(p.numel() for p in self.model.parameters())
        train = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        size = ", ".join(f"{k}={v}" for k, v in plugin.smoke_config.items())
        return (
            f"{type(self.model).__name__} ({size}): {params:,} parameters ({train:,} trainable) "
            f"on {device.type}; data: {len(self.datasets.train)} train / "
            f"{len(self.datasets.val)} val samples"
        )

    def _loss(self):
        return self.plugin.loss(self.model, self.batch, self.datasets)

    def forward(self) -> str:
        import torch

        self.model.train()
        torch.manual_seed(0)
        loss = self._loss()
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise RuntimeError(f"loss is not a 0-d tensor: {type(loss).__name__}")
        if not torch.isfinite(loss):
            raise RuntimeError(f"the loss is not finite: {float(loss.detach())}")
        if not loss.requires_grad:
            raise RuntimeError("the loss does not depend on any trainable parameter")
        self.loss = loss
        return f"loss {float(loss.detach()):.4g} on a batch of {_batch_len(self.batch)}"

    def backward(self) -> str:
        import torch

        self.loss.backward()
        trainable = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        with_grad = [(n, p) for n, p in trainable if p.grad is not None]
        if not with_grad:
            raise RuntimeError("backward left no gradient on any parameter")
        bad = [n for n, p in with_grad if not torch.isfinite(p.grad).all()]
        if bad:
            raise RuntimeError(f"non-finite gradients in {', '.join(bad[:3])}")
        norm = float(torch.sqrt(sum((p.grad.double() ** 2).sum() for _, p in with_grad)))
        if norm == 0.0:
            raise RuntimeError("every gradient is zero")
        return (
            f"gradients on {len(with_grad)}/{len(trainable)} trainable tensors, finite, "
            f"norm {norm:.3g}"
        )

    def step(self) -> str:
        import torch

        params = [p for p in self.model.parameters() if p.requires_grad]
        before = [p.detach().clone() for p in params]
        self.optimizer = torch.optim.AdamW(params, lr=1e-3)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        moved = sum(
            int(not torch.equal(a, p.detach())) for a, p in zip(before, params, strict=True)
        )
        if moved == 0:
            raise RuntimeError("AdamW.step() changed no parameter")
        if not all(torch.isfinite(p).all() for p in params):
            raise RuntimeError("parameters are not finite after the step")
        self.model.train()
        torch.manual_seed(0)
        loss = float(self._loss().detach())
        if loss != loss or loss in (float("inf"), float("-inf")):
            raise RuntimeError(f"the loss after one step is not finite: {loss}")
        return f"AdamW step moved {moved}/{len(params)} tensors; loss after {loss:.4g}"

    def checkpoint(self) -> str:
        import tempfile

        import torch

        from astrobio_cli.training import checkpoint as ckpt

        self._tmp = tempfile.TemporaryDirectory(prefix="astrobio-smoke-")
        optimizer = self.optimizer or torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        path = ckpt.save_checkpoint(
            Path(self._tmp.name),
            1,
            model_state=self.model.state_dict(),
            train_state={"optimizer": optimizer.state_dict(), "step": 1},
            meta={"model": self.spec.name, "model_options": self.plugin.config},
            keep_last=1,
        )
        loaded = ckpt.resolve_checkpoint(Path(self._tmp.name))
        meta = ckpt.load_meta(loaded)
        plugin2 = self.spec.factory(meta["model_options"])
        # Built under another seed: whatever the checkpoint does not restore shows as a difference.
        torch.manual_seed(12345)
        model2 = plugin2.build(self.datasets).to(self.ctx.device())
        model2.load_state_dict(ckpt.load_weights(loaded), strict=True)
        state = ckpt.load_train_state(loaded)
        opt2 = torch.optim.AdamW([p for p in model2.parameters() if p.requires_grad], lr=1e-3)
        if self.optimizer is not None:
            opt2.load_state_dict(state["optimizer"])
        sd1, sd2 = self.model.state_dict(), model2.state_dict()
        diff = [k for k in sd1 if not torch.equal(sd1[k].cpu(), sd2[k].cpu())]
        if diff:
            raise RuntimeError(f"weights differ after the round trip: {', '.join(diff[:3])}")
        out1, loss1 = _outputs(self.plugin, self.model, self.batch, self.datasets)
        out2, loss2 = _outputs(plugin2, model2, self.batch, self.datasets)
        if out1 is not None and not _same(out1, out2):
            raise RuntimeError("the model's outputs differ after the round trip")
        if not torch.equal(loss1, loss2):
            raise RuntimeError(
                f"the loss differs after the round trip: {float(loss1)!r} before, "
                f"{float(loss2)!r} after loading"
            )
        what = "outputs and loss" if out1 is not None else "loss"
        return (
            f"saved {path.name} (safetensors + state.pt), loaded into a fresh model: weights "
            f"and {what} identical (eval mode)"
        )

    def autocast(self, precision: str) -> str:
        import torch

        device = self.ctx.device()
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        if device.type == "cpu" and precision == "fp16":
            raise Skip("fp16 autocast is checked on a CUDA device only (CPU training uses bf16)")
        if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise Skip("this GPU does not support bf16")
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        ref = float(self._loss().detach())
        torch.manual_seed(0)
        with torch.autocast(device.type, dtype=dtype):
            loss = self._loss()
        loss.float().backward()
        if not torch.isfinite(loss):
            raise RuntimeError(f"{precision} autocast loss is not finite: {float(loss.detach())}")
        bad = [
            n
            for n, p in self.model.named_parameters()
            if p.grad is not None and not torch.isfinite(p.grad).all()
        ]
        self.model.zero_grad(set_to_none=True)
        if bad:
            raise RuntimeError(f"{precision} autocast: non-finite gradients in {bad[0]}")
        rel = abs(float(loss.detach()) - ref) / max(abs(ref), 1e-6)
        if not rel <= AUTOCAST_RTOL:
            raise RuntimeError(
                f"{precision} autocast loss {float(loss.detach()):.5g} differs from fp32 {ref:.5g} by "
                f"{rel:.1%} (tolerance {AUTOCAST_RTOL:.0%})"
            )
        return (
            f"{precision} autocast on {device.type}: loss {float(loss.detach()):.5g} vs fp32 {ref:.5g} "
            f"({rel:.2%}), gradients finite"
        )

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def _outputs(plugin, model, batch, datasets):
    """The loss and the model's own outputs (caught by a forward hook) in eval mode, seed 0."""
    import torch

    captured: list[Any] = []
    handle = model.register_forward_hook(lambda _m, _i, out: captured.append(_detach(out)))
    model.eval()
    try:
        with torch.no_grad():
            torch.manual_seed(0)
            loss = plugin.loss(model, batch, datasets).detach()
    finally:
        handle.remove()
        model.train()
    return (captured if captured else None), loss


def _detach(x):
    import torch

    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, dict):
        return {k: _detach(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(_detach(v) for v in x) if not hasattr(x, "_fields") else x
    return x


def _same(a, b) -> bool:
    import torch

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return True  # non-tensor leaves (None, config values): not outputs


def _to_device(batch, device):
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple) and not hasattr(batch, "_fields"):
        return type(batch)(_to_device(v, device) for v in batch)
    to = getattr(batch, "to", None)
    return to(device) if callable(to) else batch


def _batch_len(batch) -> int | str:
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, dict) and batch:
        return _batch_len(next(iter(batch.values())))
    if isinstance(batch, list | tuple) and batch:
        return _batch_len(batch[0])
    return getattr(batch, "num_graphs", "?")


# -- 10. attention ------------------------------------------------------------------------------


def _attention(runner: _Runner, ctx: _Context) -> None:
    specs = ctx.host.specs("attention")
    if not specs:
        runner.add(
            CheckResult("attention", "attention", FAILED, "no attention backend registered", 0.0)
        )
    for spec in specs:
        st = ctx.host.status(spec)
        name = f"attention[{spec.name}]"
        if st.state == "broken":
            runner.add(CheckResult(name, "attention", FAILED, st.reason, 0.0))
        elif st.state != "available":
            runner.skip(name, "attention", st.reason or st.state)
        else:
            runner.run(name, "attention", lambda spec=spec: _backend_check(spec, ctx))
    runner.run("attention-auto", "attention", lambda: _auto_check(ctx))


def _problems(device):
    """Small problems, most demanding first: GQA + causal, then plain causal, then plain."""
    import torch

    dtypes = [torch.float32]
    if device.type == "cuda":
        dtypes = [torch.float32, torch.bfloat16, torch.float16]
    for dtype in dtypes:
        for hq, hkv, causal in ((4, 2, True), (4, 4, True), (4, 4, False)):
            yield dtype, hq, hkv, causal


def _make_qkv(device, dtype, hq, hkv, seed=0, t=48):
    import torch

    g = torch.Generator().manual_seed(seed)
    b, d = 2, 32
    q = torch.randn(b, hq, t, d, generator=g, dtype=torch.float64)
    k = torch.randn(b, hkv, t, d, generator=g, dtype=torch.float64)
    v = torch.randn(b, hkv, t, d, generator=g, dtype=torch.float64)
    return [x.to(device=device, dtype=dtype) for x in (q, k, v)]


def _backend_check(spec: Any, ctx: _Context) -> str:
    from astrobio_cli.attention import attention
    from astrobio_cli.attention.routing import backend_instance

    device = ctx.device()
    obj = backend_instance(spec)
    declined = []
    # A windowed backend is only tested when the sequence is longer than its window.
    window = getattr(obj, "window", None)
    t = window + 16 if isinstance(window, int) and 32 < window <= 1024 else 48
    for dtype, hq, hkv, causal in _problems(device):
        q, k, v = _make_qkv(device, dtype, hq, hkv, t=t)
        ok, reason = obj.supports(q, k, v, None, causal, False)
        if not ok:
            declined.append(f"{_dt(dtype)} {hq}/{hkv} heads causal={causal}: {reason}")
            continue
        want = _reference_for(spec, obj, q, k, v, causal)
        got = attention(q, k, v, causal=causal, backend=spec.name)
        if tuple(got.shape) != tuple(want.shape) or got.dtype != q.dtype:
            raise RuntimeError(f"output {tuple(got.shape)} {got.dtype}; expected {want.shape}")
        err = float((got.double() - want).abs().max())
        tol = ATOL[_dt(dtype)]
        if not err <= tol:
            raise RuntimeError(
                f"{_dt(dtype)} {hq}/{hkv} heads causal={causal}: max error {err:.2e} vs the "
                f"float64 reference (tolerance {tol:.0e})"
            )
        what = f"{_dt(dtype)}, {hq} q / {hkv} kv heads, T={t}, D=32, causal={causal}"
        grad_note = _grad_check(spec, obj, q, k, v, causal)
        kind = "the float64 reference" if spec.exact else "its own float64 definition"
        if hasattr(obj, "window"):
            kind += f" (window {obj.window})"
        return f"{what}: max error {err:.1e} vs {kind}{grad_note}"
    raise Skip("declines every smoke problem here: " + "; ".join(declined[:2]))


def _grad_check(spec, obj, q, k, v, causal) -> str:
    import torch

    from astrobio_cli.attention import attention

    ok, _ = obj.supports(q, k, v, None, causal, True)
    if not ok:
        return "; backward not supported for this problem"
    qs, ks, vs = (x.detach().clone().requires_grad_(True) for x in (q, k, v))
    q64, k64, v64 = (x.detach().double().requires_grad_(True) for x in (q, k, v))
    gout = torch.randn(q.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = attention(qs, ks, vs, causal=causal, backend=spec.name)
    (out.double() * gout.to(out.device)).sum().backward()
    ref = _reference_for(spec, obj, q64, k64, v64, causal)
    (ref * gout.to(ref.device)).sum().backward()
    err = max(
        float((a.grad.double() - b.grad).abs().max()) for a, b in ((qs, q64), (ks, k64), (vs, v64))
    )
    tol = GRAD_ATOL[_dt(q.dtype)]
    if not err <= tol:
        raise RuntimeError(
            f"gradients differ from the float64 reference by {err:.2e} (> {tol:.0e})"
        )
    return f"; gradients max error {err:.1e}"


def _reference_for(spec, obj, q, k, v, causal):
    """The float64 answer this backend should give: softmax attention for exact backends; for
    the built-in inexact ones, their own definition written out in float64."""
    import torch

    from astrobio_cli.attention import reference_attention

    if spec.exact:
        return reference_attention(q, k, v, causal=causal)
    if spec.name == "sliding-window":
        w = int(obj.window)
        tq, tk = q.shape[2], k.shape[2]
        i = torch.arange(tq, device=q.device)[:, None] + (tk - tq)
        j = torch.arange(tk, device=q.device)[None, :]
        band = ((i - j >= 0) & (i - j < w)) if causal else ((i - j).abs() < w)
        return reference_attention(q, k, v, mask=band, causal=causal)
    if spec.name == "linear":
        return _linear_reference(q, k, v, causal)
    raise Skip(f"inexact third-party backend: no float64 definition to compare ({spec.name})")


def _linear_reference(q, k, v, causal):
    """Katharopoulos et al. (2020) with phi = elu + 1, quadratic form, float64."""
    import torch
    import torch.nn.functional as F

    q64, k64, v64 = q.double(), k.double(), v.double()
    g = q.shape[1] // k.shape[1]
    k64, v64 = k64.repeat_interleave(g, 1), v64.repeat_interleave(g, 1)
    a = torch.einsum("bhid,bhjd->bhij", F.elu(q64) + 1, F.elu(k64) + 1)
    if causal:
        tq, tk = q.shape[2], k.shape[2]
        i = torch.arange(tq, device=q.device)[:, None] + (tk - tq)
        j = torch.arange(tk, device=q.device)[None, :]
        a = a * (j <= i)
    return torch.einsum("bhij,bhjd->bhid", a, v64) / a.sum(-1, keepdim=True)


def _auto_check(ctx: _Context) -> str:
    from astrobio_cli.attention import explain

    device = ctx.device()
    import torch

    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    q, k, v = _make_qkv(device, dtype, 4, 2)
    exp = explain(q, k, v, causal=True, training=True)
    if exp.chosen is None:
        why = "; ".join(f"{c.name}: {c.reason}" for c in exp.candidates)
        raise RuntimeError(f"auto finds no backend for {exp.problem}: {why}")
    passed_over = [
        f"{c.name} ({c.reason})" for c in exp.candidates if c.rank is not None and not c.chosen
    ]
    forced = f", forced by the {exp.forced_by}" if exp.forced_by else ""
    return (
        f"auto picks {exp.chosen} on {exp.device}{forced} for {exp.problem}; priority "
        f"{' > '.join(exp.priority)}; passed over: {', '.join(passed_over) or 'none'}"
    )


def _dt(dtype) -> str:
    return str(dtype).replace("torch.", "")


# -- plugins' own checks ------------------------------------------------------------------------


def _plugin_checks(runner: _Runner, ctx: _Context) -> None:
    from astrobio_cli.specs import KINDS

    for kind in KINDS:
        for spec in ctx.host.specs(kind):
            checks = spec.extras.get("smoke_checks") if isinstance(spec.extras, dict) else None
            if not checks:
                continue
            if not isinstance(checks, dict):
                runner.add(
                    CheckResult(
                        f"plugin[{spec.name}]",
                        "plugins",
                        FAILED,
                        f"extras['smoke_checks'] of {spec.name} must be a dict of name -> "
                        f"callable, not {type(checks).__name__}",
                        0.0,
                    )
                )
                continue
            for check_name, fn in checks.items():
                name = f"plugin[{spec.name}:{check_name}]"
                if not callable(fn):
                    runner.add(CheckResult(name, "plugins", FAILED, "not callable", 0.0))
                    continue
                runner.run(name, "plugins", fn)
