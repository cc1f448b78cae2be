"""The client side of secure aggregation over gRPC: one or many logical clients in one process.

Each logical client has its own channel and its own keys (fresh OS entropy;
the core's ``client_step`` functions do the math) and runs as an asyncio
task::

    join:  Next(round, id, stage_answered="")             -> params + advertise_keys request
    loop:  answer = core client_step(request)
           Next(round, id, stage_answered=stage, answer)  -> next request | done(sum) | aborted(reason)

Every wait for a reply is bounded: the join's by ``rpc_timeout_s``; an
answer's by the deadline of the stage answered plus the server's step
margin, because the coordinator holds the reply until the next stage opens.

Each client joins and answers on one ``Session`` stream: it writes the
join and each answer as a Next request and reads what Next would return,
and the open stream is its presence for the round.  If the client's process
dies, the kernel closes its connections, the stream breaks, and the
coordinator counts the client as a dropout at once instead of waiting out
the stage deadline.  One call per client per round instead of one per stage
plus a presence stream: the coordinator's CPU per client is dominated by
gRPC's per-call cost.  ``session=False`` (``mpcnet client --no-session``)
answers with Next calls and holds an ``Attend`` presence stream instead;
``attend=False`` (``--no-attend``) uses Next calls and no presence stream
(the MQTT last will, if any, is then the only early dropout signal).

Every call carries the client's bearer token (from CreateRound) as the
``mpcnet-client-token`` metadata; ``mpcnet client`` reads the tokens from
``--tokens-file`` or ``MPCNET_CLIENT_TOKENS`` (JSON ``{"<id>": "<token>"}``)
and, for active rounds, Ed25519 signing keys from ``--signing-keys-file``
(JSON ``{"<id>": "<64 hex>"}``) and every client's verify key from
``--verify-keys-file`` (the same form): in active mode the coordinator is not
trusted, so the PKI comes from the operator, and a client with a signing key
refuses a passive round (:func:`mpcnet.secagg.params.check_trusted`).

Inputs come from an :data:`InputSource` -- ``derive_input`` (deterministic
from a seed and the client id, so tests can compute the expected sum) or a
JSON file ``{"<id>": [number, ...]}`` (FedAvg: ``{"<id>": {"vector": [...],
"weight": n_k}}``), encoded as the round's ``quantization`` says (integers
as they are; floats clipped and stochastically quantized with
:mod:`mpcnet.secagg.quantization`).  :func:`dequantize_result` turns a float
round's aggregate back into the float sum or the FedAvg weighted mean.

``die_at`` is a test-only fault hook: the *process* SIGKILLs itself right
before answering that stage (a real, deterministic crash).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import re
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Mapping, Sequence

import grpc
import numpy as np
import numpy.typing as npt

from mpcnet.certs import CertError, Identity
from mpcnet.core.ring import RingArray
from mpcnet.errors import FailedPrecondition, InvalidInput, MpcnetError, PeerTimeout
from mpcnet.secagg import advertise_keys, consistency_check, masked_input, share_keys, unmasking
from mpcnet.secagg.crypto import OsRandom, SeededRandom
from mpcnet.secagg.encoding import decode, encode
from mpcnet.secagg.errors import ProtocolViolation
from mpcnet.secagg.params import SecAggParams, check_trusted
from mpcnet.secagg.state import ClientState
from mpcnet.secagg.stage import Stage
from mpcnet.secagg_wire import (FEDAVG, MAX_DEADLINE_S, REAL_SUM, REQUEST_TYPES, RING, ValueEncoding, dequantize,
                                encoding_from_proto,
                                topic_level, will_proof,
                                aggregate_of, params_from_proto, parse_stage)
from mpcnet.transport.rpc import CLIENT_TOKEN_KEY, from_rpc_error, insecure_channel
from mpcnet.transport.mqtt_bus import MqttEventBus
from mpcnet.transport.tls import TlsFiles
from mpcnet.v1 import secagg_pb2 as spb
from mpcnet.v1 import secagg_pb2_grpc as spbg

MQTT_CONNECT_WAIT_S = 3.0
COORDINATOR = Identity("coordinator", "main")  # whose certificate the coordinator must present under mTLS

InputSource = Callable[[int, SecAggParams, ValueEncoding], RingArray]
TOKENS_ENV = "MPCNET_CLIENT_TOKENS"
# The server holds an answering call up to the stage deadline plus its step margin
# (nodes.secagg_service.STEP_MARGIN_S = 30 s); the client allows a little more.
ANSWER_MARGIN_S = 35.0
SESSION_CLOSE_WAIT_S = 5.0  # for the server's status after the final reply (it is sent at once)


@dataclass(frozen=True, slots=True)
class ClientOutcome:
    client_id: int
    state: str  # "done" | "aborted" | "error" | "stopped" (a scripted dropout: run_client(stop_at=...))
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
    if bits <= 32:  # 4 bytes of the stream per element, as the masks
        words = np.frombuffer(rng.random_bytes(4 * length), dtype="<u4").astype(np.uint64)
    else:
        words = np.frombuffer(rng.random_bytes(8 * length), dtype="<u8").astype(np.uint64)
    return words if bits in (32, 64) else words & np.uint64((1 << bits) - 1)


def seeded_inputs(seed: str) -> InputSource:
    def source(cid: int, params: SecAggParams, enc: ValueEncoding) -> RingArray:
        if enc.kind != RING:
            raise InvalidInput(f"--input-seed derives ring integers; this is a {enc.kind} round: use --input-file")
        return derive_input(seed, cid, params.vector_length, params.bits)

    return source


def file_inputs(path: str | os.PathLike[str], ids: Sequence[int] = ()) -> InputSource:
    """Inputs from a JSON object mapping client id to a list of numbers, or (FedAvg) to
    ``{"vector": [float, ...], "weight": n_k}``; encoded as the round's quantization says.  Checked now, before
    any client joins: every id of ``ids`` has a vector, every number is finite (what depends on the round --
    length, range, weights -- is checked when the join reply brings the round's parameters, before the client
    advertises keys)."""
    table: dict[int, tuple[list[float | int], int | None]] = {}
    try:
        raw = json.loads(Path(path).read_text())
        for k, v in raw.items():
            if isinstance(v, dict):
                weight = v["weight"]
                if not isinstance(weight, int) or isinstance(weight, bool):
                    raise TypeError("weight must be an integer")
                table[int(k)] = (list(v["vector"]), weight)
            else:
                table[int(k)] = (list(v), None)
            if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in table[int(k)][0]):
                raise TypeError("vector entries must be numbers")
    except (OSError, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise InvalidInput(f"input file {path}: expected a JSON object {{\"<id>\": [number, ...]}} or "
                           f"{{\"<id>\": {{\"vector\": [number, ...], \"weight\": int}}}} "
                           f"({type(exc).__name__})") from None
    missing = [cid for cid in ids if cid not in table]
    if missing:
        raise InvalidInput(f"input file {path} has no vector for client(s) {', '.join(map(str, missing))}")
    bad = [cid for cid, (values, _) in table.items() if (cid in ids or not ids)
           and any(isinstance(x, float) and not math.isfinite(x) for x in values)]
    if bad:
        raise InvalidInput(f"input file {path}: client(s) {', '.join(map(str, sorted(bad)))} have NaN or infinite "
                           "values")

    def source(cid: int, params: SecAggParams, enc: ValueEncoding) -> RingArray:
        if cid not in table:
            raise InvalidInput(f"input file {path} has no vector for client {cid}")
        values, weight = table[cid]
        if len(values) != enc.float_length:
            raise InvalidInput(f"input file {path}: client {cid} needs {enc.float_length} values")
        if enc.kind == FEDAVG:
            if weight is None:
                raise InvalidInput(f"input file {path}: client {cid} needs {{\"vector\": [...], \"weight\": n}} "
                                   "in a fedavg round")
            return enc.weighted().encode(np.array(values, dtype=np.float64), weight)
        if weight is not None:
            raise InvalidInput(f"input file {path}: client {cid} has a weight, but this is a {enc.kind} round")
        if enc.kind == REAL_SUM:
            return enc.quantizer().quantize(np.array(values, dtype=np.float64))
        if any(not isinstance(x, int) or not 0 <= x < 2 ** params.bits for x in values):
            raise InvalidInput(f"input file {path}: client {cid} needs {params.vector_length} integers "
                               f"in [0, 2^{params.bits}) (a ring round; floats need a quantized round)")
        return np.array(values, dtype=np.uint64)

    return source


def dequantize_result(params: spb.SecAggRoundParams, done: spb.SecAggDone) -> tuple[npt.NDArray[np.float64], int]:
    """A float round's aggregate from GetResult (or a client's done reply) decoded with the round's quantization:
    real_sum -> (float sum of the included clients, their count); fedavg -> (weighted mean sum_k n_k w_k /
    sum_k n_k, the total weight sum_k n_k).  Error bounds: see mpcnet/secagg/quantization.py."""
    return dequantize(encoding_from_proto(params), aggregate_of(done), len(done.included))


def _id_table(path: str | None, env_value: str | None, what: str) -> dict[int, str]:
    """A JSON {id: string} table; errors never quote the content (it is secret)."""
    where = path if path else "$" + TOKENS_ENV
    try:
        text = Path(path).read_text() if path else (env_value or "")
    except OSError as exc:
        raise InvalidInput(f"{what} {where}: {exc.strerror}") from None
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict) or any(not isinstance(v, str) for v in raw.values()):
            raise TypeError
        return {int(k): v for k, v in raw.items()}
    except (ValueError, TypeError):
        raise InvalidInput(f"{what} {where}: expected a JSON object {{\"<id>\": \"<string>\"}}") from None


def load_tokens(path: str | None, ids: Sequence[int]) -> dict[int, str]:
    """Each client's bearer token from ``path`` or $MPCNET_CLIENT_TOKENS; refuses when one is missing."""
    env = os.environ.get(TOKENS_ENV)
    if not path and not env:
        raise InvalidInput(f"no client tokens: pass --tokens-file FILE or set {TOKENS_ENV} "
                           "(JSON {\"<id>\": \"<token>\"} from CreateRound's client_tokens)")
    table = _id_table(path, env, "tokens")
    missing = [cid for cid in ids if not table.get(cid)]
    if missing:
        raise InvalidInput(f"no token for client(s) {', '.join(map(str, missing))}: every --ids entry needs "
                           "its token from CreateRound")
    return {cid: table[cid] for cid in ids}


