"""Mask PRG of secure aggregation: full 256-bit seeds expanded into Z_(2^k).

``mask(seed, label, length, bits)`` is AES-256-CTR keystream under the key
HMAC-SHA256(seed, b"mpcnet/v1/prg\\x00" || label) (the project PRG,
:mod:`mpcnet.core.prg`), read as little-endian words -- 32-bit words when
k <= 32 (half the keystream of 64-bit words: the masks' cost is the PRG),
64-bit words otherwise -- and reduced mod 2^k by a bit-mask.  Every mask uses the whole 256-bit seed (a seed shorter
than 256 bits is refused here -- no 32-bit folding), and each use has its own
label: :data:`~mpcnet.secagg.crypto.LABEL_SELF_MASK` for PRG(b_u),
:data:`~mpcnet.secagg.crypto.LABEL_PAIR_MASK` for PRG(s_{u,v}).

Ring arithmetic mod 2^k (1 <= k <= 64) is numpy uint64 arithmetic (which
wraps mod 2^64) followed by ``& (2^k - 1)``: vectorised, no Python loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from mpcnet.core import prg as core_prg
from mpcnet.core.ring import RingArray
from mpcnet.secagg.crypto import LABEL_PAIR_MASK, LABEL_SELF_MASK, SEED_BYTES

MAX_BITS = 64


def modulus_mask(bits: int) -> np.uint64:
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"mask bit width must be in [1, {MAX_BITS}], got {bits}")
    return np.uint64((1 << bits) - 1)


def word_bytes(bits: int) -> int:
    """Bytes per ring element on the wire and in the PRG: 4 for k <= 32, else 8."""
    modulus_mask(bits)
    return 4 if bits <= 32 else 8


def work_dtype(bits: int) -> type[np.unsignedinteger[Any]]:
    """numpy dtype whose wrap-around is a multiple of 2^bits (accumulate in it, reduce once at the end)."""
    return np.uint32 if word_bytes(bits) == 4 else np.uint64


def _keystream_words(seed: bytes, label: bytes, length: int, bits: int) -> npt.NDArray[Any]:
    if len(seed) != SEED_BYTES:
        raise ValueError(f"mask seed must be {SEED_BYTES} bytes, got {len(seed)}")
    width = word_bytes(bits)
    buf = core_prg.expand_bytes(seed, label, width * length)
    return np.frombuffer(buf, dtype="<u4" if width == 4 else "<u8")


def mask(seed: bytes, label: bytes, length: int, bits: int) -> RingArray:
    """``length`` uniform elements of Z_(2^bits) expanded from a 256-bit ``seed``."""
    out = _keystream_words(seed, label, length, bits).astype(np.uint64)
    np.bitwise_and(out, modulus_mask(bits), out=out)
    return out


class MaskAccumulator:
    """Running sum mod 2^bits of many masks and vectors, without a temporary per term.

    Adds in place in :func:`work_dtype` (uint32 for k <= 32: its wrap-around mod 2^32 is a multiple of
    2^k) and reduces once in :meth:`value`.  This is the server's unmasking loop (n * |dropped| masks).
    """

    __slots__ = ("bits", "length", "_acc")

    def __init__(self, length: int, bits: int) -> None:
        self.bits, self.length = bits, length
        self._acc = np.zeros(length, dtype=work_dtype(bits))

    def add_mask(self, seed: bytes, label: bytes, sign: int) -> None:
        words = _keystream_words(seed, label, self.length, self.bits)
        (np.add if sign > 0 else np.subtract)(self._acc, words, out=self._acc, casting="unsafe")

    def add_vector(self, vec: RingArray, sign: int = 1) -> None:
        with np.errstate(over="ignore"):
            (np.add if sign > 0 else np.subtract)(self._acc, vec.astype(self._acc.dtype, copy=False),
                                                  out=self._acc)

    def value(self) -> RingArray:
        out = self._acc.astype(np.uint64)
        np.bitwise_and(out, modulus_mask(self.bits), out=out)
        return out


def self_mask(seed: bytes, length: int, bits: int) -> RingArray:
    return mask(seed, LABEL_SELF_MASK, length, bits)


def pair_mask(seed: bytes, length: int, bits: int) -> RingArray:
    return mask(seed, LABEL_PAIR_MASK, length, bits)


def pair_sign(own: int, peer: int) -> int:
    """+1 if ``own`` < ``peer`` else -1: client u adds +PRG(s_uv) for v > u, -PRG for v < u."""
    if own == peer:
        raise ValueError("no pairwise mask with oneself")
    return 1 if own < peer else -1


def add(a: RingArray, b: RingArray, bits: int) -> RingArray:
    with np.errstate(over="ignore"):
        return np.bitwise_and(np.add(a, b, dtype=np.uint64), modulus_mask(bits))


def sub(a: RingArray, b: RingArray, bits: int) -> RingArray:
    with np.errstate(over="ignore"):
        return np.bitwise_and(np.subtract(a, b, dtype=np.uint64), modulus_mask(bits))


def add_signed(acc: RingArray, term: RingArray, sign: int, bits: int) -> RingArray:
    return add(acc, term, bits) if sign > 0 else sub(acc, term, bits)
