"""Shamir t-of-n secret sharing over the prime field GF(2^521 - 1).

Used for the two secrets every SecAgg client splits among its (closed)
neighbourhood: the self-mask seed b_u and the masking private key s_u^SK,
both 256-bit values, so one field element each (the Mersenne prime
2^521 - 1 is far above 2^256; no splitting needed).

1. ``split``: pick f(X) = secret + a_1 X + ... + a_{t-1} X^{t-1} with the
   a_i uniform in the field (from the injected :class:`RandomSource`,
   ``secrets`` by default); party x receives f(x).  The x-coordinates are
   the client ids (non-zero, distinct).
2. ``reconstruct``: Lagrange interpolation at 0 from the first t shares (by
   id); every further share is checked to lie on the same polynomial, and a
   disagreement raises :class:`InconsistentShares` (so t+1 honest-looking
   shares cannot silently give a wrong secret).

Any t-1 shares are uniform and independent of the secret: for every
candidate secret there is exactly one polynomial through it and the t-1
points.  Shares travel as :data:`SHARE_BYTES`-byte big-endian integers.

``prime`` is a parameter so that tests can enumerate a tiny field.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from mpcnet.secagg.crypto import RandomSource, randbelow, resolve
from mpcnet.secagg.errors import InconsistentShares, ProtocolViolation

FIELD_PRIME = 2**521 - 1
SHARE_BYTES = 66  # ceil(521 / 8)
SECRET_BYTES = 32


def split(secret: int, threshold: int, xs: Iterable[int], rng: RandomSource | None = None,
          prime: int = FIELD_PRIME) -> dict[int, int]:
    """Shares f(x) for every x in ``xs`` of a random degree-(t-1) polynomial with f(0) = secret."""
    points = sorted(set(xs))
    if threshold < 1:
        raise ValueError(f"threshold must be >= 1, got {threshold}")
    if len(points) < threshold:
        raise ValueError(f"need at least {threshold} share holders, got {len(points)}")
    if any(x % prime == 0 for x in points):
        raise ValueError("share x-coordinates must be non-zero in the field")
    if not 0 <= secret < prime:
        raise ValueError("secret must be a field element")
    source = resolve(rng)
    coeffs = [secret] + [randbelow(source, prime) for _ in range(threshold - 1)]
    return {x: _horner(coeffs, x, prime) for x in points}


def _horner(coeffs: list[int], x: int, prime: int) -> int:
    acc = 0
    for c in reversed(coeffs):
        acc = (acc * x + c) % prime
    return acc


def interpolate(points: Mapping[int, int], at: int, prime: int = FIELD_PRIME) -> int:
    """Value at ``at`` of the unique polynomial of degree < len(points) through ``points``."""
    xs = list(points)
    total = 0
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                num = num * (at - xj) % prime
                den = den * (xi - xj) % prime
        total = (total + points[xi] * num * pow(den, -1, prime)) % prime
    return total


def reconstruct(shares: Mapping[int, int], threshold: int, prime: int = FIELD_PRIME) -> int:
    """The secret f(0) from at least ``threshold`` shares; extra shares are cross-checked."""
    if len(shares) < threshold:
        raise ValueError(f"need {threshold} shares to reconstruct, got {len(shares)}")
    ordered = sorted(shares)
    base = {x: shares[x] % prime for x in ordered[:threshold]}
    for x in ordered[threshold:]:
        if interpolate(base, x, prime) != shares[x] % prime:
            raise InconsistentShares(f"share of holder {x} is inconsistent with the other shares")
    return interpolate(base, 0, prime)


def encode_share(value: int) -> bytes:
    return value.to_bytes(SHARE_BYTES, "big")


def decode_share(data: bytes, prime: int = FIELD_PRIME) -> int:
    if len(data) != SHARE_BYTES:
        raise ProtocolViolation(f"a share must be {SHARE_BYTES} bytes, got {len(data)}")
    value = int.from_bytes(data, "big")
    if value >= prime:
        raise ProtocolViolation("a share is not a field element")
    return value


def secret_to_int(secret: bytes) -> int:
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"a shared secret must be {SECRET_BYTES} bytes, got {len(secret)}")
    return int.from_bytes(secret, "big")


def int_to_secret(value: int) -> bytes:
    if not 0 <= value < 2 ** (8 * SECRET_BYTES):
        raise InconsistentShares("reconstructed value is not a 256-bit secret")
    return value.to_bytes(SECRET_BYTES, "big")
