"""`astrobio bench attention`: every backend on one problem, with its error beside its timings.

Library code: `run_bench(config)` returns plain data (the JSON document); the command renders it.

What is measured, per backend and sequence length:
- status: "ran", "skipped" (with the reason: not installed, no device, declines the call),
  "failed" (with the error) or "out of memory" (one row, never a crash).
- max_abs_err: max |out - reference| in float64 over the forward output. When the problem is too
  big for a float64 reference, the reference covers the last `rows` queries of the first KV
  group's heads (the last rows keep bottom-right causal alignment exact).
- ms_median, ms_min: wall time of `repeats` calls after one warm-up call; CUDA events on a GPU,
  time.perf_counter on the CPU. fwd+bwd times the forward and one backward.
- tflops: 4·B·Hq·Tq·Tk·D per forward (halved when causal), 2.5x that for the backward.
- peak_mem_mb: on CUDA, the allocator's peak minus what was allocated before the call; on the CPU,
  the high-water mark of the process's resident set size (psutil RSS, sampled every 0.5 ms in a
  thread during one extra untimed call) minus the RSS before it. glibc is told to return freed
  blocks of 64 KiB and more to the system (mallopt), so RSS tracks live allocations.
- speedup_vs_eager, mem_ratio_vs_eager: against the `eager` row of the same length.
On a CPU the `triton` row runs only when asked (`--backends triton`), under TRITON_INTERPRET=1,
once, on a cut-down problem: "interpreter: correctness only".
The `ring` row (context parallel) runs on `--procs N` processes of its own: see `_ring_row`.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from astrobio_cli.errors import UsageError

DTYPES = ("fp32", "fp16", "bf16")
MODES = ("fwd", "fwd+bwd")
STATUSES = ("ran", "skipped", "failed", "out of memory")
RESULT_KEYS = (
    "backend",
    "status",
    "reason",
    "exact",
    "max_abs_err",
    "ms_median",
    "ms_min",
    "tflops",
    "peak_mem_mb",
    "speedup_vs_eager",
    "mem_ratio_vs_eager",
)
# Backends known to materialise the (Tq, Tk) score matrix: checked against free memory first.
MATERIALISING = ("eager", "sdpa-math", "example-naive")
REF_BUDGET = 1 << 24  # float64 score elements the reference may hold (128 MiB per tensor)
CEILING = "fp32-matmul-ceiling"
AUTO = "auto"  # a row for attention(..., backend="auto"): routing included, as models call it


@dataclass
class BenchConfig:
    seqs: list[int]
    batch: int = 1
    heads: int = 8
    kv_heads: int | None = None
    head_dim: int = 64
    dtype: str = "fp32"
    causal: bool = False
    mode: str = "fwd"
    backends: list[str] | None = None  # None: every registered backend
    repeats: int = 5
    device: str | None = None  # None: cuda when available, else cpu
    seed: int = 0
    procs: int | None = None  # `ring` runs on this many processes; None: its row is skipped
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if not self.seqs or any(int(s) < 1 for s in self.seqs):
            raise UsageError("--seq takes positive integers, e.g. --seq 4096 or --seq 128,512")
        for name in ("batch", "heads", "head_dim", "repeats"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
        kv = self.kv_heads or self.heads
        if kv < 1 or self.heads % kv:
            raise UsageError(
                f"--kv-heads {kv} must divide --heads {self.heads} (grouped-query attention)"
            )
        if self.dtype not in DTYPES:
            raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, got '{self.dtype}'")
        if self.mode not in MODES:
            raise UsageError(f"--mode must be one of {', '.join(MODES)}, got '{self.mode}'")
        if self.procs is not None and not 1 <= int(self.procs) <= 64:
            raise UsageError(f"--procs must be between 1 and 64, got {self.procs}")


def flops(B: int, H: int, Tq: int, Tk: int, D: int, causal: bool, mode: str) -> float:
    f = 4.0 * B * H * Tq * Tk * D
    if causal:
        f /= 2
    return f * 3.5 if mode == "fwd+bwd" else f


def _torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def environment(device: str) -> dict[str, Any]:
    """The env block: library versions (read from metadata, no imports), device, threads."""
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "device": device,
        "device_name": _device_name(device),
        "cpu_threads": torch.get_num_threads(),
        "triton": _version("triton"),
        "flash_attn": _version("flash-attn"),
        "xformers": _version("xformers"),
        "numpy": _version("numpy"),
        "triton_interpret": os.environ.get("TRITON_INTERPRET") == "1",
    }
    return env


def _device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name} ({os.cpu_count()} logical cores)"


def _release_freed_memory() -> None:
    """Ask glibc to unmap freed blocks >= 64 KiB, so RSS follows live allocations (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD
        libc.malloc_trim(0)


class _RssPeak:
    """Samples the process RSS in a thread; `.peak_mb` is the high-water mark above the start."""

    def __init__(self, interval: float = 0.0005) -> None:
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.start = 0
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self):
        self.start = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return max(0, self.peak - self.start) / 2**20


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text


