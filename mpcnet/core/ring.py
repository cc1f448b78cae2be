"""The ring Z_(2^64) on numpy ``uint64``.

numpy's uint64 arithmetic wraps around modulo 2^64, which is exactly the ring
operation, so addition, subtraction, negation and multiplication need no
reduction step.  The discipline that matters is *never mixing* uint64 with
signed integers or Python floats (numpy would silently promote to float64 and
lose the low bits); :func:`as_ring` is the one door into the ring.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

RING_BITS = 64
RingArray = npt.NDArray[np.uint64]


def wrapping() -> np.errstate:
    """Ring arithmetic wraps by definition; numpy warns on 0-d overflow, so silence it.

    A fresh context each call (numpy 2 refuses to enter one errstate twice);
    use as ``@wrapping()`` or ``with wrapping():``.
    """
    return np.errstate(over="ignore")


_wrapping = wrapping


class RingTypeError(TypeError):
    """An array that is not a ring element array was passed where one is required."""


def as_ring(values: Any) -> RingArray:
    """Return ``values`` as a uint64 array (shape kept), refusing lossy inputs.

    Accepts uint64 arrays as they are, and signed/unsigned integer arrays,
    Python ints and (nested) lists of ints by reduction modulo 2^64.  Floats
    are refused, also inside lists or object arrays: use
    :mod:`mpcnet.core.fixedpoint` to encode reals.
    """
    if isinstance(values, (list, tuple, int)) and not isinstance(values, bool):
        values = np.array(values, dtype=object)
    arr = np.asarray(values)
    if arr.dtype == np.uint64:
        return np.array(arr, dtype=np.uint64, copy=True, order="C")
    if arr.dtype.kind == "i":
        return np.array(arr.astype(np.int64).view(np.uint64), order="C")
    if arr.dtype.kind == "u":
        return np.array(arr.astype(np.uint64), order="C")
    if arr.dtype == object:
        flat = arr.ravel()
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in flat):
            raise RingTypeError("ring values must be integers; encode reals with fixedpoint.encode")
        return np.array([int(v) % (1 << RING_BITS) for v in flat], dtype=np.uint64).reshape(arr.shape)
    raise RingTypeError(
        f"ring values must be integers, got dtype {arr.dtype}; encode reals with fixedpoint.encode"
    )


def require_ring(arr: Any, what: str = "value") -> RingArray:
    """Check that ``arr`` already is a uint64 ndarray (no conversion)."""
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint64:
        got = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
        raise RingTypeError(f"{what} must be a numpy uint64 array, got {got}")
    return arr


def to_signed(arr: RingArray) -> npt.NDArray[np.int64]:
    """Interpret ring elements as two's-complement signed 64-bit integers."""
    return require_ring(arr).view(np.int64)


@_wrapping()


def ring_sum(arrays: list[RingArray]) -> RingArray:
    """Sum a list of equally shaped ring arrays (mod 2^64)."""
    if not arrays:
        raise ValueError("ring_sum needs at least one array")
    total = require_ring(arrays[0]).copy()
    for a in arrays[1:]:
        np.add(total, require_ring(a), out=total)
    return total


@_wrapping()


def ring_matmul(a: RingArray, b: RingArray) -> RingArray:
    """Matrix product in Z_(2^64).

    numpy's integer matmul accumulates in uint64 and wraps, which is the ring
    product.  It does not use BLAS, so it is O(mkn) Python-free C loops.
    """
    return np.asarray(np.matmul(require_ring(a), require_ring(b)), dtype=np.uint64)
