"""Per-party state carried between rounds (frozen; every step returns a new one).

Secret fields (private keys, the self-mask seed, own shares) are excluded
from ``repr`` so that a logged state never shows them.  Mappings inside a
state are never mutated after construction; steps build new ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from mpcnet.core.ring import RingArray
from mpcnet.secagg.graph import NeighbourGraph
from mpcnet.secagg.params import SecAggParams
from mpcnet.secagg.stage import Stage

if TYPE_CHECKING:
    from mpcnet.secagg.advertise_keys import PeerKeys
    from mpcnet.secagg.share_keys import EncryptedShare


@dataclass(frozen=True, slots=True)
class ClientState:
    params: SecAggParams
    graph: NeighbourGraph
    client_id: int
    stage: Stage
    c_sk: X25519PrivateKey = field(repr=False)  # X25519 key for share encryption
    s_sk: X25519PrivateKey = field(repr=False)  # X25519 key for pairwise masks (Shamir-shared)
    own_keys: "PeerKeys" = field()  # this client's advert
    sign_sk: bytes | None = field(default=None, repr=False)  # Ed25519, active mode
    peers: Mapping[int, "PeerKeys"] = field(default_factory=dict)  # view of U1 in N[u], incl. self
    self_seed: bytes | None = field(default=None, repr=False)  # b_u
    own_b_share: int | None = field(default=None, repr=False)
    own_sk_share: int | None = field(default=None, repr=False)
    share_keys: Mapping[int, bytes] = field(default_factory=dict, repr=False)  # peer -> AES-GCM key
    # sender -> (b share, sk share) it sent this client, opened and authenticated once, at masked input
    received_shares: Mapping[int, tuple[int, int]] = field(default_factory=dict, repr=False)
    share_senders: frozenset[int] = frozenset()  # view of U2 in N[u], incl. self
    signed_survivors: frozenset[int] | None = None  # U3 this client signed (active mode)

    def replace(self, **changes: object) -> "ClientState":
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ServerState:
    params: SecAggParams
    graph: NeighbourGraph
    stage: Stage = Stage.SETUP
    survivors: Mapping[Stage, frozenset[int]] = field(default_factory=dict)
    adverts: Mapping[int, "PeerKeys"] = field(default_factory=dict)
    routed: Mapping[int, tuple["EncryptedShare", ...]] = field(default_factory=dict)  # receiver -> shares
    masked: Mapping[int, RingArray] = field(default_factory=dict, repr=False)
    signatures: Mapping[int, bytes] = field(default_factory=dict)
    rejected: Mapping[int, str] = field(default_factory=dict)  # client -> reason (no secrets)
    result: RingArray | None = field(default=None, repr=False)

    def replace(self, **changes: object) -> "ServerState":
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def after(self, stage: Stage) -> frozenset[int]:
        """Survivors of a completed round (U1 = after ADVERTISE_KEYS, ...)."""
        return self.survivors[stage]


def new_server(params: SecAggParams) -> ServerState:
    return ServerState(params=params, graph=params.graph())