def load_signing_keys(path: str, ids: Sequence[int]) -> dict[int, bytes]:
    """Ed25519 signing keys (32 bytes, hex) for active rounds, one per client id this process runs."""
    return _keys(_id_table(path, None, "signing keys file"), path, ids, "signing keys file")


def _keys(table: Mapping[int, str], path: str, ids: Sequence[int], what: str) -> dict[int, bytes]:
    """The 32-byte hex keys of ``ids`` in ``table`` (read from ``path``)."""
    out = {}
    for cid in ids:
        try:
            key = bytes.fromhex(table[cid])
        except (KeyError, ValueError):
            raise InvalidInput(f"{what} {path}: no valid hex key for client {cid}") from None
        if len(key) != 32:
            raise InvalidInput(f"{what} {path}: the key of client {cid} is not 32 bytes")
        out[cid] = key
    return out


def load_verify_keys(path: str, ids: Sequence[int]) -> dict[int, bytes]:
    """Every client's Ed25519 verify key for an active round, from the operator (the PKI); it must hold this
    process's clients ``ids`` too."""
    table = _id_table(path, None, "verify keys file")
    missing = sorted(set(ids) - set(table))
    if missing:
        raise InvalidInput(f"verify keys file {path}: no key for client(s) {missing} this process runs")
    return _keys(table, path, sorted(table), "verify keys file")


