"""The coordinator: registry of parties and jobs, planning, running jobs.

It never sees a secret value: it holds the program, the declared shapes, the
dealer batch id and the timings.  RunJob compiles the program (the same pure
compiler every node runs), asks the dealer for exactly the material the plan
needs, then runs Execute on every node concurrently under the job deadline.
If any node fails, every node is told to abort and the caller gets the first
failure, which names the node and the stage.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from mpcnet.transport.metrics import role_metrics
from mpcnet.transport.mqtt_bus import close_bus, open_bus
from mpcnet.config import Config
from mpcnet.core.program import NAME_RE, Plan, ProgramError, SecretType, compile_program
from mpcnet.errors import (
    Aborted, AlreadyExists, FailedPrecondition, InvalidInput, MpcnetError, NotFound, PermissionDenied,
    ResourceExhausted, Unauthenticated,
)
from mpcnet.journal import CoordinatorJournal
from mpcnet.receipt import job_receipt, job_receipt_for_party
from mpcnet.transport.rpc import (
    CLUSTER_AUTH_KEY, PARTY_TOKEN_KEY, RoleServer, from_rpc_error, insecure_channel, metadata_value, servicer_errors, token_hash,
)
from mpcnet.wire import check_output_readers, program_from_proto, secret_type
from nodes.dealer import material_to_proto
from mpcnet.v1 import mpc_pb2 as pb
from mpcnet.v1 import mpc_pb2_grpc as pbg
from mpcnet.v1 import secagg_pb2 as spb
from mpcnet.v1.secagg_pb2_grpc import add_SecAggServicer_to_server
from nodes.secagg_service import RESTART_REASON, SecAggService

log = logging.getLogger("mpcnet.coordinator")


@dataclass
class CoordinatorJob:
    job_id: str
    name: str
    parties: tuple[str, ...]
    state: str = "open"
    inputs: dict[str, tuple[SecretType, str]] = field(default_factory=dict)
    outputs: list[pb.SecretSpec] = field(default_factory=list)
    error: str = ""
    receipt: str = ""

    @staticmethod
    def from_info(info: pb.JobInfo) -> "CoordinatorJob":
        """The job as the journal kept it (mpcnet/journal.py)."""
        return CoordinatorJob(info.job_id, info.name, tuple(info.parties), info.state,
                              {s.name: (SecretType(tuple(s.shape), s.frac_bits, s.bound or None, s.nonnegative,
                                                   s.dp_only), s.owner)
                               for s in info.inputs}, list(info.outputs), info.error, info.receipt_json)

    def info(self, reader: str | None = None) -> pb.JobInfo:
        """The job as the journal keeps it (``reader`` None: the operator's view), or as party ``reader`` sees
        it: the receipt without other owners' ledger balances."""
        receipt = self.receipt
        if reader is not None and receipt:
            receipt = json.dumps(job_receipt_for_party(json.loads(receipt), reader), indent=2)
        return pb.JobInfo(
            job_id=self.job_id, name=self.name, state=self.state, parties=self.parties,
            inputs=[pb.SecretSpec(name=k, shape=t.shape, frac_bits=t.frac_bits, owner=o, bound=t.bound or 0.0,
                                  nonnegative=t.nonnegative, dp_only=t.dp_only)
                    for k, (t, o) in self.inputs.items()],
            outputs=self.outputs, error=self.error, receipt_json=receipt)


class CoordinatorService(pbg.CoordinatorServicer):
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.token_hashes: dict[str, bytes] = {}  # party name -> SHA-256 of its token (the token stays with it)
        self.by_hash: dict[bytes, str] = {}
        self.jobs: dict[str, CoordinatorJob] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.tls = cfg.tls_for("coordinator")
        # state_dir: parties, jobs and SecAgg rounds survive a restart (mpcnet/journal.py); without it, memory only
        self.interrupted: list[str] = []  # jobs a crash cut short: the nodes are told to drop them at start-up
        self.journal = CoordinatorJournal(Path(cfg.state_dir) / "coordinator.sqlite") if cfg.state_dir else None
        if self.journal is not None:
            self._recover(self.journal)

    def _recover(self, journal: CoordinatorJournal) -> None:
        def failed(info: bytes) -> bytes:
            msg = pb.JobInfo.FromString(info)
            msg.state = "failed"
            msg.error = msg.error or "the coordinator restarted while the job ran; run it again as a new job"
            msg.receipt_json = failed_receipt(msg.receipt_json, msg.error)
            return msg.SerializeToString()

        def aborted(params: bytes) -> bytes:
            return spb.SecAggAborted(stage="", reason=RESTART_REASON).SerializeToString()

        jobs, rounds = journal.recover(failed, aborted)
        self.interrupted = jobs
        for name, digest in journal.parties().items():
            self.token_hashes[name] = digest
            self.by_hash[digest] = name
        for job_id, state, info, _batch in journal.jobs():
            self.jobs[job_id] = CoordinatorJob.from_info(pb.JobInfo.FromString(info))
        log.info("journal %s: %d parties, %d jobs (%d interrupted, marked failed), %d interrupted SecAgg "
                 "round(s) marked aborted", journal.path, len(self.token_hashes), len(self.jobs), len(jobs),
                 len(rounds))

    async def abort_interrupted(self) -> None:
        """Tell every node to drop the jobs a coordinator crash cut short (best effort: a node that is down has
        forgotten them anyway, and its journal keeps their batches consumed)."""
        for job_id in self.interrupted:
            abort = pb.AbortJobRequest(job_id=job_id, reason="the coordinator restarted while the job ran")
            await asyncio.gather(*(self.node(i).AbortJob(abort, timeout=self.cfg.rpc_timeout_s)
                                   for i in range(1, self.cfg.n_nodes + 1)), return_exceptions=True)
        self.interrupted = []

    def persist(self, job: CoordinatorJob, batch_id: str = "") -> None:
        if self.journal is not None:
            self.journal.put_job(job.job_id, job.state, job.info().SerializeToString(), batch_id)

    def channel(self, address: str) -> grpc.aio.Channel:
        if address not in self._channels:
            self._channels[address] = insecure_channel(address, self.cfg.cluster_secret, self.tls,
                                                       self.cfg.expected_identity(address) if self.tls else None)
        return self._channels[address]

    def node(self, node_id: int) -> pbg.NodeStub:
        return pbg.NodeStub(self.channel(self.cfg.node_address(node_id)))

    def dealer(self) -> pbg.DealerStub:
        return pbg.DealerStub(self.channel(self.cfg.dealer))

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        if self.journal is not None:
            self.journal.close()

    def caller(self, context: grpc.aio.ServicerContext) -> str:
        token = metadata_value(context, PARTY_TOKEN_KEY)
        if not token:
            raise Unauthenticated(f"missing {PARTY_TOKEN_KEY} metadata: register the party first")
        name = self.by_hash.get(token_hash(token))
        if name is None:
            raise Unauthenticated("unknown party token: register the party with this coordinator")
        return name

    def operator(self, context: grpc.aio.ServicerContext) -> bool:
        """The caller presents the cluster secret (an operator tool, not a party)."""
        secret = self.cfg.cluster_secret
        given = metadata_value(context, CLUSTER_AUTH_KEY)
        return bool(secret) and given is not None and hmac.compare_digest(given.encode(), secret.encode())

    def job(self, job_id: str, party: str) -> CoordinatorJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"unknown job '{job_id}'")
        if party not in job.parties:
            raise PermissionDenied(f"party '{party}' is not a party of job '{job_id}'")
        return job

    async def all_nodes(self, what: str, call) -> list:
        """Run ``call(node_id)`` on every node concurrently; first failure names the node."""
        async def one(i: int):
            try:
                return await call(i)
            except grpc.RpcError as exc:
                raise from_rpc_error(exc, f"node {i} ({what})") from None
        return list(await asyncio.gather(*(one(i) for i in range(1, self.cfg.n_nodes + 1))))

    @servicer_errors
    async def RegisterParty(self, request: pb.RegisterPartyRequest,
                            context: grpc.aio.ServicerContext) -> pb.RegisterPartyResponse:
        if not NAME_RE.match(request.name):
            raise InvalidInput(f"invalid party name {request.name!r}: use letters, digits, '_', '.', '-'")
        if request.name in self.token_hashes:
            raise AlreadyExists(f"party '{request.name}' is already registered; choose another name")
        token = secrets.token_urlsafe(24)
        digest = token_hash(token)
        if self.journal is not None:
            self.journal.put_party(request.name, digest)
        self.token_hashes[request.name] = digest
        self.by_hash[digest] = request.name
        log.info("party %s registered", request.name)
        return pb.RegisterPartyResponse(token=token)

    @servicer_errors
    async def GetCluster(self, request: pb.GetClusterRequest, context: grpc.aio.ServicerContext) -> pb.ClusterInfo:
        return pb.ClusterInfo(nodes=[pb.NodeAddress(id=i + 1, address=a) for i, a in enumerate(self.cfg.nodes)],
                              frac_bits=self.cfg.frac_bits, max_elements=self.cfg.max_elements)

    @servicer_errors
    async def CreateJob(self, request: pb.CreateJobRequest, context: grpc.aio.ServicerContext) -> pb.JobInfo:
        caller = self.caller(context)
        parties = tuple(dict.fromkeys([caller, *request.parties]))
        unknown = [p for p in parties if p not in self.token_hashes]
        if unknown:
            raise NotFound(f"unregistered part{'y' if len(unknown) == 1 else 'ies'} {unknown}: they must connect first")
        job = CoordinatorJob(f"job-{secrets.token_hex(6)}", request.name or "job", parties)
        entries = [pb.PartyEntry(name=p, token_sha256=self.token_hashes[p]) for p in parties]
        req = pb.OpenJobRequest(job_id=job.job_id, parties=entries,
                                nodes=[pb.NodeAddress(id=i + 1, address=a) for i, a in enumerate(self.cfg.nodes)],
                                frac_bits=self.cfg.frac_bits)
        await self.all_nodes(f"opening job '{job.job_id}'", lambda i: self.node(i).OpenJob(req, timeout=self.cfg.rpc_timeout_s))
        self.jobs[job.job_id] = job
        self.persist(job)
        log.info("job %s (%s) created for parties %s", job.job_id, job.name, ", ".join(parties))
        return job.info()

    @servicer_errors
    async def DeclareInput(self, request: pb.DeclareInputRequest,
                           context: grpc.aio.ServicerContext) -> pb.DeclareInputResponse:
        caller = self.caller(context)
        job = self.job(request.job_id, caller)
        if job.state != "open":
            raise FailedPrecondition(f"job '{job.job_id}' is {job.state}; inputs are closed")
        t = secret_type(request.secret, self.cfg.frac_bits, self.cfg.max_elements)
        if request.secret.name in job.inputs:
            raise AlreadyExists(f"job '{job.job_id}': secret '{request.secret.name}' is already declared "
                                f"(by {job.inputs[request.secret.name][1]})")
        spec = pb.SecretSpec(name=request.secret.name, shape=t.shape, frac_bits=t.frac_bits, owner=caller,
                             bound=t.bound or 0.0, nonnegative=t.nonnegative, dp_only=t.dp_only)
        job.inputs[spec.name] = (t, caller)
        fwd = pb.DeclareInputRequest(job_id=job.job_id, secret=spec)
        try:
            await self.all_nodes("declare input", lambda i: self.node(i).DeclareInput(fwd, timeout=self.cfg.rpc_timeout_s))
        except MpcnetError:
            del job.inputs[spec.name]
            raise
        self.persist(job)
        return pb.DeclareInputResponse()

    @servicer_errors
    async def GetJob(self, request: pb.GetJobRequest, context: grpc.aio.ServicerContext) -> pb.JobInfo:
        if self.operator(context):  # `mpcnet receipt --job`: state and receipt, which hold no values
            job = self.jobs.get(request.job_id)
            if job is None:
                raise NotFound(f"unknown job '{request.job_id}'")
            return job.info()
        if metadata_value(context, CLUSTER_AUTH_KEY) is not None and not metadata_value(context, PARTY_TOKEN_KEY):
            raise Unauthenticated(f"GetJob of job '{request.job_id}': wrong cluster secret ({CLUSTER_AUTH_KEY}); "
                                  "an operator needs this coordinator's secret, a party its party token")
        caller = self.caller(context)
        return self.job(request.job_id, caller).info(caller)

    async def create_batch(self, job: CoordinatorJob, plan: Plan) -> pb.CreateBatchResponse:
        req = pb.CreateBatchRequest(job_id=job.job_id, items=[material_to_proto(m) for m in plan.material])
        for attempt in range(2):
            try:
                return await self.dealer().CreateBatch(req, timeout=self.cfg.rpc_timeout_s)
            except grpc.RpcError as exc:
                if attempt == 0 and exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    # A node is not enrolled with this dealer (e.g. the dealer restarted): re-enrol, retry once.
                    await self.all_nodes("enrol with dealer", lambda i: self.node(i).EnsureEnrolled(
                        pb.EnsureEnrolledRequest(), timeout=self.cfg.rpc_timeout_s))
                    continue
                raise from_rpc_error(exc, "dealer (create batch)") from None
        raise AssertionError("unreachable")

    def ledger_path(self) -> Path:
        from mpcnet.ledger import default_path
        if self.cfg.ledger:
            return Path(self.cfg.ledger)
        return Path(self.cfg.state_dir) / "epsilon-ledger.sqlite" if self.cfg.state_dir else default_path()

    async def charge_releases(self, job: CoordinatorJob, plan: Plan, caller: str) -> list[dict[str, Any]]:
        """Check each release's epsilon with dp-accounting and charge it to the data it reads.

        A refusal tells ``caller`` the remaining budget of its own data; of another owner's data only that it is
        too small (its balance is that owner's and the operator's to see, as in the receipts).  Each refusal
        still answers "enough or not" for one amount: a party of the job could bisect another owner's balance by
        retrying, and the coordinator logs every refusal so an operator can see it.

        The ledger's key is the data, not the job: each input owner's data is the dataset ``party:<owner>``, so
        the same statistic asked again under another job name (or input name) spends again.  All charges of a
        job are taken together or refused together (RESOURCE_EXHAUSTED, with the remaining budget)."""
        from mpcnet.dp.accounting import discrete_laplace_epsilon
        from mpcnet.ledger import BudgetExceeded, EpsilonLedger, LedgerBusy, LedgerUnusable, NoBudget
        charges: list[tuple[str, str, str, dict[str, object], float, float]] = []
        out: list[dict[str, Any]] = []
        for rel in plan.releases:
            eps = await asyncio.to_thread(discrete_laplace_epsilon, rel.parameter, rel.grid_sensitivity)
            if eps > rel.epsilon + 2e-4:  # the compiler's calibration disagrees with the library: never release
                raise FailedPrecondition(f"release '{rel.output}': dp-accounting puts epsilon at {eps:g}, above the "
                                         f"requested {rel.epsilon:g}; refusing")
            spend = max(eps, rel.epsilon)
            owners = sorted({job.inputs[src][1] for src in rel.depends_on})
            params: dict[str, object] = {
                # sensitivity and scale of the released value, in its units (a mean's: the sum's over its rows)
                "job": job.job_id, "statistic": rel.kind, "source": rel.source,
                "sensitivity": rel.sensitivity / rel.divisor, **({"rows": rel.divisor} if rel.kind == "mean" else {}),
                "noise": f"discrete Laplace, scale {rel.noise_scale:.6g}", "grid_bits": rel.grid_bits,
                "grid_sensitivity": rel.grid_sensitivity, "parameter": rel.parameter, "nodes": self.cfg.n_nodes}
            for owner in owners:
                charges.append((f"party:{owner}", f"{job.job_id}/{rel.output}", "discrete Laplace (MPC, distributed)",
                                params, spend, 0.0))
            out.append({"output": rel.output, "statistic": rel.kind, "source": rel.source, "epsilon": spend,
                        "delta": 0.0, "sensitivity": rel.sensitivity / rel.divisor, "noise_scale": rel.noise_scale,
                        "datasets": [f"party:{o}" for o in owners]})
        default = (self.cfg.dp_budget, 0.0) if self.cfg.dp_budget > 0 else None

        def charge() -> dict[str, tuple[float, float]]:
            # in a worker thread with its own connection: a busy ledger (SQLite waits up to 10 s for a writer)
            # must not stall the event loop the SecAgg rounds share
            with EpsilonLedger(self.ledger_path()) as ledger:
                recorded = ledger.charge_all(charges, default_budget=default)
            # each dataset's balance right after this job's last charge to it, read inside the charging
            # transaction: a concurrent job's charge landing just after it is not subtracted here
            return {r.dataset: r.remaining_after for r in recorded if r.remaining_after is not None}
        try:
            balances = await asyncio.to_thread(charge)
        except BudgetExceeded as exc:
            log.warning("job %s: a DP release refused for %s (run by %s): over its epsilon budget", job.job_id,
                        exc.dataset, caller)
            if exc.dataset == f"party:{caller}":
                raise ResourceExhausted(f"job '{job.job_id}': {exc}") from None
            raise ResourceExhausted(f"job '{job.job_id}': refused: {exc.release!r} would spend more epsilon of "
                                    f"dataset {exc.dataset!r} than it has left (its owner and the operator can "
                                    "see the balance: `mpcnet ledger show`)") from None
        except LedgerBusy as exc:  # transient: another writer (a concurrent job, `mpcnet ledger budget`)
            log.warning("job %s: %s", job.job_id, exc)
            raise Aborted(f"job '{job.job_id}': the coordinator's epsilon ledger is busy with another writer; "
                          "nothing was charged and the job is still open: run it again") from None
        except LedgerUnusable as exc:  # the server's own file: its path and the reason stay in the server's log
            log.error("job %s: the epsilon ledger cannot be used: %s", job.job_id, exc)
            raise FailedPrecondition(f"job '{job.job_id}': the coordinator's epsilon ledger cannot be used (its log "
                                     "says why); no DP release can be charged until the operator fixes it") from None
        except NoBudget as exc:  # no budget set and no default (the server's path stays in its log)
            log.warning("job %s: %s", job.job_id, exc)
            raise FailedPrecondition(
                f"job '{job.job_id}': dataset {exc.dataset!r} has no privacy budget: the operator sets one on the "
                "coordinator's own ledger, `mpcnet ledger budget --ledger <coordinator state dir>/epsilon-ledger."
                f"sqlite (or its [privacy] ledger) --dataset {exc.dataset} --epsilon E --delta D`") from None
        except InvalidInput as exc:
            raise FailedPrecondition(f"job '{job.job_id}': {exc}") from None
        for item in out:
            item["ledger_remaining"] = {d: balances[d][0] for d in item["datasets"]}
        log.info("job %s: %d DP release(s) charged to %s", job.job_id, len(plan.releases), sorted(balances))
        return out

    @servicer_errors
    async def RunJob(self, request: pb.RunJobRequest, context: grpc.aio.ServicerContext) -> pb.RunJobResponse:
        caller = self.caller(context)
        job = self.job(request.job_id, caller)
        if job.state != "open":
            raise FailedPrecondition(f"job '{job.job_id}' is {job.state}; a job runs once")
        program = program_from_proto(request.program)
        for name, readers in program.outputs.items():
            strangers = [r for r in readers if r not in job.parties]
            if strangers:
                raise PermissionDenied(f"output '{name}' names reader(s) {strangers} who are not parties of the job")
        check_output_readers(program.outputs, {k: owner for k, (_, owner) in job.inputs.items()})
        try:
            plan = compile_program(program, {k: t for k, (t, _) in job.inputs.items()}, self.cfg.frac_bits)
        except ProgramError as exc:
            raise InvalidInput(str(exc)) from None
        # DP releases spend from the epsilon ledger before anything runs; a refusal leaves the job open.  The state
        # moves off "open" before the first await, so a concurrent RunJob of the same job cannot charge twice.
        privacy = None
        left_mid_charge = False
        if plan.releases:
            job.state = "charging"
            # shielded: the ledger write runs in a thread, which no cancellation stops.  A caller leaving mid-charge
            # (its deadline, while the ledger is busy) must not leave a landed charge behind an open job, which a
            # retry would charge again: the charge is waited for, and once it landed the job fails with its receipt
            charging = asyncio.ensure_future(self.charge_releases(job, plan, caller))
            try:
                privacy = await asyncio.shield(charging)
            except asyncio.CancelledError:
                await asyncio.wait({charging})
                if charging.cancelled() or charging.exception() is not None:
                    job.state = "open"
                    raise
                privacy, left_mid_charge = charging.result(), True
            except BaseException:
                job.state = "open"
                raise
        job.state = "running"
        t0 = time.perf_counter()
        ok = False
        try:
            receipt = job_receipt(job.job_id, plan, job.inputs, self.cfg.n_nodes, privacy)
            if privacy:
                # journalled with the charge: a job failing before its nodes run (the dealer down) keeps its
                # charge, and its receipt must say so rather than the job seem to have cost nothing
                job.receipt = json.dumps({**receipt, "outcome": NOT_YET_RUN}, indent=2)
            self.persist(job)
            if left_mid_charge:
                raise asyncio.CancelledError  # failed below, keeping the receipt of its charge
            batch = await self.create_batch(job, plan)
            self.persist(job, batch.batch_id)
            exe = pb.ExecuteRequest(job_id=job.job_id, program=request.program, plan_digest=plan.digest,
                                    batch_id=batch.batch_id, node_epochs=batch.node_epochs,
                                    deadline_s=self.cfg.stage_timeout_s)
            # Offline phase on every node, then the online phase: online timings exclude material transfer.
            prepared = await asyncio.wait_for(
                self.all_nodes(f"prepare stage of job '{job.job_id}'",
                               lambda i: self.node(i).Prepare(exe, timeout=self.cfg.stage_timeout_s)),
                timeout=self.cfg.job_timeout_s + 5)
            # The receipt is journalled before any node may release: if the coordinator dies while the nodes
            # finish, the outputs may reach their readers, and the receipt must survive to say what they cost.
            job.receipt = json.dumps(receipt, indent=2)
            self.persist(job, batch.batch_id)
            results = await asyncio.wait_for(
                self.all_nodes(f"online stage of job '{job.job_id}'",
                               lambda i: self.node(i).Execute(exe, timeout=self.cfg.job_timeout_s)),
                timeout=self.cfg.job_timeout_s + 5)
            ok = True
        except MpcnetError as exc:
            job.error = str(exc)
            raise
        except asyncio.TimeoutError:
            job.error = f"job '{job.job_id}' exceeded its {self.cfg.job_timeout_s:g}s deadline"
            raise FailedPrecondition(job.error) from None
        finally:
            if not ok:
                # Any exit but success (error, deadline, caller cancelled): mark failed, tell every node.
                job.state = "failed"
                job.error = job.error or "RunJob was cancelled by the caller"
                job.receipt = failed_receipt(job.receipt, job.error)
                log.warning("job %s failed: %s", job.job_id, job.error)
                self.persist(job)
                abort = pb.AbortJobRequest(job_id=job.job_id, reason=job.error)
                await asyncio.shield(asyncio.gather(*(self.node(i).AbortJob(abort, timeout=self.cfg.rpc_timeout_s)
                                                      for i in range(1, self.cfg.n_nodes + 1)),
                                                    return_exceptions=True))
        total = time.perf_counter() - t0
        job.state = "done"
        job.outputs = [pb.SecretSpec(name=k, shape=plan.types[k].shape, frac_bits=plan.types[k].frac_bits)
                       for k in plan.outputs]
        self.persist(job)
        reports = [r.report for r in results]
        for rep, prep in zip(reports, prepared):
            rep.preprocessing_s = prep.preprocessing_s
        log.info("job %s done in %.3fs (%d layers)", job.job_id, total, plan.layers)
        return pb.RunJobResponse(
            job=job.info(caller), preprocessing_s=max(r.preprocessing_s for r in reports),
            online_s=max(r.online_s for r in reports), total_s=total, layers=plan.layers,
            bytes_exchanged=sum(r.bytes_sent for r in reports), nodes=reports)


