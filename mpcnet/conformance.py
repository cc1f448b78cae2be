"""`mpcnet conformance --target HOST:PORT`: check a live deployment of the `proto/mpcnet/v1` contract.

Everything goes through the public gRPC API of the coordinator (and the nodes it lists), so any implementation of
the contract can be checked.  The suite runs four groups of checks, documented in docs/conformance.md:

* service: the gRPC health service reports SERVING, and GetCluster lists the nodes;
* mpc: known answers computed through the SDK and checked exactly against numpy (sharing and reconstruction, a
  sum, Beaver products, a dot product, fixed-point products within one unit in the last place);
* secagg: the known-answer rounds of tests/vectors/secagg (a-d) replayed live with their inputs and their
  scripted dropouts (clients that leave before answering a stage), giving the vector's exact sum or its abort
  stage.  This group needs the cluster secret (`--secret-file`), because CreateRound is an operator call;
* negative: malformed, unauthenticated, replayed, out-of-order, oversized and unknown-id requests, each refused
  with its documented status code.

The suite prints a pass/fail table and exits 1 if any check failed (0 otherwise; skipped checks do not fail).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import math
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import grpc
import numpy as np

# copies of tests/vectors/secagg shipped in the package (tests/unit/test_conformance_vectors.py keeps them equal)
VECTORS = Path(__file__).parent / "data" / "secagg_vectors"
REPLAYABLE = ("a_no_dropout", "b_dropout_after_share_keys", "c_dropout_after_masked_input",
              "d_abort_below_threshold")  # e (SecAgg+, active) needs the vector's own graph seed: not live


@dataclass
class Check:
    group: str
    name: str
    expected: str
    observed: str = ""
    status: str = "fail"  # pass | fail | skip


class Suite:
    def __init__(self, target: str, tls_dir: str | None, secret: str, timeout_s: float) -> None:
        self.target = target
        self.tls_dir = tls_dir
        self.secret = secret
        self.timeout_s = timeout_s
        self.checks: list[Check] = []
        self.tag = secrets.token_hex(3)
        from mpcnet.certs import Identity
        from mpcnet.transport.tls import TlsFiles
        self.client_tls = TlsFiles.load(tls_dir, "client", "main") if tls_dir else None
        # CreateRound is the coordinator's operator call: under mTLS it needs the coordinator's certificate
        self.admin_tls = TlsFiles.load(tls_dir, "coordinator", "main") if tls_dir and secret and \
            (Path(tls_dir) / "coordinator-main.key").exists() else None
        self.coordinator_identity = Identity("coordinator", "main")

    # -- plumbing
    def reachable(self) -> None:
        """The target's health service answers (its status is the service group's check): else the RpcError."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        with self.channel() as ch:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=self.timeout_s)

    def channel(self, admin: bool = False) -> grpc.Channel:
        from mpcnet.transport.rpc import sync_channel
        tls = self.admin_tls if admin else self.client_tls
        return sync_channel(self.target, tls, self.coordinator_identity if tls else None)

    def unlimited_channel(self) -> grpc.Channel:
        """A channel that sends any size, so that the *server's* message limit is what gets tested."""
        from mpcnet.transport.tls import target_options
        opts = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
        if self.client_tls is None:
            return grpc.insecure_channel(self.target, options=opts)
        return grpc.secure_channel(self.target, self.client_tls.channel_credentials(),
                                   options=opts + target_options(self.coordinator_identity))

    def run(self, group: str, name: str, expected: str, fn: Callable[[], str], skip: str = "") -> None:
        check = Check(group, name, expected)
        if skip:
            check.status, check.observed = "skip", skip
        else:
            try:
                check.observed = fn()
                check.status = "pass"
            except AssertionError as exc:
                check.observed = str(exc)[:200]
            except Exception as exc:  # a check that breaks is a failed check, the suite goes on
                check.observed = f"{type(exc).__name__}: {exc}"[:200]
        self.checks.append(check)

    def party(self, name: str) -> Any:
        import mpcnet
        tls_name = "main" if self.tls_dir else None
        return mpcnet.connect(self.target, f"conf-{self.tag}-{name}", timeout_s=self.timeout_s,
                              tls_dir=self.tls_dir, tls_name=tls_name)

    def status_of(self, call: Callable[[], Any]) -> grpc.StatusCode:
        try:
            call()
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            assert exc.details(), f"{code.name} without a message"
            return code
        return grpc.StatusCode.OK

    def expect(self, code: grpc.StatusCode, call: Callable[[], Any]) -> str:
        got = self.status_of(call)
        assert got == code, f"got {got.name}, want {code.name}"
        return got.name

    # -- groups
    def service(self) -> None:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        from mpcnet.v1 import mpc_pb2 as pb
        from mpcnet.v1 import mpc_pb2_grpc as pbg

        def health() -> str:
            reply = health_pb2_grpc.HealthStub(self.channel()).Check(health_pb2.HealthCheckRequest(service=""),
                                                                     timeout=self.timeout_s)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, f"status {reply.status}"
            return "SERVING"

        def cluster() -> str:
            info = pbg.CoordinatorStub(self.channel()).GetCluster(pb.GetClusterRequest(), timeout=self.timeout_s)
            assert len(info.nodes) >= 2, f"{len(info.nodes)} nodes"
            return f"{len(info.nodes)} nodes, {info.frac_bits} fractional bits"

        self.run("service", "health", "SERVING", health)
        self.run("service", "GetCluster", ">= 2 nodes", cluster)

    def mpc(self) -> None:
        import mpcnet
        try:
            a, b = self.party("a"), self.party("b")
        except Exception as exc:
            self.checks.append(Check("mpc", "connect two parties", "registered", f"{type(exc).__name__}: {exc}"[:200]))
            return
        # public, reproducible test data (not secrets), from SHA-3's XOF rather than a statistical RNG
        words = np.frombuffer(hashlib.shake_256(b"mpcnet conformance inputs").digest(4 * 2128), dtype="<u4")
        ints = words.astype(np.int64) % 2_000_001 - 1_000_000
        x_i, y_i = ints[:1000], ints[1000:2000]
        reals = np.round((words[2000:].astype(np.float64) / 2**32) * 200 - 100, 3)
        x_f, y_f = reals[:64], reals[64:128]

        def job(program: Any, inputs: dict[str, tuple[Any, np.ndarray]], out: str, reader: Any) -> np.ndarray:
            j = a.create_job(parties=[b.name])
            for name, (owner, value) in inputs.items():
                owner.share(j, name, value)
            a.run(j, program)
            return np.asarray(reader.reveal(j, out))

        def reconstruct() -> str:
            got = job(mpcnet.Program().add("z", "x", "zero").output("z", to=[a.name]),
                      {"x": (a, x_i), "zero": (b, np.zeros_like(x_i))}, "z", a)
            assert np.array_equal(got, x_i), "reconstructed value differs"
            return "exact (1000 integers)"

        def add() -> str:
            got = job(mpcnet.Program().add("z", "x", "y").output("z", to=[b.name]), {"x": (a, x_i), "y": (b, y_i)},
                      "z", b)
            assert np.array_equal(got, x_i + y_i), "sum differs"
            return "exact"

        def mul() -> str:
            got = job(mpcnet.Program().mul("z", "x", "y").output("z", to=[a.name]), {"x": (a, x_i), "y": (b, y_i)},
                      "z", a)
            assert np.array_equal(got, x_i * y_i), "Beaver product differs"
            return "exact"

        def dot() -> str:
            got = job(mpcnet.Program().dot("z", "x", "y").output("z", to=[a.name]), {"x": (a, x_i), "y": (b, y_i)},
                      "z", a)
            assert int(got) == int(x_i @ y_i), f"{int(got)} != {int(x_i @ y_i)}"
            return "exact"

        def fixed() -> str:
            got = job(mpcnet.Program().mul("z", "x", "y").output("z", to=[a.name]), {"x": (a, x_f), "y": (b, y_f)},
                      "z", a)
            err = float(np.max(np.abs(got - x_f * y_f)))
            # inputs rounded to 2^-16, the product truncated once: |error| <= (|x| + |y| + 1) * 2^-16
            bound = float(np.max(np.abs(x_f) + np.abs(y_f) + 1)) * 2.0**-16
            assert err <= bound, f"max error {err:.3g} > {bound:.3g}"
            return f"max error {err:.2e} (bound {bound:.2e})"

        self.run("mpc", "share and reconstruct", "x + 0 == x exactly", reconstruct)
        self.run("mpc", "sum of two parties' inputs", "exact", add)
        self.run("mpc", "Beaver products (1000 integers)", "exact", mul)
        self.run("mpc", "dot product", "exact", dot)
        self.run("mpc", "fixed-point products", "within the truncation bound", fixed)
        self.parties = (a, b)

    def secagg(self) -> None:
        need = "" if self.secret else "needs the cluster secret (--secret-file): CreateRound is an operator call"
        for name in REPLAYABLE:
            vector = json.loads((VECTORS / f"{name}.json").read_text())
            outcome = vector["outcome"]
            expected = (f"sum {outcome['sum'][:2]}..." if "sum" in outcome else
                        f"abort at {outcome['abort']['stage']}")
            self.run("secagg", f"vector {name}", expected, functools.partial(self.replay, vector), skip=need)

    def replay(self, vector: dict[str, Any]) -> str:
        from mpcnet.secagg.stage import Stage
        from mpcnet.secagg_client import run_client
        from mpcnet.secagg_wire import aggregate_of
        from mpcnet.transport.rpc import CLUSTER_AUTH_KEY
        from mpcnet.v1 import secagg_pb2 as spb
        from mpcnet.v1 import secagg_pb2_grpc as spbg

        p = vector["params"]
        stub = spbg.SecAggStub(self.channel(admin=True))
        md = ((CLUSTER_AUTH_KEY, self.secret),)
        params = spb.SecAggRoundParams(round_id=f"conformance-{self.tag}-{vector['name']}", client_ids=p["client_ids"],
                                       threshold=p["threshold"], vector_length=p["vector_length"], bits=p["bits"],
                                       graph=spb.SECAGG_GRAPH_COMPLETE, stage_deadline_s=10, join_deadline_s=20)
        reply = stub.CreateRound(spb.SecAggCreateRoundRequest(params=params), timeout=self.timeout_s, metadata=md)
        stop = {int(c): Stage(stage) for stage, ids in vector["drops"].items() for c in ids}
        inputs = {int(k): np.array(v, dtype=np.uint64) for k, v in vector["inputs"].items()}

        async def clients() -> list[Any]:
            return list(await asyncio.gather(*(
                run_client(self.target, reply.round_id, cid, lambda c, _p, _e: inputs[c],
                           token=reply.client_tokens[cid], tls=self.client_tls, stop_at=stop.get(cid))
                for cid in p["client_ids"])))

        outcomes = asyncio.run(asyncio.wait_for(clients(), 120))
        res = stub.GetResult(spb.SecAggGetResultRequest(round_id=reply.round_id), timeout=self.timeout_s, metadata=md)
        want = vector["outcome"]
        if "sum" in want:
            assert res.state == "done", f"round {res.state}: {res.aborted.reason}"
            got = aggregate_of(res.done).tolist()
            assert got == want["sum"], f"sum {got[:2]}... != {want['sum'][:2]}..."
            stopped = sorted(o.client_id for o in outcomes if o.state == "stopped")
            return f"exact sum; {len(res.done.included)} included, scripted dropouts {stopped}"
        assert res.state == "aborted", f"round {res.state}, want an abort"
        assert want["abort"]["stage"] in res.aborted.reason or res.aborted.stage == want["abort"]["stage"], \
            f"aborted at {res.aborted.stage}: {res.aborted.reason}"
        return f"aborted: {res.aborted.reason[:80]}"

    def negative(self) -> None:
        from mpcnet.transport.rpc import CLIENT_TOKEN_KEY, PARTY_TOKEN_KEY
        from mpcnet.v1 import mpc_pb2 as pb
        from mpcnet.v1 import mpc_pb2_grpc as pbg
        from mpcnet.v1 import secagg_pb2 as spb
        from mpcnet.v1 import secagg_pb2_grpc as spbg

        ch = self.channel()
        coord = pbg.CoordinatorStub(ch)
        sec = spbg.SecAggStub(ch)
        t = self.timeout_s
        raw = ch.unary_unary("/mpcnet.v1.Coordinator/RegisterParty", request_serializer=lambda b: b,
                             response_deserializer=lambda b: b)
        big = self.unlimited_channel().unary_unary("/mpcnet.v1.Coordinator/RegisterParty",
                                                   request_serializer=lambda b: b, response_deserializer=lambda b: b)
        name = f"conf-{self.tag}-neg"
        token = coord.RegisterParty(pb.RegisterPartyRequest(name=name), timeout=t).token
        md = ((PARTY_TOKEN_KEY, token),)
        C = grpc.StatusCode
        cases: list[tuple[str, grpc.StatusCode, Callable[[], Any]]] = [
            ("malformed request bytes", C.INVALID_ARGUMENT, lambda: raw(b"\xff\xff\xff\xff", timeout=t)),
            ("invalid party name", C.INVALID_ARGUMENT,
             lambda: coord.RegisterParty(pb.RegisterPartyRequest(name="no spaces allowed"), timeout=t)),
            ("duplicate party name (a replayed registration)", C.ALREADY_EXISTS,
             lambda: coord.RegisterParty(pb.RegisterPartyRequest(name=name), timeout=t)),
            ("unauthenticated CreateJob (no party token)", C.UNAUTHENTICATED,
             lambda: coord.CreateJob(pb.CreateJobRequest(name="x"), timeout=t)),
            ("unknown party token", C.UNAUTHENTICATED,
             lambda: coord.CreateJob(pb.CreateJobRequest(name="x"), timeout=t,
                                     metadata=((PARTY_TOKEN_KEY, "forged-" + secrets.token_hex(8)),))),
            ("unknown job", C.NOT_FOUND, lambda: coord.GetJob(pb.GetJobRequest(job_id="job-nope"), timeout=t,
                                                               metadata=md)),
            ("oversized message (> 4 MiB)", C.RESOURCE_EXHAUSTED,
             lambda: big(b"\x0a\x80\x80\x80\x03" + b"a" * (6 * 1024 * 1024), timeout=t)),
            ("unknown SecAgg round", C.NOT_FOUND,
             lambda: sec.Next(spb.SecAggNextRequest(round_id="conformance-none", client_id=1), timeout=t,
                              metadata=((CLIENT_TOKEN_KEY, "x"),))),
            ("unknown SecAgg round on a Session stream", C.NOT_FOUND,
             lambda: list(sec.Session(iter([spb.SecAggNextRequest(round_id="conformance-none", client_id=1)]),
                                      timeout=t, metadata=((CLIENT_TOKEN_KEY, "x"),)))),
        ]
        job = coord.CreateJob(pb.CreateJobRequest(name="neg"), timeout=t, metadata=md).job_id
        spec = pb.SecretSpec(name="x", shape=[2], frac_bits=0, bound=8.0)
        coord.DeclareInput(pb.DeclareInputRequest(job_id=job, secret=spec), timeout=t, metadata=md)
        cases += [
            ("replayed input declaration", C.ALREADY_EXISTS,
             lambda: coord.DeclareInput(pb.DeclareInputRequest(job_id=job, secret=spec), timeout=t, metadata=md)),
            ("wrong dtype: fractional bits the cluster does not use", C.INVALID_ARGUMENT,
             lambda: coord.DeclareInput(pb.DeclareInputRequest(job_id=job, secret=pb.SecretSpec(
                 name="w", shape=[2], frac_bits=61, bound=8.0)), timeout=t, metadata=md)),
            ("out of order: RunJob whose program reads an undeclared input", C.INVALID_ARGUMENT,
             lambda: coord.RunJob(pb.RunJobRequest(job_id=job, program=_program_reading("nope", name)), timeout=t,
                                  metadata=md)),
        ]
        if self.secret:
            cases.append(("out of order: a SecAgg answer before joining", C.FAILED_PRECONDITION,
                          lambda: self._answer_before_join(sec, t)))
        for what, code, call in cases:
            self.run("negative", what, code.name, functools.partial(self.expect, code, call))

    def _answer_before_join(self, sec: Any, t: float) -> None:
        from mpcnet.transport.rpc import CLIENT_TOKEN_KEY, CLUSTER_AUTH_KEY
        from mpcnet.v1 import secagg_pb2 as spb
        from mpcnet.v1 import secagg_pb2_grpc as spbg
        admin = spbg.SecAggStub(self.channel(admin=True))
        reply = admin.CreateRound(spb.SecAggCreateRoundRequest(params=spb.SecAggRoundParams(
            client_ids=[1, 2, 3], threshold=2, vector_length=4, stage_deadline_s=2, join_deadline_s=2)), timeout=t,
            metadata=((CLUSTER_AUTH_KEY, self.secret),))
        sec.Next(spb.SecAggNextRequest(round_id=reply.round_id, client_id=1, stage_answered="unmasking",
                                       response=b"\x00\x00\x00\x02{}"), timeout=t,
                 metadata=((CLIENT_TOKEN_KEY, reply.client_tokens[1]),))

    def close(self) -> None:
        for p in getattr(self, "parties", ()):
            p.close()


