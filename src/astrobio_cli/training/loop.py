"""The training loop: one function, read top to bottom (karpathy/nanoGPT `train.py` style).

setup (Accelerate, seed, data, model, optimizer, schedule) -> resume -> for each step:
micro-batches with gradient accumulation -> check the loss -> clip, step -> log -> periodic eval
and checkpoint on the main process -> stop. Everything else is a plain helper function.

Exact resume on CPU: the batch order is a pure function of (seed, epoch, rank) and the number of
micro-batches consumed; weights, optimizer, schedule and every rank's RNG states are saved. A
run resumed from a checkpoint repeats the same float operations in the same order, so its loss
curve and final weights are bit-identical to an uninterrupted run's (same process count and
threads). On GPU, non-deterministic kernels (atomics in conv/scatter backward) make resumed
runs differ in the last bits; see docs/training.md.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from astrobio_cli.data import lineage
from astrobio_cli.errors import UsageError, UserError
from astrobio_cli.training import checkpoint as ckpt
from astrobio_cli.training.config import SMOKE_STEPS, TrainConfig
from astrobio_cli.training.data import BatchOrder
from astrobio_cli.training.launch import local_world_size
from astrobio_cli.training.optim import build_optimizer, build_scheduler
from astrobio_cli.training.plugin import Datasets, check_plugin
from astrobio_cli.training.rundir import MetricsLog, write_config, write_run_card


class TrainingStopped(UserError):
    """The run stopped on purpose (non-finite loss, out of memory); the message says why."""


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    final_loss: float | None
    samples_per_s: float
    eval: dict[str, float] = field(default_factory=dict)
    resumed_from: str | None = None
    world_size: int = 1


def make_plugin(spec: Any, cfg: TrainConfig) -> Any:
    """Build the model plugin from its spec with the run's model options."""
    options = dict(cfg.model_options)
    if cfg.grad_checkpointing:
        options["grad_checkpointing"] = True
    if cfg.model_path:
        options["model_path"] = cfg.model_path
    plugin = spec.factory(options)
    if cfg.quick_smoke:
        plugin = spec.factory({**plugin.smoke_config, **options})
    missing = check_plugin(plugin)
    if missing:
        raise UserError(
            f"model '{spec.name}' is not a complete model plugin: it lacks {', '.join(missing)} "
            "(see docs/training.md, 'Writing a model plugin')"
        )
    return plugin


