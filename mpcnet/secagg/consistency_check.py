"""Round 3, ConsistencyCheck -- active mode only (Bonawitz et al. 2017, Fig. 5 round 3).

Defends against a server that tells different clients different survivor
sets (so as to collect both shares of one client from different holders).

1. Server -> each u in U3: :class:`ConsistencyCheckRequest` with U3.
2. Client u checks U3 against its own view (u in U3; U3 & N[u] within the
   share senders it saw; |U3| >= t and |U3 & N[u]| >= t), then signs
   (round, U3) with its Ed25519 key: :class:`ConsistencyCheckResponse`.  It
   remembers the set it signed.
3. Server accepts valid signatures on U3; the signers form U4.  Threshold
   check.  The signatures are forwarded in the Unmasking request, where each
   client requires at least t valid ones, on the very set it signed, before
   revealing any share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from mpcnet.secagg import crypto
from mpcnet.secagg._common import client_enter, server_collect
from mpcnet.secagg.encoding import message
from mpcnet.secagg.errors import OutsideViewRefused, ParamsError, ProtocolViolation, TooFewSurvivorsRefused
from mpcnet.secagg.stage import Stage, check_transition
from mpcnet.secagg.state import ClientState, ServerState


@message("secagg.ConsistencyCheckRequest")
@dataclass(frozen=True, slots=True)
class ConsistencyCheckRequest:
    round_id: str
    recipient: int
    survivors: tuple[int, ...]  # U3, ascending


@message("secagg.ConsistencyCheckResponse")
@dataclass(frozen=True, slots=True)
class ConsistencyCheckResponse:
    round_id: str
    sender: int
    signature: bytes


def server_request(state: ServerState) -> dict[int, ConsistencyCheckRequest]:
    check_transition(state.stage, Stage.CONSISTENCY_CHECK, state.params.active, "server")
    u3 = state.after(Stage.MASKED_INPUT_COLLECTION)
    return {u: ConsistencyCheckRequest(state.params.round_id, u, tuple(sorted(u3))) for u in sorted(u3)}


def check_alive_view(state: ClientState, alive: tuple[int, ...], stage: Stage) -> frozenset[int]:
    """The client's checks of a claimed survivor set U3; returns it as a set."""
    u, t = state.client_id, state.params.threshold
    if list(alive) != sorted(set(alive)):
        raise ProtocolViolation(f"client {u}: survivor list at {stage.value} not sorted or has duplicates")
    claimed = frozenset(alive)
    if u not in claimed:
        raise OutsideViewRefused(f"client {u}: survivor set at {stage.value} omits this client, "
                                 "which sent its masked input")
    unknown = sorted(claimed - frozenset(state.params.client_ids))
    unseen = sorted((claimed & state.graph.closed(u)) - state.share_senders)
    if unknown or unseen:
        raise OutsideViewRefused(f"client {u}: survivor set at {stage.value} names clients {unknown + unseen} "
                                 "outside this client's view")
    local = len(claimed & state.share_senders)
    if len(claimed) < t or local < t:
        raise TooFewSurvivorsRefused(f"client {u}: {min(len(claimed), local)} survivors reported at "
                                     f"{stage.value}, threshold {t}")
    return claimed


def client_step(state: ClientState, request: ConsistencyCheckRequest) -> tuple[ClientState, ConsistencyCheckResponse]:
    client_enter(state, Stage.CONSISTENCY_CHECK, request)
    if state.sign_sk is None:
        raise ParamsError(f"client {state.client_id}: consistency check needs a signing key")
    claimed = check_alive_view(state, request.survivors, Stage.CONSISTENCY_CHECK)
    sig = crypto.ed25519_sign(state.sign_sk, crypto.consistency_message(state.params.round_id, claimed))
    new = state.replace(stage=Stage.CONSISTENCY_CHECK, signed_survivors=claimed)
    return new, ConsistencyCheckResponse(state.params.round_id, state.client_id, sig)


def check_response(state: ServerState, cid: int, msg: ConsistencyCheckResponse) -> str | None:
    """Why the server would drop ``cid`` for this answer (None: well-formed); the server step applies it."""
    msg_bytes = crypto.consistency_message(state.params.round_id, state.after(Stage.MASKED_INPUT_COLLECTION))
    ok = crypto.ed25519_verify(state.params.verify_key(cid), msg.signature, msg_bytes)
    return None if ok else "invalid consistency signature"


def server_step(state: ServerState, responses: Mapping[int, ConsistencyCheckResponse]) -> ServerState:
    """Collect signatures on U3 into U4 (threshold-checked)."""
    new, accepted = server_collect(state, Stage.CONSISTENCY_CHECK, responses,
                                   lambda cid, msg: check_response(state, cid, msg))
    return new.replace(signatures={cid: msg.signature for cid, msg in accepted.items()})
