"""Round 4, Unmasking (Bonawitz et al. 2017, Fig. 4/5 round 4).

1. Server -> each u that survived the previous round (U3, or U4 in active
   mode): :class:`UnmaskingRequest` with ``alive`` = U3 (whose self masks
   must go) and ``dropped`` = the u's neighbours in U2 minus U3 (whose
   pairwise masks must go), plus in active mode the consistency signatures.
2. Honest client u refuses (raises) unless all of these hold:
   * ``alive`` and ``dropped`` are disjoint -- it never reveals both the
     self-mask share and the key share of one peer
     (:class:`DoubleRevealRefused`);
   * it is itself alive, every named peer is a registered client, alive
     neighbours and every dropped peer lie in its own view V2 of the share
     senders (:class:`OutsideViewRefused`);
   * |alive| >= t and |alive & V2| >= t (:class:`TooFewSurvivorsRefused`);
   * on a sparse (SecAgg+) graph, ``alive`` is connected in the graph: else
     the server could unmask each group's sum on its own
     (:class:`DisconnectedSurvivorsRefused`);
   * active mode: ``alive`` is exactly the set it signed and at least t
     distinct members of ``alive`` signed it validly
     (:class:`ConsistencyRefused`).
   Then it decrypts the stored ciphertexts (opaque
   :class:`DecryptionFailed` on any failure) and answers with its shares of
   b_v for v in alive & V2 and of s_v^SK for v in dropped:
   :class:`UnmaskingResponse`.  The stage machine makes it answer once.
3. Server accepts responses that answer exactly what was asked (U5),
   threshold check, then reconstructs every b_u (u in U3) and every s_v^SK
   (v in U2 \\ U3 with a neighbour in U3) -- cross-checking any extra shares
   and each key against its advertised public key -- and outputs
       z = sum_{u in U3} y_u - PRG(b_u) - sum_{v dropped, u in U3 & N(v)} sgn(u, v) PRG(s_{u,v})
   = sum_{u in U3} x_u  (mod 2^k).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from mpcnet.core.ring import RingArray
from mpcnet.secagg import crypto, prg, shamir
from mpcnet.secagg._common import client_enter, expected_senders, server_collect
from mpcnet.secagg.consistency_check import check_alive_view
from mpcnet.secagg.encoding import message
from mpcnet.secagg.errors import (ConsistencyRefused, DecryptionFailed, DisconnectedSurvivorsRefused,
                                  DoubleRevealRefused, InconsistentShares, OutsideViewRefused, ProtocolViolation)
from mpcnet.secagg.stage import Stage, check_transition
from mpcnet.secagg.state import ClientState, ServerState


@dataclass(frozen=True, slots=True)
class SurvivorSignature:
    signer: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class RevealedShare:
    owner: int  # whose secret this is a share of
    share: bytes  # shamir.SHARE_BYTES big-endian field element


@message("secagg.UnmaskingRequest")
@dataclass(frozen=True, slots=True)
class UnmaskingRequest:
    round_id: str
    recipient: int
    alive: tuple[int, ...]  # ascending
    dropped: tuple[int, ...]  # ascending
    signatures: tuple[SurvivorSignature, ...]  # active mode; ascending by signer


@message("secagg.UnmaskingResponse")
@dataclass(frozen=True, slots=True)
class UnmaskingResponse:
    round_id: str
    sender: int
    self_mask_shares: tuple[RevealedShare, ...]  # for alive owners, ascending
    key_shares: tuple[RevealedShare, ...]  # for dropped owners, ascending


def _dropped_for(state: ServerState, w: int) -> list[int]:
    u2, u3 = state.after(Stage.SHARE_KEYS), state.after(Stage.MASKED_INPUT_COLLECTION)
    return sorted(v for v in (state.graph.closed(w) & u2) - u3 if state.graph.neighbours(v) & u3)


def server_request(state: ServerState) -> dict[int, UnmaskingRequest]:
    check_transition(state.stage, Stage.UNMASKING, state.params.active, "server")
    alive = tuple(sorted(state.after(Stage.MASKED_INPUT_COLLECTION)))
    sigs = tuple(SurvivorSignature(s, state.signatures[s]) for s in sorted(state.signatures))
    return {w: UnmaskingRequest(state.params.round_id, w, alive, tuple(_dropped_for(state, w)), sigs)
            for w in sorted(expected_senders(state, Stage.UNMASKING))}


def client_step(state: ClientState, request: UnmaskingRequest) -> tuple[ClientState, UnmaskingResponse]:
    """Apply the honest-client rules, then reveal the requested shares."""
    client_enter(state, Stage.UNMASKING, request)
    u, params = state.client_id, state.params
    if list(request.dropped) != sorted(set(request.dropped)):
        raise ProtocolViolation(f"client {u}: dropped list not sorted or has duplicates")
    both = sorted(set(request.alive) & set(request.dropped))
    if both:
        raise DoubleRevealRefused(f"client {u}: asked for the self-mask and key shares of clients {both}")
    dropped = frozenset(request.dropped)
    if u in dropped:
        raise OutsideViewRefused(f"client {u}: server lists this client as dropped")
    outside = sorted(dropped - state.share_senders)
    if outside:
        raise OutsideViewRefused(f"client {u}: dropped list names clients {outside} outside this client's view")
    alive = check_alive_view(state, request.alive, Stage.UNMASKING)
    if not state.graph.complete:
        groups = state.graph.groups(alive)
        if len(groups) > 1:
            raise DisconnectedSurvivorsRefused(f"client {u}: the survivor set splits into {len(groups)} groups no "
                                               "pairwise mask joins; revealing would unmask each group's sum")
    if params.active:
        if alive != state.signed_survivors:
            raise ConsistencyRefused(f"client {u}: survivor set differs from the one it signed")
        msg = crypto.consistency_message(params.round_id, alive)
        signers = {s.signer for s in request.signatures
                   if s.signer in alive and crypto.ed25519_verify(params.verify_key(s.signer), s.signature, msg)}
        if len(signers) < params.threshold:
            raise ConsistencyRefused(f"client {u}: {len(signers)} valid consistency signatures, "
                                     f"threshold {params.threshold}")
    assert state.own_b_share is not None and state.own_sk_share is not None
    b_out, sk_out = [], []
    for v in sorted(alive & state.share_senders):
        b_share = state.own_b_share if v == u else state.received_shares[v][0]
        b_out.append(RevealedShare(v, shamir.encode_share(b_share)))
    for v in sorted(dropped):
        sk_out.append(RevealedShare(v, shamir.encode_share(state.received_shares[v][1])))
    new = state.replace(stage=Stage.UNMASKING)
    return new, UnmaskingResponse(params.round_id, u, tuple(b_out), tuple(sk_out))


def check_response(state: ServerState, cid: int, msg: UnmaskingResponse) -> str | None:
    """Why the server would drop ``cid`` for this answer (None: well-formed); the server step applies it."""
    u3 = state.after(Stage.MASKED_INPUT_COLLECTION)
    if [s.owner for s in msg.self_mask_shares] != sorted(u3 & state.graph.closed(cid)):
        return "self-mask shares do not match the request"
    if [s.owner for s in msg.key_shares] != _dropped_for(state, cid):
        return "key shares do not match the request"
    try:
        for s in msg.self_mask_shares + msg.key_shares:
            shamir.decode_share(s.share)
    except ProtocolViolation:
        return "malformed share"
    return None


def server_step(state: ServerState, responses: Mapping[int, UnmaskingResponse]) -> ServerState:
    """Collect shares into U5 (threshold-checked), reconstruct, and store the sum in ``result``."""
    params, graph = state.params, state.graph
    u2, u3 = state.after(Stage.SHARE_KEYS), state.after(Stage.MASKED_INPUT_COLLECTION)
    new, accepted = server_collect(state, Stage.UNMASKING, responses,
                                   lambda cid, msg: check_response(state, cid, msg))
    b_shares: dict[int, dict[int, int]] = {u: {} for u in u3}
    sk_shares: dict[int, dict[int, int]] = {v: {} for v in u2 - u3}
    for w, msg in accepted.items():
        for s in msg.self_mask_shares:
            b_shares[s.owner][w] = shamir.decode_share(s.share)
        for s in msg.key_shares:
            sk_shares[s.owner][w] = shamir.decode_share(s.share)
    bits, length, t = params.bits, params.vector_length, params.threshold
    acc = prg.MaskAccumulator(length, bits)  # in place: n * |dropped| masks without a temporary each
    for u in sorted(u3):
        acc.add_vector(state.masked[u])
        b_u = shamir.int_to_secret(shamir.reconstruct(b_shares[u], t))
        acc.add_mask(b_u, crypto.LABEL_SELF_MASK, -1)
    for v in sorted(u2 - u3):
        partners = sorted(graph.neighbours(v) & u3)
        if not partners:
            continue
        sk_v = shamir.int_to_secret(shamir.reconstruct(sk_shares[v], t))
        if crypto.x25519_public(sk_v) != state.adverts[v].s_pk:
            raise InconsistentShares(f"reconstructed masking key of client {v} does not match its advert")
        sk_key = crypto.x25519_key(sk_v)
        for u in partners:
            seed = crypto.pair_seed(sk_key, state.adverts[u].s_pk, params.round_id, v, u)
            # u added sgn(u, v) PRG(s_uv) and v's opposite term never came: remove u's term
            acc.add_mask(seed, crypto.LABEL_PAIR_MASK, -prg.pair_sign(u, v))
    total = acc.value()
    return new.replace(result=total)


def result(state: ServerState) -> RingArray:
    """The aggregate after a successful :func:`server_step`."""
    if state.stage is not Stage.UNMASKING or state.result is None:
        raise ProtocolViolation(f"no aggregate: the server is at {state.stage.value}")
    return state.result.copy()
