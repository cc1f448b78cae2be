"""Round 0, AdvertiseKeys (Bonawitz et al. 2017, Fig. 4/5 round 0).

1. Server -> every registered client u: :class:`AdvertiseKeysRequest`.
2. Client u generates two X25519 key pairs, (c_u^PK, c_u^SK) for
   encrypting shares and (s_u^PK, s_u^SK) for pairwise masks; in active mode
   it signs (round, u, c_u^PK, s_u^PK) with its long-term Ed25519 key.  It
   sends :class:`AdvertiseKeysResponse` (public keys + signature).
3. Server accepts responses from registered clients whose keys are well
   formed (and, in active mode, whose signature verifies); they form U1.
   Threshold check.  Server -> each u in U1: the adverts of N[u] & U1, the
   :class:`~mpcnet.secagg.share_keys.ShareKeysRequest` built by
   :func:`mpcnet.secagg.share_keys.server_request`.

Nothing secret leaves the client in this round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from mpcnet.secagg import crypto
from mpcnet.secagg._common import server_collect
from mpcnet.secagg.crypto import KEY_BYTES, RandomSource, resolve
from mpcnet.secagg.encoding import message
from mpcnet.secagg.errors import ParamsError, ProtocolViolation
from mpcnet.secagg.params import SecAggParams
from mpcnet.secagg.stage import Stage, check_transition
from mpcnet.secagg.state import ClientState, ServerState


@dataclass(frozen=True, slots=True)
class PeerKeys:
    """One client's advertised public keys (and signature, empty in passive mode)."""

    client_id: int
    c_pk: bytes
    s_pk: bytes
    signature: bytes


@message("secagg.AdvertiseKeysRequest")
@dataclass(frozen=True, slots=True)
class AdvertiseKeysRequest:
    round_id: str
    recipient: int


@message("secagg.AdvertiseKeysResponse")
@dataclass(frozen=True, slots=True)
class AdvertiseKeysResponse:
    round_id: str
    sender: int
    keys: PeerKeys


def server_request(state: ServerState) -> dict[int, AdvertiseKeysRequest]:
    check_transition(state.stage, Stage.ADVERTISE_KEYS, state.params.active, "server")
    return {u: AdvertiseKeysRequest(state.params.round_id, u) for u in state.params.client_ids}


def advert_valid(params: SecAggParams, keys: PeerKeys) -> bool:
    """Key lengths, distinct keys, and (active mode) the Ed25519 signature."""
    if len(keys.c_pk) != KEY_BYTES or len(keys.s_pk) != KEY_BYTES or keys.c_pk == keys.s_pk:
        return False
    if not params.active:
        return keys.signature == b""
    msg = crypto.advertise_message(params.round_id, keys.client_id, keys.c_pk, keys.s_pk)
    return crypto.ed25519_verify(params.verify_key(keys.client_id), keys.signature, msg)


def client_step(params: SecAggParams, client_id: int, request: AdvertiseKeysRequest, *,
                signing_key: bytes | None = None, rng: RandomSource | None = None) -> tuple[ClientState, AdvertiseKeysResponse]:
    """Generate this round's key pairs and advertise the public halves."""
    if client_id not in params.client_ids:
        raise ParamsError(f"client {client_id} is not registered for round {params.round_id}")
    if params.active and signing_key is None:
        raise ParamsError(f"client {client_id}: active mode needs the client's Ed25519 signing key")
    if params.active and signing_key is not None and crypto.ed25519_public(signing_key) != params.verify_key(client_id):
        raise ParamsError(f"client {client_id}: signing key does not match the registered verify key")
    if request.round_id != params.round_id or request.recipient != client_id:
        raise ProtocolViolation(f"client {client_id}: advertise request for another round or client")
    source = resolve(rng)
    c_sk, s_sk = crypto.x25519_private(source), crypto.x25519_private(source)
    c_pk, s_pk = crypto.x25519_public(c_sk), crypto.x25519_public(s_sk)
    signature = b""
    if params.active and signing_key is not None:
        signature = crypto.ed25519_sign(signing_key, crypto.advertise_message(params.round_id, client_id, c_pk, s_pk))
    keys = PeerKeys(client_id, c_pk, s_pk, signature)
    state = ClientState(params=params, graph=params.graph(), client_id=client_id, stage=Stage.ADVERTISE_KEYS,
                        c_sk=c_sk, s_sk=s_sk, own_keys=keys, sign_sk=signing_key if params.active else None)
    return state, AdvertiseKeysResponse(params.round_id, client_id, keys)


def check_response(state: ServerState, cid: int, msg: AdvertiseKeysResponse) -> str | None:
    """Why the server would drop ``cid`` for this answer (None: well-formed); the server step applies it."""
    if msg.keys.client_id != cid or not advert_valid(state.params, msg.keys):
        return "invalid key advertisement"
    return None


def server_step(state: ServerState, responses: Mapping[int, AdvertiseKeysResponse]) -> ServerState:
    """Collect adverts into U1 (threshold-checked)."""
    new, accepted = server_collect(state, Stage.ADVERTISE_KEYS, responses,
                                   lambda cid, msg: check_response(state, cid, msg))
    return new.replace(adverts={cid: msg.keys for cid, msg in accepted.items()})
