"""Unit tests for mpcnet.core.fixedpoint."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mpcnet.core import fixedpoint as fp
from mpcnet.core.fixedpoint import FixedPointFormat, FixedPointRangeError
from mpcnet.core.ring import RingTypeError

SETTINGS = settings(max_examples=75, deadline=None, database=None)
F = fp.DEFAULT_FRAC_BITS
MAX_ABS = FixedPointFormat().max_abs


def test_default_format_and_max_abs():
    assert F == 16
    assert fp.DEFAULT_FORMAT.frac_bits == 16
    assert MAX_ABS == float(2**46 - 1)
    assert FixedPointFormat(30).max_abs == float(2**32 - 1)


@pytest.mark.parametrize("bits", [-1, 31, 64])
def test_frac_bits_out_of_range_refused(bits):
    with pytest.raises(ValueError):
        FixedPointFormat(bits)


@SETTINGS
@given(
    v=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4),
        elements=st.floats(-MAX_ABS, MAX_ABS, allow_nan=False, allow_infinity=False),
    )
)
def test_encode_decode_round_trip_within_half_ulp(v):
    enc = fp.encode(v)
    assert enc.dtype == np.uint64 and enc.shape == v.shape
    dec = fp.decode(enc)
    assert dec.shape == v.shape
    assert np.all(np.abs(dec - v) <= 2.0**-17)


@SETTINGS
@given(
    bits=st.integers(0, 30),
    data=st.data(),
)
def test_round_trip_any_frac_bits(bits, data):
    fmt = FixedPointFormat(bits)
    lim = min(fmt.max_abs, 2.0**40)
    v = data.draw(hnp.arrays(np.float64, (5,), elements=st.floats(-lim, lim, allow_nan=False)))
    dec = fmt.decode(fmt.encode(v))
    assert np.all(np.abs(dec - v) <= 2.0 ** -(bits + 1))


def test_encode_exact_values():
    enc = fp.encode([0.0, 1.0, -1.0, 0.5, -2.25, 2.0**-16, -(2.0**-16)])
    assert [int(x) for x in enc.view(np.int64)] == [0, 65536, -65536, 32768, -147456, 1, -1]
    # decoding is the signed value / 2^16
    np.testing.assert_array_equal(fp.decode(enc), [0.0, 1.0, -1.0, 0.5, -2.25, 2.0**-16, -(2.0**-16)])


def test_encode_rounds_to_nearest():
    # 0.3 * 2^16 = 19660.8 -> 19661; -0.3 -> -19661
    enc = fp.encode([0.3, -0.3])
    assert [int(x) for x in enc.view(np.int64)] == [19661, -19661]


def test_encode_max_abs_boundary_accepted():
    enc = fp.encode([MAX_ABS, -MAX_ABS])
    ints = [int(x) for x in enc.view(np.int64)]
    assert ints == [(2**46 - 1) * 2**16, -(2**46 - 1) * 2**16]
    assert all(abs(x) < 2**62 for x in ints)
    np.testing.assert_array_equal(fp.decode(enc), [MAX_ABS, -MAX_ABS])


@pytest.mark.parametrize("value", [1.5, np.array(-2.25), np.float64(0.0)])
def test_encode_decode_scalar(value):
    enc = fp.encode(value)
    assert isinstance(enc, np.ndarray) and enc.shape == () and enc.dtype == np.uint64
    assert float(fp.decode(enc)) == float(value)


def test_encode_scalar_value_is_still_correct():
    # known answers for the encoding itself
    assert int(np.asarray(fp.encode(1.5)).view(np.int64)) == 98304
    assert int(np.asarray(fp.encode(-2.25)).view(np.int64)) == -147456


def test_encode_empty():
    enc = fp.encode(np.zeros((0, 3)))
    assert enc.shape == (0, 3) and enc.dtype == np.uint64


@pytest.mark.parametrize(
    "bad",
    [
        [np.nan],
        [1.0, np.inf],
        [-np.inf],
        [MAX_ABS + 1.0],
        [-(MAX_ABS + 1.0)],
        [2.0**46],
        [1e300],
        [0.0, -1e20],
    ],
)
def test_encode_refuses_nan_inf_and_out_of_range(bad):
    with pytest.raises(FixedPointRangeError):
        fp.encode(np.array(bad))


def test_range_error_is_value_error():
    assert issubclass(FixedPointRangeError, ValueError)


@pytest.mark.parametrize("secret", [123456789012345678.0, -98765432109876.5, 3.14159e17])
def test_range_error_does_not_leak_the_value(secret):
    with pytest.raises(FixedPointRangeError) as info:
        fp.encode(np.array([1.0, secret]))
    msg = str(info.value)
    digits = "".join(ch for ch in repr(abs(secret)) if ch.isdigit())
    # neither the full digit string nor any 5-digit run of it appears
    msg_digits = "".join(ch if ch.isdigit() else " " for ch in msg)
    assert digits not in msg_digits.replace(" ", "")
    for i in range(len(digits) - 4):
        assert digits[i:i + 5] not in msg_digits.replace(" ", ""), (digits[i:i + 5], msg)
    assert repr(secret) not in msg and str(secret) not in msg and f"{secret:g}" not in msg


def test_nan_error_message_has_no_value():
    with pytest.raises(FixedPointRangeError) as info:
        fp.encode([7.123456, np.nan])
    assert "7.12" not in str(info.value)


@pytest.mark.parametrize("bits", [0, 8])
def test_encode_refuses_exactly_two_pow_62_scaled(bits):
    with pytest.raises(FixedPointRangeError):
        FixedPointFormat(bits).encode([2.0 ** (62 - bits)])


@SETTINGS
@given(bits=st.integers(0, 30))
def test_max_abs_encodings_stay_in_truncation_domain_for_exactly_representable_limits(bits):
    fmt = FixedPointFormat(bits)
    if float(2 ** (62 - bits) - 1) != 2 ** (62 - bits) - 1:
        return  # covered by test_encode_refuses_exactly_two_pow_62_scaled
    enc = fmt.encode([fmt.max_abs, -fmt.max_abs])
    assert all(abs(int(x)) < 2**62 for x in enc.view(np.int64))


def test_decode_requires_uint64():
    with pytest.raises(RingTypeError):
        fp.decode(np.array([1, 2], dtype=np.int64))


# -- encode_integers --------------------------------------------------------


@SETTINGS
@given(v=hnp.arrays(np.int64, hnp.array_shapes(min_dims=0, max_dims=2, max_side=5)))
def test_encode_integers_int64_exact(v):
    enc = fp.encode_integers(v)
    assert enc.dtype == np.uint64 and enc.shape == v.shape
    np.testing.assert_array_equal(enc.view(np.int64), v)
    np.testing.assert_array_equal(fp.decode(enc, 0), v.astype(np.float64))


@SETTINGS
@given(v=st.lists(st.integers(-(2**52), 2**52), min_size=1, max_size=8))
def test_encode_integers_integral_floats_exact(v):
    enc = fp.encode_integers(np.array(v, dtype=np.float64))
    assert [int(x) for x in enc.view(np.int64)] == v


def test_encode_integers_small_dtypes_and_scalars():
    assert [int(x) for x in fp.encode_integers(np.array([-3, 4], dtype=np.int8)).view(np.int64)] == [-3, 4]
    assert [int(x) for x in fp.encode_integers(np.array([7, 255], dtype=np.uint8))] == [7, 255]
    e = fp.encode_integers(100)
    assert e.shape == () and e.dtype == np.uint64 and int(e) == 100
    assert int(fp.encode_integers(np.array(-5)).view(np.int64)) == -5
    assert int(fp.encode_integers(np.array(200.0))) == 200


@pytest.mark.parametrize(
    "bad",
    [
        np.array([1.5]),
        np.array([0.0, -0.25]),
        np.array([np.nan]),
        np.array([np.inf]),
        np.array([2.0**62]),
        np.array([-(2.0**62)]),
        np.array([2**63], dtype=np.uint64),
        np.array([True]),
        np.array(["3"]),
        np.array([1 + 0j]),
    ],
)
def test_encode_integers_refuses(bad):
    with pytest.raises(FixedPointRangeError):
        fp.encode_integers(bad)


def test_encode_integers_uint_below_2_63_ok():
    enc = fp.encode_integers(np.array([2**63 - 1], dtype=np.uint64))
    assert int(enc[0]) == 2**63 - 1


def test_half_ulp_bound_is_tight_for_rounding():
    # x = 2^-17 sits exactly between 0 and 1 ulp; rint rounds half to even -> 0
    dec = fp.decode(fp.encode([2.0**-17, 3 * 2.0**-17]))
    assert math.isclose(abs(dec[0] - 2.0**-17), 2.0**-17)
    assert abs(dec[1] - 3 * 2.0**-17) <= 2.0**-17
