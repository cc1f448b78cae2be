"""The client side of secure aggregation over gRPC: one or many logical clients in one process.

Each logical client has its own channel and its own keys (fresh OS entropy;
the core's ``client_step`` functions do the math) and runs as an asyncio
task::

    join:  Next(round, id, stage_answered="")             -> params + advertise_keys request
    loop:  answer = core client_step(request)
           Next(round, id, stage_answered=stage, answer)  -> next request | done(sum) | aborted(reason)

Every call carries a deadline: the join ``rpc_timeout_s``; an answer the
deadline of the stage answered plus the server's step margin, because the
coordinator holds the call until the next stage opens.

Inputs come from an :data:`InputSource` -- ``derive_input`` (deterministic
from a seed and the client id, so tests can compute the expected sum) or a
JSON file ``{"<id>": [int, ...]}``.

``die_at`` is a test-only fault hook: the *process* SIGKILLs itself right
before answering that stage (a real, deterministic crash).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import grpc
import numpy as np

from mpcnet.core.ring import RingArray
from mpcnet.errors import InvalidInput, MpcnetError
from mpcnet.secagg import advertise_keys, consistency_check, masked_input, share_keys, unmasking
from mpcnet.secagg.crypto import OsRandom, SeededRandom
from mpcnet.secagg.encoding import decode, encode
from mpcnet.secagg.errors import ProtocolViolation
from mpcnet.secagg.params import SecAggParams
from mpcnet.secagg.state import ClientState
from mpcnet.secagg.stage import Stage
from mpcnet.secagg_wire import REQUEST_TYPES, params_from_proto, parse_stage, vector_from_bytes
from mpcnet.transport.rpc import from_rpc_error, insecure_channel
from mpcnet.v1 import secagg_pb2 as spb
from mpcnet.v1 import secagg_pb2_grpc as spbg

InputSource = Callable[[int, SecAggParams], RingArray]
# The server holds an answering call up to the stage deadline plus its step margin
# (nodes.secagg_service.STEP_MARGIN_S = 30 s); the client allows a little more.
ANSWER_MARGIN_S = 35.0


@dataclass(frozen=True, slots=True)
class ClientOutcome:
    client_id: int
    state: str  # "done" | "aborted" | "error"
    sum: RingArray | None = field(default=None, repr=False)
    included: tuple[int, ...] = ()
    stage: str = ""
    reason: str = ""

    def summary(self) -> dict[str, object]:
        """A JSON-able line without the aggregate itself."""
        return {"client": self.client_id, "state": self.state, "included": list(self.included),
                "stage": self.stage, "reason": self.reason}


def derive_input(seed: str, client_id: int, length: int, bits: int) -> RingArray:
    """Test/demo input: uniform in Z_(2^bits)^length, from the core's seeded PRG keyed by ``seed`` and the id."""
    rng = SeededRandom(hashlib.sha256(seed.encode()).digest(), f"mpcnet-client-input/{client_id}".encode())
    words = np.frombuffer(rng.random_bytes(8 * length), dtype="<u8").astype(np.uint64)
    return words if bits == 64 else words & np.uint64((1 << bits) - 1)


def seeded_inputs(seed: str) -> InputSource:
    return lambda cid, params: derive_input(seed, cid, params.vector_length, params.bits)


def file_inputs(path: str | os.PathLike[str]) -> InputSource:
    """Inputs from a JSON object mapping client id to a list of integers in [0, 2^bits)."""
    try:
        raw = json.loads(Path(path).read_text())
        table = {int(k): [int(x) for x in v] for k, v in raw.items()}
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise InvalidInput(f"input file {path}: expected a JSON object {{\"<id>\": [int, ...]}} ({exc})") from None

    def source(cid: int, params: SecAggParams) -> RingArray:
        if cid not in table:
            raise InvalidInput(f"input file {path} has no vector for client {cid}")
        values = table[cid]
        if len(values) != params.vector_length or any(not 0 <= x < 2 ** params.bits for x in values):
            raise InvalidInput(f"input file {path}: client {cid} needs {params.vector_length} integers "
                               f"in [0, 2^{params.bits})")
        return np.array(values, dtype=np.uint64)

    return source


def _step(stage: Stage, params: SecAggParams, cid: int, state: ClientState | None, request: object,
          inputs: InputSource, signing_key: bytes | None) -> tuple[ClientState, object]:
    if stage is Stage.ADVERTISE_KEYS:
        assert isinstance(request, advertise_keys.AdvertiseKeysRequest)
        return advertise_keys.client_step(params, cid, request, signing_key=signing_key, rng=OsRandom())
    if state is None:
        raise ProtocolViolation(f"client {cid}: {stage.value} request before advertise_keys")
    if stage is Stage.SHARE_KEYS:
        assert isinstance(request, share_keys.ShareKeysRequest)
        return share_keys.client_step(state, request, OsRandom())
    if stage is Stage.MASKED_INPUT_COLLECTION:
        assert isinstance(request, masked_input.MaskedInputRequest)
        return masked_input.client_step(state, request, inputs(cid, params))
    if stage is Stage.CONSISTENCY_CHECK:
        assert isinstance(request, consistency_check.ConsistencyCheckRequest)
        return consistency_check.client_step(state, request)
    assert isinstance(request, unmasking.UnmaskingRequest)
    return unmasking.client_step(state, request)


