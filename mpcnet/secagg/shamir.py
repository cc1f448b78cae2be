"""Shamir t-of-n secret sharing over the prime field GF(2^521 - 1).

Used for the two secrets every SecAgg client splits among its (closed)
neighbourhood: the self-mask seed b_u and the masking private key s_u^SK,
both 256-bit values, so one field element each (the Mersenne prime
2^521 - 1 is far above 2^256; no splitting needed).

1. ``split``: pick f(X) = secret + a_1 X + ... + a_{t-1} X^{t-1} with the
   a_i uniform in the field (from the injected :class:`RandomSource`,
   ``secrets`` by default); party x receives f(x).  The x-coordinates are
   the client ids (non-zero, distinct).
2. ``reconstruct``: Lagrange interpolation at 0 through the given shares,
   with the Lagrange coefficients cached per holder set (a SecAgg server
   reconstructs hundreds of secrets from the same holders).  When more
   than t shares are given, all of them are first checked to lie on one
   polynomial of degree < t (so interpolating through all of them equals
   interpolating through any t), and a disagreement raises
   :class:`InconsistentShares` (so t+1 honest-looking shares cannot silently
   give a wrong secret).  The check is the dual-code test: with barycentric
   weights v_i = 1 / prod_{j != i} (x_i - x_j) over all m holders,
   sum_i v_i x_i^k y_i = 0 for every k < m - t exactly when the shares fit
   such a polynomial.  Over the large field one random combination of those
   m - t equations is checked (a bad set passes with probability < m / p,
   about 2^-510; the combination is drawn from OS entropy, never sent), so
   the check costs O(m) per secret after an O(m^2) set-up per holder set;
   tiny test fields check every equation.

Any t-1 shares are uniform and independent of the secret: for every
candidate secret there is exactly one polynomial through it and the t-1
points.  Shares travel as :data:`SHARE_BYTES`-byte big-endian integers.

``prime`` is a parameter so that tests can enumerate a tiny field.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
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
    xs = tuple(points)
    coeffs = _lagrange(xs, at % prime, prime)
    return sum(points[x] * c for x, c in zip(xs, coeffs)) % prime


def _inverses(values: list[int], prime: int) -> list[int]:
    """Batch modular inversion (one pow for the whole list)."""
    prefix, acc = [], 1
    for v in values:
        prefix.append(acc)
        acc = acc * v % prime
    inv = pow(acc, -1, prime)
    out = [0] * len(values)
    for i in range(len(values) - 1, -1, -1):
        out[i] = inv * prefix[i] % prime
        inv = inv * values[i] % prime
    return out


@lru_cache(maxsize=256)  # a few holder sets per round; bounded (m = 5000 -> ~0.5 MB each)
def _barycentric(xs: tuple[int, ...], prime: int) -> tuple[int, ...]:
    """v_i = 1 / prod_{j != i} (x_i - x_j) mod prime."""
    exact = _exact_products(xs)  # a few machine-word factors: one reduction, not one per factor
    dens = []
    for i, xi in enumerate(xs):
        d = 1
        for j, xj in enumerate(xs):
            if i != j:
                d = d * (xi - xj) if exact else d * (xi - xj) % prime
        dens.append(d % prime)
    return tuple(_inverses(dens, prime))


@lru_cache(maxsize=256)  # a few holder sets per round; bounded (m = 5000 -> ~0.5 MB each)
def _lagrange(xs: tuple[int, ...], at: int, prime: int) -> tuple[int, ...]:
    """L_i(at) = v_i * prod_{j != i} (at - x_j) for the holders ``xs`` (cached: the same holder set serves many
    secrets); the products by prefix and suffix, so no inversion beyond the barycentric weights'."""
    if at in xs:
        return tuple(int(x == at) for x in xs)
    v = _barycentric(xs, prime)
    if _exact_products(xs) and 0 <= at < 2**32:
        # prod_{j != i} (at - x_j) = Q / (at - x_i) with Q the exact product of small factors: no reduction per factor
        q = 1
        for x in xs:
            q *= at - x
        return tuple(q // (at - x) % prime * v[i] % prime for i, x in enumerate(xs))
    diffs = [(at - x) % prime for x in xs]
    suffix = [1] * (len(xs) + 1)
    for i in range(len(xs) - 1, -1, -1):
        suffix[i] = suffix[i + 1] * diffs[i] % prime
    out, prefix = [], 1
    for i in range(len(xs)):
        out.append(prefix * suffix[i + 1] % prime * v[i] % prime)
        prefix = prefix * diffs[i] % prime
    return tuple(out)


_SMALL_FIELD = 2**64
# Holder sets up to this size (SecAgg+ neighbourhoods) multiply their small id differences exactly and reduce
# once; larger ones (the complete graph: one set per round, cached) reduce after every factor.
_EXACT_MAX_HOLDERS = 64


def _exact_products(xs: tuple[int, ...]) -> bool:
    """Whether products over ``xs`` stay small enough to compute exactly and reduce once."""
    return 0 < len(xs) <= _EXACT_MAX_HOLDERS and max(xs) < 2**32


@lru_cache(maxsize=256)  # a few holder sets per round; bounded (m = 5000 -> ~0.5 MB each)
def _dual_checks(xs: tuple[int, ...], threshold: int, prime: int) -> tuple[tuple[int, ...], ...]:
    """Rows w with sum_i w_i y_i = 0 for every degree < t polynomial's shares y (see the module docstring)."""
    v = _barycentric(xs, prime)
    extra = len(xs) - threshold
    if prime < _SMALL_FIELD:  # tiny test fields: every equation
        return tuple(tuple(v[i] * pow(x, k, prime) % prime for i, x in enumerate(xs)) for k in range(extra))
    # one random combination g(X) = sum_k r_k X^k of the m - t equations
    r = [secrets.randbelow(prime) for _ in range(extra)]
    exact = _exact_products(xs)  # g(x) grows by one small factor per step
    row = []
    for i, x in enumerate(xs):
        g = 0
        for c in reversed(r):
            g = g * x + c if exact else (g * x + c) % prime
        row.append(v[i] * (g % prime) % prime)
    return (tuple(row),)


def reconstruct(shares: Mapping[int, int], threshold: int, prime: int = FIELD_PRIME) -> int:
    """The secret f(0) from at least ``threshold`` shares; extra shares are cross-checked."""
    if len(shares) < threshold:
        raise ValueError(f"need {threshold} shares to reconstruct, got {len(shares)}")
    ordered = tuple(sorted(shares))
    values = [shares[x] % prime for x in ordered]
    if len(ordered) > threshold:
        for row in _dual_checks(ordered, threshold, prime):
            if sum(w * y for w, y in zip(row, values)) % prime:
                raise InconsistentShares(f"the {len(ordered)} shares (holders {ordered[0]}..{ordered[-1]}) do not "
                                         f"lie on one polynomial of degree < {threshold}: inconsistent shares")
    # all the shares lie on one polynomial of degree < t (checked above), so interpolating through all of them
    # gives the same f(0) as through the first t -- with the barycentric weights the check already computed
    coeffs = _lagrange(ordered, 0, prime)
    return sum(y * c for y, c in zip(values, coeffs)) % prime


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
