"""Beaver-triple multiplication on additive shares (semi-honest, trusted dealer).

Protocol for z = x * y (elementwise, with numpy broadcasting) or z = x @ y
(matrix/dot), given a triple ([a], [b], [c]) with c = a * b (resp. a @ b)
from the dealer:

1. each node i computes its masked shares d_i = x_i - a_i and e_i = y_i - b_i;
2. the nodes open d = x - a and e = y - b together, in one batched exchange
   per multiplication layer (d and e are uniformly random because a and b are
   uniform and used once, so opening them reveals nothing about x or y);
3. each node computes z_i = c_i + d * b_i + a_i * e (``@`` for matrices);
4. exactly one node (index 0) adds the public term d * e.

Summing step 3-4 over i: c + d*b + a*e + d*e = (d + a)(e + b) = x*y.
Security assumption: the dealer is trusted and never reuses a triple; nodes
are semi-honest and non-colluding (any N-1 of them learn nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from mpcnet.core.ring import RingArray, require_ring
from mpcnet.core.ring import wrapping as _wrapping


class ProductKind(str, Enum):
    ELEMENTWISE = "elementwise"
    MATMUL = "matmul"


@dataclass(frozen=True, slots=True)
class TripleShare:
    """One node's shares of a Beaver triple (a, b, c)."""

    kind: ProductKind
    a: RingArray
    b: RingArray
    c: RingArray


@_wrapping()


def product(kind: ProductKind, x: RingArray, y: RingArray) -> RingArray:
    """The product the triple encodes: elementwise (broadcasting) or matmul."""
    if kind is ProductKind.ELEMENTWISE:
        return np.asarray(np.multiply(x, y), dtype=np.uint64)
    return np.asarray(np.matmul(x, y), dtype=np.uint64)


@_wrapping()


def masked_operands(x_share: RingArray, y_share: RingArray, triple: TripleShare) -> tuple[RingArray, RingArray]:
    """Step 1: this node's shares of d = x - a and e = y - b."""
    require_ring(x_share, "x share")
    require_ring(y_share, "y share")
    if x_share.shape != triple.a.shape or y_share.shape != triple.b.shape:
        raise ValueError(
            f"triple shapes {triple.a.shape}, {triple.b.shape} do not match operands "
            f"{x_share.shape}, {y_share.shape}"
        )
    return x_share - triple.a, y_share - triple.b


@_wrapping()


def combine(d: RingArray, e: RingArray, triple: TripleShare, party_index: int) -> RingArray:
    """Steps 3-4: this node's share of the product from the opened d and e."""
    z = triple.c + product(triple.kind, d, triple.b) + product(triple.kind, triple.a, e)
    if party_index == 0:
        z = z + product(triple.kind, d, e)
    return np.asarray(z, dtype=np.uint64)
