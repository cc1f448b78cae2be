"""Shamir t-of-n over GF(2^521 - 1): reconstruction, secrecy of t-1 shares, cross-checks."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcnet.secagg import shamir
from mpcnet.secagg.crypto import SeededRandom
from mpcnet.secagg.errors import InconsistentShares, ProtocolViolation

SETTINGS = settings(max_examples=40, deadline=None, database=None)
SECRETS = st.integers(min_value=0, max_value=2**256 - 1)


@st.composite
def setups(draw: st.DrawFn) -> tuple[int, int, list[int], int]:
    n = draw(st.integers(min_value=2, max_value=9))
    t = draw(st.integers(min_value=1, max_value=n))
    ids = draw(st.lists(st.integers(min_value=1, max_value=2**31 - 1), min_size=n, max_size=n, unique=True))
    return n, t, ids, draw(SECRETS)


def test_field_prime_is_mersenne_521_and_large_enough() -> None:
    assert shamir.FIELD_PRIME == 2**521 - 1 and shamir.FIELD_PRIME > 2**256
    assert pow(3, shamir.FIELD_PRIME - 1, shamir.FIELD_PRIME) == 1  # Fermat check


@SETTINGS
@given(setups())
def test_any_t_shares_reconstruct(setup: tuple[int, int, list[int], int]) -> None:
    n, t, ids, secret = setup
    shares = shamir.split(secret, t, ids)
    subsets = list(itertools.combinations(ids, t))
    for subset in subsets[:10]:
        assert shamir.reconstruct({x: shares[x] for x in subset}, t) == secret
    assert shamir.reconstruct(shares, t) == secret  # all n, with cross-checks


@SETTINGS
@given(setups(), st.integers(min_value=0, max_value=2**256 - 1))
def test_t_minus_1_shares_fit_every_candidate_secret(setup: tuple[int, int, list[int], int], candidate: int) -> None:
    """For any candidate secret there is a degree-(t-1) polynomial through it and the t-1 shares."""
    n, t, ids, secret = setup
    if t < 2:
        return
    shares = shamir.split(secret, t, ids)
    known = {x: shares[x] for x in ids[: t - 1]}
    points = {0: candidate, **known}
    # that polynomial reproduces the known shares and has f(0) = candidate
    assert shamir.interpolate(points, 0) == candidate
    assert all(shamir.interpolate(points, x) == y for x, y in known.items())


def test_t_minus_1_shares_are_uniform_and_independent_small_field() -> None:
    """Exhaustively over GF(11), t = 3: for every secret, the pair of shares held by
    two parties takes each of the 121 values exactly once over all 121 polynomials."""
    p, ids = 11, [1, 2, 5]
    for secret in range(p):
        counts: Counter[tuple[int, int]] = Counter()
        for a1, a2 in itertools.product(range(p), repeat=2):
            f = lambda x: (secret + a1 * x + a2 * x * x) % p  # noqa: E731
            counts[(f(ids[0]), f(ids[1]))] += 1
        assert len(counts) == p * p and set(counts.values()) == {1}
    # and the implementation's split really is such a polynomial
    sh = shamir.split(7, 3, ids, SeededRandom(bytes(16)), prime=p)
    assert shamir.reconstruct(sh, 3, prime=p) == 7


def test_fewer_than_t_shares_refused_and_extra_shares_checked() -> None:
    shares = shamir.split(12345, 3, [1, 2, 3, 4])
    with pytest.raises(ValueError):
        shamir.reconstruct({1: shares[1], 2: shares[2]}, 3)
    bad = dict(shares)
    bad[4] = (bad[4] + 1) % shamir.FIELD_PRIME
    with pytest.raises(InconsistentShares, match="inconsistent"):
        shamir.reconstruct(bad, 3)


def test_seeded_split_is_deterministic() -> None:
    a = shamir.split(5, 3, [1, 2, 3], SeededRandom(bytes(32)))
    b = shamir.split(5, 3, [1, 2, 3], SeededRandom(bytes(32)))
    assert a == b and a != shamir.split(5, 3, [1, 2, 3])


def test_share_and_secret_encoding() -> None:
    v = shamir.FIELD_PRIME - 1
    assert shamir.decode_share(shamir.encode_share(v)) == v
    with pytest.raises(ProtocolViolation):
        shamir.decode_share(b"\x01" * 65)
    with pytest.raises(ProtocolViolation):
        shamir.decode_share(b"\xff" * 66)
    assert shamir.int_to_secret(shamir.secret_to_int(bytes(range(32)))) == bytes(range(32))
    with pytest.raises(InconsistentShares):
        shamir.int_to_secret(2**256)


def test_split_argument_checks() -> None:
    with pytest.raises(ValueError):
        shamir.split(1, 4, [1, 2, 3])
    with pytest.raises(ValueError):
        shamir.split(1, 2, [0, 1])
    with pytest.raises(ValueError):
        shamir.split(shamir.FIELD_PRIME, 2, [1, 2])


def _weights(xs: tuple[int, ...], at: int, exact_max: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(barycentric weights, Lagrange coefficients at ``at``) with exact products allowed up to ``exact_max``."""
    saved = shamir._EXACT_MAX_HOLDERS
    shamir._EXACT_MAX_HOLDERS = exact_max
    for cached in (shamir._barycentric, shamir._lagrange, shamir._dual_checks):
        cached.cache_clear()
    try:
        return shamir._barycentric(xs, shamir.FIELD_PRIME), shamir._lagrange(xs, at, shamir.FIELD_PRIME)
    finally:
        shamir._EXACT_MAX_HOLDERS = saved
        for cached in (shamir._barycentric, shamir._lagrange, shamir._dual_checks):
            cached.cache_clear()


@SETTINGS
@given(st.lists(st.integers(min_value=1, max_value=2**31 - 1), min_size=1, max_size=70, unique=True),
       st.integers(min_value=0, max_value=2**32 - 1))
def test_exact_small_set_weights_equal_the_reduced_ones(ids: list[int], at: int) -> None:
    """Small holder sets multiply their id differences exactly and reduce once; larger ones reduce per factor.
    Both give the same field elements."""
    xs = tuple(sorted(ids))
    assert _weights(xs, at, exact_max=10**6) == _weights(xs, at, exact_max=0)


def test_large_holder_sets_reconstruct_and_cross_check() -> None:
    """Above the exact-products size (a complete-graph round): reconstruction and the consistency check."""
    ids = list(range(1, 81))
    shares = shamir.split(12345, 50, ids)
    assert len(ids) > shamir._EXACT_MAX_HOLDERS and shamir.reconstruct(shares, 50) == 12345
    shares[7] = (shares[7] + 1) % shamir.FIELD_PRIME
    with pytest.raises(InconsistentShares):
        shamir.reconstruct(shares, 50)
