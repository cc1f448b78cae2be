"""Deterministic benchmark workloads from a keyed XOF (SHAKE-256), standard library + numpy only.

Benchmark inputs are public test data, not secrets, but the project draws no
randomness from numpy's or ``random``'s generators: every stream here is
SHAKE-256 of (seed, label), so both sides of a comparison (mpcnet and its
peer, possibly in another venv) rebuild exactly the same data.  This module
imports nothing from mpcnet, so the peers can use it as a plain script
neighbour (``from benchdata import BenchData``).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import numpy.typing as npt


class BenchData:
    def __init__(self, seed: int | str) -> None:
        self.seed = str(seed)

    def _words(self, label: str, n: int) -> npt.NDArray[np.uint64]:
        buf = hashlib.shake_256(f"mpcnet-bench/{self.seed}/{label}".encode()).digest(8 * n)
        return np.frombuffer(buf, dtype="<u8").astype(np.uint64)

    def integers(self, label: str, low: int, high: int, n: int) -> npt.NDArray[np.int64]:
        """``n`` integers in [low, high) (modulo bias < (high-low) / 2^64)."""
        span = np.uint64(high - low)
        return (self._words(label, n) % span).astype(np.int64) + np.int64(low)

    def uniform(self, label: str, low: float, high: float, n: int) -> npt.NDArray[np.float64]:
        """``n`` floats in [low, high) from the top 53 bits of each word."""
        unit = (self._words(label, n) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
        return low + (high - low) * unit

    def sample(self, label: str, population: Sequence[int], k: int) -> list[int]:
        """``k`` distinct members of ``population`` (order by keyed hash)."""
        keys = self._words(label, len(population))
        return [int(population[i]) for i in np.argsort(keys, kind="stable")[:k]]