def _row(backend: str, status: str, reason: str = "", exact: bool | None = None, **kw) -> dict:
    row = dict.fromkeys(RESULT_KEYS)
    row.update(backend=backend, status=status, reason=reason, exact=exact)
    row.update(kw)
    return row


def run_bench(config: BenchConfig, progress=None) -> dict[str, Any]:
    """Run the benchmark; returns {"env", "config", "results"} (see the module docstring)."""
    config.validate()
    say = progress or (lambda msg: None)
    from astrobio_cli.hardware import has_cuda

    device = config.device or ("cuda" if has_cuda() else "cpu")
    from astrobio_cli.attention.routing import plugin_host

    host = plugin_host()
    registered = [s.name for s in host.specs("attention")]
    if config.backends:
        unknown = [b for b in config.backends if b not in registered and b != AUTO]
        if unknown:
            host.get("attention", unknown[0])  # raises UnknownNameError with a suggestion
        names = list(dict.fromkeys(config.backends))
    else:
        names = [AUTO, *registered]
    if "eager" in names:  # the baseline first, so every later row gets its ratios
        names = ["eager", *[n for n in names if n != "eager"]]

    if device == "cpu" and "triton" in (config.backends or ()):
        # Must precede the first definition of our kernels in this process to take effect.
        os.environ.setdefault("TRITON_INTERPRET", "1")
    import torch

    from astrobio_cli.settings import get_settings

    threads = get_settings().threads
    if threads and device == "cpu":
        torch.set_num_threads(threads)
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device (a CPU-only torch build?)")
    if device == "cpu":
        _release_freed_memory()

    results: list[dict[str, Any]] = []
    for seq in config.seqs:
        rows = _bench_one_length(config, device, names, int(seq), say)
        eager = next((r for r in rows if r["backend"] == "eager" and r["status"] == "ran"), None)
        for r in rows:
            r["seq"] = int(seq)
            if eager and r["status"] == "ran" and r["ms_median"] and eager["ms_median"]:
                r["speedup_vs_eager"] = eager["ms_median"] / r["ms_median"]
                if r["peak_mem_mb"] is not None and eager["peak_mem_mb"]:
                    r["mem_ratio_vs_eager"] = r["peak_mem_mb"] / eager["peak_mem_mb"]
        if device == "cpu" and config.dtype == "fp32":
            ceiling = _matmul_ceiling(config, int(seq), say)
            ceiling["seq"] = int(seq)
            rows.append(ceiling)
        results.extend(rows)
    cfg = asdict(config)
    cfg.pop("extra")
    cfg.update(
        device=device,
        kv_heads=config.kv_heads or config.heads,
        backends=names,
        reference="float64; last rows of the first KV group when big",
    )
    return {"env": environment(device), "config": cfg, "results": results}


