"""Unit tests for mpcnet.core.prg (HMAC-SHA256-keyed AES-256-CTR)."""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcnet.core import prg
from mpcnet.core.prg import PrgSeedError

SETTINGS = settings(max_examples=50, deadline=None, database=None)
SEEDS = st.binary(min_size=16, max_size=64)
LABELS = st.binary(min_size=0, max_size=40)

KAT_SEED = bytes(range(32))
KAT_LABEL = b"mpcnet/test/kat"
# Pinned known answer (computed once with the construction below); a change of
# domain string, KDF, cipher, IV or byte order changes it.
KAT_HEX_48 = (
    "83c5d22f3571a796b93e0d6ce6fb71f5"
    "805e5d3dd861a028fabaac176a8e2ece"
    "89e728a7afe81ebfd217c395fe6fa073"
)
KAT_U64 = [10855769900049417603, 17686194178734505657, 2927447339161181824]
# 16-byte (minimum-length) seed, empty label
KAT2_SEED = bytes(range(16))
KAT2_HEX_16 = "cb2c5c1b2aa16d4cab7a556402d816b0"


def reference_stream(seed: bytes, label: bytes, nbytes: int) -> bytes:
    """AES-256-CTR(key = HMAC-SHA256(seed, b"mpcnet/v1/prg\\x00" + label), IV = 0^16)."""
    key = hmac.new(seed, b"mpcnet/v1/prg\x00" + label, hashlib.sha256).digest()
    enc = Cipher(algorithms.AES(key), modes.CTR(b"\x00" * 16)).encryptor()
    return enc.update(b"\x00" * nbytes) + enc.finalize()


def test_known_answer_pinned():
    assert prg.expand_bytes(KAT_SEED, KAT_LABEL, 48).hex() == KAT_HEX_48
    assert prg.expand_bytes(KAT2_SEED, b"", 16).hex() == KAT2_HEX_16
    assert [int(v) for v in prg.expand(KAT_SEED, KAT_LABEL, 3)] == KAT_U64


def test_known_answer_matches_independent_reference():
    assert reference_stream(KAT_SEED, KAT_LABEL, 48).hex() == KAT_HEX_48
    assert reference_stream(KAT2_SEED, b"", 16).hex() == KAT2_HEX_16


@SETTINGS
@given(seed=SEEDS, label=LABELS, nbytes=st.integers(0, 200))
def test_expand_bytes_equals_reference_construction(seed, label, nbytes):
    assert prg.expand_bytes(seed, label, nbytes) == reference_stream(seed, label, nbytes)


@SETTINGS
@given(seed=SEEDS, label=LABELS, count=st.integers(0, 40))
def test_expand_is_little_endian_u64_of_stream(seed, label, count):
    out = prg.expand(seed, label, count)
    assert out.dtype == np.uint64 and out.shape == (count,)
    stream = reference_stream(seed, label, 8 * count)
    assert [int(v) for v in out] == [int.from_bytes(stream[8 * i:8 * i + 8], "little") for i in range(count)]
    assert out.flags.writeable  # a copy, not a read-only view of the bytes


def test_derive_key_is_hmac():
    key = prg.derive_key(KAT_SEED, b"x")
    assert key == hmac.new(KAT_SEED, b"mpcnet/v1/prg\x00x", hashlib.sha256).digest()
    assert len(key) == 32


@SETTINGS
@given(seed=SEEDS, label=LABELS)
def test_deterministic_for_same_seed_and_label(seed, label):
    np.testing.assert_array_equal(prg.expand(seed, label, 10), prg.expand(seed, label, 10))


@SETTINGS
@given(seed=SEEDS, count=st.integers(1, 30), data=st.data())
def test_prefix_property(seed, count, data):
    longer = prg.expand(seed, b"L", count + data.draw(st.integers(0, 10)))
    np.testing.assert_array_equal(prg.expand(seed, b"L", count), longer[:count])


@SETTINGS
@given(seed=SEEDS, l1=LABELS, l2=LABELS)
def test_different_labels_differ(seed, l1, l2):
    if l1 == l2:
        return
    assert prg.expand_bytes(seed, l1, 32) != prg.expand_bytes(seed, l2, 32)


@SETTINGS
@given(s1=SEEDS, s2=SEEDS, label=LABELS)
def test_different_seeds_differ(s1, s2, label):
    if s1 == s2:
        return
    assert prg.expand_bytes(s1, label, 32) != prg.expand_bytes(s2, label, 32)


def test_label_is_not_ambiguous_with_domain_separator():
    # labels that differ only by a trailing NUL give unrelated streams
    assert prg.expand_bytes(KAT_SEED, b"a", 32) != prg.expand_bytes(KAT_SEED, b"a\x00", 32)
    assert prg.expand_bytes(KAT_SEED, b"", 32) != prg.expand_bytes(KAT_SEED, b"\x00", 32)


@pytest.mark.parametrize("n", [0, 1, 8, 15])
def test_short_seed_refused(n):
    seed = bytes(n)
    with pytest.raises(PrgSeedError):
        prg.expand(seed, b"x", 4)
    with pytest.raises(PrgSeedError):
        prg.expand_bytes(seed, b"x", 4)
    with pytest.raises(PrgSeedError):
        prg.derive_key(seed, b"x")


def test_seed_error_is_value_error():
    assert issubclass(PrgSeedError, ValueError)


def test_negative_length_refused():
    with pytest.raises(ValueError):
        prg.expand_bytes(KAT_SEED, b"x", -1)
    with pytest.raises(ValueError):
        prg.expand(KAT_SEED, b"x", -1)


def test_zero_length():
    assert prg.expand_bytes(KAT_SEED, b"x", 0) == b""
    out = prg.expand(KAT_SEED, b"x", 0)
    assert out.shape == (0,) and out.dtype == np.uint64


def test_new_seed_is_fresh_and_full_length():
    seeds = {prg.new_seed() for _ in range(20)}
    assert len(seeds) == 20
    assert all(len(s) == prg.SEED_BYTES == 32 for s in seeds)


def test_random_ring_fresh():
    a, b = prg.random_ring(8), prg.random_ring(8)
    assert a.dtype == np.uint64 and a.shape == (8,)
    assert not np.array_equal(a, b)
