"""In-process driver: all clients and the server of one round as function calls.

``run_round(inputs, params, drops={stage: ids}, seed=...)`` runs every round
in order.  A client listed under ``drops[stage]`` sends no response at that
stage or any later one (it *drops before answering* that stage): e.g.
``{Stage.MASKED_INPUT_COLLECTION: {2}}`` is "client 2 dropped after
ShareKeys", ``{Stage.UNMASKING: {2}}`` "after MaskedInputCollection".

With ``seed`` (>= 16 bytes) every party's randomness is a
:class:`~mpcnet.secagg.crypto.SeededRandom` child stream (``party/<id>``,
``server``), so the whole transcript is reproducible; without it, OS entropy.
If ``transcript`` is a list, every message is appended to it, in delivery
order, as a :class:`TranscriptEntry` holding its canonical bytes -- also when
the round aborts (the exception propagates after the partial transcript).

Returns the aggregate sum (mod 2^k) of the inputs of the clients in U3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, TypeVar

from mpcnet.core.ring import RingArray
from mpcnet.secagg import advertise_keys, consistency_check, crypto, masked_input, share_keys, unmasking
from mpcnet.secagg.crypto import OsRandom, RandomSource, SeededRandom
from mpcnet.secagg.encoding import encode, tag_of
from mpcnet.secagg.errors import ParamsError
from mpcnet.secagg.params import SecAggParams
from mpcnet.secagg.stage import Stage, rounds
from mpcnet.secagg.state import ClientState, new_server

SERVER_ID = 0
Req = TypeVar("Req")
Resp = TypeVar("Resp")


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    stage: Stage
    sender: int  # 0 = server
    receiver: int  # 0 = server
    type: str
    data: bytes


def signing_keys_for(client_ids: Iterable[int], seed: bytes | None = None) -> dict[int, bytes]:
    """Ed25519 signing keys for active mode (seeded for tests, OS entropy otherwise)."""
    out = {}
    for cid in client_ids:
        rng: RandomSource = SeededRandom(seed, f"signing/{cid}".encode()) if seed is not None else OsRandom()
        out[cid] = crypto.ed25519_private(rng)
    return out


def verify_keys_for(signing_keys: Mapping[int, bytes]) -> tuple[bytes, ...]:
    return tuple(crypto.ed25519_public(signing_keys[cid]) for cid in sorted(signing_keys))


def run_round(inputs: Mapping[int, RingArray], params: SecAggParams,
              drops: Mapping[Stage, Iterable[int]] | None = None, seed: bytes | None = None, *,
              signing_keys: Mapping[int, bytes] | None = None,
              transcript: list[TranscriptEntry] | None = None) -> RingArray:
    if set(inputs) != set(params.client_ids):
        raise ParamsError("inputs must hold exactly one vector per registered client")
    if params.active and signing_keys is None:
        raise ParamsError("active mode needs the clients' signing keys")
    drops = {stage: frozenset(ids) for stage, ids in (drops or {}).items()}
    for stage in drops:
        if stage not in rounds(params.active):
            raise ParamsError(f"no {stage.value} round in {'active' if params.active else 'passive'} mode")
    gone: set[int] = set()
    master = SeededRandom(seed, b"run_round") if seed is not None else None

    def rng_for(party: str) -> RandomSource:
        return master.child(party.encode()) if master is not None else OsRandom()

    rngs = {cid: rng_for(f"party/{cid}") for cid in params.client_ids}

    def exchange(stage: Stage, requests: Mapping[int, Req],
                 answer: Callable[[int, Req], Resp]) -> dict[int, Resp]:
        gone.update(drops.get(stage, ()))
        responses: dict[int, Resp] = {}
        for cid in sorted(requests):
            if transcript is not None:
                transcript.append(TranscriptEntry(stage, SERVER_ID, cid, tag_of(requests[cid]), encode(requests[cid])))
            if cid in gone:
                continue
            responses[cid] = answer(cid, requests[cid])
            if transcript is not None:
                transcript.append(TranscriptEntry(stage, cid, SERVER_ID, tag_of(responses[cid]), encode(responses[cid])))
        return responses

    clients: dict[int, ClientState] = {}
    server = new_server(params)

    def advertise(cid: int, req: advertise_keys.AdvertiseKeysRequest) -> advertise_keys.AdvertiseKeysResponse:
        key = signing_keys[cid] if signing_keys is not None else None
        clients[cid], resp = advertise_keys.client_step(params, cid, req, signing_key=key, rng=rngs[cid])
        return resp

    server = advertise_keys.server_step(
        server, exchange(Stage.ADVERTISE_KEYS, advertise_keys.server_request(server), advertise))

    def share(cid: int, req: share_keys.ShareKeysRequest) -> share_keys.ShareKeysResponse:
        clients[cid], resp = share_keys.client_step(clients[cid], req, rngs[cid])
        return resp

    server = share_keys.server_step(server, exchange(Stage.SHARE_KEYS, share_keys.server_request(server), share))

    def mask(cid: int, req: masked_input.MaskedInputRequest) -> masked_input.MaskedInputResponse:
        clients[cid], resp = masked_input.client_step(clients[cid], req, inputs[cid])
        return resp

    server = masked_input.server_step(
        server, exchange(Stage.MASKED_INPUT_COLLECTION, masked_input.server_request(server), mask))

    if params.active:
        def sign(cid: int, req: consistency_check.ConsistencyCheckRequest) -> consistency_check.ConsistencyCheckResponse:
            clients[cid], resp = consistency_check.client_step(clients[cid], req)
            return resp

        server = consistency_check.server_step(
            server, exchange(Stage.CONSISTENCY_CHECK, consistency_check.server_request(server), sign))

    def unmask(cid: int, req: unmasking.UnmaskingRequest) -> unmasking.UnmaskingResponse:
        clients[cid], resp = unmasking.client_step(clients[cid], req)
        return resp

    server = unmasking.server_step(server, exchange(Stage.UNMASKING, unmasking.server_request(server), unmask))
    return unmasking.result(server)