def _bench_one_length(config, device, names, seq, say) -> list[dict[str, Any]]:
    import torch

    from astrobio_cli.attention.problem import check_inputs
    from astrobio_cli.attention.routing import _verdict, backend_instance, plugin_host

    host = plugin_host()
    B, H, D = config.batch, config.heads, config.head_dim
    Hkv = config.kv_heads or H
    dtype = _torch_dtype(config.dtype)
    train = config.mode == "fwd+bwd"
    g = torch.Generator(device="cpu").manual_seed(config.seed + seq)
    q = torch.randn(B, H, seq, D, generator=g).to(device=device, dtype=dtype)
    k = torch.randn(B, Hkv, seq, D, generator=g).to(device=device, dtype=dtype)
    v = torch.randn(B, Hkv, seq, D, generator=g).to(device=device, dtype=dtype)
    do = torch.randn(B, H, seq, D, generator=g).to(device=device, dtype=dtype) if train else None
    if train:
        for t in (q, k, v):
            t.requires_grad_(True)
    problem = check_inputs(q, k, v, None, config.causal)
    ref, ref_rows, ref_heads = _reference(q, k, v, config.causal)
    work = flops(B, H, seq, seq, D, config.causal, config.mode)

    rows = []
    for name in names:
        say(f"T={seq} {name}")
        if name == AUTO:
            rows.append(
                _auto_row(config, device, q, k, v, do, problem, ref, ref_rows, ref_heads, work)
            )
            continue
        if name == "ring":  # N processes of its own (`--procs N`)
            rows.append(_ring_row(config, device, seq, say))
            continue
        spec = host.get("attention", name)
        if name == "triton" and device == "cpu":
            if config.backends and "triton" in config.backends:
                rows.append(_interpreter_row(spec, config, seq))
            else:
                reason = "CPU: runs only under the Triton interpreter, for correctness; "
                rows.append(_row(name, "skipped", reason + "ask with --backends triton", True))
            continue
        available, supported, reason = _verdict(spec, q, k, v, problem)
        if not (available and supported):
            rows.append(_row(name, "skipped", reason, spec.exact))
            continue
        if device == "cpu" and name in MATERIALISING:
            need = B * H * seq * seq * 4 * 3  # scores, probabilities and one temporary, float32
            import psutil

            free = psutil.virtual_memory().available
            if need > 0.8 * free:
                rows.append(
                    _row(
                        name,
                        "out of memory",
                        f"not attempted: the score matrix needs ~{need / 2**30:.1f} GiB, "
                        f"{free / 2**30:.1f} GiB available",
                        spec.exact,
                    )
                )
                continue
        impl = backend_instance(spec)

        def call(impl=impl):
            return impl(q, k, v, mask=None, causal=config.causal, scale=problem.scale)

        inexact = "" if spec.exact else "inexact by design: error is the approximation's"
        rows.append(
            _measure(name, spec.exact, inexact, call, config, device, q, k, v, do, ref, ref_rows,
                     ref_heads, work)
        )  # fmt: skip
    return rows


def _measure(name, exact, note, fwd, config, device, q, k, v, do, ref, ref_rows, ref_heads, work):
    """Warm up, check the output against the reference, time, measure memory: one row."""
    import torch

    train = do is not None

    def call():
        out = fwd()
        if train:
            out.backward(do)
            for t in (q, k, v):
                t.grad = None
        return out

    try:
        with torch.no_grad() if not train else contextlib.nullcontext():
            out = call()  # warm-up, and the output checked against the reference
            err = (out.detach()[:, :ref_heads, -ref_rows:].double() - ref).abs().max().item()
            del out
            times = _time(call, config.repeats, device)
            peak = _peak(call, device)
    except Exception as exc:
        if device == "cuda":
            torch.cuda.empty_cache()
        if _is_oom(exc):
            return _row(name, "out of memory", str(exc).splitlines()[0][:200], exact)
        return _row(name, "failed", f"{type(exc).__name__}: {exc}"[:300], exact)
    med = statistics.median(times)
    return _row(
        name,
        "ran",
        note,
        exact,
        max_abs_err=err,
        ms_median=med,
        ms_min=min(times),
        tflops=work / (med / 1e3) / 1e12,
        peak_mem_mb=peak,
    )


def _auto_row(config, device, q, k, v, do, problem, ref, ref_rows, ref_heads, work):
    """attention(..., backend="auto") through the interface, as a model calls it."""
    from astrobio_cli.attention.core import attention
    from astrobio_cli.attention.routing import BackendUnsupportedError, select_backend

    try:
        impl = select_backend(q, k, v, problem, "auto")
    except BackendUnsupportedError as exc:
        return _row(AUTO, "skipped", str(exc), True)
    chosen = getattr(impl, "name", type(impl).__name__)

    def call():
        return attention(q, k, v, causal=config.causal)

    return _measure(AUTO, True, f"routes to {chosen}", call, config, device, q, k, v, do, ref,
                    ref_rows, ref_heads, work)  # fmt: skip


