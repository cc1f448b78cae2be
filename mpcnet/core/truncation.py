"""Truncation of shared fixed-point values with dealer-supplied pairs.

After a fixed-point product the value carries 2f fractional bits and must be
shifted right by m = f bits.  Local share truncation (SecureML) is only
correct for two parties; this protocol is correct for any number of nodes.

The dealer gives each node shares of a *truncation pair*: a uniform
r in Z_(2^64), r_hi = r >> m and r_msb = r >> 63 (the top bit of r).

For a shared signed x with |x| < 2^62:

1. each node i forms c_i = x_i + r_i (node 0 also adds 2^62, so the value
   under the mask is x' = x + 2^62, which lies in [0, 2^63));
2. the nodes open c = x' + r mod 2^64.  Because r is uniform over the whole
   ring, c is uniform and reveals nothing about x (perfect hiding);
3. the addition wrapped around iff r_msb = 1 and msb(c) = 0, so the shared
   wrap bit is [w] = (1 - msb(c)) * [r_msb], which is linear in the shares;
4. node i outputs y_i = -r_hi_i + [w]_i * 2^(64-m), and node 0 also adds
   (c >> m) - 2^(62-m).

Then y = floor(x / 2^m) + b, where b in {0, 1} is the borrow from the low m
bits (c mod 2^m < r mod 2^m): the result is exact up to one unit in the last
place (2^-f), whatever the number of nodes.  This is the same accuracy as
CrypTen's and MP-SPDZ's probabilistic truncation, with no statistical
leakage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpcnet.core.ring import RingArray, require_ring
from mpcnet.core.ring import wrapping as _wrapping

TRUNCATION_OFFSET_BITS = 62
_OFFSET = np.uint64(1 << TRUNCATION_OFFSET_BITS)


@dataclass(frozen=True, slots=True)
class TruncationPairShare:
    """One node's shares of (r, r >> shift, r >> 63)."""

    shift: int
    r: RingArray
    r_hi: RingArray
    r_msb: RingArray


def check_shift(shift: int) -> None:
    if not 1 <= shift < TRUNCATION_OFFSET_BITS:
        raise ValueError(f"truncation shift must be in [1, {TRUNCATION_OFFSET_BITS}), got {shift}")


def pair_from_mask(r: RingArray, shift: int) -> tuple[RingArray, RingArray]:
    """Dealer side: (r_hi, r_msb) for a full mask r."""
    check_shift(shift)
    require_ring(r, "truncation mask")
    return r >> np.uint64(shift), r >> np.uint64(63)


@_wrapping()


def masked_value(x_share: RingArray, pair: TruncationPairShare, party_index: int) -> RingArray:
    """Step 1: this node's share of c = x + 2^62 + r."""
    x_share = require_ring(np.asarray(x_share), "truncation input share")
    if x_share.shape != pair.r.shape:
        raise ValueError(f"truncation pair shape {pair.r.shape} does not match input {x_share.shape}")
    c = x_share + pair.r
    if party_index == 0:
        c = c + _OFFSET
    return np.asarray(c, dtype=np.uint64)


@_wrapping()


def finish(opened_c: RingArray, pair: TruncationPairShare, party_index: int) -> RingArray:
    """Steps 3-4: this node's share of floor(x / 2^shift) (+1 ulp at most)."""
    m = pair.shift
    check_shift(m)
    c = require_ring(opened_c, "opened truncation mask")
    not_msb_c = np.uint64(1) - (c >> np.uint64(63))
    wrap_share = not_msb_c * pair.r_msb
    y = wrap_share * np.uint64(1 << (64 - m)) - pair.r_hi
    if party_index == 0:
        y = y + (c >> np.uint64(m)) - np.uint64(1 << (TRUNCATION_OFFSET_BITS - m))
    return np.asarray(y, dtype=np.uint64)
