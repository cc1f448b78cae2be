"""Public parameters of one secure-aggregation round.

Everything here is public and identical at the server and every client:
the round id (bound into every label, AAD and signature), the registered
client ids (1 .. 2^31-1; they double as Shamir x-coordinates), the Shamir
threshold t, the vector length, the mask ring Z_(2^bits), the graph (kind,
degree and the 32-byte public seed the server announces) and, in active
mode, each client's Ed25519 verification key (a PKI assumed by Bonawitz et
al.'s active-security variant).

The threshold counts share holders inside a client's closed neighbourhood
N[u]: for the complete graph that is all n clients (2 <= t <= n); for
SecAgg+ it is the k + 1 clients of N[u] (2 <= t <= k + 1).  Bonawitz et al.
recommend t > n/2 (passive) and t > 2n/3 (active) for the complete graph;
that policy is the caller's, it is not enforced here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mpcnet.secagg.crypto import MAX_CLIENT_ID, SEED_BYTES, KEY_BYTES, RandomSource, resolve
from mpcnet.secagg.errors import ParamsError
from mpcnet.secagg.graph import GraphKind, NeighbourGraph, complete_graph, default_degree, random_regular_graph
from mpcnet.secagg.prg import MAX_BITS

ROUND_ID_RE = re.compile(r"^[A-Za-z0-9_.:/\-]{1,128}$")


@dataclass(frozen=True, slots=True)
class SecAggParams:
    round_id: str
    client_ids: tuple[int, ...]
    threshold: int
    vector_length: int
    bits: int = 32
    graph_kind: GraphKind = GraphKind.COMPLETE
    degree: int = 0  # SecAgg+ only; 0 = default_degree(n)
    graph_seed: bytes = bytes(SEED_BYTES)
    active: bool = False
    verify_keys: tuple[bytes, ...] = ()  # active mode: Ed25519 public keys, aligned with client_ids

    def __post_init__(self) -> None:
        if not ROUND_ID_RE.match(self.round_id):
            raise ParamsError("round_id must be 1-128 characters of [A-Za-z0-9_.:/-]")
        ids = self.client_ids
        if len(ids) < 2 or len(set(ids)) != len(ids) or list(ids) != sorted(ids):
            raise ParamsError("client_ids must be at least 2 distinct ids in increasing order")
        if any(not 1 <= i <= MAX_CLIENT_ID for i in ids):
            raise ParamsError(f"client ids must be in [1, {MAX_CLIENT_ID}]")
        if not 1 <= self.bits <= MAX_BITS:
            raise ParamsError(f"bits must be in [1, {MAX_BITS}], got {self.bits}")
        if self.vector_length < 1:
            raise ParamsError(f"vector_length must be >= 1, got {self.vector_length}")
        if len(self.graph_seed) != SEED_BYTES:
            raise ParamsError(f"graph_seed must be {SEED_BYTES} bytes, got {len(self.graph_seed)}")
        n = len(ids)
        if self.graph_kind is GraphKind.REGULAR:
            k = self.effective_degree
            if not 1 <= k <= n - 1 or (n * k) % 2:
                raise ParamsError(f"degree {k} impossible for {n} clients (need 1 <= k <= n-1, n*k even)")
            if k == 1 and n > 2:  # a perfect matching: its pairs share no mask, so every round would abort
                raise ParamsError(f"degree 1 on {n} clients splits them into pairs no mask joins (each pair's sum "
                                  "would be unmasked on its own): use degree 2 or more")
            holders = k + 1
        else:
            if self.degree:
                raise ParamsError("degree applies to the regular (SecAgg+) graph only")
            holders = n
        if not 2 <= self.threshold <= holders:
            raise ParamsError(f"threshold must be in [2, {holders}] (share holders per client), got {self.threshold}")
        if self.active:
            if len(self.verify_keys) != n or any(len(k) != KEY_BYTES for k in self.verify_keys):
                raise ParamsError(f"active mode needs one {KEY_BYTES}-byte Ed25519 verify key per client")
        elif self.verify_keys:
            raise ParamsError("verify_keys are for active mode only")

    @property
    def effective_degree(self) -> int:
        if self.graph_kind is GraphKind.COMPLETE:
            return len(self.client_ids) - 1
        return self.degree or default_degree(len(self.client_ids))

    def graph(self) -> NeighbourGraph:
        if self.graph_kind is GraphKind.COMPLETE:
            return complete_graph(self.client_ids)
        return random_regular_graph(self.client_ids, self.effective_degree, self.graph_seed)

    def verify_key(self, client_id: int) -> bytes:
        return self.verify_keys[self.client_ids.index(client_id)]

    @staticmethod
    def fresh_graph_seed(rng: RandomSource | None = None) -> bytes:
        """The public randomness the server announces for a SecAgg+ graph."""
        return resolve(rng).random_bytes(SEED_BYTES)