async def run_client(address: str, round_id: str, client_id: int, inputs: InputSource, *,
                     die_at: Stage | None = None, signing_key: bytes | None = None,
                     rpc_timeout_s: float = 30.0) -> ClientOutcome:
    """Take part in one round as ``client_id``; returns how the round ended for this client."""
    who = f"SecAgg coordinator at {address}"
    async with insecure_channel(address) as channel:
        stub = spbg.SecAggStub(channel)

        async def call(req: spb.SecAggNextRequest, timeout: float) -> spb.SecAggNextReply:
            try:
                reply: spb.SecAggNextReply = await stub.Next(req, timeout=timeout)
                return reply
            except grpc.RpcError as exc:
                raise from_rpc_error(exc, who) from None

        stage = Stage.SETUP
        try:
            reply = await call(spb.SecAggNextRequest(round_id=round_id, client_id=client_id), rpc_timeout_s)
            if not reply.HasField("params"):
                raise ProtocolViolation(f"{who}: the join reply carries no round parameters")
            params = params_from_proto(reply.params)
            if params.round_id != round_id or client_id not in params.client_ids:
                raise ProtocolViolation(f"{who}: the join reply is for another round or client set")
            join_s, stage_s = reply.params.join_deadline_s, reply.params.stage_deadline_s
            state: ClientState | None = None
            while True:
                kind = reply.WhichOneof("outcome")
                if kind == "done":
                    return ClientOutcome(client_id, "done", vector_from_bytes(reply.done.sum),
                                         tuple(reply.done.included), stage.value)
                if kind == "aborted":
                    return ClientOutcome(client_id, "aborted", stage=reply.aborted.stage, reason=reply.aborted.reason)
                if kind != "request":
                    raise ProtocolViolation(f"{who}: empty reply after {stage.value}")
                stage = parse_stage(reply.request.stage)
                request = decode(bytes(reply.request.payload))
                if not isinstance(request, REQUEST_TYPES[stage]):
                    raise ProtocolViolation(f"{who}: a {type(request).__name__} sent as the {stage.value} request")
                if die_at is stage:  # test-only fault hook: a real crash of the whole process
                    os.kill(os.getpid(), signal.SIGKILL)
                state, response = _step(stage, params, client_id, state, request, inputs, signing_key)
                timeout = join_s if stage is Stage.ADVERTISE_KEYS else stage_s
                reply = await call(spb.SecAggNextRequest(round_id=round_id, client_id=client_id,
                                                         stage_answered=stage.value, response=encode(response)),
                                   timeout + ANSWER_MARGIN_S)
        except MpcnetError as exc:
            return ClientOutcome(client_id, "error", stage=stage.value, reason=str(exc))


async def run_clients(address: str, round_id: str, client_ids: Sequence[int], inputs: InputSource, *,
                      die_at: Stage | None = None, rpc_timeout_s: float = 30.0) -> list[ClientOutcome]:
    """Run many logical clients concurrently in this process (each its own channel and keys)."""
    return list(await asyncio.gather(*(run_client(address, round_id, cid, inputs, die_at=die_at,
                                                  rpc_timeout_s=rpc_timeout_s) for cid in client_ids)))


def client_main(args: argparse.Namespace) -> int:
    """``mpcnet client``: one JSON line per client; exit 0 all done, 3 aborted, 1 error."""
    try:
        if not args.coordinator:
            raise InvalidInput("no coordinator address: pass --coordinator or set MPCNET_COORDINATOR")
        try:
            ids = [int(x) for x in args.ids.split(",") if x.strip()]
        except ValueError:
            raise InvalidInput(f"--ids must be comma-separated integers, got {args.ids!r}") from None
        if not ids or len(set(ids)) != len(ids):
            raise InvalidInput("--ids must name at least one client, each once")
        die_at = parse_stage(args.die_at) if args.die_at else None
        inputs = seeded_inputs(args.input_seed) if args.input_seed is not None else file_inputs(args.input_file)
    except MpcnetError as exc:
        print(f"mpcnet client: {exc}", file=sys.stderr)
        return 2
    outcomes = asyncio.run(run_clients(args.coordinator, args.round_id, ids, inputs, die_at=die_at,
                                       rpc_timeout_s=args.timeout))
    for outcome in outcomes:
        print(json.dumps(outcome.summary(), sort_keys=True), flush=True)
    states = {o.state for o in outcomes}
    return 1 if "error" in states else 3 if "aborted" in states else 0
