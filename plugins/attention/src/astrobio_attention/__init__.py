"""Built-in astrobio attention plugins.

Registered through the `astrobio` entry-point group, exactly as a third-party plugin is.
This module is imported by `astrobio --help`: keep heavy imports inside factories, and keep
`check` functions free of torch (they run for `astrobio plugins list`).

One module per backend family: eager.py, sdpa.py, external.py (flash-attn, xformers),
triton_flash.py (+ triton_kernels.py), approximate.py (linear, sliding-window), ring.py
(context parallel over a process group).
"""

import os

from astrobio_cli.hardware import has_cuda, need_cuda, need_module
from astrobio_cli.hookspecs import hookimpl
from astrobio_cli.specs import AttentionBackendSpec

__all__ = ["hookimpl"]


def _all(*checks):
    def check():
        for c in checks:
            ok, reason = c()
            if not ok:
                return ok, reason
        return True, ""

    return check


def _torch():
    return need_module("torch")


def _triton_device():
    if has_cuda() or os.environ.get("TRITON_INTERPRET") == "1":
        return True, ""
    return False, "no CUDA device; on a CPU only under TRITON_INTERPRET=1 (correctness only)"


def _eager():
    from astrobio_attention.eager import EagerBackend

    return EagerBackend()


def _sdpa(name):
    def factory():
        from astrobio_attention.sdpa import SdpaBackend

        return SdpaBackend(name)

    return factory


def _flash_attn():
    from astrobio_attention.external import FlashAttnBackend

    return FlashAttnBackend()


def _xformers():
    from astrobio_attention.external import XformersBackend

    return XformersBackend()


def _triton():
    from astrobio_attention.triton_flash import TritonBackend

    return TritonBackend()


def _multi_process():
    # torch-free (runs for `astrobio plugins list`); torchrun and our launchers set WORLD_SIZE.
    # The process group itself is checked per call (RingBackend.supports).
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        world = 1
    if world > 1:
        return True, ""
    return False, (
        "single process: ring attention shards the sequence over a torch.distributed group of "
        "2+ processes (torchrun, `astrobio train --procs N`, `astrobio bench attention "
        "--backends ring --procs N`)"
    )


def _ring():
    from astrobio_attention.ring import RingBackend

    return RingBackend()


def _linear():
    from astrobio_attention.approximate import LinearBackend

    return LinearBackend()


def _sliding_window():
    from astrobio_attention.approximate import SlidingWindowBackend
    from astrobio_cli.settings import get_settings

    return SlidingWindowBackend(get_settings().attention.window)


@hookimpl
def register_attention_backends(register):
    register(
        AttentionBackendSpec(
            name="eager",
            description="Plain PyTorch math (materialises the score matrix): the readable baseline.",
            factory=_eager,
            check=_torch,
        )
    )
    register(
        AttentionBackendSpec(
            name="sdpa",
            description="torch scaled_dot_product_attention; PyTorch picks the kernel.",
            factory=_sdpa("sdpa"),
            check=_torch,
        )
    )
    for name, what, check in (
        ("sdpa-flash", "FlashAttention kernel (CUDA; blocked flash kernel on CPU)", _torch),
        ("sdpa-efficient", "memory-efficient kernel (CUDA)", _all(_torch, need_cuda)),
        ("sdpa-math", "math kernel", _torch),
        ("sdpa-cudnn", "cuDNN kernel (CUDA)", _all(_torch, need_cuda)),
    ):
        register(
            AttentionBackendSpec(
                name=name,
                description=f"SDPA pinned to its {what}; no silent fallback.",
                factory=_sdpa(name),
                check=check,
            )
        )
    register(
        AttentionBackendSpec(
            name="flash-attn",
            description="Dao-AILab flash-attn 2 (extra: astrobio-attention[flash-attn]).",
            factory=_flash_attn,
            check=_all(lambda: need_module("flash_attn", "flash-attn"), need_cuda),
        )
    )
    register(
        AttentionBackendSpec(
            name="xformers",
            description="xFormers memory_efficient_attention (extra: astrobio-attention[xformers]).",
            factory=_xformers,
            check=_all(lambda: need_module("xformers"), need_cuda),
        )
    )
    register(
        AttentionBackendSpec(
            name="triton",
            description="Our fused flash-attention kernel in Triton (forward + backward).",
            factory=_triton,
            check=_all(_torch, lambda: need_module("triton"), _triton_device),
        )
    )
    register(
        AttentionBackendSpec(
            name="ring",
            description="Ring attention over a torch.distributed group: sequence-sharded "
            "(context parallel), exact; forward + backward.",
            factory=_ring,
            check=_all(_torch, _multi_process),
        )
    )
    register(
        AttentionBackendSpec(
            name="linear",
            description="Kernelised linear attention, O(T) (inexact: auto never picks it).",
            factory=_linear,
            check=_torch,
            exact=False,
        )
    )
    register(
        AttentionBackendSpec(
            name="sliding-window",
            description="Exact inside a window of attention.window keys (inexact overall).",
            factory=_sliding_window,
            check=_torch,
            exact=False,
        )
    )