def train(
    cfg: TrainConfig,
    plugin: Any,
    run_dir: Path,
    *,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    from accelerate import Accelerator
    from accelerate.utils import gather_object, set_seed

    # ---- setup -----------------------------------------------------------------------------
    if cfg.precision == "fp16" and (cfg.cpu or not torch.cuda.is_available()):
        raise UsageError("--precision fp16 needs a CUDA device; on CPU use --precision bf16")
    on_cpu = cfg.cpu or not torch.cuda.is_available()
    fsdp_plugin = None
    if cfg.strategy == "fsdp" and not on_cpu:
        from accelerate import FullyShardedDataParallelPlugin

        # FSDP2 (`fully_shard`), the same sharding the CPU path applies itself (below).
        fsdp_plugin = FullyShardedDataParallelPlugin(fsdp_version=2)
    acc = Accelerator(
        cpu=on_cpu,
        mixed_precision={"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[cfg.precision],
        fsdp_plugin=fsdp_plugin,
    )
    world, rank, main = acc.num_processes, acc.process_index, acc.is_main_process
    cpu_fsdp = cfg.strategy == "fsdp" and acc.device.type == "cpu"
    if cpu_fsdp and world < 2:
        raise UsageError(
            "--strategy fsdp shards the model over processes: on the CPU use --cpu --procs N "
            "with N >= 2"
        )
    # the processes on this node, not the whole multi-node run
    _set_threads(local_world_size(acc.num_processes) if acc.device.type == "cpu" else 1)

    set_seed(cfg.seed)  # same seed on every rank: identical data split and initial weights
    datasets: Datasets = plugin.make_datasets(
        Path(cfg.data) if cfg.data else None, seed=cfg.seed, smoke=cfg.quick_smoke
    )
    model = plugin.build(datasets)
    # What the run read, from the archive query on (fetch sidecars, preprocess records).
    inputs = (
        lineage.input_record(cfg.data, kind=getattr(plugin, "data_kind", None)) if main else None
    )
    if cfg.quick_smoke:
        cfg = _fit_smoke_batch(cfg, len(datasets.train), world, main)
    order = BatchOrder(len(datasets.train), cfg.batch_size, world, rank, cfg.seed)
    per_step = cfg.grad_accum
    if cfg.quick_smoke:
        total = SMOKE_STEPS
    elif cfg.steps is not None:
        total = cfg.steps
    elif cfg.epochs is not None:
        total = max(1, cfg.epochs * order.per_epoch // per_step)
    else:
        total = int(plugin.train_defaults.get("steps", 100))
    eval_every = cfg.eval_every or total
    ckpt_every = cfg.checkpoint_every or max(1, total // 4)
    log_every = 1 if cfg.quick_smoke else cfg.log_every

    if cpu_fsdp:  # before the optimizer: sharding replaces the parameters with DTensor shards
        model = _fully_shard_cpu(model, world)
    optimizer = build_optimizer(
        cfg.optimizer, model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    scheduler = build_scheduler(
        cfg.scheduler, optimizer, total=total, warmup=cfg.warmup, restarts=cfg.restarts
    )
    if cpu_fsdp:  # Accelerate would wrap the model in DDP on the CPU (it ignores FSDP there)
        optimizer = acc.prepare(optimizer)
    else:
        model, optimizer = acc.prepare(model, optimizer)
    raw_model = acc.unwrap_model(model)
    if cfg.compile:
        model = torch.compile(model)

    # ---- resume ----------------------------------------------------------------------------
    start_step, consumed, chunks, resumed_from = 0, 0, 1, None
    ckpt_dir = run_dir / "checkpoints"
    source, state, weights = _resume(cfg, ckpt_dir, main)
    if source is not None:
        if len(state["rng"]) != world:
            raise UsageError(
                f"checkpoint {source} was written by {len(state['rng'])} process(es); resume it "
                f"with the same count (--procs {len(state['rng'])}), not {world}"
            )
        saved = state.get("strategy", "ddp")
        if (saved == "fsdp") != (cfg.strategy == "fsdp"):
            raise UsageError(
                f"checkpoint {source} was written with --strategy {saved}; resume it with the "
                f"same strategy, not {cfg.strategy}"
            )
        if cfg.strategy == "fsdp":
            _fsdp_load(model, optimizer, weights, state["optimizer"])
        else:
            raw_model.load_state_dict(weights)
            optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_step, consumed, chunks = state["step"], state["position"], state.get("chunks", 1)
        resumed_from = str(source)
    # Each rank draws its own randomness (dropout, negative sampling) from here on.
    if source is None:
        _seed_rank(cfg.seed, rank)
    else:
        ckpt.set_rng_state(state["rng"][rank])

    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        resolved = {**cfg.model_dump(), "steps": total, "model_options": plugin.config}
        write_config(run_dir, resolved)
        if source is None:
            write_run_card(
                run_dir,
                config=resolved,
                provenance=datasets.provenance,
                world_size=world,
                inputs=[inputs],
            )
    log = MetricsLog(run_dir, resume_step=start_step if source else None) if main else None

    # ---- the loop --------------------------------------------------------------------------
    model.train()
    step, loss_val, last_eval, stop_reason = start_step, None, {}, None
    t_train, n_samples, t0 = 0.0, 0, time.perf_counter()
    feed = _Feed(datasets.train, order, consumed, cfg, rank)
    while step < total:
        lr = scheduler.get_last_lr()[0]
        step_start = consumed
        step_items: list[list[Any]] = []  # this step's micro-batches, kept for an OOM retry
        while True:  # runs once, unless an out-of-memory error asks to split the batch further
            step_loss = torch.zeros((), device=acc.device)
            try:
                for micro in range(per_step):
                    if micro == len(step_items):
                        step_items.append(feed.items(consumed))
                    consumed += 1
                    # no_sync: skip DDP's gradient all-reduce on all but the last micro-batch.
                    sync = micro == per_step - 1
                    with contextlib.nullcontext() if sync else _no_sync(acc, model, cfg):
                        step_loss += _micro_step(
                            acc, plugin, model, datasets, step_items[micro], per_step, chunks
                        )
                break
            except torch.OutOfMemoryError:
                optimizer.zero_grad(set_to_none=True)
                _empty_cache()
                if not cfg.auto_batch or chunks >= cfg.batch_size:
                    feed.close()
                    raise TrainingStopped(_oom_message(cfg, chunks)) from None
                # Same samples in smaller pieces: the data position and the gradient stay put.
                chunks, consumed = chunks * 2, step_start
        # One all-reduce of a scalar per step: every rank sees the same mean loss, so a
        # non-finite loss stops all ranks together, before the optimizer touches the weights.
        # `.item()` is the one host-device sync of the step.
        loss_val = acc.reduce(step_loss.detach(), reduction="mean").item()
        if not math.isfinite(loss_val):
            stop_reason = (
                f"loss became {loss_val} at step {step + 1}; stopped without saving. The last "
                f"good checkpoint is kept in {ckpt_dir}. Try a lower --lr (now {cfg.lr}), "
                "--precision fp32 or a smaller --max-grad-norm"
            )
            break
        if cfg.max_grad_norm:
            acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        n_samples += cfg.batch_size * per_step * world

        if main and (step % log_every == 0 or step == total):
            now = time.perf_counter()
            t_train += now - t0
            t0 = now
            record = {"loss": loss_val, "lr": lr, "samples_per_s": n_samples / max(t_train, 1e-9)}
            log.log(step, record)
            if on_log is not None:
                on_log({"step": step, "total": total, **record})
        if step % eval_every == 0 or step == total:
            t_pause = time.perf_counter()
            last_eval = _evaluate(acc, plugin, model, raw_model, datasets, cfg)
            if main:
                log.log(step, {f"val_{k}": v for k, v in last_eval.items()})
            t0 += time.perf_counter() - t_pause
        if step % ckpt_every == 0 or step == total:
            t_pause = time.perf_counter()
            _save(
                acc,
                model,
                optimizer,
                scheduler,
                ckpt_dir,
                step,
                consumed,
                chunks,
                cfg,
                plugin,
                loss_val,
                gather_object,
                {"lineage": inputs, "data_provenance": datasets.provenance},
            )
            t0 += time.perf_counter() - t_pause

    # ---- stop ------------------------------------------------------------------------------
    feed.close()
    if log is not None:
        log.close()
    acc.wait_for_everyone()
    if stop_reason is not None:
        raise TrainingStopped(stop_reason)
    result = RunResult(
        run_dir=run_dir,
        steps=step,
        final_loss=loss_val,
        samples_per_s=n_samples / max(t_train, 1e-9),
        eval=last_eval,
        resumed_from=resumed_from,
        world_size=world,
    )
    if main and hasattr(plugin, "export") and cfg.strategy != "fsdp":
        _export(plugin, raw_model, datasets, run_dir)
    if main:
        (run_dir / "summary.json").write_text(
            json.dumps(
                {**result.__dict__, "run_dir": str(run_dir), "model": plugin.name}, indent=2
            ),
            encoding="utf-8",
        )
    acc.end_training()
    return result


# ---- helpers (plain functions, in the order the loop uses them) -------------------------------


def _set_threads(local_procs: int) -> None:
    """Share the cores between the local processes (oversubscription costs 2-10x on CPU)."""
    from astrobio_cli.settings import get_settings

    threads = get_settings().threads
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // max(1, local_procs))
    torch.set_num_threads(threads)


def _seed_rank(seed: int, rank: int) -> None:
    import random

    import numpy as np

    s = seed * 1_000 + rank + 1
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    random.seed(s)


def _fit_smoke_batch(cfg: TrainConfig, n_train: int, world: int, main: bool) -> TrainConfig:
    """--quick-smoke trains on the model's small built-in data: a batch size larger than its
    training split (a model default meant for the full data, or a flag) is capped to fit."""
    fit = max(1, n_train // max(1, world))
    if cfg.batch_size <= fit:
        return cfg
    if main:
        _warn(
            f"--quick-smoke: batch size capped at {fit} (was {cfg.batch_size}): the smoke "
            f"data's training split has {n_train} samples for {world} process(es)"
        )
    return cfg.model_copy(update={"batch_size": fit})


def _resume(cfg: TrainConfig, ckpt_dir: Path, main: bool) -> tuple[Path | None, Any, Any]:
    """(checkpoint, training state, weights) to resume from, or Nones to start afresh.

    `--resume auto`: the newest checkpoint of the run that verifies and loads; a newer one that
    is truncated or fails its checksum is skipped with a warning on stderr (main process). An
    explicit `--resume PATH` that is damaged is an error (CheckpointCorrupt)."""
    if cfg.resume is None:
        return None, None, None
    if cfg.resume == "auto":
        found = ckpt.load_latest_intact(ckpt_dir, on_skip=_warn if main else _ignore)
        return found if found is not None else (None, None, None)  # None: nothing yet
    source = ckpt.resolve_checkpoint(Path(cfg.resume))
    return source, ckpt.load_train_state(source), ckpt.load_weights(source)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _ignore(message: str) -> None:
    pass


class _Feed:
    """The training items of micro-batch number `position` (`BatchOrder`), read in this process
    (`workers` 0) or by a `torch.utils.data.DataLoader` with `workers` worker processes that
    read and transform items ahead of the loop (the data layer's native kernels run there, and
    each worker opens its own file handle). Either way micro-batch i holds the same indices;
    worker randomness (augmentation) is seeded from the run seed, the rank and the starting
    position, so a run is repeatable (a resumed run draws its augmentation afresh)."""

    def __init__(self, train: Any, order: BatchOrder, start: int, cfg: TrainConfig, rank: int):
        self.train, self.order, self.next = train, order, start
        self.workers = int(cfg.workers or 0)
        self._it = None
        if self.workers > 0 and order.per_epoch > 0:
            from torch.utils.data import DataLoader

            g = torch.Generator().manual_seed((cfg.seed * 1_000_003 + rank) * 7919 + start)
            self._it = iter(
                DataLoader(
                    train,
                    batch_sampler=_Positions(order, start),
                    num_workers=self.workers,
                    collate_fn=_as_list,
                    prefetch_factor=2,
                    persistent_workers=False,
                    generator=g,
                )
            )

    def items(self, position: int) -> list[Any]:
        if self._it is None:
            return [self.train[i] for i in self.order.indices(position)]
        if position != self.next:  # the loader runs ahead in order: no random access
            raise RuntimeError(f"data feed at micro-batch {self.next}, asked for {position}")
        self.next += 1
        return next(self._it)

    def close(self) -> None:
        it, self._it = self._it, None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()


class _Positions:
    """A batch sampler: the `BatchOrder` indices of micro-batches start, start + 1, ..."""

    def __init__(self, order: BatchOrder, start: int) -> None:
        self.order, self.start = order, start

    def __iter__(self):
        i = self.start
        while True:
            yield self.order.indices(i)
            i += 1


def _as_list(items: list[Any]) -> list[Any]:  # DataLoader collate_fn: collated in the loop
    return items


def _micro_step(acc, plugin, model, datasets, items, per_step, chunks) -> torch.Tensor:
    """Forward and backward of one micro-batch (its items), in `chunks` pieces (more after an
    OOM).

    Returns the micro-batch's loss (detached) divided by the accumulation count. Each piece's
    loss is weighted by its share of the micro-batch, so splitting changes no gradient beyond
    float rounding.
    """
    collate = datasets.collate or torch.utils.data.default_collate
    total = torch.zeros((), device=acc.device)
    pieces = [items[i::chunks] for i in range(chunks)] if chunks > 1 else [items]
    for piece in pieces:
        batch = _to_device(collate(piece), acc.device)
        with acc.autocast():
            loss = plugin.loss(model, batch, datasets)
        weight = len(piece) / len(items) / per_step
        acc.backward(loss * weight)
        total += loss.detach().float() * weight
    return total


def _oom_message(cfg: TrainConfig, chunks: int) -> str:
    micro = max(1, cfg.batch_size // chunks)
    mem = _memory_text()
    hint = (
        f"retry with --auto-batch (splits each micro-batch further), or --batch-size "
        f"{max(1, micro // 2)} --grad-accum {cfg.grad_accum * 2}"
        if not cfg.auto_batch
        else "even a micro-batch of 1 does not fit; use a smaller model or --precision bf16"
    )
    return (
        f"out of memory at micro-batch {micro} (batch size {cfg.batch_size}, precision "
        f"{cfg.precision}; {mem}); {hint}"
    )


def _memory_text() -> str:
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        return f"GPU memory {free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB"
    import psutil

    vm = psutil.virtual_memory()
    return f"RAM {vm.available / 2**30:.1f} GiB free of {vm.total / 2**30:.1f} GiB"


def _empty_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_to_device(v, device) for v in batch)
    if hasattr(batch, "to"):
        return batch.to(device)
    return batch


def _export(plugin, raw_model, datasets, run_dir: Path) -> None:
    """The plugin's own export format (e.g. a PEFT adapter) in <run>/export, written to a
    temporary directory and renamed into place."""
    import shutil

    final = run_dir / "export"
    tmp = run_dir / f".export.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    plugin.export(raw_model, datasets, tmp)
    old = run_dir / f".export.old-{os.getpid()}"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _evaluate(acc, plugin, model, raw_model, datasets, cfg) -> dict[str, float]:
    """Held-out metrics on the main process; its RNG is forked so training draws stay the same."""
    metrics: dict[str, float] = {}
    if acc.is_main_process or cfg.strategy == "fsdp":
        target = model if cfg.strategy == "fsdp" else raw_model
        with torch.random.fork_rng(devices=[]):
            target.eval()
            with torch.no_grad(), acc.autocast():
                metrics = {k: float(v) for k, v in plugin.evaluate(target, datasets).items()}
            target.train()
    acc.wait_for_everyone()
    return metrics


def _fully_shard_cpu(model: torch.nn.Module, world: int) -> torch.nn.Module:
    """FSDP2 over a CPU device mesh (gloo): each top-level submodule that holds trainable
    parameters is one shard group (the members of a container such as `ModuleList` each one),
    the root holds the rest. Parameters, gradients and optimizer state are split over the
    ranks along their first dimension between steps."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (world,))

    def shard_children(module: torch.nn.Module) -> None:
        for child in module.children():
            if not any(p.requires_grad for p in child.parameters()):
                continue
            if type(child).forward is torch.nn.Module.forward:  # a container: no forward
                shard_children(child)
            else:
                fully_shard(child, mesh=mesh)

    shard_children(model)
    fully_shard(model, mesh=mesh)
    return model


def _no_sync(acc, model, cfg):
    """Skip the gradient sync on a micro-batch that is not the step's last one."""
    if cfg.strategy != "fsdp" or not hasattr(model, "set_requires_gradient_sync"):
        return acc.no_sync(model)
    return _fsdp2_no_sync(model)


@contextlib.contextmanager
def _fsdp2_no_sync(model):  # FSDP2 accumulates unsharded gradients, reduce-scatters at the end
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def _fsdp_state(model, optimizer) -> tuple[Any, Any]:
    """(full weights, full optimizer state keyed by parameter name) on rank 0, None elsewhere.
    A collective: every rank calls it."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=opts)
    optim = get_optimizer_state_dict(model, _inner(optimizer), options=opts)
    if torch.distributed.get_rank() != 0:
        return None, None
    return weights, optim


def _fsdp_load(model, optimizer, weights, optim_state) -> None:
    """Load a full (unsharded) checkpoint into the sharded model and optimizer: every rank
    read the same files and keeps its own shard."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    opts = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, weights, options=opts)
    set_optimizer_state_dict(model, _inner(optimizer), optim_state, options=opts)


def _inner(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # under Accelerate's wrapper


def _save(
    acc,
    model,
    optimizer,
    scheduler,
    ckpt_dir,
    step,
    consumed,
    chunks,
    cfg,
    plugin,
    loss_val,
    gather_object,
    data_meta,
) -> bool:
    # get_state_dict and gather_object are collectives (FSDP gathers shards; every rank's RNG
    # goes to rank 0), so every rank calls them; only the main process writes.
    if cfg.strategy == "fsdp":  # full weights and optimizer state, gathered on rank 0
        weights, optim_state = _fsdp_state(model, optimizer)
    else:
        weights = acc.get_state_dict(model)
        optim_state = optimizer.state_dict() if acc.is_main_process else None
    rng = gather_object([ckpt.rng_state()]) if acc.num_processes > 1 else [ckpt.rng_state()]
    if acc.is_main_process:
        ckpt.save_checkpoint(
            ckpt_dir,
            step,
            model_state=weights,
            train_state={
                "optimizer": optim_state,
                "strategy": cfg.strategy,
                "scheduler": scheduler.state_dict(),
                "rng": rng,
                "position": consumed,
                "chunks": chunks,
                "step": step,
            },
            meta={
                "model": plugin.name,
                "model_options": plugin.config,
                "data": cfg.data,
                "seed": cfg.seed,
                "loss": loss_val,
                "world_size": acc.num_processes,
                **data_meta,
            },
            keep_last=cfg.keep_last,
        )
    acc.wait_for_everyone()
    return acc.is_main_process
