"""Round 2, MaskedInputCollection (Bonawitz et al. 2017, Fig. 4/5 round 2).

1. Server -> each v in U2: :class:`MaskedInputRequest` carrying the
   ciphertexts e_{u,v} from the senders u in U2 & N(v).
2. Client u checks that every sender is a neighbour it has keys for and
   that every ciphertext decrypts (opaque :class:`DecryptionFailed`
   otherwise: it sends nothing, so a bad share costs the round this client,
   not a wrong sum); its view of U2 is V2 = senders + {u}, |V2| >= t.  It stores the ciphertexts
   (decrypted only in Unmasking) and sends
       y_u = x_u + PRG(b_u) + sum_{v in V2, v != u} sgn(u, v) PRG(s_{u,v})   (mod 2^k)
   with s_{u,v} = HKDF(X25519(s_u^SK, s_v^PK)), sgn = +1 if u < v else -1:
   :class:`MaskedInputResponse`.
3. Server accepts vectors of the agreed length with entries < 2^k; the
   senders form U3.  Threshold check.

For u, v both in U3 the pairwise masks cancel in the sum; what is left is
removed in Unmasking.  y_u alone is uniformly random to the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from mpcnet.core.ring import RingArray
from mpcnet.secagg import crypto, prg
from mpcnet.secagg._common import client_enter, server_collect
from mpcnet.secagg.encoding import message
from mpcnet.secagg.errors import OutsideViewRefused, ParamsError, ProtocolViolation, TooFewSurvivorsRefused
from mpcnet.secagg.params import SecAggParams
from mpcnet.secagg.share_keys import EncryptedShare, open_shares
from mpcnet.secagg.stage import Stage, check_transition
from mpcnet.secagg.state import ClientState, ServerState


@message("secagg.MaskedInputRequest")
@dataclass(frozen=True, slots=True)
class MaskedInputRequest:
    round_id: str
    recipient: int
    shares: tuple[EncryptedShare, ...]  # sorted by sender


@message("secagg.MaskedInputResponse")
@dataclass(frozen=True, slots=True, eq=False)
class MaskedInputResponse:
    round_id: str
    sender: int
    masked: RingArray


def server_request(state: ServerState) -> dict[int, MaskedInputRequest]:
    check_transition(state.stage, Stage.MASKED_INPUT_COLLECTION, state.params.active, "server")
    return {v: MaskedInputRequest(state.params.round_id, v, state.routed[v])
            for v in sorted(state.after(Stage.SHARE_KEYS))}


def vector_ok(params: SecAggParams, vec: object) -> bool:
    """A vector of the round's length with entries < 2^k: uint64, or uint32 (a decoded 4-byte-word vector)."""
    if not isinstance(vec, np.ndarray) or vec.shape != (params.vector_length,):
        return False
    if vec.dtype == np.uint32:
        return params.bits >= 32 or int(vec.max(initial=0)) < (1 << params.bits)
    return vec.dtype == np.uint64 and (params.bits == 64 or int(vec.max(initial=0)) < (1 << params.bits))


def client_step(state: ClientState, request: MaskedInputRequest,
                value: RingArray) -> tuple[ClientState, MaskedInputResponse]:
    """Mask ``value`` (uint64 vector of entries < 2^k) with the self mask and the pairwise masks."""
    client_enter(state, Stage.MASKED_INPUT_COLLECTION, request)
    params, u = state.params, state.client_id
    if not vector_ok(params, value):
        raise ParamsError(f"client {u}: input must be a uint64 vector of length {params.vector_length} "
                          f"with entries < 2^{params.bits}")
    senders = [e.sender for e in request.shares]
    if senders != sorted(set(senders)) or any(e.receiver != u for e in request.shares):
        raise ProtocolViolation(f"client {u}: routed shares not sorted, duplicated or misaddressed")
    outside = sorted(set(senders) - (set(state.peers) - {u}))
    if outside:
        raise OutsideViewRefused(f"client {u}: routed shares from clients {outside} outside its key view")
    # open (and so authenticate) every routed share now, before any mask leaves this client; unmasking then
    # reveals these opened shares, so each ciphertext is decrypted once
    received = {e.sender: open_shares(state, e.sender, e.ciphertext) for e in request.shares}
    view = frozenset(senders) | {u}
    if len(view) < params.threshold:
        raise TooFewSurvivorsRefused(f"client {u}: {len(view)} share senders at "
                                     f"{Stage.MASKED_INPUT_COLLECTION.value}, threshold {params.threshold}")
    assert state.self_seed is not None
    bits, length = params.bits, params.vector_length
    acc = prg.MaskAccumulator(length, bits)
    acc.add_vector(value)
    acc.add_mask(state.self_seed, crypto.LABEL_SELF_MASK, +1)
    for v in sorted(view - {u}):
        seed = crypto.pair_seed(state.s_sk, state.peers[v].s_pk, params.round_id, u, v)
        acc.add_mask(seed, crypto.LABEL_PAIR_MASK, prg.pair_sign(u, v))
    y = acc.value()
    new = state.replace(stage=Stage.MASKED_INPUT_COLLECTION, share_senders=view,
                        received_shares=received)
    return new, MaskedInputResponse(params.round_id, u, y)


def check_response(state: ServerState, cid: int, msg: MaskedInputResponse) -> str | None:
    """Why the server would drop ``cid`` for this answer (None: well-formed); the server step applies it."""
    params, vec = state.params, msg.masked
    if not isinstance(vec, np.ndarray) or vec.ndim != 1 or vec.shape[0] != params.vector_length:
        got = vec.shape if isinstance(vec, np.ndarray) else type(vec).__name__
        return f"masked vector of shape {got}, the round's vectors have {params.vector_length} elements"
    if not vector_ok(params, vec):
        return f"masked vector has entries outside Z_(2^{params.bits}) (the round's modulus)"
    return None


def server_step(state: ServerState, responses: Mapping[int, MaskedInputResponse]) -> ServerState:
    """Collect masked vectors into U3 (threshold-checked)."""
    new, accepted = server_collect(state, Stage.MASKED_INPUT_COLLECTION, responses,
                                   lambda cid, msg: check_response(state, cid, msg))
    return new.replace(masked={cid: msg.masked for cid, msg in accepted.items()})
