"""Primitives of mpcnet.secagg: RFC vectors for what we wrap, the pinned mask PRG,
share encryption binding, signatures, seeded randomness and mask speed."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcnet.core import prg as core_prg
from mpcnet.secagg import crypto, prg
from mpcnet.secagg.errors import DecryptionFailed, ProtocolViolation

SETTINGS = settings(max_examples=30, deadline=None, database=None)


# RFC 7748 section 6.1 (Diffie-Hellman) and section 5.2 (scalar multiplication)
ALICE_SK = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
ALICE_PK = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
BOB_SK = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"
BOB_PK = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
SHARED = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
S52_SCALAR = "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"
S52_U = "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"
S52_OUT = "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"


def test_rfc7748_section_6_1_key_agreement() -> None:
    assert crypto.x25519_public(bytes.fromhex(ALICE_SK)).hex() == ALICE_PK
    assert crypto.x25519_public(bytes.fromhex(BOB_SK)).hex() == BOB_PK
    assert crypto.x25519(bytes.fromhex(ALICE_SK), bytes.fromhex(BOB_PK)).hex() == SHARED
    assert crypto.x25519(bytes.fromhex(BOB_SK), bytes.fromhex(ALICE_PK)).hex() == SHARED


def test_rfc7748_section_5_2_scalar_multiplication() -> None:
    assert crypto.x25519(bytes.fromhex(S52_SCALAR), bytes.fromhex(S52_U)).hex() == S52_OUT


def test_x25519_low_order_point_is_refused() -> None:
    with pytest.raises(ProtocolViolation):
        crypto.x25519(bytes.fromhex(ALICE_SK), bytes(32))


def test_rfc5869_test_case_1() -> None:
    okm = crypto.hkdf_sha256(bytes([0x0B] * 22), bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"), 42,
                             salt=bytes.fromhex("000102030405060708090a0b0c"))
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")


def test_rfc5869_test_case_3_no_salt_empty_info() -> None:
    okm = crypto.hkdf_sha256(bytes([0x0B] * 22), b"", 42)
    assert okm.hex() == ("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
                         "9d201395faa4b61a96c8")


def test_labels_are_distinct() -> None:
    labels = [getattr(crypto, n) for n in dir(crypto) if n.startswith("LABEL_")]
    assert len(labels) == len(set(labels)) >= 10


def test_pair_seed_is_symmetric_and_bound_to_round_and_ids() -> None:
    a, b = crypto.x25519_private(), crypto.x25519_private()
    pa, pb = crypto.x25519_public(a), crypto.x25519_public(b)
    s = crypto.pair_seed(a, pb, "r", 3, 7)
    assert s == crypto.pair_seed(b, pa, "r", 7, 3)
    assert s != crypto.pair_seed(a, pb, "r2", 3, 7)
    assert s != crypto.pair_seed(a, pb, "r", 3, 8)
    assert s != crypto.share_key(a, pb, "r")
    assert len(s) == 32


def test_share_encryption_binds_sender_receiver_round() -> None:
    key = bytes(range(32))
    blob = crypto.seal(key, b"secret share", crypto.share_aad("r", 1, 2))
    assert crypto.open_sealed(key, blob, crypto.share_aad("r", 1, 2)) == b"secret share"
    errors = []
    for aad in (crypto.share_aad("r", 2, 1), crypto.share_aad("r", 1, 3), crypto.share_aad("s", 1, 2)):
        with pytest.raises(DecryptionFailed) as info:
            crypto.open_sealed(key, blob, aad)
        errors.append(str(info.value))
    with pytest.raises(DecryptionFailed) as info:
        crypto.open_sealed(bytes(32), blob, crypto.share_aad("r", 1, 2))
    errors.append(str(info.value))
    with pytest.raises(DecryptionFailed) as info:
        crypto.open_sealed(key, blob[:10], crypto.share_aad("r", 1, 2))
    errors.append(str(info.value))
    assert len(set(errors)) == 1 and "secret" not in errors[0]


def test_ed25519_sign_verify() -> None:
    sk = crypto.ed25519_private()
    pk = crypto.ed25519_public(sk)
    msg = crypto.consistency_message("r", [3, 1, 2])
    assert msg == crypto.consistency_message("r", [1, 2, 3])
    sig = crypto.ed25519_sign(sk, msg)
    assert crypto.ed25519_verify(pk, sig, msg)
    assert not crypto.ed25519_verify(pk, sig, crypto.consistency_message("r", [1, 2]))
    assert not crypto.ed25519_verify(pk, bytes(64), msg)
    assert not crypto.ed25519_verify(pk, sig[:10], msg)


def test_seeded_random_is_deterministic_and_children_independent() -> None:
    a, b = crypto.SeededRandom(bytes(32)), crypto.SeededRandom(bytes(32))
    assert a.random_bytes(10) + a.random_bytes(6) == b.random_bytes(16)
    c1, c2 = a.child(b"x"), a.child(b"y")
    assert c1.random_bytes(16) != c2.random_bytes(16)
    assert "seed" in repr(a) and bytes(32).hex() not in repr(a)
    with pytest.raises(ValueError):
        crypto.SeededRandom(bytes(15))


@SETTINGS
@given(st.integers(min_value=1, max_value=2**70))
def test_randbelow_in_range(bound: int) -> None:
    rng = crypto.SeededRandom(bound.to_bytes(16, "big"))
    assert all(0 <= crypto.randbelow(rng, bound) < bound for _ in range(5))


# Pinned mask PRG vector: AES-256-CTR under HMAC-SHA256(seed, "mpcnet/v1/prg\0" || LABEL_SELF_MASK), read as
# little-endian 32-bit words for k <= 32 and 64-bit words for k > 32, reduced mod 2^k.  Computed once with hmac +
# cryptography directly (the words below are int.from_bytes of the keystream's 4- and 8-byte slices).
PRG_SEED = bytes(range(32))
PRG_KEYSTREAM_HEX = ("c417deb57f2519d4358075dbc78888c7cb4f5e86b8bed6d3"
                     "3fb254c00268a9e381181c0047bb65d780d412197c957fd1")
PRG_SELF_MASK_32 = [3051231172, 3558417791, 3681910837, 3347613895, 2254327755, 3554066104]
PRG_SELF_MASK_64 = [15283288040900794308, 14377892202342088757, 15264597686756462539, 16404757478699741759, 15521017604421195905, 15095948836198339712]


def test_pinned_mask_prg_vector() -> None:
    got = prg.self_mask(PRG_SEED, 6, 32)
    assert got.dtype == np.uint64
    assert got.tolist() == PRG_SELF_MASK_32
    assert prg.self_mask(PRG_SEED, 6, 20).tolist() == [w & (2**20 - 1) for w in PRG_SELF_MASK_32]
    assert prg.self_mask(PRG_SEED, 6, 64).tolist() == PRG_SELF_MASK_64
    assert prg.self_mask(PRG_SEED, 6, 40).tolist() == [w & (2**40 - 1) for w in PRG_SELF_MASK_64]
    assert core_prg.expand_bytes(PRG_SEED, crypto.LABEL_SELF_MASK, 48).hex() == PRG_KEYSTREAM_HEX
    assert prg.pair_mask(PRG_SEED, 6, 32).tolist() != PRG_SELF_MASK_32


@SETTINGS
@given(st.integers(min_value=1, max_value=64), st.lists(st.tuples(st.integers(0, 2**64 - 1), st.sampled_from([1, -1])),
                                                         max_size=5))
def test_mask_accumulator_matches_term_by_term_sums(bits: int, terms: list[tuple[int, int]]) -> None:
    """The in-place accumulator (uint32 for k <= 32) equals adding each mask and vector mod 2^k one by one."""
    length = 7
    acc = prg.MaskAccumulator(length, bits)
    want = np.zeros(length, dtype=np.uint64)
    for i, (fill, sign) in enumerate(terms):
        seed = i.to_bytes(32, "big")
        acc.add_mask(seed, crypto.LABEL_PAIR_MASK, sign)
        want = prg.add_signed(want, prg.pair_mask(seed, length, bits), sign, bits)
        vec = np.full(length, fill, dtype=np.uint64) & prg.modulus_mask(bits)
        acc.add_vector(vec, sign)
        want = prg.add_signed(want, vec, sign, bits)
    assert acc.value().dtype == np.uint64
    assert acc.value().tolist() == want.tolist()


def test_mask_refuses_short_seeds() -> None:
    for n in (4, 16, 31):
        with pytest.raises(ValueError, match="32 bytes"):
            prg.self_mask(bytes(n), 4, 32)


@SETTINGS
@given(st.integers(min_value=1, max_value=64))
def test_masks_stay_in_ring(bits: int) -> None:
    m = prg.pair_mask(bytes(range(32)), 64, bits)
    if bits < 64:
        assert int(m.max()) < (1 << bits)
