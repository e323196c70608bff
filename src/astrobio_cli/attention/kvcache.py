"""A preallocated key/value cache for token-by-token decoding.

The cache owns two (B, Hkv, max_len, D) buffers; `append` copies new keys/values in place and
returns views of the filled prefix, (B, Hkv, length, D). The views are strided (their batch and
head strides span max_len), which every exact backend reads without a copy. With causal=True and
bottom-right alignment, attending a new query block to the returned views is exactly the matching
rows of a full causal forward.
"""

from __future__ import annotations

import torch


class KVCache:
    """Preallocated K/V buffers for one attention layer; append per step, read the prefix."""

    def __init__(
        self,
        batch: int,
        kv_heads: int,
        max_len: int,
        head_dim: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        for name, value in (
            ("batch", batch),
            ("kv_heads", kv_heads),
            ("max_len", max_len),
            ("head_dim", head_dim),
        ):
            if int(value) <= 0:
                raise ValueError(f"KVCache {name} must be positive, got {value}")
        shape = (batch, kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, Hkv, t, D) after the cached ones; return the filled (B, Hkv, L, D) views."""
        B, H, _, D = self.k.shape
        expected = f"(B, Hkv, t, D) = ({B}, {H}, t, {D})"
        for name, t in (("k", k), ("v", v)):
            if t.dim() != 4 or t.shape[0] != B or t.shape[1] != H or t.shape[3] != D:
                raise ValueError(
                    f"KVCache.append: {name} must have shape {expected}, got {tuple(t.shape)}"
                )
        if k.shape != v.shape:
            raise ValueError(f"KVCache.append: k {tuple(k.shape)} and v {tuple(v.shape)} differ")
        t = k.shape[2]
        if self.length + t > self.max_len:
            raise ValueError(
                f"KVCache is full: {self.length} + {t} tokens exceed max_len {self.max_len}; "
                "allocate a longer cache or reset() it"
            )
        self.k[:, :, self.length : self.length + t] = k
        self.v[:, :, self.length : self.length + t] = v
        self.length += t
        return self.keys, self.values

    @property
    def keys(self) -> torch.Tensor:
        return self.k[:, :, : self.length]

    @property
    def values(self) -> torch.Tensor:
        return self.v[:, :, : self.length]

    def reset(self) -> None:
        self.length = 0
