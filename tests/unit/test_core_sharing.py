"""Unit tests for mpcnet.core.sharing (additive n-of-n sharing over Z_(2^64))."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mpcnet.core import prg, sharing
from mpcnet.core.ring import RingTypeError

SETTINGS = settings(max_examples=60, deadline=None, database=None)
U64 = st.integers(0, (1 << 64) - 1)
SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
SEED_ST = st.binary(min_size=32, max_size=32)


def secrets_of(shape):
    return hnp.arrays(np.uint64, shape, elements=U64)


# -- round trips ---------------------------------------------------------------


@SETTINGS
@given(data=st.data(), shape=SHAPES, n=st.integers(2, 6))
def test_share_reconstruct_round_trip(data, shape, n):
    secret = data.draw(secrets_of(shape))
    before = secret.copy()
    shares = sharing.share(secret, n)
    assert len(shares) == n
    for s in shares:
        assert isinstance(s, np.ndarray) and s.dtype == np.uint64 and s.shape == shape
    np.testing.assert_array_equal(sharing.reconstruct(shares), secret)
    np.testing.assert_array_equal(secret, before)  # secret untouched
    # Python-int check of the sum mod 2^64 for the first element
    assert sum(int(s.ravel()[0]) for s in shares) % (1 << 64) == int(secret.ravel()[0])


def test_share_empty_array():
    secret = np.zeros((0, 2), dtype=np.uint64)
    shares = sharing.share(secret, 3)
    assert all(s.shape == (0, 2) for s in shares)
    assert sharing.reconstruct(shares).shape == (0, 2)


@pytest.mark.parametrize("n", [2, 3])
def test_share_reconstruct_scalar_secret(n):
    secret = np.array(42, dtype=np.uint64)
    shares = sharing.share(secret, n)
    assert all(isinstance(s, np.ndarray) for s in shares)
    assert int(sharing.reconstruct(shares)) == 42


@SETTINGS
@given(data=st.data(), shape=SHAPES, n=st.integers(2, 6), label=st.binary(max_size=20))
def test_share_seeded_reconstruct(data, shape, n, label):
    secret = data.draw(secrets_of(shape))
    ss = sharing.share_seeded(secret, n, label)
    assert ss.n_parties == n and len(ss.seeds) == n - 1 and ss.label == label
    assert ss.correction.shape == shape and ss.correction.dtype == np.uint64
    shares = sharing.seeded_shares(ss, shape)
    assert len(shares) == n
    np.testing.assert_array_equal(sharing.reconstruct(shares), secret)


@SETTINGS
@given(data=st.data(), shape=SHAPES, n=st.integers(2, 5))
def test_share_seeded_explicit_seeds_deterministic(data, shape, n):
    secret = data.draw(secrets_of(shape))
    seeds = [data.draw(SEED_ST) for _ in range(n - 1)]
    a = sharing.share_seeded(secret, n, b"lbl", seeds)
    b = sharing.share_seeded(secret, n, b"lbl", seeds)
    np.testing.assert_array_equal(a.correction, b.correction)
    # each seed-holding party's share is the PRG expansion under the label
    for seed, share in zip(seeds, sharing.seeded_shares(a, shape)[:-1]):
        np.testing.assert_array_equal(share, prg.expand(seed, b"lbl", int(np.prod(shape))).reshape(shape))
    np.testing.assert_array_equal(sharing.reconstruct(sharing.seeded_shares(a, shape)), secret)


def test_share_seeded_scalar_shape():
    secret = np.array(7, dtype=np.uint64)
    ss = sharing.share_seeded(secret, 3, b"s")
    shares = sharing.seeded_shares(ss, ())
    assert all(s.shape == () for s in shares)
    assert int(sharing.reconstruct(shares)) == 7


def test_share_seeded_label_matters():
    secret = np.arange(5, dtype=np.uint64)
    seeds = [bytes(range(32))]
    a = sharing.share_seeded(secret, 2, b"one", seeds)
    b = sharing.share_seeded(secret, 2, b"two", seeds)
    assert not np.array_equal(a.correction, b.correction)


def test_expand_share_shapes():
    seed = bytes(32)
    assert sharing.expand_share(seed, b"x", ()).shape == ()
    assert sharing.expand_share(seed, b"x", (2, 3)).shape == (2, 3)
    assert sharing.expand_share(seed, b"x", (0,)).shape == (0,)
    np.testing.assert_array_equal(sharing.expand_share(seed, b"x", (2, 3)).ravel(), prg.expand(seed, b"x", 6))


# -- argument checking ---------------------------------------------------------


@pytest.mark.parametrize("n", [-1, 0, 1])
def test_too_few_parties_refused(n):
    with pytest.raises(ValueError):
        sharing.share(np.zeros(3, dtype=np.uint64), n)
    with pytest.raises(ValueError):
        sharing.share_seeded(np.zeros(3, dtype=np.uint64), n, b"x")


def test_wrong_seed_count_refused():
    with pytest.raises(ValueError):
        sharing.share_seeded(np.zeros(3, dtype=np.uint64), 3, b"x", [bytes(32)])


def test_short_seed_refused():
    with pytest.raises(prg.PrgSeedError):
        sharing.share_seeded(np.zeros(3, dtype=np.uint64), 2, b"x", [bytes(8)])


@pytest.mark.parametrize("bad", [np.zeros(3, dtype=np.int64), np.zeros(3), [1, 2, 3]])
def test_non_ring_secret_refused(bad):
    with pytest.raises(RingTypeError):
        sharing.share(bad, 2)
    with pytest.raises(RingTypeError):
        sharing.share_seeded(bad, 2, b"x")


def test_reconstruct_shape_mismatch_refused():
    with pytest.raises(ValueError):
        sharing.reconstruct([np.zeros(3, dtype=np.uint64), np.zeros(4, dtype=np.uint64)])


# -- privacy: shares are not the secret, are fresh, and look uniform -----------


def test_share_is_not_the_secret_and_is_fresh():
    secret = np.full(64, 42, dtype=np.uint64)
    s1 = sharing.share(secret, 3)
    s2 = sharing.share(secret, 3)
    for i in range(3):
        # P(a uniform 64-bit word equals 42) = 2^-64 per element
        assert not np.any(s1[i] == secret)
        assert not np.any(s1[i] == s2[i])
    ss1 = sharing.share_seeded(secret, 3, b"l")
    ss2 = sharing.share_seeded(secret, 3, b"l")
    assert not np.any(ss1.correction == secret)
    assert not np.any(ss1.correction == ss2.correction)


def _chi2_sf_odd(x: float, k: int) -> float:
    """Exact chi-square survival function for odd degrees of freedom k.

    Q(x; k) = erfc(sqrt(x/2)) + 2 phi(sqrt x) * sum_{j=1}^{(k-1)/2} x^{(2j-1)/2} / (1*3*...*(2j-1)).
    """
    assert k % 2 == 1
    total, den = 0.0, 1.0
    for j in range(1, (k - 1) // 2 + 1):
        den *= 2 * j - 1
        total += x ** ((2 * j - 1) / 2) / den
    return math.erfc(math.sqrt(x / 2)) + 2 * math.exp(-x / 2) / math.sqrt(2 * math.pi) * total


ALPHA = 1e-4
DOF = 15
# chi-square critical value, 15 dof, upper tail 1e-4: 44.2632 (the root of the exact
# odd-dof survival function above; scipy.stats.chi2.ppf(1 - 1e-4, 15) gives the same).
CHI2_CRIT_15_1E4 = 44.2632
N_SAMPLES = 20000


def test_chi2_helper_matches_published_table():
    # standard table values for 15 dof: 30.578 at 0.01, 37.697 at 0.001
    assert abs(_chi2_sf_odd(30.578, 15) - 0.01) < 1e-5
    assert abs(_chi2_sf_odd(37.697, 15) - 0.001) < 1e-6
    assert abs(_chi2_sf_odd(CHI2_CRIT_15_1E4, DOF) - ALPHA) < 1e-8


def _top4_chi2(share: np.ndarray) -> float:
    buckets = np.bincount((share >> np.uint64(60)).astype(np.int64), minlength=16)
    expected = share.size / 16
    return float(np.sum((buckets - expected) ** 2 / expected))


def _hoeffding_bound(n: int, alpha_each: float) -> float:
    # P(|X - n/2| >= t) <= 2 exp(-2 t^2 / n) for X ~ Bin(n, 1/2): a rigorous two-sided bound
    return math.sqrt(n / 2 * math.log(2 / alpha_each))


def _bit_deviations(share: np.ndarray) -> np.ndarray:
    bits = (share[:, None] >> np.arange(64, dtype=np.uint64)[None, :]) & np.uint64(1)
    ones = bits.sum(axis=0).astype(np.float64)
    return np.abs(ones - share.size / 2)


def _uniformity_failures(share: np.ndarray) -> list[str]:
    fails = []
    stat = _top4_chi2(share)
    if stat > CHI2_CRIT_15_1E4:
        fails.append(f"chi2 top-4-bit statistic {stat:.1f} > {CHI2_CRIT_15_1E4}")
    # 64 bit positions, Bonferroni: each at alpha / 64
    bound = _hoeffding_bound(share.size, ALPHA / 64)
    dev = _bit_deviations(share)
    bad = np.nonzero(dev > bound)[0]
    if bad.size:
        fails.append(f"bit positions {bad.tolist()} deviate from n/2 by more than {bound:.1f}")
    return fails


@pytest.mark.parametrize("party", [0, 2])
def test_any_single_share_of_fixed_secret_looks_uniform(party):
    # Each check has false-positive rate <= 1e-4 (chi-square) / <= 1e-4 (Bonferroni-corrected
    # Hoeffding over 64 bits) if the share is uniform.
    secret = np.full(N_SAMPLES, 42, dtype=np.uint64)
    shares = sharing.share(secret, 3)
    assert _uniformity_failures(shares[party]) == []


def test_seeded_correction_of_fixed_secret_looks_uniform():
    secret = np.full(N_SAMPLES, 42, dtype=np.uint64)
    ss = sharing.share_seeded(secret, 3, b"uniformity")
    assert _uniformity_failures(ss.correction) == []
    assert _uniformity_failures(sharing.seeded_shares(ss, secret.shape)[0]) == []


def test_uniformity_check_has_power():
    # The same checks reject obviously non-uniform data: the secret itself, and
    # a "share" whose top bit is always clear.
    assert _uniformity_failures(np.full(N_SAMPLES, 42, dtype=np.uint64))
    biased = prg.random_ring(N_SAMPLES) >> np.uint64(1)
    assert _uniformity_failures(biased)
    # a single biased low bit (always 1) is caught by the per-bit check alone
    lowbit = prg.random_ring(N_SAMPLES) | np.uint64(1)
    fails = _uniformity_failures(lowbit)
    assert len(fails) == 1 and "[0]" in fails[0]
