"""Unit tests for mpcnet.core.ring: Z_(2^64) on numpy uint64."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mpcnet.core import ring
from mpcnet.core.ring import RingTypeError

MOD = 1 << 64
U64 = st.integers(min_value=0, max_value=MOD - 1)
SETTINGS = settings(max_examples=75, deadline=None, database=None)


def u64_arrays(shape):
    return hnp.arrays(np.uint64, shape, elements=U64)


def as_pyints(arr) -> list[int]:
    return [int(v) for v in np.asarray(arr).ravel()]


# -- wrap-around identities ----------------------------------------------------


@SETTINGS
@given(data=st.data(), n=st.integers(1, 16))
def test_add_sub_neg_mul_wrap_like_python_ints_mod_2_64(data, n):
    a = data.draw(u64_arrays((n,)))
    b = data.draw(u64_arrays((n,)))
    pa, pb = as_pyints(a), as_pyints(b)
    with np.errstate(over="ignore"):
        add = a + b
        sub = a - b
        neg = np.uint64(0) - a
        mul = a * b
    assert add.dtype == sub.dtype == neg.dtype == mul.dtype == np.uint64
    assert as_pyints(add) == [(x + y) % MOD for x, y in zip(pa, pb)]
    assert as_pyints(sub) == [(x - y) % MOD for x, y in zip(pa, pb)]
    assert as_pyints(neg) == [(-x) % MOD for x in pa]
    assert as_pyints(mul) == [(x * y) % MOD for x, y in zip(pa, pb)]


def test_wrap_edge_values():
    top = np.array([MOD - 1], dtype=np.uint64)
    one = np.array([1], dtype=np.uint64)
    with np.errstate(over="ignore"):
        assert as_pyints(top + one) == [0]
        assert as_pyints(one - top) == [2]
        assert as_pyints(top * top) == [1]  # (-1)*(-1)
        assert as_pyints(np.uint64(0) - one) == [MOD - 1]
        half = np.array([1 << 63], dtype=np.uint64)
        assert as_pyints(half + half) == [0]
        assert as_pyints(half * np.uint64(2)) == [0]


def test_wrapping_decorator_silences_scalar_overflow_and_is_reentrant():
    import warnings

    @ring.wrapping()
    def inner():
        return np.uint64(MOD - 1) + np.uint64(2)

    @ring.wrapping()
    def outer():
        return inner() * np.uint64(1 << 63) + inner()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert int(inner()) == 1
        assert int(inner()) == 1  # the shared decorator works on every call
        assert int(outer()) == ((1 << 63) + 1) % MOD  # and nested


@SETTINGS
@given(data=st.data(), k=st.integers(1, 6), n=st.integers(1, 8))
def test_ring_sum_matches_python_sum_mod_2_64(data, k, n):
    arrays = [data.draw(u64_arrays((n,))) for _ in range(k)]
    before = [a.copy() for a in arrays]
    total = ring.ring_sum(arrays)
    assert total.dtype == np.uint64 and total.shape == (n,)
    expected = [sum(col) % MOD for col in zip(*(as_pyints(a) for a in arrays))]
    assert as_pyints(total) == expected
    # inputs are not modified in place
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(a, b)


def test_ring_sum_empty_refused():
    with pytest.raises(ValueError):
        ring.ring_sum([])


def test_ring_sum_requires_uint64():
    with pytest.raises(RingTypeError):
        ring.ring_sum([np.zeros(3, dtype=np.uint64), np.zeros(3, dtype=np.int64)])


@SETTINGS
@given(data=st.data(), m=st.integers(1, 4), k=st.integers(1, 4), n=st.integers(1, 4))
def test_ring_matmul_equals_python_int_matmul_mod_2_64(data, m, k, n):
    a = data.draw(u64_arrays((m, k)))
    b = data.draw(u64_arrays((k, n)))
    got = ring.ring_matmul(a, b)
    assert got.dtype == np.uint64 and got.shape == (m, n)
    pa = [[int(v) for v in row] for row in a]
    pb = [[int(v) for v in row] for row in b]
    expected = [[sum(pa[i][t] * pb[t][j] for t in range(k)) % MOD for j in range(n)] for i in range(m)]
    assert [[int(v) for v in row] for row in got] == expected


def test_ring_matmul_requires_uint64():
    with pytest.raises(RingTypeError):
        ring.ring_matmul(np.ones((2, 2), dtype=np.float64), np.ones((2, 2), dtype=np.uint64))


# -- as_ring / require_ring / to_signed -------------------------------------


@SETTINGS
@given(v=hnp.arrays(np.int64, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5)))
def test_as_ring_signed_reduces_mod_2_64(v):
    r = ring.as_ring(v)
    assert r.dtype == np.uint64 and r.shape == v.shape and r.flags.c_contiguous
    assert as_pyints(r) == [int(x) % MOD for x in v.ravel()]


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64])
def test_as_ring_accepts_all_integer_dtypes(dtype):
    info = np.iinfo(dtype)
    v = np.array([info.min, 0, 1, info.max], dtype=dtype)
    r = ring.as_ring(v)
    assert r.dtype == np.uint64
    assert as_pyints(r) == [int(x) % MOD for x in v]


def test_as_ring_python_ints_and_big_python_ints():
    assert as_pyints(ring.as_ring(5)) == [5]
    assert as_pyints(ring.as_ring(-1)) == [MOD - 1]
    assert as_pyints(ring.as_ring([1, -2, 3])) == [1, MOD - 2, 3]
    # beyond int64/uint64: reduced modulo 2^64 via the object path
    assert as_pyints(ring.as_ring(MOD + 7)) == [7]
    assert as_pyints(ring.as_ring(-(1 << 63) - 1)) == [(1 << 63) - 1]
    assert as_pyints(ring.as_ring([MOD, 3 * MOD + 1])) == [0, 1]


def test_as_ring_non_contiguous_uint64_made_contiguous():
    base = np.arange(12, dtype=np.uint64).reshape(3, 4)
    r = ring.as_ring(base.T)
    assert r.flags.c_contiguous
    np.testing.assert_array_equal(r, base.T)


@pytest.mark.parametrize(
    "value",
    [
        1.0,
        [1.5, 2.0],
        np.array([1.0, 2.0]),
        np.array([1.0], dtype=np.float32),
        np.array([np.nan]),
        np.array([1 + 2j]),
        np.array([True, False]),
        np.array(["1"]),
    ],
)
def test_as_ring_refuses_floats_and_non_integers(value):
    with pytest.raises(RingTypeError):
        ring.as_ring(value)


def test_ring_type_error_is_a_type_error():
    assert issubclass(RingTypeError, TypeError)


def test_as_ring_refuses_floats_hidden_in_object_arrays():
    with pytest.raises(RingTypeError):
        ring.as_ring([1 << 64, 0.5])  # currently returns [0, 0]
    with pytest.raises(RingTypeError):
        ring.as_ring(np.array([1.5], dtype=object))  # currently returns [1]


def test_as_ring_accepts_mixed_sign_python_ints_beyond_int64():
    assert as_pyints(ring.as_ring([1 << 63, -1])) == [1 << 63, MOD - 1]


@pytest.mark.parametrize("value", [5, -1, np.int32(3), np.array(7, dtype=np.uint64), np.array(-2)])
def test_as_ring_preserves_scalar_shape(value):
    r = ring.as_ring(value)
    assert isinstance(r, np.ndarray) and r.dtype == np.uint64
    assert r.shape == ()


def test_require_ring():
    a = np.zeros(3, dtype=np.uint64)
    assert ring.require_ring(a) is a
    for bad in (np.zeros(3, dtype=np.int64), [1, 2, 3], 5, np.zeros(2)):
        with pytest.raises(RingTypeError):
            ring.require_ring(bad, "thing")


@SETTINGS
@given(v=hnp.arrays(np.uint64, st.integers(0, 10), elements=U64))
def test_to_signed_is_twos_complement(v):
    s = ring.to_signed(v)
    assert s.dtype == np.int64
    for u, x in zip(as_pyints(v), (int(t) for t in s)):
        assert x == (u - MOD if u >= 1 << 63 else u)
