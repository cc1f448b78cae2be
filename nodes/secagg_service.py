"""The coordinator's SecAgg service: the server side of secure-aggregation rounds over gRPC.

One :class:`_Round` per round id.  A driver task per round walks the stages
of :func:`mpcnet.secagg.stage.rounds` exactly as
:func:`mpcnet.secagg.driver.run_round` does -- ``server_request``, collect,
``server_step`` -- except that "collect" is: encode each client's request,
accept ``Next`` answers until every addressed client answered or the stage
deadline passed, then close the stage.  Clients missing at the close are
that stage's dropouts.  All protocol math (and every check of a message's
content) is the pure core's; this module only decodes the canonical bytes,
checks addressing, and keeps time.

Presence: a client keeps an ``Attend`` stream -- or the ``Session`` stream
that carries its Next messages -- open for the round; when it
breaks before the round ends (the process died, the connection was reset)
the client is *gone*: a dropout of the open stage at once, and no later
stage waits for it.  A stage therefore closes when every addressed client
has answered or is gone -- a crashed client costs no deadline -- and only a
silent-but-connected client (paused, partitioned) is waited for until the
stage deadline.  (The MQTT last-will of the deployment work can feed the
same ``_client_gone``.)

``Next`` records a client's answer, then waits -- bounded by the deadline of
the stage it answered plus a margin, and by the caller's own RPC deadline --
until the next stage opens, the round is done, or it aborted.  ``Session``
does the same for a stream of Next messages: one call per client for the
round, where Next and Attend take one per stage plus the presence stream.
:class:`~mpcnet.secagg.errors.InsufficientSurvivors` aborts the round with
the core's message (it names the stage, survivors and threshold); every
waiting and later caller gets it as an ``aborted`` reply.

Clients authenticate with bearer tokens: ``CreateRound`` draws one per
client id (returned once, kept only as SHA-256 hashes); ``Next``,
``Attend`` and ``Session`` (checked on its first message) need the caller's
own token as ``mpcnet-client-token`` metadata, ``GetResult`` the
cluster secret or any token of the round (compared with hmac.compare_digest).

Events (on the :class:`~mpcnet.events.EventBus`):
``mpcnet/<cluster>/rounds/<round>/{started,stage,dropped,result,aborted}``
(``dropped`` once per client, with ``why``); ids, stage names, counts and reasons only -- never payload
bytes, inputs, keys, tokens or masks.  A round created with ``withhold_membership`` (FedAvg's) publishes
``started`` and ``result`` or ``aborted`` with its id and ``"membership": "withheld"`` only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, AsyncIterator, Mapping

import grpc

from mpcnet.config import Config
from mpcnet.errors import (AlreadyExists, FailedPrecondition, InvalidInput, NotFound, PeerTimeout, PermissionDenied,
                           ResourceExhausted, Unauthenticated)
from mpcnet.events import EventBus, InProcessEventBus
from mpcnet.journal import CoordinatorJournal
from mpcnet.receipt import secagg_receipt
from mpcnet.transport.metrics import RoleMetrics
from mpcnet.secagg import advertise_keys, consistency_check, masked_input, share_keys, unmasking
from mpcnet.secagg.encoding import decode, encode, tag_of
from mpcnet.secagg.errors import ParamsError, ProtocolViolation, SecAggError
from mpcnet.secagg.graph import GraphKind
from mpcnet.secagg.params import SecAggParams, max_vector_length
from mpcnet.secagg.stage import Stage, rounds
from mpcnet.secagg.state import ServerState, new_server
from mpcnet.secagg_wire import (MAX_DEADLINE_S, REAL_SUM, RESPONSE_TYPES, done_message, encoding_from_proto,
                                params_from_proto,
                                params_to_proto, parse_stage, topic_level, will_proof)
from mpcnet.transport.rpc import (CLIENT_TOKEN_KEY, CLUSTER_AUTH_KEY, metadata_value, servicer_errors,
                                  stream_servicer_errors)
from mpcnet.v1 import secagg_pb2 as spb
from mpcnet.v1 import secagg_pb2_grpc as spbg

log = logging.getLogger("mpcnet.secagg")

MODULES: dict[Stage, ModuleType] = {
    Stage.ADVERTISE_KEYS: advertise_keys, Stage.SHARE_KEYS: share_keys,
    Stage.MASKED_INPUT_COLLECTION: masked_input, Stage.CONSISTENCY_CHECK: consistency_check,
    Stage.UNMASKING: unmasking,
}
MAX_CLIENTS = 5000
MAX_ROUNDS = 1000  # rounds kept in memory (finished ones are forgotten first)
RESTART_REASON = ("the coordinator restarted during the round; a round is never resumed (its masks and keys were in "
                  "memory only): create a new round")
STEP_MARGIN_S = 30.0  # on top of a stage deadline: time for the server step before a waiting Next gives up
# A client opens a Session with its first message ready, and no token is checked before that message: the
# wait for it is short.
SESSION_FIRST_MESSAGE_S = 10.0
_ROUND_ENDED = object()  # what _session_read returns when the round ends before the client's next message


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()



@dataclass(eq=False)
class _Round:
    params: SecAggParams
    stage_deadline_s: float
    join_deadline_s: float
    server: ServerState
    stages: tuple[Stage, ...]
    quantization: spb.SecAggQuantization = field(default_factory=spb.SecAggQuantization)
    token_hashes: dict[int, bytes] = field(default_factory=dict, repr=False)  # SHA-256 of each client's token
    sum_to_operator_only: bool = False  # clients hear who was included and who dropped, never the sum
    withhold_membership: bool = False  # events say only that the round started and ended
    created: float = field(default_factory=time.monotonic)
    state: str = "running"  # running | done | aborted
    open_index: int = -1  # index in ``stages`` of the open (or last opened) stage
    accepting: bool = False  # the open stage still takes answers
    # each stage's request per client, encoded when the client reads it: the first clients get theirs while
    # the coordinator would otherwise still be encoding everyone's (the stage barrier's latency)
    requests: dict[Stage, dict[int, object]] = field(default_factory=dict)
    responses: dict[Stage, dict[int, object]] = field(default_factory=dict)
    dropouts: dict[int, Stage] = field(default_factory=dict)
    gone: dict[int, str] = field(default_factory=dict)  # clients whose presence stream broke -> why
    attending: set[int] = field(default_factory=set)  # clients with an open Attend or Session stream
    announced: set[int] = field(default_factory=set)  # clients whose dropout event was published
    done: spb.SecAggDone | None = None
    all_in: asyncio.Event = field(default_factory=asyncio.Event)
    # clients of the open stage still to answer (neither answered nor gone), kept as answers arrive: the stage
    # closes when it empties (recomputing it per answer would cost O(n) each, O(n^2) a stage)
    awaiting: set[int] = field(default_factory=set)
    cond: asyncio.Condition = field(default_factory=asyncio.Condition)
    # set once the round is done or aborted: what presence streams wait for (not woken at every stage change)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    # the timeouts of sessions now waiting for their client's next message: the round's end fires them at once
    session_reads: set[asyncio.Timeout] = field(default_factory=set, repr=False)
    _params_proto: spb.SecAggRoundParams | None = field(default=None, repr=False)
    aborted: spb.SecAggAborted | None = None  # how an aborted round ended, as journalled
    task: asyncio.Task[None] | None = None

    @property
    def round_id(self) -> str:
        return self.params.round_id

    @property
    def stage(self) -> Stage:
        return self.stages[self.open_index] if self.open_index >= 0 else Stage.SETUP

    def proto_params(self) -> spb.SecAggRoundParams:
        """The round's public parameters (built once: every join reply carries them; callers copy, never
        mutate)."""
        if self._params_proto is None:
            p = params_to_proto(self.params, self.stage_deadline_s, self.join_deadline_s)
            p.quantization.CopyFrom(self.quantization)
            p.sum_to_operator_only = self.sum_to_operator_only
            p.withhold_membership = self.withhold_membership
            self._params_proto = p
        return self._params_proto

    def token_valid(self, cid: int, token: str | None) -> bool:
        want = self.token_hashes.get(cid)
        return want is not None and token is not None and hmac.compare_digest(_hash(token), want)

    def any_token_valid(self, token: str | None) -> bool:
        return any_token_matches(self.token_hashes, token)

    def done_message(self) -> spb.SecAggDone:
        assert self.done is not None
        return self.done

    def round_bound_s(self) -> float:
        """Longest a running round can last: join, every stage's deadline and server-step margin."""
        return self.join_deadline_s + len(self.stages) * (self.stage_deadline_s + STEP_MARGIN_S) + STEP_MARGIN_S

    def check_all_in(self) -> None:
        if self.accepting and not self.awaiting:
            self.all_in.set()


