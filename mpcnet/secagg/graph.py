"""Who shares keys and masks with whom: the complete graph or a random k-regular graph.

* SecAgg (Bonawitz et al.): the complete graph -- every client is a
  neighbour of every other.
* SecAgg+ (Bell et al.): a random k-regular graph, built as in the paper
  from a Harary graph H(k, n) whose vertex labels are randomly permuted:

  1. the server announces a public 32-byte ``seed``;
  2. every party derives the same permutation pi of the sorted client ids
     by a Fisher-Yates shuffle driven by AES-256-CTR under
     (seed, :data:`~mpcnet.secagg.crypto.LABEL_GRAPH`);
  3. position i is joined to positions i +- 1, ..., i +- floor(k/2)
     (mod n), and for odd k (then n is even) also to i + n/2.

  The result is exactly k-regular for every n > k with n*k even.

Both are one type, :class:`NeighbourGraph`, so the rounds have one code
path: a client shares its secrets with, and masks against, its *closed*
neighbourhood N[u] = N(u) + {u} (for the complete graph: everyone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from types import MappingProxyType
from typing import Mapping, Sequence

from mpcnet.secagg.crypto import LABEL_GRAPH, SEED_BYTES, SeededRandom, randbelow


class GraphKind(str, Enum):
    COMPLETE = "complete"  # SecAgg
    REGULAR = "regular"  # SecAgg+


@dataclass(frozen=True, slots=True)
class NeighbourGraph:
    ids: tuple[int, ...]
    adjacency: Mapping[int, frozenset[int]]  # open neighbourhoods N(u); never mutated

    @property
    def complete(self) -> bool:
        return all(len(n) == len(self.ids) - 1 for n in self.adjacency.values())

    def neighbours(self, client: int) -> frozenset[int]:
        return self.adjacency[client]

    def closed(self, client: int) -> frozenset[int]:
        return self.adjacency[client] | {client}

    @property
    def degree(self) -> int:
        return min(len(n) for n in self.adjacency.values())

    def groups(self, members: frozenset[int]) -> list[frozenset[int]]:
        """The connected components of the graph restricted to ``members``, largest first.  Unmasking a
        survivor set that splits into several of them would give each one's sum: no pairwise mask joins them."""
        # every client of a round checks the same survivor set: clients simulated in one process share the graph
        # (see _regular), so each set is searched once per process (about 6 ms at n = 1000)
        key = (id(self), members)
        hit = _GROUPS.get(key)
        if hit is not None and hit[0] is self:
            return list(hit[1])
        found = self._groups(members)
        if len(_GROUPS) >= 8:
            _GROUPS.pop(next(iter(_GROUPS)))
        _GROUPS[key] = (self, tuple(found))
        return found

    def _groups(self, members: frozenset[int]) -> list[frozenset[int]]:
        left = set(members)
        found = []
        while left:
            start = left.pop()
            group, frontier = {start}, [start]
            while frontier:
                reached: list[int] = []
                for u in frontier:
                    new = self.adjacency[u] & left
                    if new:
                        left -= new
                        group |= new
                        reached.extend(new)
                frontier = reached
            found.append(frozenset(group))
        return sorted(found, key=lambda g: (-len(g), min(g)))


_GROUPS: dict[tuple[int, frozenset[int]], tuple[NeighbourGraph, tuple[frozenset[int], ...]]] = {}


def default_degree(n: int) -> int:
    """2 * ceil(log2 n), capped at n - 1, lowered by one if n*k would be odd."""
    if n < 2:
        raise ValueError(f"a graph needs at least 2 clients, got {n}")
    k = min(2 * math.ceil(math.log2(n)), n - 1)
    if (n * k) % 2:
        k -= 1
    return max(k, 1)


def complete_graph(ids: Sequence[int]) -> NeighbourGraph:
    everyone = frozenset(ids)
    return NeighbourGraph(tuple(sorted(ids)), {u: everyone - {u} for u in sorted(ids)})


def random_regular_graph(ids: Sequence[int], degree: int, seed: bytes) -> NeighbourGraph:
    """The permuted Harary graph H(degree, n) described in the module docstring."""
    order = tuple(sorted(ids))
    n = len(order)
    if len(seed) != SEED_BYTES:
        raise ValueError(f"graph seed must be {SEED_BYTES} bytes, got {len(seed)}")
    if not 1 <= degree <= n - 1:
        raise ValueError(f"degree must be in [1, {n - 1}] for {n} clients, got {degree}")
    if (n * degree) % 2:
        raise ValueError(f"no {degree}-regular graph on {n} vertices (n*k must be even)")
    return _regular(order, degree, bytes(seed))


# The graph is a pure function of public values (ids, degree, seed), and a NeighbourGraph is immutable, so
# parties in one process (the simulated clients of a round, the server) may share one; bounded: O(n k) each.
@lru_cache(maxsize=16)
def _regular(order: tuple[int, ...], degree: int, seed: bytes) -> NeighbourGraph:
    n = len(order)
    rng = SeededRandom(seed, LABEL_GRAPH)
    perm = list(order)
    for i in range(n - 1, 0, -1):
        j = randbelow(rng, i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    adj: dict[int, set[int]] = {u: set() for u in order}
    offsets = list(range(1, degree // 2 + 1)) + ([n // 2] if degree % 2 else [])
    for i in range(n):
        for off in offsets:
            a, b = perm[i], perm[(i + off) % n]
            adj[a].add(b)
            adj[b].add(a)
    return NeighbourGraph(order, MappingProxyType({u: frozenset(adj[u]) for u in order}))
