"""Unit tests for mpcnet.core.beaver (Beaver-triple multiplication)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mpcnet.core import beaver, prg
from mpcnet.core.beaver import ProductKind, TripleShare
from mpcnet.core.preprocessing import InProcessDealer, MaterialItem, MaterialKind

SETTINGS = settings(max_examples=50, deadline=None, database=None)
MOD = 1 << 64
U64 = st.integers(0, MOD - 1)


def u64(shape):
    return hnp.arrays(np.uint64, shape, elements=U64)


def share_plain(x: np.ndarray, n: int) -> list[np.ndarray]:
    """Additive shares made in the test (independent of mpcnet.core.sharing)."""
    parts = [prg.random_ring(max(x.size, 1))[: x.size].reshape(x.shape) for _ in range(n - 1)]
    with np.errstate(over="ignore"):
        last = np.asarray(x - sum(parts, np.zeros(x.shape, np.uint64)), dtype=np.uint64)
    return parts + [last]


def recon(parts) -> np.ndarray:
    with np.errstate(over="ignore"):
        total = np.zeros(np.shape(parts[0]), dtype=np.uint64)
        for p in parts:
            total = np.asarray(total + p, dtype=np.uint64)
    return total


def run_beaver(x, y, triples, n):
    xs, ys = share_plain(x, n), share_plain(y, n)
    masked = [beaver.masked_operands(xs[i], ys[i], triples[i]) for i in range(n)]
    d = recon([m[0] for m in masked])
    e = recon([m[1] for m in masked])
    zs = [beaver.combine(d, e, triples[i], i) for i in range(n)]
    for z in zs:
        assert isinstance(z, np.ndarray) and z.dtype == np.uint64
    return recon(zs)


def py_elementwise(x, y):
    xb, yb = np.broadcast_arrays(x, y)
    out = [(int(a) * int(b)) % MOD for a, b in zip(xb.ravel(), yb.ravel())]
    return np.array(out, dtype=np.uint64).reshape(xb.shape)


def py_matmul(x, y):
    xm = x.reshape(1, -1) if x.ndim == 1 else x
    ym = y.reshape(-1, 1) if y.ndim == 1 else y
    out = [[sum(int(xm[i, t]) * int(ym[t, j]) for t in range(xm.shape[1])) % MOD for j in range(ym.shape[1])]
           for i in range(xm.shape[0])]
    res = np.array(out, dtype=np.uint64)
    if x.ndim == 1 and y.ndim == 1:
        return res.reshape(())
    if x.ndim == 1:
        return res.reshape(-1)
    if y.ndim == 1:
        return res.reshape(-1)
    return res


ELEMENTWISE_SHAPES = [((), ()), ((), (4,)), ((4,), ()), ((3,), (3,)), ((2, 3), (2, 3)), ((), (2, 2))]
MATMUL_SHAPES = [((4,), (4,)), ((2, 3), (3, 4)), ((1, 1), (1, 1)), ((3,), (3, 2)), ((2, 3), (3,))]


@SETTINGS
@given(data=st.data(), n=st.integers(2, 5), shapes=st.sampled_from(ELEMENTWISE_SHAPES))
def test_elementwise_with_dealer_triples(data, n, shapes):
    sa, sb = shapes
    x, y = data.draw(u64(sa)), data.draw(u64(sb))
    dealer = InProcessDealer(n)
    item = MaterialItem(MaterialKind.TRIPLE, sa, sb, ProductKind.ELEMENTWISE)
    triples = [dealer.material(i, "bv", [item])[0] for i in range(n)]
    z = run_beaver(x, y, triples, n)
    assert z.shape == np.broadcast_shapes(sa, sb)
    np.testing.assert_array_equal(z, py_elementwise(x, y))


@SETTINGS
@given(data=st.data(), n=st.integers(2, 5), shapes=st.sampled_from(MATMUL_SHAPES))
def test_matmul_and_dot_with_dealer_triples(data, n, shapes):
    sa, sb = shapes
    x, y = data.draw(u64(sa)), data.draw(u64(sb))
    dealer = InProcessDealer(n)
    item = MaterialItem(MaterialKind.TRIPLE, sa, sb, ProductKind.MATMUL)
    triples = [dealer.material(i, "bv", [item])[0] for i in range(n)]
    z = run_beaver(x, y, triples, n)
    expected = py_matmul(x, y)
    assert z.shape == expected.shape == item.shape_c
    np.testing.assert_array_equal(z, expected)


def hand_triples(kind, sa, sb, n):
    a = prg.random_ring(max(int(np.prod(sa)), 1))[: int(np.prod(sa))].reshape(sa)
    b = prg.random_ring(max(int(np.prod(sb)), 1))[: int(np.prod(sb))].reshape(sb)
    c = beaver.product(kind, a, b)
    return [TripleShare(kind, ai, bi, ci)
            for ai, bi, ci in zip(share_plain(a, n), share_plain(b, n), share_plain(np.asarray(c), n))]


@SETTINGS
@given(data=st.data(), n=st.integers(2, 5), kind=st.sampled_from(list(ProductKind)))
def test_hand_made_triples(data, n, kind):
    sa, sb = ((2, 2), (2, 2)) if kind is ProductKind.MATMUL else ((), (5,))
    x, y = data.draw(u64(sa)), data.draw(u64(sb))
    z = run_beaver(x, y, hand_triples(kind, sa, sb, n), n)
    expected = py_matmul(x, y) if kind is ProductKind.MATMUL else py_elementwise(x, y)
    np.testing.assert_array_equal(z, expected)


@SETTINGS
@given(data=st.data())
def test_product_helper(data):
    x, y = data.draw(u64((2, 3))), data.draw(u64((3, 2)))
    np.testing.assert_array_equal(beaver.product(ProductKind.MATMUL, x, y), py_matmul(x, y))
    y2 = data.draw(u64((2, 3)))
    np.testing.assert_array_equal(beaver.product(ProductKind.ELEMENTWISE, x, y2), py_elementwise(x, y2))


def test_opened_values_are_masked():
    # d = x - a is not x (a is uniform): opening reveals a masked value only
    n = 3
    x = np.full(16, 5, dtype=np.uint64)
    y = np.full(16, 9, dtype=np.uint64)
    dealer = InProcessDealer(n)
    item = MaterialItem(MaterialKind.TRIPLE, (16,), (16,))
    triples = [dealer.material(i, "m", [item])[0] for i in range(n)]
    xs, ys = share_plain(x, n), share_plain(y, n)
    masked = [beaver.masked_operands(xs[i], ys[i], triples[i]) for i in range(n)]
    d = recon([m[0] for m in masked])
    e = recon([m[1] for m in masked])
    assert not np.any(d == x) and not np.any(e == y)


def test_only_party_zero_adds_public_term():
    a = np.zeros(2, np.uint64)
    t = TripleShare(ProductKind.ELEMENTWISE, a, a, a)
    d = np.array([3, 4], np.uint64)
    e = np.array([5, 6], np.uint64)
    np.testing.assert_array_equal(beaver.combine(d, e, t, 0), [15, 24])
    np.testing.assert_array_equal(beaver.combine(d, e, t, 1), [0, 0])
    np.testing.assert_array_equal(beaver.combine(d, e, t, 4), [0, 0])


def test_masked_operands_shape_mismatch_refused():
    t = TripleShare(ProductKind.ELEMENTWISE, np.zeros(3, np.uint64), np.zeros(3, np.uint64), np.zeros(3, np.uint64))
    with pytest.raises(ValueError):
        beaver.masked_operands(np.zeros(4, np.uint64), np.zeros(3, np.uint64), t)
    with pytest.raises(ValueError):
        beaver.masked_operands(np.zeros(3, np.uint64), np.zeros((3, 1), np.uint64), t)


def test_masked_operands_requires_uint64():
    from mpcnet.core.ring import RingTypeError

    t = TripleShare(ProductKind.ELEMENTWISE, np.zeros(3, np.uint64), np.zeros(3, np.uint64), np.zeros(3, np.uint64))
    with pytest.raises(RingTypeError):
        beaver.masked_operands(np.zeros(3, np.int64), np.zeros(3, np.uint64), t)
