"""Optimizers (AdamW, Lion, SGD) and learning-rate schedules, as plain functions."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm 2).

    update = sign(beta1 * m + (1 - beta1) * g); p -= lr * (update + wd * p);
    m = beta2 * m + (1 - beta2) * g. One state tensor per parameter (half of Adam's memory).
    Use a learning rate 3-10x smaller than AdamW's.
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter] | Iterable[dict],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"Lion: lr must be positive, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Lion: betas must be in [0, 1), got {betas}")
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                if wd:
                    p.mul_(1 - lr * wd)
                update = (m * beta1).add_(p.grad, alpha=1 - beta1).sign_()
                p.add_(update, alpha=-lr)
                m.mul_(beta2).add_(p.grad, alpha=1 - beta2)
        return loss


def build_optimizer(
    name: str, params, *, lr: float, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "lion":
        return Lion(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


def lr_factor(name: str, step: int, total: int, warmup: int, restarts: int = 2) -> float:
    """The multiplier of the base learning rate at optimizer step `step` (0-based).

    cosine: linear warmup to 1, then half a cosine to 0.1 at `total`.
    onecycle: warmup (default 30% of the run) from 0.04 to 1, cosine down to 1e-4 (Smith 2018).
    cosine-restarts: warmup, then `restarts` equal cosine cycles from 1 to 0.1 (SGDR).
    constant: warmup, then 1.
    """
    floor = 0.1
    if name == "onecycle":
        up = warmup or max(1, int(0.3 * total))
        if step < up:
            return 0.04 + 0.96 * step / up
        t = (step - up) / max(1, total - up)
        return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    if step < warmup:
        return (step + 1) / warmup
    if name == "constant":
        return 1.0
    t = (step - warmup) / max(1, total - warmup)
    if name == "cosine-restarts":
        t = (t * restarts) % 1.0
    elif name != "cosine":
        raise ValueError(f"unknown scheduler {name!r}")
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def build_scheduler(
    name: str, optimizer: torch.optim.Optimizer, *, total: int, warmup: int, restarts: int = 2
) -> LambdaLR:
    # A LambdaLR over a module-level function and a functools.partial: its state_dict holds
    # only `last_epoch` and base lrs, so resuming restores the schedule exactly.
    import functools

    fn = functools.partial(lr_factor, name, total=total, warmup=warmup, restarts=restarts)
    return LambdaLR(optimizer, fn)