def _reference(q, k, v, causal):
    """Float64 reference for the last `rows` queries of the first KV group (all when small)."""
    from astrobio_cli.attention.reference import reference_attention

    B, H, T, _ = q.shape
    Hkv = k.shape[1]
    G = H // Hkv
    heads, kv = H, Hkv
    if B * H * T * T > REF_BUDGET:
        heads, kv = G, 1
    rows = max(1, min(T, REF_BUDGET // max(1, B * heads * k.shape[2])))
    qs = q.detach()[:, :heads, -rows:].cpu()
    ks, vs = k.detach()[:, :kv].cpu(), v.detach()[:, :kv].cpu()
    ref = reference_attention(qs, ks, vs, causal=causal)
    return ref.to(q.device), rows, heads


def _time(call, repeats: int, device: str) -> list[float]:
    import torch

    times = []
    for _ in range(repeats):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            call()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def _peak(call, device: str) -> float:
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        call()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    _release_freed_memory()
    with _RssPeak() as rss:
        call()
    return rss.peak_mb


def _interpreter_row(spec, config, seq) -> dict[str, Any]:
    """The Triton kernel under the interpreter, once, on a cut-down problem: correctness only."""
    import torch

    from astrobio_cli.attention.problem import check_inputs
    from astrobio_cli.attention.reference import reference_attention
    from astrobio_cli.attention.routing import _verdict, backend_instance

    T = min(seq, 128)
    D, kv = config.head_dim, 1
    G = config.heads // (config.kv_heads or config.heads)
    g = torch.Generator().manual_seed(config.seed)
    dtype = _torch_dtype(config.dtype)
    q = torch.randn(1, G, T, D, generator=g).to(dtype)
    k = torch.randn(1, kv, T, D, generator=g).to(dtype)
    v = torch.randn(1, kv, T, D, generator=g).to(dtype)
    problem = check_inputs(q, k, v, None, config.causal)
    available, supported, reason = _verdict(spec, q, k, v, problem)
    if not (available and supported):
        return _row("triton", "skipped", reason, spec.exact)
    try:
        out = backend_instance(spec)(q, k, v, mask=None, causal=config.causal, scale=None)
    except Exception as exc:
        return _row("triton", "failed", f"{type(exc).__name__}: {exc}"[:300], spec.exact)
    err = (out.double() - reference_attention(q, k, v, causal=config.causal)).abs().max().item()
    return _row(
        "triton",
        "ran",
        f"interpreter: correctness only (checked on B=1, H={G}, T={T}; no timings)",
        spec.exact,
        max_abs_err=err,
    )


def _matmul_ceiling(config, seq, say) -> dict[str, Any]:
    """A same-run fp32 square matmul (2048^3): the CPU's practical GFLOP/s ceiling.

    Square, so it is compute-bound (attention's own Q K^T has rank D and is memory-bound); its
    FLOP/s come from the fastest call (ms_min), the best the machine gave at that moment.
    """
    import torch

    say(f"T={seq} fp32 matmul ceiling")
    n = 2048
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    torch.mm(a, b)
    times = _time(lambda: torch.mm(a, b), max(5, config.repeats), "cpu")
    return _row(
        CEILING,
        "ran",
        f"same-run fp32 matmul {n}x{n} @ {n}x{n}, fastest of {len(times)}: the practical ceiling",
        None,
        ms_median=statistics.median(times),
        ms_min=min(times),
        tflops=2.0 * n**3 / (min(times) / 1e3) / 1e12,
    )


def write_json(doc: dict[str, Any], path) -> None:
    """Write to a temporary name and rename into place."""
    import json
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_plot(doc: dict[str, Any], path) -> None:
    """PNG of median time and peak memory against sequence length, one line per backend."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    series: dict[str, list[tuple[int, float | None, float | None]]] = {}
    for r in doc["results"]:
        if r["status"] == "ran" and r["ms_median"] is not None and r["backend"] != CEILING:
            series.setdefault(r["backend"], []).append((r["seq"], r["ms_median"], r["peak_mem_mb"]))
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, pts in sorted(series.items()):
        pts.sort()
        xs = [p[0] for p in pts]
        ax_t.plot(xs, [p[1] for p in pts], marker="o", label=name)
        mem = [(p[0], p[2]) for p in pts if p[2] is not None]
        if mem:
            ax_m.plot([m[0] for m in mem], [max(m[1], 1e-3) for m in mem], marker="o", label=name)
    cfg, env = doc["config"], doc["env"]
    for ax, label in ((ax_t, "median time (ms)"), (ax_m, "peak memory (MB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=8)
    fig.suptitle(
        f"attention {cfg['mode']} {cfg['dtype']} B={cfg['batch']} H={cfg['heads']} "
        f"D={cfg['head_dim']}{' causal' if cfg['causal'] else ''} on {env['device_name']}",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


# -- decode: one new token against a KV cache (`astrobio bench attention --decode`) ------------

DECODE_RATIOS = (1, 4, 8)  # GQA ratios Hq / Hkv measured by default
DECODE_KEYS = ("backend", "status", "reason", "exact", "kv_heads", "gqa_ratio", "cache_len",
               "cache_bytes", "max_abs_err", "ms_median", "ms_min", "tokens_per_s")  # fmt: skip


def run_decode_bench(config: BenchConfig, cache_len: int, progress=None) -> dict[str, Any]:
    """One decode step per call: append the new token's K/V to a `KVCache` holding
    cache_len - 1 tokens (so the step attends over cache_len keys, causal, query length 1) and
    attend with each backend. Per GQA ratio (`--kv-heads`, else Hq / Hkv = 1, 4, 8) and backend:
    tokens/s (batch / median step time), the cache's memory (both buffers, exactly
    2 * B * Hkv * cache_len * D * itemsize) and max |out - float64 reference| (the first batch
    elements when big)."""
    if cache_len < 1:
        raise UsageError("--cache-len must be at least 1, e.g. --cache-len 4096")
    config.validate()
    say = progress or (lambda msg: None)
    from astrobio_cli.hardware import has_cuda

    device = config.device or ("cuda" if has_cuda() else "cpu")
    from astrobio_cli.attention.routing import plugin_host

    host = plugin_host()
    registered = [s.name for s in host.specs("attention")]
    if config.backends:
        unknown = [b for b in config.backends if b not in registered and b != AUTO]
        if unknown:
            host.get("attention", unknown[0])  # raises UnknownNameError with a suggestion
        names = list(dict.fromkeys(config.backends))
    else:
        names = [AUTO, *registered]
    if config.kv_heads:
        kv_list = [config.kv_heads]
    else:
        kv_list = [config.heads // r for r in DECODE_RATIOS if config.heads % r == 0]
        if len(kv_list) < len(DECODE_RATIOS):
            raise UsageError(
                f"--decode measures GQA ratios 1, 4 and 8: --heads must be a multiple of 8 "
                f"(got {config.heads}), or pick one ratio with --kv-heads"
            )
    import torch

    from astrobio_cli.settings import get_settings

    threads = get_settings().threads
    if threads and device == "cpu":
        torch.set_num_threads(threads)
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device (a CPU-only torch build?)")
    results = []
    for kv in kv_list:
        results.extend(_decode_one(config, device, names, cache_len, kv, say))
    cfg = asdict(config)
    cfg.pop("extra")
    cfg.update(device=device, decode=True, cache_len=cache_len, kv_heads=kv_list,
               backends=names, reference="float64; the first batch elements when big")  # fmt: skip
    return {"env": environment(device), "config": cfg, "results": results}


def _decode_one(config, device, names, L, kv, say) -> list[dict[str, Any]]:
    import torch

    from astrobio_cli.attention.core import attention
    from astrobio_cli.attention.kvcache import KVCache
    from astrobio_cli.attention.problem import check_inputs
    from astrobio_cli.attention.reference import reference_attention
    from astrobio_cli.attention.routing import (
        BackendUnsupportedError,
        _verdict,
        backend_instance,
        plugin_host,
        select_backend,
    )

    host = plugin_host()
    B, H, D = config.batch, config.heads, config.head_dim
    dtype = _torch_dtype(config.dtype)
    g = torch.Generator().manual_seed(config.seed + L + kv)
    cache = KVCache(B, kv, L, D, dtype=dtype, device=device)
    if L > 1:
        cache.append(*(torch.randn(2, B, kv, L - 1, D, generator=g).to(device, dtype)))
    k_new, v_new = torch.randn(2, B, kv, 1, D, generator=g).to(device, dtype)
    q = torch.randn(B, H, 1, D, generator=g).to(device, dtype)
    keys, values = cache.append(k_new, v_new)
    nb = max(1, min(B, REF_BUDGET // max(1, H * L * D)))
    ref = reference_attention(q[:nb].cpu(), keys[:nb].cpu(), values[:nb].cpu(), causal=True)
    problem = check_inputs(q, keys, values, None, True)
    cache_bytes = cache.k.nbytes + cache.v.nbytes
    common = dict(kv_heads=kv, gqa_ratio=H // kv, cache_len=L, cache_bytes=cache_bytes)

    def row(name, status, reason="", exact=None, **kw):
        r = dict.fromkeys(DECODE_KEYS)
        r.update(backend=name, status=status, reason=reason, exact=exact, **common, **kw)
        return r

    rows = []
    for name in names:
        say(f"decode Hkv={kv} L={L} {name}")
        if name == AUTO:
            try:
                chosen = select_backend(q, keys, values, problem, "auto")
            except BackendUnsupportedError as exc:
                rows.append(row(AUTO, "skipped", str(exc), True))
                continue
            exact, note = True, f"routes to {getattr(chosen, 'name', type(chosen).__name__)}"

            def impl(q, k, v):
                return attention(q, k, v, causal=True)

        else:
            spec = host.get("attention", name)
            if name == "triton" and device == "cpu":
                rows.append(row(name, "skipped", "CPU: runs only under the Triton interpreter, "
                                "for correctness; not timed in --decode", spec.exact))  # fmt: skip
                continue
            available, supported, reason = _verdict(spec, q, keys, values, problem)
            if not (available and supported):
                rows.append(row(name, "skipped", reason, spec.exact))
                continue
            exact = spec.exact
            note = "" if exact else "inexact by design: error is the approximation's"
            inst = backend_instance(spec)

            def impl(q, k, v, inst=inst):
                return inst(q, k, v, mask=None, causal=True, scale=problem.scale)

        def step(impl=impl):
            cache.length = L - 1  # the same step every call: append the token, attend
            k_all, v_all = cache.append(k_new, v_new)
            return impl(q, k_all, v_all)

        try:
            with torch.no_grad():
                out = step()
                err = (out[:nb].double().cpu() - ref).abs().max().item()
                times = _time(step, config.repeats, device)
        except Exception as exc:
            if _is_oom(exc):
                rows.append(row(name, "out of memory", str(exc).splitlines()[0][:200], exact))
            else:
                rows.append(row(name, "failed", f"{type(exc).__name__}: {exc}"[:300], exact))
            continue
        med = statistics.median(times)
        rows.append(row(name, "ran", note, exact, max_abs_err=err, ms_median=med,
                        ms_min=min(times), tokens_per_s=B / (med / 1e3)))  # fmt: skip
    return rows


# -- ring: context parallelism over N processes (`astrobio bench attention --procs N`) ---------


def _ring_row(config, device, seq, say) -> dict[str, Any]:
    """The `ring` backend on `config.procs` processes (gloo on the CPU, NCCL on GPUs), each
    holding 1/N of the sequence (zigzag when causal). Time: the slowest rank's median; peak
    memory: each rank's own (RSS high-water above the RSS before the call on the CPU, the
    allocator's peak on CUDA), the largest reported and all kept in `per_rank_peak_mb`; error:
    the gathered output against the float64 reference. --procs 1 runs the same ring code on one
    process (one block: the whole sequence), the baseline that per-rank memory is compared to;
    routing itself declines a group of one."""
    import json
    import socket
    import tempfile
    from pathlib import Path

    import torch.multiprocessing as mp

    from astrobio_cli.attention.routing import plugin_host

    spec = plugin_host().get("attention", "ring")
    procs = config.procs
    if not procs:
        why = ("single process: give --procs N (2 or more) to run it over N processes, "
               "--procs 1 for its one-process baseline")  # fmt: skip
        return _row("ring", "skipped", why, spec.exact)
    if device == "cuda":
        import torch

        if torch.cuda.device_count() < procs:
            return _row("ring", "skipped", f"--procs {procs} needs {procs} GPUs, "
                        f"{torch.cuda.device_count()} visible", spec.exact)  # fmt: skip
    say(f"T={seq} ring on {procs} process(es)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = asdict(config)
    cfg.pop("extra")
    with tempfile.TemporaryDirectory(prefix="astrobio-ring-bench-") as tmp:
        try:
            mp.start_processes(_ring_rank, args=(cfg, device, seq, port, tmp), nprocs=procs,
                               start_method="spawn")  # fmt: skip
        except Exception as exc:
            text = str(exc).strip().splitlines()
            why = text[-1] if text else type(exc).__name__
            status = "out of memory" if "memory" in why.lower() else "failed"
            return _row("ring", status, f"a rank failed: {why}"[:300], spec.exact)
        ranks = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(procs)]
    med = max(r["ms_median"] for r in ranks)
    comm = "gloo" if device == "cpu" else "nccl"
    note = (f"{procs} processes ({comm}), T/{procs} tokens each"
            if procs > 1 else "1 process: the ring code on one block (baseline)")  # fmt: skip
    row = _row("ring", "ran", note + "; ms: slowest rank; peak MB: largest rank", spec.exact,
               max_abs_err=ranks[0]["max_abs_err"], ms_median=med,
               ms_min=max(r["ms_min"] for r in ranks),
               tflops=flops(config.batch, config.heads, seq, seq, config.head_dim,
                            config.causal, config.mode) / (med / 1e3) / 1e12,
               peak_mem_mb=max(r["peak_mem_mb"] for r in ranks))  # fmt: skip
    row["procs"] = procs
    row["per_rank_peak_mb"] = [r["peak_mem_mb"] for r in ranks]
    row["per_rank_ms_median"] = [r["ms_median"] for r in ranks]
    return row


def _ring_rank(rank: int, cfg: dict, device: str, seq: int, port: int, tmp: str) -> None:
    """One rank of `_ring_row` (a spawned process): build the problem, keep this rank's shard,
    check the gathered output against float64, time, measure this process's peak memory."""
    import datetime
    import gc
    import json
    from pathlib import Path

    world = int(cfg["procs"])
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank))
    import torch
    import torch.distributed as dist

    from astrobio_cli.attention.core import (
        attention,
        context_parallel,
        shard_sequence,
        unshard_sequence,
    )
    from astrobio_cli.attention.routing import backend_instance, plugin_host
    from astrobio_cli.settings import get_settings

    config = BenchConfig(**cfg)
    if device == "cpu":
        torch.set_num_threads(get_settings().threads or 1)
        _release_freed_memory()
    else:
        torch.cuda.set_device(rank)
    dist.init_process_group("gloo" if device == "cpu" else "nccl",
                            init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(minutes=10))  # fmt: skip
    try:
        B, H, D = config.batch, config.heads, config.head_dim
        Hkv = config.kv_heads or H
        dtype = _torch_dtype(config.dtype)
        train = config.mode == "fwd+bwd"
        layout = "zigzag" if config.causal else "contiguous"
        g = torch.Generator(device="cpu").manual_seed(config.seed + seq)
        full = [torch.randn(B, h, seq, D, generator=g).to(dtype) for h in (H, Hkv, Hkv)]
        if rank == 0:
            ref, ref_rows, ref_heads = _reference(*full, config.causal)
        do = torch.randn(B, H, seq, D, generator=g).to(dtype) if train else None
        q, k, v = (shard_sequence(t, rank, world, layout=layout).contiguous().to(device)
                   for t in full)  # fmt: skip
        if train:
            do = shard_sequence(do, rank, world, layout=layout).contiguous().to(device)
            for t in (q, k, v):
                t.requires_grad_(True)
        del full
        gc.collect()
        impl = backend_instance(plugin_host().get("attention", "ring"))

        def fwd():
            with context_parallel(layout=layout):
                if world == 1:  # routing declines a group of one: the same code, called directly
                    return impl(q, k, v, mask=None, causal=config.causal)
                return attention(q, k, v, causal=config.causal, backend="ring")

        def call():
            out = fwd()
            if train:
                out.backward(do)
                for t in (q, k, v):
                    t.grad = None
            return out

        with torch.no_grad() if not train else contextlib.nullcontext():
            out = call()
            parts = [torch.empty_like(out) for _ in range(world)]
            dist.all_gather(parts, out.detach().contiguous())
            err = None
            if rank == 0:
                whole = unshard_sequence(parts, layout=layout)
                err = (whole[:, :ref_heads, -ref_rows:].double().cpu() - ref).abs().max().item()
            del out, parts
            dist.barrier()
            times = _time(call, config.repeats, device)
            dist.barrier()
            peak = _peak(call, device)
        res = {"ms_median": statistics.median(times), "ms_min": min(times),
               "peak_mem_mb": peak, "max_abs_err": err}  # fmt: skip
        Path(tmp, f"rank{rank}.json").write_text(json.dumps(res), encoding="utf-8")
    finally:
        dist.destroy_process_group()