def _step(stage: Stage, params: SecAggParams, cid: int, state: ClientState | None, request: object,
          value: RingArray, signing_key: bytes | None) -> tuple[ClientState, object]:
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
        return masked_input.client_step(state, request, value)
    if stage is Stage.CONSISTENCY_CHECK:
        assert isinstance(request, consistency_check.ConsistencyCheckRequest)
        return consistency_check.client_step(state, request)
    assert isinstance(request, unmasking.UnmaskingRequest)
    return unmasking.client_step(state, request)


async def run_client(address: str, round_id: str, client_id: int, inputs: InputSource, *, token: str,
                     die_at: Stage | None = None, signing_key: bytes | None = None,
                     verify_keys: Mapping[int, bytes] | None = None,
                     rpc_timeout_s: float = 30.0, want_result: bool = False,
                     tls: TlsFiles | None = None, attend: bool = True,
                     stop_at: Stage | None = None,
                     hold: Callable[[Stage], Awaitable[None]] | None = None,
                     session: bool = True) -> ClientOutcome:
    """Take part in one round as ``client_id`` (``token``: its bearer token from CreateRound);
    returns how the round ended for this client (with the aggregate in ``sum`` when ``want_result``).
    ``signing_key`` and ``verify_keys`` (every client's, from the operator): active rounds only, checked
    against what the coordinator sends (:func:`~mpcnet.secagg.params.check_trusted`) before any key leaves.
    ``stop_at``: a scripted dropout (conformance runs) -- leave before answering that stage, closing the
    channel and the presence stream as a crashed client would, and return state "stopped".
    ``hold``: awaited with each stage's request before the answer (`mpcnet agent --drill-hooks`: a drill
    freezes chosen seats at a stage so that it can `docker kill` or partition them there).
    ``session``: join and answer on one ``Session`` stream (also the presence signal) instead of one ``Next``
    call per stage plus an ``Attend`` stream (what the client falls back to when the coordinator answers the
    Session with UNIMPLEMENTED); ``attend=False`` means Next calls and neither stream."""
    who = f"SecAgg coordinator at {address}"
    metadata = ((CLIENT_TOKEN_KEY, token),)
    async with insecure_channel(address, tls=tls, expect=COORDINATOR if tls else None) as channel:
        stub = spbg.SecAggStub(channel)

        async def next_call(req: spb.SecAggNextRequest, timeout: float) -> spb.SecAggNextReply:
            req.want_result = want_result
            try:
                reply: spb.SecAggNextReply = await stub.Next(req, timeout=timeout, metadata=metadata)
                return reply
            except grpc.RpcError as exc:
                raise from_rpc_error(exc, who) from None

        # The session's deadline is set before the join reply tells the round's deadlines: it is the longest
        # round any coordinator accepts, a backstop only -- the join waits rpc_timeout_s, every later wait its
        # stage's deadline, and the whole round the bound below.
        stream = (stub.Session(timeout=rpc_timeout_s + 5 * (MAX_DEADLINE_S + ANSWER_MARGIN_S), metadata=metadata)
                  if attend and session else None)
        call = _session_call(stream, who, want_result) if stream is not None else next_call
        stage = Stage.SETUP
        join = spb.SecAggNextRequest(round_id=round_id, client_id=client_id)
        try:
            try:
                reply = await call(join, rpc_timeout_s)
            except _SessionUnsupported:  # a coordinator from before Session: Next calls and an Attend stream
                assert stream is not None
                stream.cancel()
                stream, call = None, next_call
                reply = await call(join, rpc_timeout_s)
            if not reply.HasField("params"):
                ended = reply.WhichOneof("outcome")
                if ended in ("done", "aborted"):  # a client started again after its round ended
                    raise FailedPrecondition(f"{who}: round {round_id} is over ({ended}); a client joins a round "
                                             "only while it is open")
                raise ProtocolViolation(f"{who}: the join reply carries no round parameters")
            params = params_from_proto(reply.params)
            if params.round_id != round_id or client_id not in params.client_ids:
                raise ProtocolViolation(f"{who}: the join reply is for another round or client set")
            enc = encoding_from_proto(reply.params)
            if params.active and signing_key is None:
                raise InvalidInput(f"round {round_id} is active: client {client_id} needs its Ed25519 signing key "
                                   "(--signing-keys-file)")
            check_trusted(params, client_id, signing_key, verify_keys)
            join_s, stage_s = reply.params.join_deadline_s, reply.params.stage_deadline_s
            bound = join_s + 5 * (stage_s + ANSWER_MARGIN_S)  # the whole round, all stages at their deadlines
            # presence: the session itself, else an Attend stream held beside the Next calls (or none)
            presence = None if stream is not None else asyncio.get_running_loop().create_task(
                _attend(stub, round_id, client_id, metadata, bound) if attend else asyncio.sleep(0))
            try:
                # the Next calls carry gRPC deadlines of their own; the session's one is only a backstop
                async with asyncio.timeout(bound if stream is not None else None):
                    outcome = await _rounds(call, reply, params, client_id, inputs, enc, signing_key, die_at, who,
                                            join_s, stage_s, stop_at, hold)
            except TimeoutError:
                raise PeerTimeout(f"{who}: round {round_id} still running after {bound:g}s, the longest its "
                                  "deadlines allow") from None
            finally:
                if presence is not None:
                    presence.cancel()
                    try:
                        await presence
                    except asyncio.CancelledError:
                        pass
            if stream is not None and outcome.state in ("done", "aborted"):
                await _close_session(stream)
            return outcome
        except MpcnetError as exc:
            return ClientOutcome(client_id, "error", stage=stage.value, reason=str(exc))
        finally:
            if stream is not None:
                stream.cancel()  # a no-op after the server closed it; else the coordinator sees the client leave


