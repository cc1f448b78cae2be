"""Keyed cryptographic PRG: AES-256-CTR expanding a full-length seed.

``expand(seed, label, count)`` derives a per-use key with HMAC-SHA256(seed,
domain || label) and returns AES-256-CTR keystream as ``count`` uint64 ring
elements.  Different labels give independent streams, so one seed can serve
many uses (triple batches, input shares) as long as every use has its own
label.  Because every (seed, label) pair gets its own key, a zero counter
block is safe.

Never numpy's or ``random``'s generator: those are not cryptographic.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mpcnet.core.ring import RingArray

SEED_BYTES = 32
MIN_SEED_BYTES = 16
_DOMAIN = b"mpcnet/v1/prg\x00"


class PrgSeedError(ValueError):
    """A seed too short to be a cryptographic seed."""


def new_seed() -> bytes:
    """A fresh 256-bit seed from OS entropy."""
    return secrets.token_bytes(SEED_BYTES)


def derive_key(seed: bytes, label: bytes) -> bytes:
    if len(seed) < MIN_SEED_BYTES:
        raise PrgSeedError(f"PRG seed must be at least {MIN_SEED_BYTES} bytes, got {len(seed)}")
    return hmac.new(seed, _DOMAIN + label, hashlib.sha256).digest()


def expand_bytes(seed: bytes, label: bytes, nbytes: int) -> bytes:
    """AES-256-CTR keystream of ``nbytes`` bytes for (seed, label)."""
    if nbytes < 0:
        raise ValueError("nbytes must be >= 0")
    key = derive_key(seed, label)
    enc = Cipher(algorithms.AES(key), modes.CTR(b"\x00" * 16)).encryptor()
    return enc.update(bytes(nbytes)) + enc.finalize()


def expand(seed: bytes, label: bytes, count: int) -> RingArray:
    """``count`` pseudo-random ring elements, uniform over Z_(2^64)."""
    buf = expand_bytes(seed, label, 8 * count)
    return np.frombuffer(buf, dtype="<u8").astype(np.uint64, copy=True)


def random_ring(count: int) -> RingArray:
    """``count`` ring elements from OS entropy (via a fresh seed and the PRG)."""
    return expand(new_seed(), b"os-entropy", count)