# a DP job's receipt from its charge until its nodes are told to run (replaced then by the receipt without it)
NOT_YET_RUN = "charged; the job's nodes have not been told to run yet"


def failed_receipt(receipt_json: str, why: str) -> str:
    """A job that failed keeps its receipt, marked with how it ended: once its nodes could run, some outputs may
    have reached their readers; before that (a DP job charged, then the dealer down) nothing was released but
    the charge stands.  A job without DP that failed before any node ran has none."""
    if not receipt_json:
        return ""
    receipt = json.loads(receipt_json)
    if receipt.get("outcome") == NOT_YET_RUN:
        receipt["outcome"] = (f"the job failed ({why}) before its nodes were told to run: nothing was released; the "
                              "DP releases it lists were charged and the charge stands")
    else:
        receipt["outcome"] = (f"the job failed ({why}) after its nodes were told to run: some outputs may have "
                              "reached their readers; the DP releases it lists were charged and stay charged")
    return json.dumps(receipt, indent=2)


async def serve(cfg: Config) -> None:
    listen = cfg.listen or cfg.coordinator
    service = CoordinatorService(cfg)  # its journal makes the state directory
    if cfg.ledger:
        # a mistyped [privacy] ledger / MPCNET_LEDGER directory would start a fresh ledger, with every party's
        # budget fresh: refuse to start instead (the default location, and the state directory, are made)
        from mpcnet.config import ConfigError
        from mpcnet.ledger import check_chosen_location
        try:
            check_chosen_location(cfg.ledger, "the epsilon ledger ([privacy] ledger or MPCNET_LEDGER)")
        except InvalidInput as exc:
            await service.close()
            raise ConfigError(str(exc)) from None
    metrics = role_metrics("coordinator", cfg)
    server = RoleServer("coordinator", listen, cfg.cluster_secret, cfg.tls_for("coordinator"), metrics)
    pbg.add_CoordinatorServicer_to_server(service, server.server)
    bus = open_bus(cfg.mqtt, cfg.cluster_name, "coordinator", cfg.tls_name or "main")
    secagg = SecAggService(cfg, bus, metrics, service.journal)
    add_SecAggServicer_to_server(secagg, server.server)
    port = await server.start()
    server.install_signal_handlers()
    await server.set_serving(True, ("", "mpcnet.v1.Coordinator", "mpcnet.v1.SecAgg"))
    log.info("coordinator serving on port %d; %d nodes, dealer %s", port, cfg.n_nodes, cfg.dealer)
    cleanup = asyncio.get_running_loop().create_task(service.abort_interrupted())
    try:
        await server.wait_for_stop()
    finally:
        log.info("coordinator shutting down")
        cleanup.cancel()
        await secagg.close()
        await server.stop()
        await service.close()
        await close_bus(bus)


def main(argv: list[str] | None = None) -> int:
    from nodes.common import role_main
    return role_main("coordinator", serve, argv)


if __name__ == "__main__":
    raise SystemExit(main())