class _SessionUnsupported(Exception):
    """The coordinator answered the join on a Session with UNIMPLEMENTED: it predates Session."""


async def _close_session(stream: grpc.aio.StreamStreamCall) -> None:
    """After the final reply: take the server's status (it closes the session right after that reply), so
    that the session ends OK rather than cancelled by this client."""
    try:
        async with asyncio.timeout(SESSION_CLOSE_WAIT_S):
            await stream.code()
    except (grpc.RpcError, TimeoutError):
        pass  # the outcome is in hand: a late or failed close costs nothing but the call's status


def _session_call(stream: grpc.aio.StreamStreamCall, who: str, want_result: bool
                  ) -> Callable[[spb.SecAggNextRequest, float], Awaitable[spb.SecAggNextReply]]:
    """``call(request, timeout)`` over a Session stream: write a Next request, read what Next would return."""

    async def call(req: spb.SecAggNextRequest, timeout: float) -> spb.SecAggNextReply:
        req.want_result = want_result
        try:
            await stream.write(req)
            async with asyncio.timeout(timeout):
                reply = await stream.read()
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED and not req.stage_answered:
                raise _SessionUnsupported() from None
            raise from_rpc_error(exc, who) from None
        except TimeoutError:
            raise PeerTimeout(f"{who}: no reply on the session within {timeout:g}s") from None
        if reply is grpc.aio.EOF:
            raise ProtocolViolation(f"{who}: the session ended without a reply to the "
                                    f"{req.stage_answered + ' answer' if req.stage_answered else 'join'}")
        assert isinstance(reply, spb.SecAggNextReply)
        return reply

    return call


