"""Unit tests for mpcnet.core.truncation (dealer-assisted probabilistic truncation)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mpcnet.core import prg, sharing, truncation
from mpcnet.core.preprocessing import InProcessDealer, MaterialItem, MaterialKind
from mpcnet.core.ring import as_ring
from mpcnet.core.truncation import TruncationPairShare

SETTINGS = settings(max_examples=100, deadline=None, database=None)
DOMAIN = 1 << 62
EDGES = [-DOMAIN, DOMAIN - 1, 0, -1, 1, -(DOMAIN - 1)]


def truncate_shared(xs: list[int], shift: int, n: int) -> list[int]:
    """Share xs among n nodes, truncate with dealer material, return the signed result."""
    x = as_ring(np.array(xs, dtype=np.int64))
    shares = sharing.share(x, n)
    dealer = InProcessDealer(n)
    item = MaterialItem(MaterialKind.TRUNCATION, x.shape, shift=shift)
    pairs = [dealer.material(i, "trunc", [item])[0] for i in range(n)]
    assert all(isinstance(p, TruncationPairShare) and p.shift == shift for p in pairs)
    masked = [truncation.masked_value(shares[i], pairs[i], i) for i in range(n)]
    c = sharing.reconstruct(masked)
    ys = [truncation.finish(c, pairs[i], i) for i in range(n)]
    y = sharing.reconstruct(ys)
    return [int(v) for v in y.view(np.int64)]


def assert_floor_plus_borrow(xs, ys, shift):
    for x, y in zip(xs, ys):
        assert y - (x >> shift) in (0, 1), (x, shift, y)  # Python >> is floor division by 2^shift


@SETTINGS
@given(
    xs=st.lists(st.integers(-(DOMAIN - 1), DOMAIN - 1), min_size=1, max_size=8),
    shift=st.integers(1, 40),
    n=st.integers(2, 5),
)
@example(xs=EDGES, shift=1, n=2)
@example(xs=EDGES, shift=40, n=5)
@example(xs=EDGES, shift=16, n=3)
def test_truncation_is_floor_plus_at_most_one(xs, shift, n):
    ys = truncate_shared(xs, shift, n)
    assert_floor_plus_borrow(xs, ys, shift)


@pytest.mark.parametrize("n", [2, 3, 4, 5])
@pytest.mark.parametrize("shift", [1, 16, 32, 40, 61])
def test_truncation_edge_values(n, shift):
    xs = EDGES * 4  # several independent masks per value
    ys = truncate_shared(xs, shift, n)
    assert_floor_plus_borrow(xs, ys, shift)


@SETTINGS
@given(
    xs=st.lists(st.integers(-(DOMAIN - 1), DOMAIN - 1), min_size=1, max_size=4),
    n=st.integers(2, 5),
)
def test_exact_when_low_bits_zero(xs, n):
    # If x is a multiple of 2^m there is no borrow: c mod 2^m = r mod 2^m, so the result is exact.
    shift = 16
    xs = [(x >> shift) << shift for x in xs]
    ys = truncate_shared(xs, shift, n)
    assert ys == [x >> shift for x in xs]


def test_result_is_not_always_floor():
    # The borrow bit is sometimes 1 (probabilistic truncation): with 400 values whose
    # low 16 bits are uniform, both outcomes occur (P(all equal) < 2^-100).
    rnd = prg.random_ring(400).view(np.int64) >> np.int64(2)
    xs = [int(v) for v in rnd]
    ys = truncate_shared(xs, 16, 3)
    diffs = {y - (x >> 16) for x, y in zip(xs, ys)}
    assert diffs == {0, 1}


def test_fixed_point_product_truncation():
    # typical use: a product at 2f = 32 fractional bits back to 16
    a, b = int(round(1.5 * 2**16)), int(round(-2.25 * 2**16))
    y = truncate_shared([a * b], 16, 4)[0]
    assert y - ((a * b) >> 16) in (0, 1)
    assert abs(y / 2**16 - (1.5 * -2.25)) <= 2**-16


def test_pair_from_mask():
    r = np.array([0, 1, (1 << 63) + 5, (1 << 64) - 1, 12345678], dtype=np.uint64)
    hi, msb = truncation.pair_from_mask(r, 4)
    assert [int(v) for v in hi] == [int(v) >> 4 for v in r]
    assert [int(v) for v in msb] == [0, 0, 1, 1, 0]


@pytest.mark.parametrize("shift", [0, -1, 62, 63, 64])
def test_invalid_shift_refused(shift):
    with pytest.raises(ValueError):
        truncation.check_shift(shift)
    with pytest.raises(ValueError):
        truncation.pair_from_mask(np.zeros(2, np.uint64), shift)
    with pytest.raises(ValueError):
        MaterialItem(MaterialKind.TRUNCATION, (2,), shift=shift)


def test_masked_value_shape_mismatch_refused():
    pair = TruncationPairShare(4, np.zeros(3, np.uint64), np.zeros(3, np.uint64), np.zeros(3, np.uint64))
    with pytest.raises(ValueError):
        truncation.masked_value(np.zeros(4, np.uint64), pair, 0)


def test_masked_value_offset_only_on_party_zero():
    z = np.zeros(2, np.uint64)
    pair = TruncationPairShare(4, z, z, z)
    assert [int(v) for v in truncation.masked_value(z, pair, 0)] == [1 << 62] * 2
    assert [int(v) for v in truncation.masked_value(z, pair, 1)] == [0, 0]


def test_opened_mask_hides_input():
    # c = x + 2^62 + r must not equal x + 2^62 (r uniform)
    xs = [7] * 32
    x = as_ring(np.array(xs, dtype=np.int64))
    n = 3
    shares = sharing.share(x, n)
    dealer = InProcessDealer(n)
    item = MaterialItem(MaterialKind.TRUNCATION, x.shape, shift=8)
    pairs = [dealer.material(i, "t", [item])[0] for i in range(n)]
    c = sharing.reconstruct([truncation.masked_value(shares[i], pairs[i], i) for i in range(n)])
    assert not np.any(c == np.uint64(7 + (1 << 62)))