def any_token_matches(token_hashes: Mapping[int, bytes], token: str | None) -> bool:
    """Whether ``token`` is one of the round's client tokens (every hash compared: no early exit)."""
    if token is None:
        return False
    given = _hash(token)
    ok = False
    for want in token_hashes.values():
        ok |= hmac.compare_digest(given, want)
    return ok


class SecAggService(spbg.SecAggServicer):
    def __init__(self, cfg: Config, bus: EventBus | None = None, metrics: RoleMetrics | None = None,
                 journal: CoordinatorJournal | None = None) -> None:
        self.cfg = cfg
        self.journal = journal  # rounds' outcomes survive a coordinator restart (mpcnet/journal.py)
        self.metrics = metrics
        self.bus: EventBus = bus if bus is not None else InProcessEventBus()
        self.rounds: dict[str, _Round] = {}
        self.topic_prefix = f"mpcnet/{cfg.cluster_name}"
        # SecAgg client processes announce themselves with an MQTT last will naming their round and clients
        self.bus.subscribe(f"{self.topic_prefix}/presence/secagg/+/+", self._on_client_presence)

    # ------------------------------------------------------------------ helpers

    def _round(self, round_id: str) -> _Round:
        rnd = self.rounds.get(round_id)
        if rnd is None:
            kept = self.journal.round(round_id) if self.journal is not None else None
            if kept is not None:
                raise self._over(kept)
            raise NotFound(f"unknown SecAgg round {round_id!r}: create it with CreateRound first")
        return rnd

    @staticmethod
    def _over(kept: Any) -> FailedPrecondition:
        """A finished round (from the journal), with how it ended."""
        why = spb.SecAggAborted.FromString(kept.outcome).reason if kept.state == "aborted" else "it is done"
        return FailedPrecondition(f"SecAgg round {kept.round_id!r} is {kept.state} ({why}); ask GetResult for its "
                                  "outcome")

    def _client_round(self, round_id: str, cid: int, context: grpc.aio.ServicerContext) -> _Round:
        """The round a client's call names, once the caller holds that client's token for it.  Who is registered
        in a round, and how a finished round ended, are told only to a holder of a token of that round: a
        round's client ids may be a secret sample (central DP), and an abort reason gives survivor counts."""
        token = metadata_value(context, CLIENT_TOKEN_KEY)
        rnd = self.rounds.get(round_id)
        if rnd is None:
            kept = self.journal.round(round_id) if self.journal is not None else None
            if kept is None:
                raise NotFound(f"unknown SecAgg round {round_id!r}: create it with CreateRound first")
            if not any_token_matches(kept.token_hashes, token):
                raise FailedPrecondition(f"SecAgg round {round_id!r} is over; its outcome is for its clients and "
                                         "operator (GetResult with a client token or the cluster secret)")
            raise self._over(kept)
        if not rnd.token_valid(cid, token):
            raise Unauthenticated(f"round {rnd.round_id}, client {cid}: missing or wrong {CLIENT_TOKEN_KEY} "
                                  "metadata, or no such client in the round; send the token CreateRound returned "
                                  "for this client id")
        return rnd

    @staticmethod
    def _open_presence(rnd: _Round, cid: int) -> None:
        """An Attend or Session stream opens: one per client, and none for a client declared gone."""
        if cid in rnd.attending:
            raise AlreadyExists(f"round {rnd.round_id}, client {cid}: a session or presence stream is open already")
        if cid in rnd.gone:
            raise FailedPrecondition(f"round {rnd.round_id}, client {cid}: declared gone ({rnd.gone[cid]}); "
                                     "it takes no further part in this round")
        rnd.attending.add(cid)

    def _close_presence(self, rnd: _Round, cid: int, ended: bool, why: str) -> None:
        """The stream closed: unless it saw the round end, the client is gone (a dropout at once)."""
        rnd.attending.discard(cid)
        if not ended and rnd.state == "running":
            self._client_gone(rnd, cid, why)

    def _publish(self, what: str, rnd: _Round, **fields: object) -> None:
        if rnd.withhold_membership:  # who and how many took part is not the bus's to know (FedAvg's secret sample)
            if what not in ("started", "result", "aborted"):
                return
            fields = {"membership": "withheld"}
        if self.metrics is not None:
            if what == "dropped":
                self.metrics.dropouts.labels(str(fields.get("stage", ""))).inc()
            elif what in ("result", "aborted"):
                self.metrics.rounds.labels("done" if what == "result" else "aborted").inc()
        self.bus.publish(f"{self.topic_prefix}/rounds/{topic_level(rnd.round_id)}/{what}",
                         {"round": rnd.round_id, **fields})

    def _on_client_presence(self, topic: str, event: Mapping[str, object]) -> None:
        """A client process's last will ("gone"): every client it ran is gone at once.

        The broker is not trusted with this: each client in the will must carry its proof
        HMAC-SHA256(SHA-256(token), "mpcnet-will" | round | id) (:func:`will_proof`), which only the token's
        holder and this server (it keeps the hash) can make; a client with an open Attend or Session stream is
        alive whatever the will says; and the topic must name the round the payload names."""
        if event.get("state") != "gone":
            return
        round_id = str(event.get("round", ""))
        rnd = self.rounds.get(round_id)
        clients, proofs = event.get("clients"), event.get("proofs")
        if rnd is None or not isinstance(clients, list) or not isinstance(proofs, list) or len(proofs) != len(clients):
            return
        if f"/presence/secagg/{topic_level(round_id)}/" not in topic:
            return
        for cid, proof in zip(clients, proofs):
            if not isinstance(cid, int) or cid not in rnd.token_hashes or cid in rnd.attending:
                continue
            want = will_proof(rnd.token_hashes[cid], round_id, cid)
            if isinstance(proof, str) and hmac.compare_digest(proof.encode(), want.encode()):
                self._client_gone(rnd, cid, "its process's MQTT last will (client process gone)")

    def _deadline(self, value: float, what: str) -> float:
        if value == 0:  # the role's default, within the bound every client's Session deadline assumes
            return min(float(self.cfg.stage_timeout_s), MAX_DEADLINE_S)
        if not 0 < value <= MAX_DEADLINE_S:
            raise InvalidInput(f"{what} must be in (0, {MAX_DEADLINE_S:g}] seconds, got {value:g}")
        return value

    def _make_room(self) -> None:
        if len(self.rounds) < MAX_ROUNDS:
            return
        finished = sorted((r for r in self.rounds.values() if r.state != "running"), key=lambda r: r.created)
        if not finished:
            raise ResourceExhausted(f"{MAX_ROUNDS} SecAgg rounds are running; wait for one to finish")
        del self.rounds[finished[0].round_id]

    # ------------------------------------------------------------------ RPCs

    @servicer_errors
    async def CreateRound(self, request: spb.SecAggCreateRoundRequest,
                          context: grpc.aio.ServicerContext) -> spb.SecAggCreateRoundReply:
        p = spb.SecAggRoundParams()
        p.CopyFrom(request.params)
        if p.sum_to_operator_only and not self.cfg.cluster_secret:  # first: FedAvg's probe relies on this order
            raise FailedPrecondition("sum_to_operator_only needs a cluster secret: without one every caller counts "
                                     "as the operator (set MPCNET_CLUSTER_SECRET or the secret_file of the "
                                     "configuration's cluster table)")
        if not p.round_id:
            p.round_id = f"secagg-{secrets.token_hex(8)}"
        if p.round_id in self.rounds or (self.journal is not None and self.journal.round(p.round_id) is not None):
            raise AlreadyExists(f"SecAgg round {p.round_id!r} exists already: pick another round_id or leave it empty")
        if len(p.client_ids) > MAX_CLIENTS:
            raise InvalidInput(f"{len(p.client_ids)} clients in one round; at most {MAX_CLIENTS}")
        limit = max_vector_length(p.bits)
        if p.vector_length > limit:
            raise InvalidInput(f"vector_length {p.vector_length} is above {limit} for {p.bits or 32}-bit masks "
                               "(one masked vector must fit one gRPC message); split the vector into rounds")
        stage_s = self._deadline(p.stage_deadline_s, "stage_deadline_s")
        join_s = self._deadline(p.join_deadline_s, "join_deadline_s")
        p.graph_seed = b""
        try:
            params = params_from_proto(p)
            if params.graph_kind is GraphKind.REGULAR:
                params = SecAggParams(params.round_id, params.client_ids, params.threshold, params.vector_length,
                                      params.bits, params.graph_kind, params.degree,
                                      SecAggParams.fresh_graph_seed(), params.active, params.verify_keys)
            enc = encoding_from_proto(p)
        except ParamsError as exc:
            raise InvalidInput(f"CreateRound {p.round_id}: {exc}") from None
        if enc.kind == REAL_SUM:
            p.quantization.bound = enc.bound  # the default (the number of clients) made explicit
        self._make_room()
        tokens = {cid: secrets.token_urlsafe(32) for cid in params.client_ids}
        rnd = _Round(params=params, stage_deadline_s=stage_s, join_deadline_s=join_s, server=new_server(params),
                     stages=rounds(params.active), quantization=p.quantization,
                     token_hashes={cid: _hash(tok) for cid, tok in tokens.items()},
                     sum_to_operator_only=p.sum_to_operator_only, withhold_membership=p.withhold_membership)
        self.rounds[params.round_id] = rnd
        self._persist(rnd)
        rnd.task = asyncio.get_running_loop().create_task(self._drive(rnd), name=f"secagg-{params.round_id}")
        self._publish("started", rnd, clients=len(params.client_ids), threshold=params.threshold,
                      graph=params.graph_kind.value, active=params.active, vector_length=params.vector_length)
        log.info("secagg round %s created: %d clients, t=%d, %s graph, stage deadline %gs",
                 params.round_id, len(params.client_ids), params.threshold, params.graph_kind.value, stage_s)
        return spb.SecAggCreateRoundReply(round_id=params.round_id, params=rnd.proto_params(), client_tokens=tokens)

    @servicer_errors
    async def Next(self, request: spb.SecAggNextRequest, context: grpc.aio.ServicerContext) -> spb.SecAggNextReply:
        rnd = self._client_round(request.round_id, request.client_id, context)
        return await self._answer(rnd, request.client_id, request, context)

    async def _answer(self, rnd: _Round, cid: int, request: spb.SecAggNextRequest,
                      context: grpc.aio.ServicerContext) -> spb.SecAggNextReply:
        """One Next request of an authenticated, registered client: record its answer, wait for what comes next."""
        self._check_join(rnd, cid, request)
        if rnd.state != "running":
            return self._outcome(rnd, request.want_result)
        if not request.stage_answered:
            answered = -1
        else:
            try:
                stage = parse_stage(request.stage_answered)
            except ParamsError as exc:
                raise InvalidInput(str(exc)) from None
            if stage not in rnd.stages:
                raise InvalidInput(f"round {rnd.round_id} has no {stage.value} stage "
                                   f"({'active' if rnd.params.active else 'passive'} mode)")
            self._record(rnd, cid, stage, bytes(request.response))
            answered = rnd.stages.index(stage)
        reply = await self._wait_next(rnd, cid, answered, context, request.want_result)
        if answered == -1:
            reply.params.CopyFrom(rnd.proto_params())
        return reply

    @staticmethod
    def _check_join(rnd: _Round, cid: int, request: spb.SecAggNextRequest) -> None:
        """What a join (empty stage_answered) may not ask: refused before a Session counts as the client's open
        connection, so that the client can join again as the message says (not be taken for gone)."""
        if request.stage_answered:
            return
        if request.want_result and rnd.sum_to_operator_only:
            raise PermissionDenied(f"round {rnd.round_id}, client {cid}: this round gives its sum to the operator "
                                   "only (sum_to_operator_only); join without want_result")
        if request.response:
            raise InvalidInput("a join call (empty stage_answered) must not carry a response")

    @servicer_errors
    async def GetResult(self, request: spb.SecAggGetResultRequest,
                        context: grpc.aio.ServicerContext) -> spb.SecAggGetResultReply:
        kept = None
        if request.round_id not in self.rounds and self.journal is not None:
            kept = self.journal.round(request.round_id)  # from before a restart, or forgotten from memory
        hashes = kept.token_hashes if kept is not None else self._round(request.round_id).token_hashes
        secret = self.cfg.cluster_secret
        given = metadata_value(context, CLUSTER_AUTH_KEY)
        cluster = bool(secret) and given is not None and hmac.compare_digest(given.encode(), secret.encode())
        if not cluster and not any_token_matches(hashes, metadata_value(context, CLIENT_TOKEN_KEY)):
            raise Unauthenticated(f"GetResult of round {request.round_id} needs the cluster secret "
                                  f"({CLUSTER_AUTH_KEY}) or a client token of the round ({CLIENT_TOKEN_KEY})")
        if kept is not None:
            params = spb.SecAggRoundParams.FromString(kept.params)
            out = spb.SecAggGetResultReply(round_id=kept.round_id, state=kept.state)
            if kept.state == "done":
                out.done.ParseFromString(kept.outcome)
                out.stage = Stage.UNMASKING.value
                if params.sum_to_operator_only and not cluster:
                    out.done.ClearField("sum")
            else:
                out.aborted.ParseFromString(kept.outcome)
                out.stage = out.aborted.stage
            out.receipt_json = json.dumps(secagg_receipt(kept.round_id, params, kept.state, out.done, out.aborted))
            return out
        rnd = self._round(request.round_id)
        reply = spb.SecAggGetResultReply(round_id=rnd.round_id, state=rnd.state, stage=rnd.stage.value)
        if rnd.state == "done":
            reply.done.CopyFrom(rnd.done_message())
            if rnd.sum_to_operator_only and not cluster:
                reply.done.ClearField("sum")
        elif rnd.state == "aborted":
            assert rnd.aborted is not None
            reply.aborted.CopyFrom(rnd.aborted)
        if rnd.state != "running":
            reply.receipt_json = json.dumps(secagg_receipt(rnd.round_id, rnd.proto_params(), rnd.state, reply.done,
                                                           reply.aborted))
        return reply

    @stream_servicer_errors
    async def Attend(self, request: spb.SecAggAttendRequest,
                     context: grpc.aio.ServicerContext) -> AsyncIterator[spb.SecAggPresence]:
        cid = request.client_id
        rnd = self._client_round(request.round_id, cid, context)
        if rnd.state != "running":
            yield spb.SecAggPresence(state=rnd.state, stage=rnd.stage.value)
            return
        self._open_presence(rnd, cid)
        ended = False
        try:
            yield spb.SecAggPresence(state="attending", stage=rnd.stage.value)
            try:
                await asyncio.wait_for(rnd.ended.wait(), rnd.round_bound_s())
            except TimeoutError:
                pass
            ended = True
            yield spb.SecAggPresence(state=rnd.state, stage=rnd.stage.value)
        finally:
            self._close_presence(rnd, cid, ended, "presence stream ended (client process or connection gone)")

    @stream_servicer_errors
    async def Session(self, requests: AsyncIterator[spb.SecAggNextRequest],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[spb.SecAggNextReply]:
        """Next and Attend in one stream: one call per client instead of one per stage plus a presence stream
        (each gRPC call costs the coordinator about as much CPU as its SecAgg work for that client)."""
        incoming = aiter(requests)
        first = await self._session_read(incoming, SESSION_FIRST_MESSAGE_S, "first message")
        if first is None:
            return  # the client closed before saying anything: nothing to answer
        cid = first.client_id
        rnd = self._client_round(first.round_id, cid, context)
        self._check_join(rnd, cid, first)
        if rnd.state != "running":
            yield self._outcome(rnd, first.want_result)
            return
        self._open_presence(rnd, cid)
        ended = False
        try:
            request = first
            while True:
                if request.round_id != rnd.round_id or request.client_id != cid:
                    raise InvalidInput(f"round {rnd.round_id}, client {cid}: every message of a session must name "
                                       "the round and client of its first message")
                want_result = request.want_result
                reply = await self._answer(rnd, cid, request, context)
                ended = reply.WhichOneof("outcome") != "request"  # done or aborted: the session's last reply
                yield reply
                if ended:
                    return
                # the client now computes its answer: bounded by the stage's deadline and the step margin, and
                # cut short if the round ends meanwhile (the client then hears the outcome, as on Attend)
                stage = parse_stage(reply.request.stage)
                limit = (rnd.join_deadline_s if stage is rnd.stages[0] else rnd.stage_deadline_s) + STEP_MARGIN_S
                got = await self._session_read(incoming, limit, f"{stage.value} answer", rnd)
                if got is _ROUND_ENDED or (got is None and rnd.state != "running"):
                    ended = True
                    yield self._outcome(rnd, want_result)
                    return
                if got is None:
                    raise FailedPrecondition(f"round {rnd.round_id}, client {cid}: the session was closed before "
                                             "the round ended; the client is a dropout of this round")
                request = got
        finally:
            self._close_presence(rnd, cid, ended, "session ended (client process or connection gone)")

    @staticmethod
    async def _session_read(incoming: AsyncIterator[spb.SecAggNextRequest], limit: float, what: str,
                            rnd: _Round | None = None) -> Any:
        """The next message of a session; None when the client closed its side, :data:`_ROUND_ENDED` when
        ``rnd`` ended first (its end fires this wait's timeout at once).  At most ``limit`` seconds."""
        try:
            async with asyncio.timeout(limit) as timeout:
                if rnd is not None:
                    if rnd.state != "running":
                        return _ROUND_ENDED
                    rnd.session_reads.add(timeout)
                try:
                    return await anext(incoming)
                finally:
                    if rnd is not None:
                        rnd.session_reads.discard(timeout)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            if rnd is not None and rnd.state != "running":
                return _ROUND_ENDED
            raise PeerTimeout(f"the session's client sent no {what} within {limit:g}s") from None

    def _client_gone(self, rnd: _Round, cid: int, why: str) -> None:
        """A client is known dead: a dropout of the open stage now, and not waited for by later stages."""
        if cid in rnd.gone or rnd.state != "running":
            return
        rnd.gone[cid] = why
        stage = rnd.stage
        if rnd.accepting and cid in rnd.requests.get(stage, {}) and cid not in rnd.responses.get(stage, {}):
            rnd.announced.add(cid)
            self._publish("dropped", rnd, client=cid, stage=stage.value, why=why)
            log.info("secagg round %s: client %d gone at %s (%s)", rnd.round_id, cid, stage.value, why)
        rnd.awaiting.discard(cid)
        rnd.check_all_in()

    # ------------------------------------------------------------------ Next internals

    def _record(self, rnd: _Round, cid: int, stage: Stage, payload: bytes) -> None:
        where = f"round {rnd.round_id}, client {cid}, {stage.value}"
        index = rnd.stages.index(stage)
        if index > rnd.open_index:
            raise FailedPrecondition(f"{where}: the round is at {rnd.stage.value}; this stage is not open yet")
        if index < rnd.open_index or not rnd.accepting:
            if cid in rnd.responses.get(stage, {}):
                raise AlreadyExists(f"{where}: answered already (replayed answer refused)")
            raise FailedPrecondition(f"{where}: the answer came after the stage closed; the client is a dropout "
                                     "of this round")
        if cid in rnd.gone:
            raise FailedPrecondition(f"{where}: the client was declared gone ({rnd.gone[cid]}); it is a dropout of "
                                     "this round")
        if cid not in rnd.requests.get(stage, {}):
            raise FailedPrecondition(f"{where}: no request was sent to this client at this stage (it dropped out "
                                     f"at {rnd.dropouts[cid].value if cid in rnd.dropouts else 'an earlier stage'})")
        if cid in rnd.responses[stage]:
            raise AlreadyExists(f"{where}: answered already (replayed answer refused)")
        if not payload:
            raise InvalidInput(f"{where}: empty response payload")
        try:
            msg = decode(payload)
        except ProtocolViolation as exc:
            raise InvalidInput(f"{where}: malformed response payload: {exc}") from None
        want = RESPONSE_TYPES[stage]
        if not isinstance(msg, want):
            raise InvalidInput(f"{where}: expected a {want.__name__} payload, got {tag_of(msg)}")
        if getattr(msg, "round_id", None) != rnd.round_id or getattr(msg, "sender", None) != cid:
            raise InvalidInput(f"{where}: the payload names another round or sender")
        # the core's own per-answer check, now, so that the client hears why (its answer is not kept; with Next
        # it may send a corrected one while the stage is open, on a Session the refusal ends the session and the
        # client is a dropout); the server step applies the same check again
        problem = MODULES[stage].check_response(rnd.server, cid, msg)
        if problem is not None:
            raise InvalidInput(f"{where}: {problem}; answer refused")
        rnd.responses[stage][cid] = msg
        rnd.awaiting.discard(cid)
        rnd.check_all_in()

    def _outcome(self, rnd: _Round, want_result: bool = True) -> spb.SecAggNextReply:
        if rnd.state == "done":
            done = rnd.done_message()
            if not want_result or rnd.sum_to_operator_only:
                done = spb.SecAggDone(included=done.included, dropped=done.dropped, word_bytes=done.word_bytes)
            return spb.SecAggNextReply(done=done)
        assert rnd.aborted is not None
        return spb.SecAggNextReply(aborted=rnd.aborted)

    async def _wait_next(self, rnd: _Round, cid: int, answered: int, context: grpc.aio.ServicerContext,
                         want_result: bool) -> spb.SecAggNextReply:
        target = answered + 1
        limit = (rnd.join_deadline_s if answered <= 0 else rnd.stage_deadline_s) + STEP_MARGIN_S
        remaining = context.time_remaining()
        if remaining is not None:
            limit = min(limit, max(0.0, remaining))
        try:
            async with asyncio.timeout(limit), rnd.cond:
                await rnd.cond.wait_for(lambda: rnd.state != "running" or rnd.open_index >= target)
        except TimeoutError:
            raise PeerTimeout(f"round {rnd.round_id}, client {cid}: the next stage did not open within "
                              f"{limit:g}s (call again with a longer deadline)") from None
        if rnd.state != "running":
            return self._outcome(rnd, want_result)
        stage = rnd.stages[target]
        if target < rnd.open_index or (target == rnd.open_index and not rnd.accepting):
            if target == 0 and cid in rnd.responses.get(stage, {}):  # a second join: the client is still in
                raise FailedPrecondition(f"round {rnd.round_id}, client {cid}: joined already ({stage.value} is "
                                         "closed); the client is still in the round: answer the stage its last "
                                         "reply named")
            raise FailedPrecondition(f"round {rnd.round_id}, client {cid}: {stage.value} closed already; "
                                     "the client is a dropout of this round")
        request = rnd.requests.get(stage, {}).get(cid)
        if request is None:
            prev = rnd.stages[target - 1] if target > 0 else Stage.SETUP
            why = rnd.server.rejected.get(cid, "no valid answer before the deadline")
            raise FailedPrecondition(f"round {rnd.round_id}, client {cid}: not a survivor of {prev.value} ({why}); "
                                     "it takes no further part in this round")
        try:
            payload = encode(request)
        except Exception as exc:  # a coordinator bug, not the client's: a dropout now, so no stage waits for it
            log.error("secagg round %s: the %s request of client %d did not encode (%s)", rnd.round_id, stage.value,
                      cid, type(exc).__name__)
            self._client_gone(rnd, cid, f"its {stage.value} request did not encode (coordinator error)")
            raise
        return spb.SecAggNextReply(request=spb.SecAggStageRequest(stage=stage.value, payload=payload))

    # ------------------------------------------------------------------ the round driver

    async def _set(self, rnd: _Round, **changes: object) -> None:
        async with rnd.cond:
            for name, value in changes.items():
                setattr(rnd, name, value)
            if rnd.state != "running":
                rnd.ended.set()
                now = asyncio.get_running_loop().time()
                for waiting in rnd.session_reads:
                    waiting.reschedule(now)
            if "open_index" in changes or "state" in changes:  # what waiting Next calls wait for
                rnd.cond.notify_all()

    def _persist(self, rnd: _Round, state: str = "running", outcome: bytes = b"") -> None:
        """Journal the round's state -- before anyone is told of it, so a result a client saw is never lost."""
        if self.journal is None:
            return
        self.journal.put_round(rnd.round_id, state, rnd.proto_params().SerializeToString(), outcome,
                               rnd.token_hashes if state == "running" else None)

    async def _abort(self, rnd: _Round, stage: Stage, reason: str) -> None:
        # who dropped and who had sent a masked input go to the journal, for the round's receipt: a round mostly
        # aborts because clients dropped (the event below carries neither list)
        aborted = spb.SecAggAborted(
            stage=stage.value, reason=reason, participants_recorded=True,
            dropped=[spb.SecAggDropout(client_id=c, stage=s.value) for c, s in sorted(rnd.dropouts.items())],
            masked_input_from=sorted(rnd.responses.get(Stage.MASKED_INPUT_COLLECTION, {})))
        self._persist(rnd, "aborted", aborted.SerializeToString())
        self._publish("aborted", rnd, stage=stage.value, reason=reason)
        await self._set(rnd, state="aborted", aborted=aborted, accepting=False)
        log.warning("secagg round %s aborted at %s: %s", rnd.round_id, stage.value, reason)

    async def _drive(self, rnd: _Round) -> None:
        stage = Stage.SETUP
        try:
            for index, stage in enumerate(rnd.stages):
                module = MODULES[stage]
                requests = module.server_request(rnd.server)
                rnd.requests[stage] = requests
                rnd.responses[stage] = {}
                rnd.awaiting = set(requests) - set(rnd.gone)
                rnd.all_in = asyncio.Event()
                await self._set(rnd, open_index=index, accepting=True)
                for cid in sorted(set(requests) & set(rnd.gone) - rnd.announced):
                    rnd.announced.add(cid)
                    self._publish("dropped", rnd, client=cid, stage=stage.value, why=rnd.gone[cid])
                rnd.check_all_in()
                self._publish("stage", rnd, stage=stage.value, expected=len(requests))
                deadline = rnd.join_deadline_s if index == 0 else rnd.stage_deadline_s
                try:
                    await asyncio.wait_for(rnd.all_in.wait(), deadline)
                except TimeoutError:
                    pass
                await self._set(rnd, accepting=False)
                responses = dict(rnd.responses[stage])
                for cid in sorted(set(requests) - set(responses)):
                    rnd.dropouts[cid] = stage
                    if cid not in rnd.announced:
                        rnd.announced.add(cid)
                        self._publish("dropped", rnd, client=cid, stage=stage.value,
                                      why="no answer before the deadline")
                try:
                    rnd.server = await asyncio.to_thread(module.server_step, rnd.server, responses)
                except SecAggError as exc:  # InsufficientSurvivors (the clean abort) or inconsistent shares
                    await self._abort(rnd, stage, str(exc))
                    return
                for cid in sorted(set(responses) - rnd.server.after(stage)):
                    rnd.dropouts[cid] = stage
                    rnd.announced.add(cid)
                    self._publish("dropped", rnd, client=cid, stage=stage.value,
                                  why=rnd.server.rejected.get(cid, "answer rejected"))
            result = unmasking.result(rnd.server)
            included = sorted(rnd.server.after(Stage.MASKED_INPUT_COLLECTION))
            done = done_message(result, rnd.params.bits, included,
                                [(c, s.value) for c, s in sorted(rnd.dropouts.items())])
            # the event (and metric) first: whoever hears "done" from a client can find them already
            self._persist(rnd, "done", done.SerializeToString())
            self._publish("result", rnd, included=included, dropped=sorted(rnd.dropouts))
            await self._set(rnd, state="done", done=done)
            log.info("secagg round %s done: %d inputs in the sum, %d dropouts", rnd.round_id, len(included),
                     len(rnd.dropouts))
        except asyncio.CancelledError:
            await self._abort(rnd, stage, f"the coordinator stopped during {stage.value}")
            raise
        except Exception as exc:  # noqa: BLE001 - never leave waiting clients hanging
            log.error("secagg round %s failed at %s: %s", rnd.round_id, stage.value, type(exc).__name__)
            await self._abort(rnd, stage, f"internal error at {stage.value}: {type(exc).__name__}")
        finally:
            # a finished round keeps its outcome only: masked vectors, ciphertexts and keys are let go
            rnd.requests, rnd.responses = {}, {}
            rnd.server = rnd.server.replace(masked={}, routed={})

    async def close(self) -> None:
        tasks = [r.task for r in self.rounds.values() if r.task is not None and not r.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