async def _attend(stub: spbg.SecAggStub, round_id: str, client_id: int, metadata: tuple[tuple[str, str], ...],
                  timeout: float) -> None:
    """Hold the presence stream open until the round ends (or this task is cancelled)."""
    try:
        call = stub.Attend(spb.SecAggAttendRequest(round_id=round_id, client_id=client_id), timeout=timeout,
                           metadata=metadata)
        async for _ in call:
            pass
    except grpc.RpcError:
        # a presence failure costs only the early dropout signal: the stage deadlines still hold
        pass


async def _rounds(call: Callable[[spb.SecAggNextRequest, float], Awaitable[spb.SecAggNextReply]],
                  reply: spb.SecAggNextReply, params: SecAggParams, client_id: int, inputs: InputSource,
                  enc: ValueEncoding, signing_key: bytes | None, die_at: Stage | None, who: str, join_s: float,
                  stage_s: float, stop_at: Stage | None = None,
                  hold: Callable[[Stage], Awaitable[None]] | None = None) -> ClientOutcome:
    round_id = params.round_id
    stage = Stage.SETUP
    state: ClientState | None = None
    try:
        # the input now, checked against the round's length and range: a client whose vector does not fit leaves
        # before it advertises keys, so nobody holds shares of its secrets and no mask of it needs recovering
        value = inputs(client_id, params, enc)
        if not masked_input.vector_ok(params, value):
            raise InvalidInput(f"{who}: its input is not {params.vector_length} integers below 2^{params.bits} "
                               f"(round {round_id})")
        while True:
            kind = reply.WhichOneof("outcome")
            if kind == "done":
                total = aggregate_of(reply.done) if reply.done.sum else None
                return ClientOutcome(client_id, "done", total, tuple(reply.done.included), stage.value)
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
            if stop_at is stage:
                return ClientOutcome(client_id, "stopped", stage=stage.value)
            if hold is not None:
                await hold(stage)
            state, response = _step(stage, params, client_id, state, request, value, signing_key)
            timeout = join_s if stage is Stage.ADVERTISE_KEYS else stage_s
            reply = await call(spb.SecAggNextRequest(round_id=round_id, client_id=client_id,
                                                     stage_answered=stage.value, response=encode(response)),
                               timeout + ANSWER_MARGIN_S)
    except MpcnetError as exc:
        return ClientOutcome(client_id, "error", stage=stage.value, reason=str(exc))