def _program_reading(secret: str, reader: str) -> Any:
    import mpcnet
    from mpcnet.wire import program_to_proto
    return program_to_proto(mpcnet.Program().mul("z", secret, secret).output("z", to=[reader]))


def run_conformance(target: str, tls_dir: str | None = None, secret_file: str | None = None,
                    timeout_s: float = 30.0, json_out: str | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    from mpcnet.errors import InvalidInput, check_output_file
    from mpcnet.transport.rpc import from_rpc_error
    if not 0 < timeout_s < math.inf:
        raise InvalidInput(f"--timeout {timeout_s:g}: each call needs a finite deadline > 0 seconds")
    if json_out:
        check_output_file("--json", json_out)
    try:
        secret = Path(secret_file).read_text().strip() if secret_file else ""
        suite = Suite(target, tls_dir, secret, timeout_s)
    except OSError as exc:
        raise InvalidInput(f"--secret-file {secret_file}: {exc.strerror}") from None
    except ValueError as exc:  # CertError: the --tls-dir material
        raise InvalidInput(str(exc)) from None
    console = Console(width=max(Console().width, 140))
    t0 = time.monotonic()
    try:
        try:  # one line, not a table of failures each waiting out its deadline, when nothing answers
            suite.reachable()
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                why = str(from_rpc_error(exc, f"the target {target}"))
                console.print(f"[red]mpcnet conformance: {why}[/]")
                if json_out:  # a CI job that collects the report still gets one: a single failed check
                    Path(json_out).write_text(json.dumps([Check("service", "reachable", "answers", why).__dict__],
                                                         indent=2))
                return 1
        with console.status(f"conformance of {target} ..."):
            for group in (suite.service, suite.mpc, suite.secagg, suite.negative):
                try:
                    group()
                except Exception as exc:  # a group whose set-up breaks fails; the others still run
                    suite.checks.append(Check(group.__name__, "set-up", "completes",
                                              f"{type(exc).__name__}: {exc}"[:200]))
    finally:
        suite.close()
    table = Table(title=f"conformance of {target} ({time.monotonic() - t0:.1f} s)")
    for col in ("group", "check", "expected", "observed", "result"):
        table.add_column(col, overflow="fold")
    colour = {"pass": "[green]pass[/]", "fail": "[red]FAIL[/]", "skip": "[yellow]skip[/]"}
    for c in suite.checks:
        table.add_row(c.group, c.name, c.expected, c.observed, colour[c.status])
    console.print(table)
    counts = {s: sum(1 for c in suite.checks if c.status == s) for s in ("pass", "fail", "skip")}
    console.print(f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")
    if json_out:
        Path(json_out).write_text(json.dumps([c.__dict__ for c in suite.checks], indent=2))
    return 1 if counts["fail"] else 0


__all__ = ["Check", "Suite", "run_conformance"]
