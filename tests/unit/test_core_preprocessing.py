"""Unit tests for mpcnet.core.preprocessing (seed-compressed dealer material)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcnet.core import prg
from mpcnet.core.beaver import ProductKind, TripleShare
from mpcnet.core.preprocessing import (
    InProcessDealer,
    MaterialItem,
    MaterialKind,
    dealer_corrections,
    node_material,
)
from mpcnet.core.truncation import TruncationPairShare

SETTINGS = settings(max_examples=50, deadline=None, database=None)
MOD = 1 << 64

ITEMS = [
    MaterialItem(MaterialKind.TRIPLE, (3,), (3,)),
    MaterialItem(MaterialKind.TRIPLE, (), (4,)),
    MaterialItem(MaterialKind.TRIPLE, (4,), ()),
    MaterialItem(MaterialKind.TRIPLE, (2, 3), (3, 2), ProductKind.MATMUL),
    MaterialItem(MaterialKind.TRIPLE, (5,), (5,), ProductKind.MATMUL),
    MaterialItem(MaterialKind.TRUNCATION, (4,), shift=16),
    MaterialItem(MaterialKind.TRUNCATION, (), shift=1),
    MaterialItem(MaterialKind.TRUNCATION, (2, 2), shift=61),
]


def total(arrays) -> np.ndarray:
    with np.errstate(over="ignore"):
        t = np.zeros(np.shape(arrays[0]), dtype=np.uint64)
        for a in arrays:
            t = np.asarray(t + a, dtype=np.uint64)
    return t


def py_product(kind, a, b):
    if kind is ProductKind.ELEMENTWISE:
        ab, bb = np.broadcast_arrays(a, b)
        return np.array([(int(x) * int(y)) % MOD for x, y in zip(ab.ravel(), bb.ravel())],
                        dtype=np.uint64).reshape(ab.shape)
    am = a.reshape(1, -1) if a.ndim == 1 else a
    bm = b.reshape(-1, 1) if b.ndim == 1 else b
    out = np.array([[sum(int(am[i, t]) * int(bm[t, j]) for t in range(am.shape[1])) % MOD
                     for j in range(bm.shape[1])] for i in range(am.shape[0])], dtype=np.uint64)
    if a.ndim == 1 and b.ndim == 1:
        return out.reshape(())
    return out.reshape(-1) if (a.ndim == 1 or b.ndim == 1) else out


def all_material(seeds, batch, items):
    corr = dealer_corrections(seeds, batch, items)
    n = len(seeds)
    return [node_material(seeds[i], batch, items, i == n - 1, corr if i == n - 1 else None) for i in range(n)]


def check_valid(mats, items):
    for j, item in enumerate(items):
        parts = [m[j] for m in mats]
        if item.kind is MaterialKind.TRIPLE:
            assert all(isinstance(p, TripleShare) and p.kind is item.product for p in parts)
            a, b, c = total([p.a for p in parts]), total([p.b for p in parts]), total([p.c for p in parts])
            assert a.shape == item.shape_a and b.shape == item.shape_b and c.shape == item.shape_c
            np.testing.assert_array_equal(c, py_product(item.product, a, b))
        else:
            assert all(isinstance(p, TruncationPairShare) and p.shift == item.shift for p in parts)
            r, hi, msb = total([p.r for p in parts]), total([p.r_hi for p in parts]), total([p.r_msb for p in parts])
            assert r.shape == hi.shape == msb.shape == item.shape_a
            assert [int(v) for v in np.ravel(hi)] == [int(v) >> item.shift for v in np.ravel(r)]
            assert [int(v) for v in np.ravel(msb)] == [int(v) >> 63 for v in np.ravel(r)]


@SETTINGS
@given(n=st.integers(2, 5), seeds_data=st.data(), batch=st.text(min_size=1, max_size=12))
def test_corrections_reconstruct_valid_material(n, seeds_data, batch):
    seeds = [seeds_data.draw(st.binary(min_size=32, max_size=32)) for _ in range(n)]
    check_valid(all_material(seeds, batch, ITEMS), ITEMS)


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_in_process_dealer_material_valid(n):
    dealer = InProcessDealer(n)
    mats = [dealer.material(i, "batch-1", ITEMS) for i in range(n)]
    check_valid(mats, ITEMS)


def test_truncation_msb_bucket_sees_both_values():
    # r is uniform, so r_msb should be 1 about half the time over many elements
    n = 3
    item = MaterialItem(MaterialKind.TRUNCATION, (256,), shift=8)
    mats = all_material([prg.new_seed() for _ in range(n)], "msb", [item])
    msb = total([m[0].r_msb for m in mats])
    assert set(int(v) for v in msb) == {0, 1}


def test_correction_structure_and_sizes():
    seeds = [prg.new_seed() for _ in range(4)]
    corr = dealer_corrections(seeds, "b", ITEMS)
    assert len(corr) == len(ITEMS)
    for item, c in zip(ITEMS, corr):
        if item.kind is MaterialKind.TRIPLE:
            assert len(c) == 1 and c[0].shape == item.shape_c
        else:
            assert len(c) == 2 and c[0].shape == c[1].shape == item.shape_a
        assert all(isinstance(x, np.ndarray) and x.dtype == np.uint64 for x in c)
        assert sum(x.size for x in c) == item.correction_elements


def test_material_item_sizes():
    t = MaterialItem(MaterialKind.TRIPLE, (2, 3), (3, 4), ProductKind.MATMUL)
    assert t.shape_c == (2, 4) and t.elements == 6 + 12 + 8 and t.correction_elements == 8
    d = MaterialItem(MaterialKind.TRIPLE, (5,), (5,), ProductKind.MATMUL)
    assert d.shape_c == () and d.elements == 11 and d.correction_elements == 1
    s = MaterialItem(MaterialKind.TRIPLE, (), (7,))
    assert s.shape_c == (7,) and s.elements == 1 + 7 + 7
    tr = MaterialItem(MaterialKind.TRUNCATION, (3, 2), shift=16)
    assert tr.shape_c == (3, 2) and tr.elements == 18 and tr.correction_elements == 12
    assert MaterialItem(MaterialKind.TRIPLE, (3,), (3, 2), ProductKind.MATMUL).shape_c == (2,)
    assert MaterialItem(MaterialKind.TRIPLE, (2, 3), (3,), ProductKind.MATMUL).shape_c == (2,)


def test_only_last_node_needs_corrections():
    n = 3
    seeds = [prg.new_seed() for _ in range(n)]
    # non-last nodes expand from their seed alone, with or without corrections passed
    for i in range(n - 1):
        a = node_material(seeds[i], "b", ITEMS, False, None)
        b = node_material(seeds[i], "b", ITEMS, False, dealer_corrections(seeds, "b", ITEMS))
        for x, y in zip(a, b):
            for f in ("a", "b", "c") if isinstance(x, TripleShare) else ("r", "r_hi", "r_msb"):
                np.testing.assert_array_equal(getattr(x, f), getattr(y, f))
    with pytest.raises(ValueError):
        node_material(seeds[-1], "b", ITEMS, True, None)
    with pytest.raises(ValueError):
        node_material(seeds[-1], "b", ITEMS, True, dealer_corrections(seeds, "b", ITEMS)[:-1])


def test_non_last_material_is_pure_seed_expansion():
    # a non-last node's share is exactly the PRG expansion under "batch/index/component"
    seed = prg.new_seed()
    m = node_material(seed, "B7", ITEMS, False)
    a0 = prg.expand(seed, b"B7/0/a", 3)
    np.testing.assert_array_equal(m[0].a, a0)
    r5 = prg.expand(seed, b"B7/5/r", 4)
    np.testing.assert_array_equal(m[5].r, r5)


def test_last_node_a_b_r_come_from_its_seed():
    seeds = [prg.new_seed() for _ in range(3)]
    corr = dealer_corrections(seeds, "b", ITEMS)
    last = node_material(seeds[-1], "b", ITEMS, True, corr)
    plain = node_material(seeds[-1], "b", ITEMS, False)
    for x, y, c in zip(last, plain, corr):
        if isinstance(x, TripleShare):
            np.testing.assert_array_equal(x.a, y.a)
            np.testing.assert_array_equal(x.b, y.b)
            np.testing.assert_array_equal(x.c, c[0])
        else:
            np.testing.assert_array_equal(x.r, y.r)
            np.testing.assert_array_equal(x.r_hi, c[0])
            np.testing.assert_array_equal(x.r_msb, c[1])


@pytest.mark.parametrize("j", range(len(ITEMS)))
def test_wrong_shaped_corrections_refused(j):
    seeds = [prg.new_seed() for _ in range(2)]
    corr = [list(c) for c in dealer_corrections(seeds, "b", ITEMS)]
    bad = [list(c) for c in corr]
    bad[j] = [np.zeros(tuple(s + 1 for s in c.shape) or (2,), dtype=np.uint64) for c in corr[j]]
    with pytest.raises(ValueError):
        node_material(seeds[-1], "b", ITEMS, True, bad)
    # wrong number of arrays for the item
    bad2 = [list(c) for c in corr]
    bad2[j] = corr[j][:-1] if len(corr[j]) > 1 else corr[j] + corr[j]
    with pytest.raises(ValueError):
        node_material(seeds[-1], "b", ITEMS, True, bad2)


def test_dealer_needs_two_nodes():
    with pytest.raises(ValueError):
        dealer_corrections([prg.new_seed()], "b", ITEMS)


def test_different_batch_ids_give_different_material():
    seeds = [prg.new_seed() for _ in range(3)]
    m1 = all_material(seeds, "batch-1", ITEMS)
    m2 = all_material(seeds, "batch-2", ITEMS)
    for node in range(3):
        for x, y in zip(m1[node], m2[node]):
            fields = ("a", "b", "c") if isinstance(x, TripleShare) else ("r", "r_hi", "r_msb")
            for f in fields:
                assert not np.array_equal(getattr(x, f), getattr(y, f)), (node, f)
    # and the corrections differ too
    c1 = dealer_corrections(seeds, "batch-1", ITEMS)
    c2 = dealer_corrections(seeds, "batch-2", ITEMS)
    assert not any(np.array_equal(a[0], b[0]) for a, b in zip(c1, c2))


def test_different_items_in_a_batch_get_independent_material():
    seeds = [prg.new_seed() for _ in range(2)]
    items = [MaterialItem(MaterialKind.TRIPLE, (4,), (4,))] * 2
    m = all_material(seeds, "b", items)
    assert not np.array_equal(m[0][0].a, m[0][1].a)
    assert not np.array_equal(m[0][0].a, m[0][0].b)


def test_deterministic_for_same_seeds_and_batch():
    seeds = [prg.new_seed() for _ in range(3)]
    c1 = dealer_corrections(seeds, "b", ITEMS)
    c2 = dealer_corrections(seeds, "b", ITEMS)
    for a, b in zip(c1, c2):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_in_process_dealer_distinct_dealers_distinct_material():
    item = [MaterialItem(MaterialKind.TRIPLE, (4,), (4,))]
    a = InProcessDealer(2).material(0, "b", item)[0].a
    b = InProcessDealer(2).material(0, "b", item)[0].a
    assert not np.array_equal(a, b)
