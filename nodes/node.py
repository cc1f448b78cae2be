"""A compute node: holds additive shares, runs job plans, opens masks with peers.

Per job: the coordinator opens the job (party token hashes), declares inputs,
parties send this node its share of each input (a seed on nodes 1..N-1, data
on node N), and the coordinator asks it to execute the compiled plan.  For
each multiplication layer the node sends one message to every peer (its
share of all the layer's Beaver/truncation masks, chunked) and waits, under
the stage deadline, for every peer's message; a missing peer becomes a
``PeerTimeout`` naming the peer, job and layer.  Outputs are revealed only to
the parties the program names.

State that must survive a restart - the ids of consumed triple batches - is
journalled to ``state_dir`` when configured.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import grpc
import numpy as np

from mpcnet.fl.sampling import Draws
from mpcnet.transport.metrics import RoleMetrics, role_metrics
from mpcnet.transport.mqtt_bus import close_bus, open_bus
from mpcnet.config import Config
from mpcnet.core.engine import ExecutionError, JobExecution
from mpcnet.core.preprocessing import MaterialItem, MaterialKind, node_material
from mpcnet.core.program import Plan, ProgramError, SecretType, compile_program
from mpcnet.core.ring import RingArray
from mpcnet.core.sharing import expand_share, input_label
from mpcnet.errors import (
    Aborted, AlreadyExists, FailedPrecondition, InvalidInput, MpcnetError, NotFound, PeerTimeout,
    PermissionDenied, Unauthenticated,
)
from mpcnet.transport.rpc import (
    CLUSTER_AUTH_KEY, NODE_ID_KEY, PARTY_TOKEN_KEY, RoleServer, from_rpc_error, insecure_channel, metadata_value,
    servicer_errors, stream_servicer_errors, token_hash,
)
from mpcnet.transport.tensors import ArrayAssembler, array_chunks
from mpcnet.wire import check_output_readers, program_from_proto, secret_type
from mpcnet.v1 import mpc_pb2 as pb
from mpcnet.v1 import mpc_pb2_grpc as pbg

log = logging.getLogger("mpcnet.node")


@dataclass
class NodeJob:
    job_id: str
    parties: dict[bytes, str]
    frac_bits: int
    state: str = "open"
    declared: dict[str, tuple[SecretType, str]] = field(default_factory=dict)
    inputs: dict[str, RingArray] = field(default_factory=dict)
    outputs: dict[str, tuple[RingArray, tuple[str, ...]]] = field(default_factory=dict)
    mailbox: dict[tuple[int, int], "asyncio.Future[RingArray]"] = field(default_factory=dict)
    expected_layer_sizes: dict[int, int] = field(default_factory=dict)
    layers_done: int = 0
    prepared: tuple[str, Plan, list] | None = None
    error: str = ""
    created: float = field(default_factory=time.monotonic)
    ended: float | None = None


class NodeService(pbg.NodeServicer):
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.tls = cfg.tls_for("node")
        self.metrics: RoleMetrics | None = None
        self.node_id = cfg.node_id
        self.n = cfg.n_nodes
        self.index = self.node_id - 1
        self.is_last = self.node_id == self.n
        self.jobs: dict[str, NodeJob] = {}
        self.seed: bytes | None = None
        self.epoch = ""
        self._reenrolling: asyncio.Task[None] | None = None
        self.consumed: set[str] = set()
        self.journal: Path | None = None
        if cfg.state_dir:
            Path(cfg.state_dir).mkdir(parents=True, exist_ok=True)
            self.journal = Path(cfg.state_dir) / f"node{self.node_id}-consumed-batches.jsonl"
            if self.journal.exists():
                for line in self.journal.read_text().splitlines():
                    if line.strip():
                        self.consumed.add(json.loads(line)["batch_id"])
        self._peer_channels: dict[int, grpc.aio.Channel] = {}
        self._dealer_channel: grpc.aio.Channel | None = None

    # -- helpers ---------------------------------------------------------------
    @property
    def auth_metadata(self) -> tuple[tuple[str, str], ...]:
        # grpc.aio client interceptors do not reach streaming calls, so streaming calls say it themselves.
        return ((CLUSTER_AUTH_KEY, self.cfg.cluster_secret),) if self.cfg.cluster_secret else ()

    def peer_stub(self, node_id: int) -> pbg.NodeStub:
        ch = self._peer_channels.get(node_id)
        if ch is None:
            address = self.cfg.node_address(node_id)
            ch = insecure_channel(address, self.cfg.cluster_secret, self.tls,
                                  self.cfg.expected_identity(address) if self.tls else None)
            self._peer_channels[node_id] = ch
        return pbg.NodeStub(ch)

    def dealer_stub(self) -> pbg.DealerStub:
        if self._dealer_channel is None:
            self._dealer_channel = insecure_channel(self.cfg.dealer, self.cfg.cluster_secret, self.tls,
                                                    self.cfg.expected_identity(self.cfg.dealer) if self.tls else None)
        return pbg.DealerStub(self._dealer_channel)

    async def close(self) -> None:
        for ch in list(self._peer_channels.values()) + ([self._dealer_channel] if self._dealer_channel else []):
            await ch.close()

    def job(self, job_id: str) -> NodeJob:
        self.expire_jobs()
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"node {self.node_id}: unknown job '{job_id}'")
        return job

    def expire_jobs(self) -> None:
        """Forget the shares of jobs that ended more than ``output_ttl_s`` ago (memory stays bounded)."""
        now = time.monotonic()
        for job in list(self.jobs.values()):
            ended = job.ended
            if ended is None and job.state == "open" and now - job.created > self.cfg.output_ttl_s:
                ended = job.created  # never run: its input shares expire too
            if ended is None and job.state in ("preparing", "prepared", "running") \
                    and now - job.created > self.cfg.output_ttl_s + self.cfg.job_timeout_s:
                ended = job.created  # stranded (coordinator gone): release its material
            if ended is not None and now - ended > self.cfg.output_ttl_s and job.state != "expired":
                job.outputs.clear()
                self._drop_job_data(job)
                job.error = f"outputs expired {self.cfg.output_ttl_s:g}s after the job ended"
                job.state = "expired"

    def party_of(self, job: NodeJob, context: grpc.aio.ServicerContext) -> str:
        token = metadata_value(context, PARTY_TOKEN_KEY)
        if not token:
            raise Unauthenticated(f"node {self.node_id}: missing {PARTY_TOKEN_KEY} metadata")
        name = job.parties.get(token_hash(token))
        if name is None:
            raise PermissionDenied(f"node {self.node_id}: caller is not a registered party of job '{job.job_id}'")
        return name

    def record_consumed(self, batch_id: str) -> None:
        if batch_id in self.consumed:
            raise AlreadyExists(f"node {self.node_id}: triple batch {batch_id} was already consumed; "
                                "material is never used twice")
        self.consumed.add(batch_id)
        if self.journal is not None:
            with self.journal.open("a") as fh:
                fh.write(json.dumps({"batch_id": batch_id, "t": time.time()}) + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    async def _reenroll(self) -> None:
        try:
            await self.enroll()
        except (grpc.RpcError, MpcnetError) as exc:
            log.warning("node %d: re-enrolment failed (%s); the next EnsureEnrolled retries", self.node_id,
                        type(exc).__name__)
        finally:
            self._reenrolling = None

    async def enroll(self) -> str:
        resp = await self.dealer_stub().Enroll(pb.EnrollRequest(node_id=self.node_id),
                                               timeout=self.cfg.rpc_timeout_s, wait_for_ready=True)
        if resp.n_nodes != self.n:
            raise FailedPrecondition(f"node {self.node_id}: dealer serves {resp.n_nodes} nodes, this cluster has {self.n}")
        self.seed, self.epoch = resp.seed, resp.epoch
        log.info("enrolled with dealer (epoch %s)", self.epoch)
        return self.epoch

    # -- coordinator-facing ------------------------------------------------------
    @servicer_errors
    async def OpenJob(self, request: pb.OpenJobRequest, context: grpc.aio.ServicerContext) -> pb.OpenJobResponse:
        self.expire_jobs()
        if request.job_id in self.jobs:
            raise AlreadyExists(f"node {self.node_id}: job '{request.job_id}' already exists")
        if request.frac_bits != self.cfg.frac_bits:
            raise FailedPrecondition(f"node {self.node_id}: fixed-point format mismatch "
                                     f"({request.frac_bits} vs {self.cfg.frac_bits} fractional bits)")
        parties = {p.token_sha256: p.name for p in request.parties}
        self.jobs[request.job_id] = NodeJob(request.job_id, parties, request.frac_bits)
        return pb.OpenJobResponse()

    @servicer_errors
    async def DeclareInput(self, request: pb.DeclareInputRequest,
                           context: grpc.aio.ServicerContext) -> pb.DeclareInputResponse:
        job = self.job(request.job_id)
        t = secret_type(request.secret, self.cfg.frac_bits, self.cfg.max_elements)
        if request.secret.name in job.declared:
            if job.declared[request.secret.name] == (t, request.secret.owner):
                return pb.DeclareInputResponse()  # a retry of the same declaration (e.g. after a partial failure)
            raise AlreadyExists(f"job '{job.job_id}': secret '{request.secret.name}' is already declared")
        if request.secret.owner not in job.parties.values():
            raise PermissionDenied(f"job '{job.job_id}': owner '{request.secret.owner}' is not a party of the job")
        job.declared[request.secret.name] = (t, request.secret.owner)
        return pb.DeclareInputResponse()

    @servicer_errors
    async def ProvideInput(self, request_iterator: AsyncIterator[pb.InputChunk],
                           context: grpc.aio.ServicerContext) -> pb.ProvideInputResponse:
        first = True
        job: NodeJob | None = None
        name = ""
        assembler: ArrayAssembler | None = None
        t: SecretType | None = None
        async for msg in request_iterator:
            if first:
                first = False
                job = self.job(msg.job_id)
                party = self.party_of(job, context)
                name = msg.secret
                if name not in job.declared:
                    raise NotFound(f"node {self.node_id}: secret '{name}' is not declared in job '{job.job_id}'")
                t, owner = job.declared[name]
                if owner != party:
                    raise PermissionDenied(f"job '{job.job_id}': secret '{name}' belongs to '{owner}', not '{party}'")
                if name in job.inputs:
                    raise AlreadyExists(f"node {self.node_id}: share of '{name}' was already received; "
                                        "a secret name is used once per job")
                if job.state != "open":
                    raise FailedPrecondition(f"job '{job.job_id}' is {job.state}; inputs are closed")
                if msg.seed:
                    if self.is_last:
                        raise InvalidInput(f"node {self.node_id} is the correction node and needs share data, "
                                           "not a seed")
                    if len(msg.seed) != 32:
                        raise InvalidInput(f"input seed must be 32 bytes, got {len(msg.seed)}")
                    job.inputs[name] = expand_share(msg.seed, input_label(job.job_id, name), t.shape)
                    return pb.ProvideInputResponse()
                assembler = ArrayAssembler(t.size, self.cfg.max_elements, f"share of '{name}'")
            if assembler is None:
                raise InvalidInput("input stream mixes a seed with data")
            if not msg.HasField("chunk"):
                raise InvalidInput(f"share of '{name}': chunk without data")
            assembler.add(msg.chunk)
        if job is None or assembler is None or t is None:
            raise InvalidInput("empty input stream")
        if name in job.inputs:
            raise AlreadyExists(f"node {self.node_id}: share of '{name}' was already received")
        job.inputs[name] = assembler.result(t.shape)
        return pb.ProvideInputResponse()

    @servicer_errors
    async def Prepare(self, request: pb.ExecuteRequest, context: grpc.aio.ServicerContext) -> pb.PrepareResponse:
        job = self.job(request.job_id)
        if job.state != "open":
            raise FailedPrecondition(f"node {self.node_id}: job '{job.job_id}' is {job.state}, cannot prepare")
        program = program_from_proto(request.program)
        check_output_readers(program.outputs, {k: owner for k, (_, owner) in job.declared.items()})
        types = {k: t for k, (t, _) in job.declared.items()}
        try:
            plan = compile_program(program, types, job.frac_bits)
        except ProgramError as exc:
            raise InvalidInput(str(exc)) from None
        if plan.digest != request.plan_digest:
            raise FailedPrecondition(f"node {self.node_id}: plan digest mismatch for job '{job.job_id}' "
                                     "(coordinator and node disagree on inputs or program)")
        missing = [f"'{k}' (from {owner})" for k, (_, owner) in job.declared.items() if k not in job.inputs]
        if missing:
            raise FailedPrecondition(f"node {self.node_id}: job '{job.job_id}' is missing input share(s) "
                                     f"{', '.join(missing)}")
        if request.batch_id in self.consumed:
            raise AlreadyExists(f"node {self.node_id}: triple batch {request.batch_id} was already consumed; "
                                "material is never used twice")
        if len(request.node_epochs) != self.n or request.node_epochs[self.index] != self.epoch:
            if len(request.node_epochs) == self.n and self._reenrolling is None:
                # the dealer holds another enrolment for this node (a re-enrolment this node did not make, or a
                # lost reply): this node's seed is stale, so every later batch would fail too -- enrol afresh
                log.warning("node %d: dealer enrolment %s is not this node's %s; re-enrolling", self.node_id,
                            request.node_epochs[self.index], self.epoch)
                self._reenrolling = asyncio.get_running_loop().create_task(self._reenroll())
            raise FailedPrecondition(f"node {self.node_id}: batch {request.batch_id} was made for a different "
                                     f"dealer enrolment than this node's ({self.epoch or 'not enrolled'})")
        self.record_consumed(request.batch_id)
        job.state = "preparing"
        t0 = time.perf_counter()
        try:
            material = await self.fetch_material(request.batch_id, plan.material)
        except BaseException as exc:
            self._fail(job, exc)
            raise
        for layer in range(1, plan.layers + 1):
            job.expected_layer_sizes[layer] = plan.layer_size(layer)
        job.prepared = (request.batch_id, plan, material)
        job.state = "prepared"
        return pb.PrepareResponse(preprocessing_s=time.perf_counter() - t0)

    @servicer_errors
    async def Execute(self, request: pb.ExecuteRequest, context: grpc.aio.ServicerContext) -> pb.ExecuteResponse:
        job = self.job(request.job_id)
        if job.state != "prepared" or job.prepared is None:
            raise FailedPrecondition(f"node {self.node_id}: job '{job.job_id}' is {job.state}; Prepare it first")
        batch_id, plan, material = job.prepared
        if batch_id != request.batch_id:
            raise FailedPrecondition(f"node {self.node_id}: job '{job.job_id}' was prepared with another batch")
        job.state = "running"
        job.prepared = None
        t1 = time.perf_counter()
        try:
            sent = await self.run_plan(job, plan, material, request.deadline_s or self.cfg.stage_timeout_s)
        except BaseException as exc:
            self._fail(job, exc)
            raise
        t2 = time.perf_counter()
        job.state = "done"
        job.ended = time.monotonic()
        job.inputs.clear()
        if self.metrics is not None:
            self.metrics.bytes_sent.inc(sent)
        report = pb.NodeReport(node_id=self.node_id, online_s=t2 - t1, bytes_sent=sent,
                               peak_rss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        return pb.ExecuteResponse(report=report, layers=plan.layers)

    def _fail(self, job: NodeJob, exc: BaseException) -> None:
        job.ended = time.monotonic()
        if job.state not in ("aborted",):
            job.state = "failed"
            job.error = str(exc) if isinstance(exc, MpcnetError) else type(exc).__name__
        job.prepared = None
        self._drop_job_data(job)

    def _drop_job_data(self, job: NodeJob) -> None:
        job.inputs.clear()
        for fut in job.mailbox.values():
            if not fut.done():
                fut.cancel()
        job.mailbox.clear()

    async def fetch_material(self, batch_id: str, items: tuple[MaterialItem, ...]) -> list:
        if self.seed is None:
            raise FailedPrecondition(f"node {self.node_id} has not enrolled with the dealer")
        if not self.is_last:
            return await asyncio.to_thread(node_material, self.seed, batch_id, items, False)
        total = sum(it.correction_elements for it in items)
        asm = ArrayAssembler(total, 1 << 40, f"corrections of batch {batch_id}")
        try:
            call = self.dealer_stub().FetchCorrections(
                pb.FetchCorrectionsRequest(batch_id=batch_id, node_id=self.node_id), timeout=self.cfg.rpc_timeout_s,
                metadata=self.auth_metadata)
            async for chunk in call:
                asm.add(chunk)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, f"dealer (fetching batch {batch_id})") from None
        flat = asm.result()
        corrections = []
        offset = 0
        for it in items:
            size_c = int(np.prod(it.shape_c, dtype=np.int64))
            parts = []
            for _ in range(2 if it.kind is MaterialKind.TRUNCATION else 1):
                parts.append(flat[offset:offset + size_c].reshape(it.shape_c))
                offset += size_c
            corrections.append(parts)
        return await asyncio.to_thread(node_material, self.seed, batch_id, items, True, corrections)

    async def run_plan(self, job: NodeJob, plan: Plan, material: list, stage_deadline: float) -> int:
        # DP releases: this node's noise shares come from OS entropy, drawn when the plan reaches them
        noise = Draws.secure() if plan.releases else None
        run = JobExecution(plan, self.index, self.n, job.inputs, material, noise)
        sent = 0
        for layer in range(1, plan.layers + 1):
            t0 = time.perf_counter()
            mine = run.masked_shares(layer)
            t1 = time.perf_counter()
            peers = [p for p in range(1, self.n + 1) if p != self.node_id]
            for p in peers:
                job.mailbox.setdefault((layer, p), asyncio.get_running_loop().create_future())
            sends = [asyncio.create_task(self.send_opening(job.job_id, layer, p, mine, stage_deadline)) for p in peers]
            try:
                futs = {p: job.mailbox[(layer, p)] for p in peers}
                waiting: set[asyncio.Future[Any]] = {asyncio.ensure_future(asyncio.shield(f)) for f in futs.values()}
                waiting |= set(sends)
                deadline_at = time.monotonic() + stage_deadline
                # Wait for every peer's opening and our own sends; a failed send fails the stage at once.
                while waiting:
                    left = deadline_at - time.monotonic()
                    if left <= 0:
                        break
                    done, waiting = await asyncio.wait(waiting, timeout=left, return_when=asyncio.FIRST_EXCEPTION)
                    for d in done:
                        if not d.cancelled() and d.exception() is not None:
                            raise d.exception()  # type: ignore[misc]
                for w in waiting:
                    w.cancel()
                if job.state in ("aborted", "failed"):
                    raise Aborted(f"job '{job.job_id}' was aborted: {job.error}")
                missing = [p for p, f in futs.items() if not f.done() or f.cancelled()]
                if missing:
                    names = ", ".join(f"node {p}" for p in missing)
                    raise PeerTimeout(f"node {self.node_id}: peer {names} sent no opening for job "
                                      f"'{job.job_id}' layer {layer} within {stage_deadline:g}s")
                opened = mine.copy()
                for p, f in futs.items():
                    theirs = f.result()
                    if theirs.shape != mine.shape:
                        raise InvalidInput(f"node {self.node_id}: opening from node {p} for job '{job.job_id}' "
                                           f"layer {layer} has {theirs.size} elements, expected {mine.size}")
                    opened += theirs
                for s in sends:
                    sent += await s
            finally:
                for s in sends:
                    if not s.done():
                        s.cancel()
            t2 = time.perf_counter()
            run.absorb_opening(layer, opened)
            job.layers_done = layer
            log.debug("job %s layer %d: %d elements; mask %.3fs, exchange %.3fs, combine %.3fs", job.job_id, layer,
                      mine.size, t1 - t0, t2 - t1, time.perf_counter() - t2)
            for p in peers:
                job.mailbox.pop((layer, p), None)
        outs = run.outputs()
        for name, value in outs.items():
            job.outputs[name] = (value, plan.outputs[name])
        return sent

    async def send_opening(self, job_id: str, layer: int, peer: int, vector: RingArray, deadline: float) -> int:
        def messages():
            for i, chunk in enumerate(array_chunks(vector)):
                if i == 0:
                    yield pb.ExchangeChunk(job_id=job_id, layer=layer, sender=self.node_id, chunk=chunk)
                else:
                    yield pb.ExchangeChunk(chunk=chunk)
        try:
            await self.peer_stub(peer).Exchange(messages(), timeout=deadline,
                                                metadata=((NODE_ID_KEY, str(self.node_id)),) + self.auth_metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, f"node {self.node_id} -> peer node {peer} (job '{job_id}' layer {layer})") from None
        return vector.size * 8

    # -- node-facing ---------------------------------------------------------------
    @servicer_errors
    async def Exchange(self, request_iterator: AsyncIterator[pb.ExchangeChunk],
                       context: grpc.aio.ServicerContext) -> pb.ExchangeAck:
        header: pb.ExchangeChunk | None = None
        asm: ArrayAssembler | None = None
        job: NodeJob | None = None
        async for msg in request_iterator:
            if header is None:
                header = msg
                job = self.job(msg.job_id)
                claimed = metadata_value(context, NODE_ID_KEY)
                if claimed != str(msg.sender) or not 1 <= msg.sender <= self.n or msg.sender == self.node_id:
                    raise PermissionDenied(f"node {self.node_id}: opening from unknown sender {msg.sender}")
                if job.state not in ("prepared", "running"):
                    raise FailedPrecondition(f"node {self.node_id}: job '{job.job_id}' is {job.state}; openings are "
                                             "accepted only once the job is prepared")
                if msg.layer not in job.expected_layer_sizes:
                    raise InvalidInput(f"node {self.node_id}: job '{job.job_id}' has no layer {msg.layer}")
                fut = job.mailbox.get((msg.layer, msg.sender))
                if msg.layer <= job.layers_done or (fut is not None and fut.done()):
                    raise AlreadyExists(f"node {self.node_id}: duplicate opening from node {msg.sender} for job "
                                        f"'{job.job_id}' layer {msg.layer} (replay refused)")
                asm = ArrayAssembler(job.expected_layer_sizes[msg.layer], 4 * self.cfg.max_elements,
                                     f"opening from node {msg.sender}")
            assert asm is not None
            asm.add(msg.chunk)
        if header is None or asm is None or job is None:
            raise InvalidInput("empty exchange stream")
        vector = asm.result()
        key = (header.layer, header.sender)
        fut = job.mailbox.get(key)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            job.mailbox[key] = fut
        if fut.done():
            raise AlreadyExists(f"node {self.node_id}: duplicate opening from node {header.sender} "
                                f"(job '{job.job_id}' layer {header.layer})")
        fut.set_result(vector)
        return pb.ExchangeAck()

    # -- party-facing ------------------------------------------------------------
    @stream_servicer_errors
    async def Reveal(self, request: pb.RevealRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.TensorChunk]:
        job = self.job(request.job_id)
        party = self.party_of(job, context)
        if request.secret not in job.outputs:
            if job.state == "expired":
                raise FailedPrecondition(f"node {self.node_id}: job '{job.job_id}': {job.error}")
            if job.state == "aborted":
                raise FailedPrecondition(f"node {self.node_id}: job '{job.job_id}' was aborted ({job.error}); it "
                                         "serves no outputs")
            if job.state != "done":
                raise FailedPrecondition(f"node {self.node_id}: job '{job.job_id}' is {job.state}; no outputs yet")
            raise NotFound(f"node {self.node_id}: job '{job.job_id}' has no output '{request.secret}'")
        value, readers = job.outputs[request.secret]
        if party not in readers:
            raise PermissionDenied(f"job '{job.job_id}': output '{request.secret}' is revealed only to "
                                   f"{', '.join(readers)}")
        for chunk in array_chunks(value):
            yield chunk

    @servicer_errors
    async def AbortJob(self, request: pb.AbortJobRequest, context: grpc.aio.ServicerContext) -> pb.AbortJobResponse:
        job = self.job(request.job_id)
        if job.state in ("open", "preparing", "prepared", "running", "done"):
            # done too: the coordinator failed the job (another node failed, or it restarted while the nodes
            # finished); a failed job serves no further output -- what was revealed already, its receipt says
            if job.state == "done":
                job.outputs.clear()
            job.state = "aborted"
            job.ended = time.monotonic()
            job.prepared = None
            job.error = request.reason[:500]
            self._drop_job_data(job)
            log.warning("job %s aborted: %s", job.job_id, job.error)
        return pb.AbortJobResponse()

    @servicer_errors
    async def EnsureEnrolled(self, request: pb.EnsureEnrolledRequest,
                             context: grpc.aio.ServicerContext) -> pb.EnsureEnrolledResponse:
        try:
            return pb.EnsureEnrolledResponse(epoch=await self.enroll())
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, "dealer") from None


async def serve(cfg: Config) -> None:
    if not 1 <= cfg.node_id <= cfg.n_nodes:
        from mpcnet.config import ConfigError
        raise ConfigError(f"node id must be in 1..{cfg.n_nodes} (use --id or MPCNET_NODE_ID), got {cfg.node_id}")
    listen = cfg.listen or cfg.node_address(cfg.node_id)
    service = NodeService(cfg)
    metrics = role_metrics(f"node{cfg.node_id}", cfg)
    service.metrics = metrics
    server = RoleServer(f"node{cfg.node_id}", listen, cfg.cluster_secret, cfg.tls_for("node"), metrics)
    pbg.add_NodeServicer_to_server(service, server.server)
    port = await server.start()
    bus = open_bus(cfg.mqtt, cfg.cluster_name, "node", str(cfg.node_id))  # presence, with a last will
    server.install_signal_handlers()
    log.info("node %d of %d serving on port %d", cfg.node_id, cfg.n_nodes, port)
    # Readiness waits for dealer enrolment, bounded by the job timeout.
    deadline = time.monotonic() + cfg.job_timeout_s
    enrolled = False
    while not enrolled and time.monotonic() < deadline:
        try:
            await service.enroll()
            enrolled = True
        except (grpc.RpcError, MpcnetError) as exc:
            log.info("dealer at %s not ready (%s); retrying", cfg.dealer, type(exc).__name__)
            try:
                await asyncio.wait_for(server.wait_for_stop(), timeout=0.5)
                break
            except asyncio.TimeoutError:
                pass
    try:
        if enrolled:
            await server.set_serving(True, ("", "mpcnet.v1.Node"))
            await server.wait_for_stop()
        elif time.monotonic() >= deadline:
            log.error("could not enrol with the dealer at %s within %gs; exiting", cfg.dealer, cfg.job_timeout_s)
            raise SystemExit(3)
    finally:
        log.info("node %d shutting down", cfg.node_id)
        await server.stop()
        await service.close()
        await close_bus(bus)


def main(argv: list[str] | None = None) -> int:
    from nodes.common import role_main
    return role_main("node", serve, argv, with_id=True)


if __name__ == "__main__":
    raise SystemExit(main())
