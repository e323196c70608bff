"""One attention interface for every model; backends are plugins (plugins/attention/).

    from astrobio_cli.attention import attention, KVCache
    out = attention(q, k, v, mask=padding, causal=True)        # (B, Hq, Tq, D)

Semantics (shapes, masks, causal alignment, empty rows) are fixed in `problem.py`; routing in
`routing.py`; the float64 reference in `reference.py`. Importing this package imports torch:
command modules import it inside their functions.
"""

from astrobio_cli.attention.core import attention, explain
from astrobio_cli.attention.kvcache import KVCache
from astrobio_cli.attention.problem import Problem, causal_band, check_inputs
from astrobio_cli.attention.reference import reference_attention
from astrobio_cli.attention.routing import (
    PRIORITY,
    BackendUnsupportedError,
    Explanation,
    priority_for,
)

__all__ = [
    "PRIORITY",
    "BackendUnsupportedError",
    "Explanation",
    "KVCache",
    "Problem",
    "attention",
    "causal_band",
    "check_inputs",
    "explain",
    "priority_for",
    "reference_attention",
]
