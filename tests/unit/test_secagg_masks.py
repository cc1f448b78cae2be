"""Mask algebra: pairwise masks cancel, masked inputs sum to the inputs plus self masks."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcnet.secagg import crypto, prg

SETTINGS = settings(max_examples=30, deadline=None, database=None)


@SETTINGS
@given(st.lists(st.integers(min_value=1, max_value=1000), min_size=2, max_size=7, unique=True),
       st.integers(min_value=1, max_value=64), st.integers(min_value=1, max_value=40),
       st.binary(min_size=16, max_size=16))
def test_pairwise_masks_cancel(ids: list[int], bits: int, length: int, seed: bytes) -> None:
    rng = crypto.SeededRandom(seed)
    keys = {u: crypto.x25519_private(rng) for u in ids}
    pubs = {u: crypto.x25519_public(k) for u, k in keys.items()}
    total = np.zeros(length, dtype=np.uint64)
    for u in ids:
        for v in ids:
            if u != v:
                s_uv = crypto.pair_seed(keys[u], pubs[v], "r", u, v)
                total = prg.add_signed(total, prg.pair_mask(s_uv, length, bits), prg.pair_sign(u, v), bits)
    assert not total.any()


@SETTINGS
@given(st.integers(min_value=1, max_value=64), st.lists(st.integers(min_value=0, max_value=2**64 - 1), min_size=1,
                                                        max_size=20))
def test_add_sub_inverse_mod_2k(bits: int, values: list[int]) -> None:
    m = (1 << bits) - 1
    a = np.array([v & m for v in values], dtype=np.uint64)
    b = prg.self_mask(bytes(32), a.size, bits)
    assert np.array_equal(prg.sub(prg.add(a, b, bits), b, bits), a)
    assert [int(v) for v in prg.add(a, b, bits)] == [(int(x) + int(y)) & m for x, y in zip(a, b)]
