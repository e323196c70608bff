"""Deterministic train/val/test splits from a seed, saved as JSON so a run can be reproduced.

A split is a set of sample (row) indices into one dataset; the file records the seed, the
fractions and the dataset size, so loading it against a dataset of another size fails loudly
instead of silently mixing train and test samples.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astrobio_cli.errors import UsageError

SPLIT_NAMES = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class Splits:
    """Sorted sample indices per split; together they are a partition of range(n)."""

    n: int
    seed: int
    fractions: tuple[float, float, float]
    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]
    source: str = ""  # what the indices index (a dataset path), informational
    extra: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> tuple[int, ...]:
        if name not in SPLIT_NAMES:
            raise UsageError(f"unknown split {name!r}: use one of {', '.join(SPLIT_NAMES)}")
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "astrobio-splits/1",
            "n": self.n,
            "seed": self.seed,
            "fractions": list(self.fractions),
            "source": self.source,
            **{name: list(self[name]) for name in SPLIT_NAMES},
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Splits:
        try:
            s = cls(
                n=int(d["n"]),
                seed=int(d["seed"]),
                fractions=tuple(float(f) for f in d["fractions"]),  # type: ignore[arg-type]
                train=tuple(int(i) for i in d["train"]),
                val=tuple(int(i) for i in d["val"]),
                test=tuple(int(i) for i in d["test"]),
                source=str(d.get("source", "")),
                extra=dict(d.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"not a valid splits record ({type(exc).__name__}: {exc})") from None
        s.check()
        return s

    def check(self, n: int | None = None) -> None:
        """Raise UsageError unless the splits partition range(n) (default: the recorded n)."""
        n = self.n if n is None else n
        if n != self.n:
            raise UsageError(
                f"the splits were made for {self.n} samples but the dataset has {n}; "
                "delete the splits file or use the dataset it was made for"
            )
        all_idx = [*self.train, *self.val, *self.test]
        if sorted(all_idx) != list(range(n)):
            raise UsageError(
                "the splits are not a partition of the dataset's samples (an index is missing, "
                "repeated or out of range); delete the splits file to make new ones"
            )

    def save(self, path: Path | str) -> Path:
        """Write JSON atomically (temporary name beside it, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: Path | str) -> Splits:
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"splits file {path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"splits file {path} is not valid JSON: {exc}") from None
        try:
            return cls.from_dict(d)
        except UsageError as exc:
            raise UsageError(f"splits file {path}: {exc}") from None


def make_splits(
    n: int,
    seed: int = 0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    *,
    source: str = "",
) -> Splits:
    """Split range(n) into train/val/test by a seeded permutation (NumPy PCG64).

    Sizes: val = round(n * f_val), test = round(n * f_test), train the rest; train keeps at
    least one sample. The same (n, seed, fractions) always gives the same indices.
    """
    import numpy as np

    if n < 1:
        raise UsageError(f"cannot split an empty dataset (n = {n})")
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise UsageError(
            f"split fractions {tuple(fractions)} must be three non-negative numbers "
            "(train, val, test) summing to 1"
        )
    perm = np.random.default_rng(seed).permutation(n)
    n_val = round(n * fractions[1])
    n_test = round(n * fractions[2])
    while n - n_val - n_test < 1:  # keep at least one training sample
        if n_test >= n_val and n_test > 0:
            n_test -= 1
        else:
            n_val -= 1
    n_train = n - n_val - n_test
    parts = (perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :])
    train, val, test = (tuple(int(i) for i in sorted(p)) for p in parts)
    return Splits(
        n=n,
        seed=seed,
        fractions=tuple(float(f) for f in fractions),  # type: ignore[arg-type]
        train=train,
        val=val,
        test=test,
        source=source,
    )


def load_or_make_splits(
    path: Path | str | None,
    n: int,
    seed: int = 0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    *,
    source: str = "",
) -> Splits:
    """The splits saved at `path` (checked against n), else new ones saved there.

    `path=None` makes them without saving. A run stores its splits file in its run directory
    so a resumed or repeated run trains and evaluates on exactly the same samples.
    """
    if path is not None and Path(path).exists():
        splits = Splits.load(path)
        try:
            splits.check(n)
        except UsageError as exc:
            raise UsageError(f"splits file {path}: {exc}") from None
        return splits
    splits = make_splits(n, seed, fractions, source=source)
    if path is not None:
        splits.save(path)
    return splits