async def run_clients(address: str, round_id: str, client_ids: Sequence[int], inputs: InputSource, *,
                      tokens: Mapping[int, str], signing_keys: Mapping[int, bytes] | None = None,
                      verify_keys: Mapping[int, bytes] | None = None,
                      die_at: Stage | None = None, rpc_timeout_s: float = 30.0,
                      want_result: bool = False, tls: TlsFiles | None = None,
                      attend: bool = True, session: bool = True) -> list[ClientOutcome]:
    """Run many logical clients concurrently in this process (each its own channel and keys)."""
    keys = signing_keys or {}
    return list(await asyncio.gather(*(run_client(address, round_id, cid, inputs, token=tokens[cid],
                                                  signing_key=keys.get(cid), verify_keys=verify_keys,
                                                  die_at=die_at,
                                                  rpc_timeout_s=rpc_timeout_s, want_result=want_result, tls=tls,
                                                  attend=attend, session=session)
                                 for cid in client_ids)))


def client_tls(tls_dir: str | None, tls_name: str | None) -> TlsFiles | None:
    """A client's mTLS material: --tls-dir/--tls-name, else MPCNET_TLS_DIR/MPCNET_TLS_NAME (name default main)."""
    tls_dir = tls_dir or os.environ.get("MPCNET_TLS_DIR")
    if not tls_dir:
        return None
    try:
        return TlsFiles.load(tls_dir, "client", tls_name or os.environ.get("MPCNET_TLS_NAME") or "main")
    except CertError as exc:
        raise InvalidInput(str(exc)) from None


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
        if not 0 < args.timeout < math.inf:
            raise InvalidInput(f"--timeout {args.timeout:g}: the join's deadline must be > 0 seconds")
        inputs = (seeded_inputs(args.input_seed) if args.input_seed is not None
                  else file_inputs(args.input_file, ids))
        tokens = load_tokens(args.tokens_file, ids)
        signing_keys = load_signing_keys(args.signing_keys_file, ids) if args.signing_keys_file else None
        verify_keys = load_verify_keys(args.verify_keys_file, ids) if args.verify_keys_file else None
        if signing_keys is not None and verify_keys is None:
            raise InvalidInput("--signing-keys-file without --verify-keys-file: an active round's verify keys must "
                               "come from the operator, not from the coordinator")
        tls = client_tls(args.tls_dir, args.tls_name)
    except MpcnetError as exc:
        print(f"mpcnet client: {exc}", file=sys.stderr)
        return 2
    mqtt = args.mqtt or os.environ.get("MPCNET_MQTT", "")
    cluster = args.cluster_name or os.environ.get("MPCNET_CLUSTER_NAME") or "local"

    async def main() -> list[ClientOutcome]:
        bus = None
        if mqtt:
            # one MQTT connection per process, its last will naming every client it runs
            proc = re.sub(r"[^A-Za-z0-9_.-]", "-", f"{socket.gethostname()}-{os.getpid()}")
            level = topic_level(args.round_id)
            proofs = [will_proof(hashlib.sha256(tokens[c].encode()).digest(), args.round_id, c) for c in ids]
            bus = MqttEventBus(mqtt, cluster, "secagg", proc, presence_fields={"round": args.round_id, "clients": ids},
                               presence_topic=f"mpcnet/{cluster}/presence/secagg/{level}/{proc}",
                               will_fields={"proofs": proofs})
            bus.start()
            try:  # the will must be registered before the round needs it; no broker costs only this signal
                await asyncio.wait_for(bus.connected.wait(), MQTT_CONNECT_WAIT_S)
            except TimeoutError:
                print(f"mpcnet client: MQTT broker {mqtt} not reachable; going on without last-will presence",
                      file=sys.stderr)
        try:
            return await run_clients(args.coordinator, args.round_id, ids, inputs, tokens=tokens,
                                     signing_keys=signing_keys, verify_keys=verify_keys, die_at=die_at,
                                     rpc_timeout_s=args.timeout, tls=tls,
                                     attend=not args.no_attend, session=not args.no_session)
        finally:
            if bus is not None:
                await bus.close()

    outcomes = asyncio.run(main())
    for outcome in outcomes:
        print(json.dumps(outcome.summary(), sort_keys=True), flush=True)
    states = {o.state for o in outcomes}
    return 1 if "error" in states else 3 if "aborted" in states else 0
