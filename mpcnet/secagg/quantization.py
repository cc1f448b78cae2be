"""Real and integer vectors in and out of the mask ring Z_(2^k).

**Reals (stochastic rounding).**  :class:`Quantizer` with clip bound c, ring
bits k and a public bound n on the number of clients summed:

1. clip x to [-c, c];
2. map to v = (x + c) / (2c) * L in [0, L], L = min(floor((2^k - 1) / n), 2^52)
   levels, rounded down to an even number (the 2^52 cap keeps v exact enough
   in float64; an even L puts 0 exactly on the grid, at L/2, so a zero update
   encodes without rounding noise -- what zero-out DP adjacency assumes);
3. round stochastically: q = floor(v) + [u < v - floor(v)] with u uniform in
   [0, 1) from the injected :class:`~mpcnet.secagg.crypto.RandomSource`
   (by default a fresh OS-entropy seed expanded by AES-256-CTR; 53-bit
   uniforms from its bytes), so E[q] = v.

Head-room: every q is in [0, L], so a sum of m <= n vectors is at most
n*L <= 2^k - 1 and never wraps.  ``dequantize_sum(S, m)`` returns
S * 2c/L - m*c.

Error bound: per element and client |x_hat - clip(x)| < 2c/L (one step), and
the rounding is unbiased; for a sum of m clients the error is < m * 2c/L,
and for the mean < 2c/L.  With k = 32, n = 1000, c = 1: 2c/L < 4.7e-7.

**FedAvg.**  :class:`WeightedEncoder` aggregates sum_k n_k w_k / sum_k n_k:
client k sends n_k * q(w_k) followed by one extra element n_k.  Given a
public bound W >= sum_k n_k, the levels are L = min(floor((2^k - 1) / W), 2^52)
(even, as above) so sum_k n_k q_k <= L * W never wraps.  The decoded weighted mean has error
< 2c/L per element (a weighted mean of per-client errors each below a step).

**Integers.**  :func:`encode_ints` / :func:`decode_ints`: two's complement mod
2^k; exact whenever the true sum lies in [-2^(k-1), 2^(k-1)).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mpcnet.core.ring import RingArray
from mpcnet.core import prg as core_prg
from mpcnet.secagg.crypto import LABEL_QUANTIZE, SEED_BYTES, RandomSource
from mpcnet.secagg.errors import ParamsError
from mpcnet.secagg.prg import MAX_BITS, modulus_mask

FloatArray = npt.NDArray[np.float64]
MAX_LEVELS = 2**52


def uniforms(count: int, rng: RandomSource | None = None) -> FloatArray:
    """``count`` uniforms in [0, 1) with 53 random bits each, from ``rng``.

    Default: a fresh 256-bit OS-entropy seed expanded by the project PRG (AES-256-CTR,
    :func:`mpcnet.core.prg.expand_bytes`, label :data:`LABEL_QUANTIZE`) -- as :func:`mpcnet.core.prg.random_ring`
    does; far cheaper than reading 8 bytes per element from the OS (getrandom is slow for long vectors)."""
    if rng is None:
        data = core_prg.expand_bytes(secrets.token_bytes(SEED_BYTES), LABEL_QUANTIZE, 8 * count)
    else:
        data = rng.random_bytes(8 * count)
    words = np.frombuffer(data, dtype="<u8")
    return (words >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _levels(bits: int, bound: int) -> int:
    if not 2 <= bits <= MAX_BITS:
        raise ParamsError(f"bits must be in [2, {MAX_BITS}], got {bits}")
    if bound < 1:
        raise ParamsError(f"head-room bound must be >= 1, got {bound}")
    levels = min(((1 << bits) - 1) // bound, MAX_LEVELS)
    levels -= levels & 1  # even: 0 maps to L/2 exactly
    if levels < 2:
        raise ParamsError(f"2^{bits} leaves fewer than 2 levels for a sum bound of {bound}")
    return levels


def _real_vector(x: object, what: str) -> FloatArray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1 or not bool(np.all(np.isfinite(arr))):
        raise ParamsError(f"{what} must be a finite 1-d float vector")
    return arr


def _stochastic(v: FloatArray, rng: RandomSource | None) -> RingArray:
    floor = np.floor(v)
    up = uniforms(v.size, rng) < (v - floor)
    return (floor.astype(np.uint64) + up.astype(np.uint64)).astype(np.uint64)


@dataclass(frozen=True, slots=True)
class Quantizer:
    clip: float
    max_clients: int
    bits: int = 32

    def __post_init__(self) -> None:
        if not (np.isfinite(self.clip) and self.clip > 0):
            raise ParamsError("clip bound must be a positive finite number")
        _levels(self.bits, self.max_clients)

    @property
    def levels(self) -> int:
        return _levels(self.bits, self.max_clients)

    @property
    def step(self) -> float:
        return 2.0 * self.clip / self.levels

    def quantize(self, x: object, rng: RandomSource | None = None) -> RingArray:
        arr = np.clip(_real_vector(x, "vector"), -self.clip, self.clip)
        return _stochastic((arr + self.clip) / (2.0 * self.clip) * self.levels, rng)

    def dequantize_sum(self, total: RingArray, count: int) -> FloatArray:
        if not 1 <= count <= self.max_clients:
            raise ParamsError(f"count must be in [1, {self.max_clients}], got {count}")
        return total.astype(np.float64) * self.step - count * self.clip


@dataclass(frozen=True, slots=True)
class WeightedEncoder:
    clip: float
    max_total_weight: int
    bits: int = 32

    def __post_init__(self) -> None:
        if not (np.isfinite(self.clip) and self.clip > 0):
            raise ParamsError("clip bound must be a positive finite number")
        _levels(self.bits, self.max_total_weight)

    @property
    def levels(self) -> int:
        return _levels(self.bits, self.max_total_weight)

    @property
    def step(self) -> float:
        return 2.0 * self.clip / self.levels

    def encode(self, w: object, weight: int, rng: RandomSource | None = None) -> RingArray:
        """n_k * q(w_k) followed by n_k (length d + 1)."""
        if not 1 <= weight <= self.max_total_weight:
            raise ParamsError(f"weight must be in [1, {self.max_total_weight}], got {weight}")
        arr = np.clip(_real_vector(w, "weights"), -self.clip, self.clip)
        q = _stochastic((arr + self.clip) / (2.0 * self.clip) * self.levels, rng)
        return np.append(q * np.uint64(weight), np.uint64(weight)).astype(np.uint64)

    def decode(self, total: RingArray) -> tuple[FloatArray, int]:
        """(weighted mean, total weight) from the aggregate of :meth:`encode` vectors."""
        weight = int(total[-1])
        if not 1 <= weight <= self.max_total_weight:
            raise ParamsError(f"aggregate weight {weight} outside [1, {self.max_total_weight}]")
        return total[:-1].astype(np.float64) / weight * self.step - self.clip, weight


def encode_ints(values: object, bits: int) -> RingArray:
    """Signed integers as two's complement in Z_(2^bits); each must lie in [-2^(bits-1), 2^(bits-1))."""
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ParamsError("integer vector must be a 1-d integer array")
    if arr.dtype == np.uint64 and bits == MAX_BITS:
        return arr.copy()
    signed = arr.astype(np.int64)
    if bits < MAX_BITS:
        half = 1 << (bits - 1)
        if bool(np.any(signed < -half)) or bool(np.any(signed >= half)):
            raise ParamsError(f"integers must lie in [-2^{bits - 1}, 2^{bits - 1})")
    return np.bitwise_and(signed.view(np.uint64), modulus_mask(bits))


def decode_ints(total: RingArray, bits: int) -> npt.NDArray[np.int64]:
    """Inverse of :func:`encode_ints` on an aggregate (two's complement mod 2^bits)."""
    shift = np.uint64(MAX_BITS - bits)
    return (total.astype(np.uint64) << shift).view(np.int64) >> np.int64(MAX_BITS - bits)
