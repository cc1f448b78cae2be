"""Additive n-of-n secret sharing over Z_(2^64).

A secret x is split into n shares x_0..x_{n-1} with sum x (mod 2^64); any
n-1 shares are uniformly random and independent of x.

Seed-compressed form (used by input parties and the dealer): parties
0..n-2 hold shares expanded from a 256-bit seed by the PRG, under a label
naming the use; only party n-1 receives data, the *correction*
x - sum(expanded shares).  Traffic to the first n-1 parties is a seed, not
an array, so it does not grow with the array.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mpcnet.core import prg
from mpcnet.core.ring import RingArray, require_ring, ring_sum
from mpcnet.core.ring import wrapping as _wrapping


@dataclass(frozen=True, slots=True)
class SeededSharing:
    """Shares of one secret: seeds for parties 0..n-2, data for party n-1."""

    label: bytes
    seeds: tuple[bytes, ...]
    correction: RingArray

    @property
    def n_parties(self) -> int:
        return len(self.seeds) + 1


@_wrapping()


def input_label(job_id: str, secret: str) -> bytes:
    """PRG label of a seed-compressed input share: one per job and secret name."""
    return f"input/{job_id}/{secret}".encode()


def share(secret: RingArray, n_parties: int) -> list[RingArray]:
    """Split ``secret`` into ``n_parties`` additive shares (OS entropy)."""
    secret = require_ring(np.asarray(secret), "secret")
    if n_parties < 2:
        raise ValueError(f"additive sharing needs at least 2 parties, got {n_parties}")
    shares = [prg.random_ring(secret.size).reshape(secret.shape) for _ in range(n_parties - 1)]
    last = np.asarray(secret - ring_sum(shares), dtype=np.uint64)
    return shares + [last]


def expand_share(seed: bytes, label: bytes, shape: tuple[int, ...]) -> RingArray:
    """The share a seed-holding party expands for ``label``."""
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    return prg.expand(seed, label, count).reshape(shape)


@_wrapping()


def share_seeded(
    secret: RingArray, n_parties: int, label: bytes, seeds: Sequence[bytes] | None = None
) -> SeededSharing:
    """Seed-compressed sharing; ``seeds`` default to fresh OS-entropy seeds."""
    secret = require_ring(secret, "secret")
    if n_parties < 2:
        raise ValueError(f"additive sharing needs at least 2 parties, got {n_parties}")
    if seeds is None:
        seeds = [prg.new_seed() for _ in range(n_parties - 1)]
    if len(seeds) != n_parties - 1:
        raise ValueError(f"need {n_parties - 1} seeds, got {len(seeds)}")
    correction = secret.copy()
    for seed in seeds:
        np.subtract(correction, expand_share(seed, label, secret.shape), out=correction)
    return SeededSharing(label=label, seeds=tuple(seeds), correction=correction)


def reconstruct(shares: Sequence[RingArray]) -> RingArray:
    """Recombine additive shares: their sum mod 2^64."""
    shapes = {s.shape for s in shares}
    if len(shapes) != 1:
        raise ValueError(f"shares disagree on shape: {sorted(shapes)}")
    return np.asarray(ring_sum([np.asarray(s) for s in shares]), dtype=np.uint64)


def seeded_shares(sharing: SeededSharing, shape: tuple[int, ...]) -> list[RingArray]:
    """All n shares of a seeded sharing (for tests and for a party holding all seeds)."""
    out = [expand_share(seed, sharing.label, shape) for seed in sharing.seeds]
    return out + [sharing.correction]
