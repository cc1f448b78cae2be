"""Fixed-point encoding of real arrays into Z_(2^64).

A real x is stored as round(x * 2^f) in two's complement (f = 16 fractional
bits by default).  Encoding refuses values with |x| * 2^f >= 2^62 (|x| >= 2^46
for f = 16): that is the signed domain the truncation protocol accepts.
Anything out of range, NaN or infinite raises :class:`FixedPointRangeError`
rather than wrapping around silently.

Products are computed at 2f fractional bits before truncation, so a product
(or a dot product's sum of products) must satisfy |x*y| < 2^(62 - 2f)
(2^30 ~ 1.07e9 for f = 16).  Values inside the MPC are secret, so this bound
cannot be checked there; it is the documented domain of ``mul``/``dot``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mpcnet.core.ring import RingArray, require_ring

DEFAULT_FRAC_BITS = 16
# Signed values the truncation protocol accepts (see truncation.py).
TRUNCATION_DOMAIN_BITS = 62


class FixedPointRangeError(ValueError):
    """A real value cannot be encoded without overflow (or is not finite)."""


@dataclass(frozen=True, slots=True)
class FixedPointFormat:
    """How reals map to ring elements: ``frac_bits`` fractional bits."""

    frac_bits: int = DEFAULT_FRAC_BITS

    def __post_init__(self) -> None:
        if not 0 <= self.frac_bits <= 30:
            raise ValueError(f"frac_bits must be in [0, 30], got {self.frac_bits}")

    @property
    def max_abs(self) -> float:
        """Largest magnitude :meth:`encode` accepts (just below :attr:`bound`)."""
        below = float(2 ** (TRUNCATION_DOMAIN_BITS - self.frac_bits) - 1)
        return below if below < self.bound else float(np.nextafter(self.bound, 0.0))

    @property
    def bound(self) -> float:
        """Encoded values must satisfy |x| < bound = 2^(62 - frac_bits)."""
        return float(2 ** (TRUNCATION_DOMAIN_BITS - self.frac_bits))

    def encode(self, values: npt.ArrayLike) -> RingArray:
        """Encode a float array; raise FixedPointRangeError on NaN/inf/out of range."""
        arr = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise FixedPointRangeError("cannot encode NaN or infinite values")
        if arr.size and float(np.max(np.abs(arr))) >= self.bound:
            # Say what the range is without printing the offending (private) value.
            raise FixedPointRangeError(
                f"value out of fixed-point range: |x| must be < 2^{TRUNCATION_DOMAIN_BITS - self.frac_bits} "
                f"with {self.frac_bits} fractional bits"
            )
        scaled = np.asarray(np.rint(arr * float(1 << self.frac_bits))).astype(np.int64)
        return np.asarray(scaled).view(np.uint64)

    def decode(self, ring_values: RingArray) -> npt.NDArray[np.float64]:
        """Decode ring elements (two's complement) back to floats."""
        signed = require_ring(np.asarray(ring_values), "fixed-point value").view(np.int64)
        return np.asarray(signed.astype(np.float64) / float(1 << self.frac_bits))


DEFAULT_FORMAT = FixedPointFormat()


def encode(values: npt.ArrayLike, frac_bits: int = DEFAULT_FRAC_BITS) -> RingArray:
    return FixedPointFormat(frac_bits).encode(values)


def decode(values: RingArray, frac_bits: int = DEFAULT_FRAC_BITS) -> npt.NDArray[np.float64]:
    return FixedPointFormat(frac_bits).decode(values)


def encode_integers(values: npt.ArrayLike) -> RingArray:
    """Encode an integer array exactly (scale 0); refuse non-integral input."""
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise FixedPointRangeError("integer secrets must hold whole numbers")
        if arr.size and float(np.max(np.abs(arr))) >= 2.0**62:
            raise FixedPointRangeError("integer value out of range: |x| must be < 2^62")
        arr = arr.astype(np.int64)
    if arr.dtype.kind == "u":
        if arr.size and int(arr.max()) >= 2**63:
            raise FixedPointRangeError("integer value out of range: x must be < 2^63")
        return arr.astype(np.uint64)
    if arr.dtype.kind != "i":
        raise FixedPointRangeError(f"cannot encode dtype {arr.dtype} as integers")
    return arr.astype(np.int64).view(np.uint64)
