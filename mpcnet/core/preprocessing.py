"""Preprocessing material (Beaver triples, truncation pairs), seed-compressed.

The dealer holds one 256-bit seed per compute node (handed to the node once,
at enrolment).  For a batch with id B and item j, node i expands its shares
of every component from its own seed under the label ``B/j/<component>``.
The dealer expands the same streams for *all* nodes, computes the true
values (c = a*b, r_hi = r >> m, ...), and sends only the last node a
*correction* for the derived components so that the shares sum correctly:

    c_{N-1} = c - sum_{i<N-1} c_i   (the last node's a, b, r come from its seed too)

So dealer traffic per batch is one array per triple (two per truncation
pair), sent to one node, whatever N is.  The dealer never issues a batch id
twice and a node refuses a batch id it has already consumed.

``InProcessDealer`` implements :class:`TripleSource` for tests: all of the
above as function calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol, Sequence, Union

import numpy as np

from mpcnet.core import prg
from mpcnet.core.beaver import ProductKind, TripleShare, product
from mpcnet.core.ring import RingArray
from mpcnet.core.ring import wrapping as _wrapping
from mpcnet.core.sharing import expand_share
from mpcnet.core.truncation import TruncationPairShare, check_shift, pair_from_mask

Shape = tuple[int, ...]


class MaterialKind(str, Enum):
    TRIPLE = "triple"
    TRUNCATION = "truncation"


@dataclass(frozen=True, slots=True)
class MaterialItem:
    """What one opening op of a job needs from the dealer."""

    kind: MaterialKind
    shape_a: Shape
    shape_b: Shape = ()
    product: ProductKind = ProductKind.ELEMENTWISE
    shift: int = 0

    def __post_init__(self) -> None:
        if self.kind is MaterialKind.TRUNCATION:
            check_shift(self.shift)

    @property
    def shape_c(self) -> Shape:
        if self.kind is MaterialKind.TRUNCATION:
            return self.shape_a
        if self.product is ProductKind.ELEMENTWISE:
            return tuple(np.broadcast_shapes(self.shape_a, self.shape_b))
        return _matmul_shape(self.shape_a, self.shape_b)

    @property
    def correction_elements(self) -> int:
        """Ring elements the last node receives for this item."""
        n = int(np.prod(self.shape_c, dtype=np.int64))
        return 2 * n if self.kind is MaterialKind.TRUNCATION else n

    @property
    def elements(self) -> int:
        """Ring elements of material one node holds for this item."""
        if self.kind is MaterialKind.TRUNCATION:
            return 3 * int(np.prod(self.shape_a, dtype=np.int64))
        return sum(int(np.prod(s, dtype=np.int64)) for s in (self.shape_a, self.shape_b, self.shape_c))


def _matmul_shape(a: Shape, b: Shape) -> Shape:
    if len(a) == 1 and len(b) == 1:
        return ()
    if len(a) == 1:
        return (b[1],)
    if len(b) == 1:
        return (a[0],)
    return (a[0], b[1])


Material = Union[TripleShare, TruncationPairShare]


def _label(batch_id: str, index: int, component: str) -> bytes:
    return f"{batch_id}/{index}/{component}".encode()


def _expanded_components(seed: bytes, batch_id: str, index: int, item: MaterialItem) -> dict[str, RingArray]:
    if item.kind is MaterialKind.TRIPLE:
        return {
            "a": expand_share(seed, _label(batch_id, index, "a"), item.shape_a),
            "b": expand_share(seed, _label(batch_id, index, "b"), item.shape_b),
            "c": expand_share(seed, _label(batch_id, index, "c"), item.shape_c),
        }
    return {
        "r": expand_share(seed, _label(batch_id, index, "r"), item.shape_a),
        "r_hi": expand_share(seed, _label(batch_id, index, "r_hi"), item.shape_a),
        "r_msb": expand_share(seed, _label(batch_id, index, "r_msb"), item.shape_a),
    }


@_wrapping()


def dealer_corrections(node_seeds: Sequence[bytes], batch_id: str, items: Sequence[MaterialItem]) -> list[list[RingArray]]:
    """Dealer side: the last node's correction arrays, per item.

    Triples yield [c_last]; truncation pairs yield [r_hi_last, r_msb_last].
    """
    if len(node_seeds) < 2:
        raise ValueError("preprocessing needs at least 2 nodes")
    out: list[list[RingArray]] = []
    for j, item in enumerate(items):
        comps = [_expanded_components(seed, batch_id, j, item) for seed in node_seeds]
        if item.kind is MaterialKind.TRIPLE:
            a = _sum([c["a"] for c in comps])
            b = _sum([c["b"] for c in comps])
            c_true = product(item.product, a, b)
            out.append([np.asarray(c_true - _sum([c["c"] for c in comps[:-1]]), dtype=np.uint64)])
        else:
            r = _sum([c["r"] for c in comps])
            r_hi, r_msb = pair_from_mask(r, item.shift)
            out.append([
                np.asarray(r_hi - _sum([c["r_hi"] for c in comps[:-1]]), dtype=np.uint64),
                np.asarray(r_msb - _sum([c["r_msb"] for c in comps[:-1]]), dtype=np.uint64),
            ])
    return out


@_wrapping()


def _sum(arrays: list[RingArray]) -> RingArray:
    total = np.zeros_like(arrays[0])
    for a in arrays:
        total = total + a
    return np.asarray(total, dtype=np.uint64)


def node_material(
    seed: bytes,
    batch_id: str,
    items: Sequence[MaterialItem],
    is_last: bool,
    corrections: Sequence[Sequence[RingArray]] | None = None,
) -> list[Material]:
    """Node side: expand this node's shares; the last node applies corrections."""
    if is_last and (corrections is None or len(corrections) != len(items)):
        raise ValueError("the last node needs one correction entry per material item")
    out: list[Material] = []
    for j, item in enumerate(items):
        comps = _expanded_components(seed, batch_id, j, item)
        if is_last:
            assert corrections is not None
            corr = corrections[j]
            if item.kind is MaterialKind.TRIPLE:
                _check_shapes(corr, [item.shape_c], j)
                comps["c"] = corr[0]
            else:
                _check_shapes(corr, [item.shape_a, item.shape_a], j)
                comps["r_hi"], comps["r_msb"] = corr[0], corr[1]
        if item.kind is MaterialKind.TRIPLE:
            out.append(TripleShare(item.product, comps["a"], comps["b"], comps["c"]))
        else:
            out.append(TruncationPairShare(item.shift, comps["r"], comps["r_hi"], comps["r_msb"]))
    return out


def _check_shapes(corr: Sequence[RingArray], shapes: list[Shape], index: int) -> None:
    if len(corr) != len(shapes) or any(c.shape != s for c, s in zip(corr, shapes)):
        raise ValueError(f"correction for material item {index} has the wrong shape")


class TripleSource(Protocol):
    """Where a node's preprocessing material comes from."""

    def material(self, node_index: int, batch_id: str, items: Sequence[MaterialItem]) -> list[Material]: ...


class InProcessDealer:
    """A dealer as plain function calls, for tests (all nodes in one process)."""

    def __init__(self, n_nodes: int) -> None:
        self.seeds = [prg.new_seed() for _ in range(n_nodes)]
        self._corrections: dict[tuple[str, tuple[MaterialItem, ...]], list[list[RingArray]]] = {}

    def material(self, node_index: int, batch_id: str, items: Sequence[MaterialItem]) -> list[Material]:
        last = node_index == len(self.seeds) - 1
        corr = None
        if last:
            key = (batch_id, tuple(items))
            corr = self._corrections.get(key)
            if corr is None:
                corr = dealer_corrections(self.seeds, batch_id, items)
                self._corrections[key] = corr
        return node_material(self.seeds[node_index], batch_id, items, last, corr)
