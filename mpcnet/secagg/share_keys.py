"""Round 1, ShareKeys (Bonawitz et al. 2017, Fig. 4/5 round 1).

1. Server -> each u in U1: :class:`ShareKeysRequest` with the adverts of
   u's closed neighbourhood N[u] & U1 (for SecAgg: all of U1).
2. Client u checks the list (its own advert unchanged, only peers of N[u],
   all keys distinct, at least t entries, and in active mode every
   signature), then draws the self-mask seed b_u (256 bits) and splits b_u
   and s_u^SK t-of-|view| with Shamir at x = the holders' ids.  For each
   peer v != u it encrypts  u || v || b_{u,v} || s^SK_{u,v}  with AES-GCM
   under HKDF(X25519(c_u^SK, c_v^PK)), AAD = (round, u, v); its own shares
   stay local.  Response: :class:`ShareKeysResponse`.
3. Server accepts a response only if it holds exactly one well-sized
   ciphertext for each peer the client was sent; the senders form U2.
   Threshold check.  It routes to each v in U2 the ciphertexts e_{u,v} from
   senders u in U2 (:func:`mpcnet.secagg.masked_input.server_request`).

The server sees only ciphertexts; a holder learns one share of each secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from mpcnet.secagg import crypto, shamir
from mpcnet.secagg._common import client_enter, server_collect
from mpcnet.secagg.advertise_keys import PeerKeys, advert_valid
from mpcnet.secagg.crypto import RandomSource, resolve
from mpcnet.secagg.encoding import message
from mpcnet.secagg.errors import (DecryptionFailed, InvalidSignatureRefused, OutsideViewRefused, ProtocolViolation,
                                  TooFewSurvivorsRefused)
from mpcnet.secagg.stage import Stage, check_transition
from mpcnet.secagg.state import ClientState, ServerState

PLAINTEXT_BYTES = 8 + 2 * shamir.SHARE_BYTES
CIPHERTEXT_BYTES = crypto.NONCE_BYTES + PLAINTEXT_BYTES + 16


@dataclass(frozen=True, slots=True)
class EncryptedShare:
    sender: int
    receiver: int
    ciphertext: bytes


@message("secagg.ShareKeysRequest")
@dataclass(frozen=True, slots=True)
class ShareKeysRequest:
    round_id: str
    recipient: int
    peers: tuple[PeerKeys, ...]  # sorted by client_id, includes the recipient


@message("secagg.ShareKeysResponse")
@dataclass(frozen=True, slots=True)
class ShareKeysResponse:
    round_id: str
    sender: int
    shares: tuple[EncryptedShare, ...]  # sorted by receiver


def server_request(state: ServerState) -> dict[int, ShareKeysRequest]:
    check_transition(state.stage, Stage.SHARE_KEYS, state.params.active, "server")
    u1 = state.after(Stage.ADVERTISE_KEYS)
    return {
        u: ShareKeysRequest(state.params.round_id, u,
                            tuple(state.adverts[v] for v in sorted(state.graph.closed(u) & u1)))
        for u in sorted(u1)
    }


def share_plaintext(sender: int, receiver: int, b_share: int, sk_share: int) -> bytes:
    return (crypto.id_bytes(sender) + crypto.id_bytes(receiver)
            + shamir.encode_share(b_share) + shamir.encode_share(sk_share))


def client_step(state: ClientState, request: ShareKeysRequest,
                rng: RandomSource | None = None) -> tuple[ClientState, ShareKeysResponse]:
    """Check the advertised keys, then Shamir-share b_u and s_u^SK to the neighbourhood."""
    client_enter(state, Stage.SHARE_KEYS, request)
    params, u = state.params, state.client_id
    ids = [p.client_id for p in request.peers]
    if ids != sorted(set(ids)):
        raise ProtocolViolation(f"client {u}: advertised key list not sorted by id or has duplicates")
    if not set(ids) <= state.graph.closed(u):
        outside = sorted(set(ids) - state.graph.closed(u))
        raise OutsideViewRefused(f"client {u}: key list names non-neighbours {outside}")
    own = {p.client_id: p for p in request.peers}.get(u)
    if own != state.own_keys:
        raise ProtocolViolation(f"client {u}: own advertised keys missing or altered")
    all_keys = [p.c_pk for p in request.peers] + [p.s_pk for p in request.peers]
    if len(set(all_keys)) != len(all_keys):
        raise ProtocolViolation(f"client {u}: advertised public keys are not all distinct")
    for peer in request.peers:
        if not advert_valid(params, peer):
            if params.active:
                raise InvalidSignatureRefused(f"client {u}: advert of client {peer.client_id} has an invalid signature")
            raise ProtocolViolation(f"client {u}: advert of client {peer.client_id} is malformed")
    if len(ids) < params.threshold:
        raise TooFewSurvivorsRefused(f"client {u}: {len(ids)} advertised keys at {Stage.SHARE_KEYS.value}, "
                                     f"threshold {params.threshold}")
    source = resolve(rng)
    b_u = source.random_bytes(crypto.SEED_BYTES)
    b_shares = shamir.split(shamir.secret_to_int(b_u), params.threshold, ids, source)
    sk_shares = shamir.split(shamir.secret_to_int(crypto.x25519_raw(state.s_sk)), params.threshold, ids, source)
    out, keys = [], {}
    # every nonce in one draw: the same bytes, in the same order, as one draw per seal
    others = [peer for peer in request.peers if peer.client_id != u]
    nonces = source.random_bytes(crypto.NONCE_BYTES * len(others))
    for i, peer in enumerate(others):
        v = peer.client_id
        key = keys[v] = crypto.share_key(state.c_sk, peer.c_pk, params.round_id)
        blob = crypto.seal(key, share_plaintext(u, v, b_shares[v], sk_shares[v]),
                           crypto.share_aad(params.round_id, u, v),
                           nonce=nonces[crypto.NONCE_BYTES * i:crypto.NONCE_BYTES * (i + 1)])
        out.append(EncryptedShare(u, v, blob))
    new = state.replace(stage=Stage.SHARE_KEYS, peers={p.client_id: p for p in request.peers}, self_seed=b_u,
                        own_b_share=b_shares[u], own_sk_share=sk_shares[u], share_keys=keys)
    return new, ShareKeysResponse(params.round_id, u, tuple(out))


def check_response(state: ServerState, cid: int, msg: ShareKeysResponse) -> str | None:
    """Why the server would drop ``cid`` for this answer (None: well-formed); the server step applies it."""
    receivers = [e.receiver for e in msg.shares]
    if receivers != sorted((state.graph.closed(cid) & state.after(Stage.ADVERTISE_KEYS)) - {cid}):
        return "shares not addressed to exactly the client's neighbours in U1"
    if any(e.sender != cid or len(e.ciphertext) != CIPHERTEXT_BYTES for e in msg.shares):
        return f"malformed share ciphertext (each must be {CIPHERTEXT_BYTES} bytes, sent by the client itself)"
    return None


def server_step(state: ServerState, responses: Mapping[int, ShareKeysResponse]) -> ServerState:
    """Collect ciphertexts into U2 (threshold-checked) and route them by receiver."""
    new, accepted = server_collect(state, Stage.SHARE_KEYS, responses,
                                   lambda cid, msg: check_response(state, cid, msg))
    u2 = new.after(Stage.SHARE_KEYS)
    inbox: dict[int, list[EncryptedShare]] = {v: [] for v in sorted(u2)}
    for u in sorted(accepted):  # one pass over the ciphertexts; each inbox in ascending sender order
        for e in accepted[u].shares:
            box = inbox.get(e.receiver)
            if box is not None:
                box.append(e)
    return new.replace(routed={v: tuple(box) for v, box in inbox.items()})


def open_shares(state: ClientState, sender: int, ciphertext: bytes) -> tuple[int, int]:
    """(b share, sk share) that ``sender`` sent this client in ``ciphertext``.

    Every failure -- tag, length, the ids inside, a non-field element -- is the opaque DecryptionFailed."""
    u, params = state.client_id, state.params
    plain = crypto.open_sealed(state.share_keys[sender], ciphertext, crypto.share_aad(params.round_id, sender, u))
    if len(plain) != 8 + 2 * shamir.SHARE_BYTES or plain[:8] != crypto.id_bytes(sender) + crypto.id_bytes(u):
        raise DecryptionFailed()
    try:
        return (shamir.decode_share(plain[8:8 + shamir.SHARE_BYTES]),
                shamir.decode_share(plain[8 + shamir.SHARE_BYTES:]))
    except ProtocolViolation:
        raise DecryptionFailed() from None
