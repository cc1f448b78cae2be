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
recommend t > n/2 (passive) and t > 2n/3 (active) for the complete graph.

Active mode (a coordinator that may lie) is refused where it would not hold:
on the SecAgg+ graph, whose consistency signatures are a neighbourhood's
only (a server could show different groups different survivor sets), and
with t <= n/2 (two disjoint groups of t could each sign a different survivor
set).  With c colluding clients its bound is c < 2t - n.  What makes an
active round safe must not come from the coordinator alone:
:func:`check_trusted` is what a client checks of the parameters it is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from mpcnet.secagg.crypto import MAX_CLIENT_ID, SEED_BYTES, KEY_BYTES, RandomSource, resolve
from mpcnet.secagg.errors import ParamsError
from mpcnet.secagg.graph import GraphKind, NeighbourGraph, complete_graph, default_degree, random_regular_graph
from mpcnet.secagg.prg import MAX_BITS

ROUND_ID_RE = re.compile(r"^[A-Za-z0-9_.:/\-]{1,128}$")
# A masked vector travels as raw words (4 bytes each for bits <= 32, 8 above) inside gRPC's 4 MiB message
# limit: 500,000 elements are 2 MB (bits <= 32) or 4 MB (wider rings are refused above 500,000 / 2 + margin).
MAX_VECTOR_LENGTH = 500_000
MAX_WIDE_VECTOR_LENGTH = 400_000


def max_vector_length(bits: int) -> int:
    """The longest vector one round takes at ``bits``-bit masks (0 = 32)."""
    return MAX_VECTOR_LENGTH if (bits or 32) <= 32 else MAX_WIDE_VECTOR_LENGTH


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
            if self.graph_kind is not GraphKind.COMPLETE:
                raise ParamsError("active mode needs the complete graph: on SecAgg+'s the consistency signatures "
                                  "are only a neighbourhood's, and a server could show each group its own survivors")
            if 2 * self.threshold <= n:
                raise ParamsError(f"active mode needs a threshold above n/2 ({n // 2 + 1} or more of {n}; Bonawitz "
                                  f"et al. advise above 2n/3), got {self.threshold}")
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


def check_trusted(params: SecAggParams, client_id: int, signing_key: bytes | None,
                  verify_keys: Mapping[int, bytes] | None) -> None:
    """What a client checks of the round parameters the coordinator sent, before it advertises keys.

    In active mode the coordinator is not trusted, yet it delivers the parameters: a client that took the
    verify keys from it would encrypt its shares to keys the coordinator chose, and a client that accepted a
    passive round would trust it after all.  So a client holding a signing key joins active rounds only, and
    the round's clients and verify keys must be exactly the ones its operator gave it (``verify_keys``, the
    PKI).  (The threshold is bounded by the parameters' own checks: above n/2 in active mode.)"""
    from mpcnet.secagg.errors import UntrustedParamsRefused
    if signing_key is not None and not params.active:
        raise UntrustedParamsRefused(f"client {client_id}: it holds a signing key, so it takes part in active "
                                     f"rounds only, and round {params.round_id} is passive (a coordinator that "
                                     "may lie could downgrade the round)")
    if not params.active:
        return
    if verify_keys is None:
        raise UntrustedParamsRefused(f"client {client_id}: round {params.round_id} is active, and its verify keys "
                                     "must come from the operator, not from the coordinator (--verify-keys-file)")
    sent = dict(zip(params.client_ids, params.verify_keys))
    if sent != dict(verify_keys):
        differ = sorted(c for c in set(sent) | set(verify_keys) if sent.get(c) != verify_keys.get(c))
        raise UntrustedParamsRefused(f"client {client_id}: round {params.round_id}'s clients or verify keys differ "
                                     f"from the ones its operator gave it (clients {differ[:10]})")
