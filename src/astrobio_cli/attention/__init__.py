"""One attention interface for every model; backends are plugins (plugins/attention/).

    from astrobio_cli.attention import attention, KVCache
    out = attention(q, k, v, mask=padding, causal=True)        # (B, Hq, Tq, D)

Semantics (shapes, masks, causal alignment, empty rows) are fixed in `problem.py`; routing in
`routing.py`; the float64 reference in `reference.py`; the benchmark in `bench.py`.
Names are imported on first access, so `import astrobio_cli.attention.bench` (the CLI does)
does not import torch until a benchmark runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "attention": "core",
    "explain": "core",
    "context_parallel": "core",
    "shard_sequence": "core",
    "unshard_sequence": "core",
    "gather_sequence": "core",
    "KVCache": "kvcache",
    "Problem": "problem",
    "causal_band": "problem",
    "check_inputs": "problem",
    "reference_attention": "reference",
    "PRIORITY": "routing",
    "BackendUnsupportedError": "routing",
    "Explanation": "routing",
    "priority_for": "routing",
}

__all__ = [  # noqa: RUF022 (grouped like _EXPORTS)
    "attention",
    "explain",
    "context_parallel",
    "shard_sequence",
    "unshard_sequence",
    "gather_sequence",
    "KVCache",
    "Problem",
    "causal_band",
    "check_inputs",
    "reference_attention",
    "PRIORITY",
    "BackendUnsupportedError",
    "Explanation",
    "priority_for",
]

if TYPE_CHECKING:
    from astrobio_cli.attention.core import (
        attention,
        context_parallel,
        explain,
        gather_sequence,
        shard_sequence,
        unshard_sequence,
    )
    from astrobio_cli.attention.kvcache import KVCache
    from astrobio_cli.attention.problem import Problem, causal_band, check_inputs
    from astrobio_cli.attention.reference import reference_attention
    from astrobio_cli.attention.routing import (
        PRIORITY,
        BackendUnsupportedError,
        Explanation,
        priority_for,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'astrobio_cli.attention' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"astrobio_cli.attention.{module}"), name)
    globals()[name] = value
    return value
