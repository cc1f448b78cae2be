"""`mpcnet drill`: break a cluster on purpose and check it either finishes with the exact answer or aborts cleanly.

Scenarios against local processes (a :class:`~mpcnet.cluster.LocalCluster` of its own, on loopback).  Each one
is bounded in time and stops by itself; each ends in a verdict row.  The columns are: scenario, fault, expected
outcome, observed outcome, time to detect (from the fault to the moment the system shows it noticed: the error,
the dropout, the stage closing) and time to recover (from the fault to the next exact result).

* ``secagg-kill-clients``: SIGKILL n - t clients at each SecAgg stage, which must give the exact sum of the
  included clients; one more must give a clean abort naming the stage.
* ``node-kill`` and ``node-pause`` (SIGKILL, SIGSTOP): a compute node dies or freezes mid-job.  The job must fail
  with an error naming the node within its deadline, and the next job after the node returns must be exact.
  No triple batch may be consumed twice (the nodes' journals are checked).
* ``dealer-restart``: the dealer is SIGKILLed and restarted.  New jobs get fresh material (batch ids never seen
  before) and are exact.
* ``latency``: every node's openings arrive 100 +- 20 ms late (the seeded fault layer,
  mpcnet/transport/faults.py).  The job must still be exact; the row shows the slowdown.
* ``duplicate-messages``: every node-bound message arrives twice.  The results must still be exact; replays are
  refused or harmless.
* ``corrupt-message``: one byte of node 2's Prepare request is flipped.  The job must be refused cleanly or be
  exact, never wrong.
* ``coordinator-restart``: the coordinator is SIGKILLed with a finished job and round behind it and a round half
  joined.  The clients must see a clean error.  After the restart the journal (mpcnet/journal.py) must hold the
  job and the round result unchanged, refuse the old round id, and show the half-done round aborted, never
  resumed.  The next job must be exact.
* ``kill-loop``: the coordinator, then the dealer, is SIGKILLed at seeded random points of running jobs and
  restarted.  Every job must be exact or fail cleanly; none may be lost or left "running"; no batch may be
  consumed twice.

The same drills against a docker-compose cluster, with container and network faults (docker kill/pause,
network disconnect, tc/nft), are in mpcnet/drill_compose.py (``mpcnet drill --compose``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mpcnet.cluster import REPO_ROOT, LocalCluster
from mpcnet.errors import MpcnetError

APPLIED = re.compile(r"FAULT node\d+: \w+ call \d+")  # one line per fault applied (mpcnet/transport/faults.py)
STAGES = ("advertise_keys", "share_keys", "masked_input_collection", "unmasking")
DEFAULT_OUT = REPO_ROOT / "drills" / "results"


@dataclass
class Verdict:
    scenario: str
    fault: str
    expected: str
    observed: str
    detect_s: float | None
    recover_s: float | None
    ok: bool


def drill_inputs(n: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(n, dtype=np.int64)
    return (idx * 7919) % 2001 - 1000, (idx * 104729) % 2001 - 1000


def drill_job(alice: Any, n: int = 20_000, before_run: Callable[[str], None] | None = None,
              ids: list[str] | None = None) -> tuple[bool, str, float, Any]:
    """One job z = (x*y)*x over n integers as ``alice``: (exact?, error text, seconds, z or None).  Never raises
    MpcnetError.  ``ids``: the job id is appended as soon as the job exists; ``before_run(job id)`` is called
    once the inputs are in."""
    import mpcnet
    x, y = drill_inputs(n)
    t0 = time.monotonic()
    try:
        job = alice.create_job()
        if ids is not None:
            ids.append(job)
        alice.share(job, "x", x, integer=True)
        alice.share(job, "y", y, integer=True)
        if before_run is not None:
            before_run(job)
        alice.run(job, mpcnet.Program().mul("xy", "x", "y").mul("z", "xy", "x").output("z", to=[alice.name]))
        z = alice.reveal(job, "z")
    except MpcnetError as exc:
        return False, str(exc), time.monotonic() - t0, None
    exact = bool(np.array_equal(z, x * y * x))
    return exact, "" if exact else "WRONG ANSWER", time.monotonic() - t0, z


def until_exact(job: Callable[[], tuple[bool, str, float]], within_s: float, pause_s: float = 0.2
                ) -> tuple[bool, str]:
    """The next job after a fault, retried for a bounded while: a restarted peer is found again by the others'
    channels within their reconnect backoff, so recovery is measured, not assumed.  A wrong answer stops at once."""
    deadline = time.monotonic() + within_s
    while True:
        exact, err, _ = job()
        if exact or err == "WRONG ANSWER" or time.monotonic() > deadline:
            return exact, err
        time.sleep(pause_s)


# ---------------------------------------------------------------------- verdicts both drill sets share
EXPECT_NODE = "job fails naming node 2 within its deadline; next job exact; no triple reuse"
EXPECT_RESTART = ("clients see a clean error; jobs, rounds and results intact; the half-done round aborted, "
                  "never resumed")
EXPECT_KILL_LOOP = "each job exact or failed cleanly; nothing lost, duplicated or reused"


def node_fault_verdict(scenario: str, fault: str, exact: bool, err: str, again: bool, err2: str, batches_ok: bool,
                       detect_s: float, recover_s: float) -> Verdict:
    """A node killed, frozen or cut off mid-job: the job fails naming it (or was already done), the next is exact."""
    named = "node 2" in err
    observed = (f"job failed naming node 2: ...{err[max(0, err.find('node 2') - 50):][:110]}" if (not exact and named)
                else "job exact (the fault came too late to matter)" if exact else f"job failed: {err[:90]}")
    observed += f"; next job {'exact' if again else 'FAILED: ' + err2[:60]}"
    observed += "; no batch consumed twice" if batches_ok else "; A BATCH WAS CONSUMED TWICE"
    ok = (exact or named) and again and batches_ok and err != "WRONG ANSWER"
    return Verdict(scenario, fault, EXPECT_NODE, observed, round(detect_s, 3), round(recover_s, 3), ok)


def dealer_verdict(fault: str, exact: bool, err: str, before: set[str], after: dict[str, list[str]],
                   batches_ok: bool, recover_s: float) -> Verdict:
    """The dealer came back: the next job is exact and its batches are ones no node consumed before."""
    new = {b for ids in after.values() for b in ids} - before
    fresh = bool(new) and not (new & before)
    observed = (f"next job {'exact' if exact else 'FAILED: ' + err[:80]}; "
                f"{len(new)} new batch id(s), {'none' if fresh else 'SOME'} seen before")
    return Verdict("dealer-restart", fault, "new jobs get fresh material (unseen batch ids) and are exact", observed,
                   None, round(recover_s, 3), exact and fresh and batches_ok)


def restart_verdict(fault: str, problems: list[str], detect_s: float, recover_s: float) -> Verdict:
    observed = ("journal intact: round 1 and job kept exactly, round 1's id refused, round 2 aborted; "
                "round 2's clients ended with a clean error; next job exact") if not problems else "; ".join(problems)
    return Verdict("coordinator-restart", fault, EXPECT_RESTART, observed, round(detect_s, 3), round(recover_s, 3),
                   not problems)


def kill_loop_verdict(role: str, fault: str, outcomes: list[tuple[bool, str]], problems: list[str],
                      recover: list[float]) -> Verdict:
    if any(e == "WRONG ANSWER" for _, e in outcomes):
        problems = [*problems, "A WRONG ANSWER"]
    hit = sum(1 for ok, _ in outcomes if not ok)
    observed = (f"{len(outcomes)} jobs: {len(outcomes) - hit} exact, {hit} failed cleanly at the kill; none lost, "
                "none still running, no batch consumed twice; every job after a restart exact"
                if not problems else "; ".join(problems))
    return Verdict(f"{role}-kill-loop", fault, EXPECT_KILL_LOOP, observed, None,
                   round(max(recover), 3) if recover else None, not problems)


class Drill:
    def __init__(self, cluster: LocalCluster, quick: bool) -> None:
        self.cluster = cluster
        self.quick = quick
        self._parties = 0

    # ------------------------------------------------------------------ MPC jobs
    def party(self) -> Any:
        import mpcnet
        self._parties += 1
        return mpcnet.connect(self.cluster.coordinator, f"drill{self._parties}", timeout_s=10, job_timeout_s=60)


    def job(self, alice: Any, n: int = 20_000, before_run: Callable[[], None] | None = None,
            ids: list[str] | None = None) -> tuple[bool, str, float]:
        exact, err, seconds, _ = drill_job(alice, n, (lambda _job: before_run()) if before_run else None, ids)
        return exact, err, seconds

    def recovered_job(self, alice: Any, within_s: float = 20.0) -> tuple[bool, str]:
        return until_exact(lambda: self.job(alice), within_s)

    def consumed_batches(self) -> dict[str, list[str]]:
        out = {}
        for i in range(1, self.cluster.n_nodes + 1):
            path = self.cluster.workdir / f"node{i}" / f"node{i}-consumed-batches.jsonl"
            lines = path.read_text().splitlines() if path.exists() else []
            out[f"node{i}"] = [json.loads(line)["batch_id"] for line in lines if line.strip()]
        return out

    def no_batch_twice(self) -> bool:
        return all(len(ids) == len(set(ids)) for ids in self.consumed_batches().values())

    def restart_node(self, i: int) -> None:
        name = self.cluster.node_name(i)
        if self.cluster.procs[name].poll() is None:
            self.cluster.kill(name, signal.SIGTERM)
        self.cluster.start_node(i)

    def node_fault(self, sig: int) -> Verdict:
        what = "SIGKILL" if sig == signal.SIGKILL else "SIGSTOP"
        scenario = "node-kill" if sig == signal.SIGKILL else "node-pause"
        alice = self.party()
        timer: dict[str, float] = {}
        pgid = self.cluster.pid("node2")

        def hit() -> None:  # the inputs are in; the job starts and the node goes
            def later() -> None:
                time.sleep(0.05)
                os.killpg(pgid, sig)
                timer["fault"] = time.monotonic()
            threading.Thread(target=later, daemon=True).start()

        try:
            exact, err, _ = self.job(alice, n=200_000, before_run=hit)
            t_err = time.monotonic()
            if sig == signal.SIGSTOP:
                os.killpg(pgid, signal.SIGCONT)
            else:
                self.cluster.procs["node2"].wait(timeout=10)
                self.cluster.start_node(2)
            again, err2 = self.recovered_job(alice)
            t_ok = time.monotonic()
        finally:
            if sig == signal.SIGSTOP:
                os.killpg(pgid, signal.SIGCONT)
            alice.close()
        fault_t = timer.get("fault", t_err)
        return node_fault_verdict(scenario, f"{what} node 2 mid-job (200k elements)", exact, err, again, err2,
                                  self.no_batch_twice(), t_err - fault_t, t_ok - fault_t)

    def dealer_restart(self) -> Verdict:
        alice = self.party()
        try:
            before = {b for ids in self.consumed_batches().values() for b in ids}
            self.cluster.kill("dealer", signal.SIGKILL)
            t_fault = time.monotonic()
            self.cluster.start_dealer()
            exact, err = self.recovered_job(alice)
            t_ok = time.monotonic()
        finally:
            alice.close()
        return dealer_verdict("SIGKILL the dealer, restart it", exact, err, before, self.consumed_batches(),
                              self.no_batch_twice(), t_ok - t_fault)

    def with_node_faults(self, scenario: str, fault: str, expected: str, rules: list[dict[str, Any]],
                         nodes: tuple[int, ...], allow_clean_failure: bool) -> Verdict:
        alice = self.party()
        try:
            _, _, baseline = self.job(alice)
            logs = {i: self.cluster.logs[self.cluster.node_name(i)] for i in nodes}
            offsets = {i: logs[i].stat().st_size for i in nodes}
            for i in nodes:
                self.cluster.faults[self.cluster.node_name(i)] = {"seed": f"drill-{scenario}", "rules": rules}
                self.restart_node(i)
            exact, err, took = self.job(alice)
            for i in nodes:
                del self.cluster.faults[self.cluster.node_name(i)]
                self.restart_node(i)
            t0 = time.monotonic()
            again, err2 = self.recovered_job(alice)
            recover = time.monotonic() - t0
        finally:
            alice.close()
        texts = [logs[i].read_bytes()[offsets[i]:].decode(errors="replace") for i in nodes]
        applied = sum(len(APPLIED.findall(t)) for t in texts)
        refused = sum(t.count("was refused") for t in texts)
        accepted = sum(t.count("was accepted") for t in texts)
        wrong = err == "WRONG ANSWER"
        observed = ("exact" if exact else f"refused cleanly: {err[:90]}" if not wrong else "WRONG ANSWER")
        observed += f" in {took:.2f} s (baseline {baseline:.2f} s, x{took / max(baseline, 1e-9):.1f}); "
        observed += f"{applied} fault(s) applied"
        observed += f" ({refused} duplicate(s) refused, {accepted} accepted); " if refused + accepted else "; "
        observed += f"after the fault is gone: {'exact' if again else err2[:60]}"
        ok = (exact or (allow_clean_failure and not wrong)) and again and applied > 0 and self.no_batch_twice()
        return Verdict(scenario, fault, expected, observed, None, round(recover, 3), ok)

    # ------------------------------------------------------------------ SecAgg
    def secagg_stub(self) -> Any:
        import grpc

        from mpcnet.v1 import secagg_pb2_grpc as spbg
        return spbg.SecAggStub(grpc.insecure_channel(self.cluster.coordinator))

    def create_round(self, n: int, t: int, length: int, join_s: float = 20.0, round_id: str = ""
                     ) -> tuple[str, dict[int, str]]:
        from mpcnet.v1 import secagg_pb2 as spb
        params = spb.SecAggRoundParams(round_id=round_id, client_ids=list(range(1, n + 1)), threshold=t,
                                       vector_length=length, bits=32, graph=spb.SECAGG_GRAPH_COMPLETE,
                                       stage_deadline_s=10.0, join_deadline_s=join_s)
        reply = self.secagg_stub().CreateRound(spb.SecAggCreateRoundRequest(params=params), timeout=10,
                                               metadata=self.cluster.auth_metadata)
        return str(reply.round_id), {int(k): str(v) for k, v in reply.client_tokens.items()}

    def clients(self, rid: str, tokens: dict[int, str], group: list[int], die: str | None = None
                ) -> subprocess.Popen[str]:
        cmd = [sys.executable, "-m", "mpcnet.cli", "client", "--coordinator", self.cluster.coordinator,
               "--round", rid, "--ids", ",".join(map(str, group)), "--input-seed", "drill", "--timeout", "30"]
        cmd += ["--die-at", die] if die else []
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT),
                   MPCNET_CLIENT_TOKENS=json.dumps({str(c): tokens[c] for c in group}))
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def round_result(self, rid: str) -> Any:
        from mpcnet.v1 import secagg_pb2 as spb
        return self.secagg_stub().GetResult(spb.SecAggGetResultRequest(round_id=rid), timeout=10,
                                            metadata=self.cluster.auth_metadata)

    def secagg_kill(self, stage: str, extra: bool) -> Verdict:
        from mpcnet.secagg_client import derive_input
        from mpcnet.secagg_wire import aggregate_of

        n, t, length = 6, 4, 16
        kills = n - t + (1 if extra else 0)
        ids = list(range(1, n + 1))
        dying, living = ids[-kills:], ids[:-kills]
        rid, tokens = self.create_round(n, t, length)
        procs = [self.clients(rid, tokens, living), self.clients(rid, tokens, dying, stage)]
        dead_at = detect_at = None
        deadline = time.monotonic() + 90
        res = None
        try:
            while time.monotonic() < deadline:
                if dead_at is None and procs[1].poll() is not None:
                    dead_at = time.monotonic()
                res = self.round_result(rid)
                if dead_at is not None and detect_at is None and (res.stage != stage or res.state != "running"):
                    detect_at = time.monotonic()
                if res.state != "running":
                    break
                time.sleep(0.02)
            end = time.monotonic()
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.communicate(timeout=10)
        fault = f"SIGKILL {kills} of {n} clients (t={t}) at {stage}"
        if res is None or res.state == "running":
            return Verdict("secagg-kill-clients", fault, "", "round still running after 90 s (HANG)", None, None,
                           False)
        if not extra:
            expected = "exact sum of the included clients"
            ok = res.state == "done"
            observed = f"{res.state}"
            if ok:
                included = list(res.done.included)
                want = sum(derive_input("drill", c, length, 32).astype(np.uint64) for c in included) % 2**32
                exact = bool(np.array_equal(aggregate_of(res.done), want))
                dropped = sorted(d.client_id for d in res.done.dropped)
                ok = exact and set(dropped) <= set(dying) and set(living) <= set(included)
                observed = f"done, {'exact' if exact else 'WRONG'} sum of {len(included)} included; dropped {dropped}"
        else:
            expected = f"clean abort naming {stage}"
            reason = res.aborted.reason if res.state == "aborted" else ""
            ok = res.state == "aborted" and stage in (res.aborted.stage + " " + reason)
            observed = f"{res.state}: {reason[:90]}" if reason else res.state
        detect = None if dead_at is None or detect_at is None else max(0.0, detect_at - dead_at)
        recover = None if dead_at is None else end - dead_at
        return Verdict("secagg-kill-clients", fault, expected, observed,
                       None if detect is None else round(detect, 3), None if recover is None else round(recover, 3), ok)

    # ------------------------------------------------------------------ durability
    def coordinator_restart(self) -> Verdict:
        """SIGKILL the coordinator with a finished job and round behind it and a round half joined."""
        from mpcnet.secagg_wire import aggregate_of
        alice = self.party()
        problems: list[str] = []
        try:
            ids: list[str] = []
            exact, err, _ = self.job(alice, ids=ids)
            z_before = alice.reveal(ids[0], "z") if exact else None
            r1, tok1 = self.create_round(4, 3, 16)
            p1 = self.clients(r1, tok1, [1, 2, 3, 4])
            p1.communicate(timeout=60)
            before = self.round_result(r1)
            r2, tok2 = self.create_round(4, 3, 16, join_s=60.0)
            p2 = self.clients(r2, tok2, [1, 2])  # 3 and 4 never come: the round waits at advertise_keys
            time.sleep(1.5)
            if self.round_result(r2).state != "running":
                problems.append("round 2 was not running before the kill")
            self.cluster.kill("coordinator", signal.SIGKILL)
            t_fault = time.monotonic()
            try:
                out2, _ = p2.communicate(timeout=60)
                t_clients = time.monotonic()
            except subprocess.TimeoutExpired:
                p2.kill()
                out2, _ = p2.communicate()
                t_clients = time.monotonic()
                problems.append("round 2's clients hung after the coordinator died")
            states = {json.loads(line)["state"] for line in out2.splitlines() if line.startswith("{")}
            if states != {"error"}:
                problems.append(f"round 2's clients ended {states}, not with a clean error")
            self.cluster.start_coordinator()
            after1, after2 = self.round_result(r1), self.round_result(r2)
            if after1.state != "done" or before.state != "done" or not np.array_equal(
                    aggregate_of(after1.done), aggregate_of(before.done)):
                problems.append("round 1's result changed or was lost")
            if after2.state != "aborted" or "restarted" not in after2.aborted.reason:
                problems.append(f"round 2 is {after2.state}, not aborted for the restart")
            try:
                self.create_round(4, 3, 16, round_id=r1)
                problems.append("round 1's id could be created again (a duplicate result)")
            except Exception as exc:  # grpc.RpcError ALREADY_EXISTS is the expected answer
                if "ALREADY_EXISTS" not in str(getattr(exc, "code", lambda: "")()):
                    problems.append(f"re-creating round 1: {exc}")
            info = alice.job(ids[0])
            if info.state != "done" or z_before is None or not np.array_equal(alice.reveal(ids[0], "z"), z_before):
                problems.append(f"job {ids[0]} is {info.state} after the restart, or its output changed")
            again, err2 = self.recovered_job(alice)
            t_ok = time.monotonic()
            if not again:
                problems.append(f"the next job failed: {err2[:80]}")
        finally:
            alice.close()
        return restart_verdict("SIGKILL the coordinator during a half-joined round, restart it", problems,
                               t_clients - t_fault, t_ok - t_fault)

    def kill_loop(self, role: str, rounds: int) -> Verdict:
        """SIGKILL ``role`` at seeded random points of running jobs, restart it; nothing lost, doubled or reused."""
        import secrets as _secrets
        alice = self.party()
        ids: list[str] = []
        outcomes: list[tuple[bool, str]] = []
        problems: list[str] = []
        recover: list[float] = []
        try:
            for _ in range(rounds):
                done = threading.Event()

                def run() -> None:
                    outcomes.append(self.job(alice, n=100_000, ids=ids)[:2])
                    done.set()

                worker = threading.Thread(target=run, daemon=True)
                worker.start()
                time.sleep(_secrets.randbelow(400) / 1000.0)  # a random point: before, during or after the job
                self.cluster.kill(role, signal.SIGKILL)
                t_fault = time.monotonic()
                (self.cluster.start_coordinator if role == "coordinator" else self.cluster.start_dealer)()
                if not done.wait(90):
                    problems.append("a job hung across the kill")
                    break
                exact, err = self.recovered_job(alice)
                recover.append(time.monotonic() - t_fault)
                if not exact:
                    problems.append(f"the job after the restart failed: {err[:60]}")
            states = {j: alice.job(j).state for j in ids}  # every job the coordinator ever acknowledged is known
            if any(s == "running" for s in states.values()):
                problems.append("a job is still 'running' after the restart")
            if not self.no_batch_twice():
                problems.append("a triple batch was consumed twice")
        except MpcnetError as exc:
            problems.append(f"lost state: {exc}"[:120])
        finally:
            alice.close()
        return kill_loop_verdict(role, f"SIGKILL the {role} {rounds}x at random points of running jobs", outcomes,
                                 problems, recover)

    # ------------------------------------------------------------------ the set
    def scenarios(self) -> dict[str, Callable[[], list[Verdict]]]:
        stages = ("share_keys", "unmasking") if self.quick else STAGES
        return {
            "secagg-kill-clients": lambda: [self.secagg_kill(s, extra) for s in stages for extra in (False, True)],
            "node-kill": lambda: [self.node_fault(signal.SIGKILL)],
            "node-pause": lambda: [self.node_fault(signal.SIGSTOP)],
            "dealer-restart": lambda: [self.dealer_restart()],
            "coordinator-restart": lambda: [self.coordinator_restart()],
            "kill-loop": lambda: [self.kill_loop("coordinator", 2 if self.quick else 5),
                                  self.kill_loop("dealer", 2 if self.quick else 5)],
            "latency": lambda: [self.with_node_faults(
                "latency", "openings of every node 100 +- 20 ms late",
                "exact result, slower", [{"method": "/mpcnet.v1.Node/Exchange", "action": "delay", "delay_s": 0.1,
                                          "jitter_s": 0.02}], (1, 2, 3), allow_clean_failure=False)],
            "duplicate-messages": lambda: [self.with_node_faults(
                "duplicate-messages", "every message to node 2 delivered twice",
                "exact result (replays refused or harmless)", [{"method": "/mpcnet.v1.Node/*", "action": "duplicate"}],
                (2,), allow_clean_failure=False)],
            "corrupt-message": lambda: [self.with_node_faults(
                "corrupt-message", "one byte of node 2's Prepare flipped",
                "refused cleanly or exact, never wrong", [{"method": "/mpcnet.v1.Node/Prepare", "action": "corrupt",
                                                           "calls": [1]}], (2,), allow_clean_failure=True)],
        }


COLUMNS = ("scenario", "fault", "expected", "observed", "detect s", "recover s", "verdict")


def _cells(v: Verdict) -> list[str]:
    return [v.scenario, v.fault, v.expected, v.observed, "-" if v.detect_s is None else f"{v.detect_s:.2f}",
            "-" if v.recover_s is None else f"{v.recover_s:.2f}", "met" if v.ok else "MISSED"]


def report(console: Any, verdicts: list[Verdict], quick: bool, out_dir: str | None, title: str, seconds: float,
           prefix: str = "drill") -> int:
    """Print the verdict table, write it as JSON and Markdown; 0 only when every scenario met its expectation."""
    from rich.table import Table
    out = Table(title=f"{title} ({'quick' if quick else 'full'} set, {seconds:.0f} s)")
    for col in COLUMNS:
        out.add_column(col, overflow="fold")
    rows = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for v in verdicts:
        cells = _cells(v)
        out.add_row(*cells[:-1], "[green]met[/]" if v.ok else "[red]MISSED[/]")
        rows.append("| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells) + " |")
    console.print(out)
    path = Path(out_dir) if out_dir else DEFAULT_OUT
    path.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = path / f"{prefix}-{'quick' if quick else 'full'}-{stamp}.json"
    dest.write_text(json.dumps({"when": stamp, "quick": quick, "target": title, "seconds": round(seconds, 1),
                                "verdicts": [asdict(v) for v in verdicts]}, indent=2))
    dest.with_suffix(".md").write_text("\n".join(rows) + "\n")  # for the README's table
    console.print(f"verdicts written to {dest} (and {dest.with_suffix('.md').name})")
    return 0 if verdicts and all(v.ok for v in verdicts) else 1


def run_set(console: Any, table: dict[str, Callable[[], list[Verdict]]], chosen: list[str]) -> list[Verdict]:
    """Run the chosen scenarios in order; a drill that breaks is a failed verdict, not a crash of the set."""
    verdicts: list[Verdict] = []
    with console.status("") as status:
        for name in chosen:
            status.update(f"drill {name} ...")
            t0 = time.monotonic()
            try:
                got = table[name]()
            except Exception as exc:
                got = [Verdict(name, "", "", f"drill error: {type(exc).__name__}: {exc}"[:300], None, None, False)]
            verdicts += got
            console.print(f"{name}: {'ok' if all(v.ok for v in got) else 'FAILED'} ({time.monotonic() - t0:.0f} s)")
    return verdicts


def run_drills(names: list[str], quick: bool = False, out_dir: str | None = None) -> int:
    from rich.console import Console

    console = Console(width=max(Console().width, 160))
    t0 = time.monotonic()
    cluster = LocalCluster(3, stage_timeout_s=3, rpc_timeout_s=3, job_timeout_s=30, log_level="INFO")
    with cluster:
        table = Drill(cluster, quick).scenarios()
        unknown = [n for n in names if n != "all" and n not in table]
        if unknown:
            console.print(f"[red]unknown scenario(s) {unknown}[/]; known: {', '.join(table)}")
            return 2
        chosen = list(table) if "all" in names or not names else names
        verdicts = run_set(console, table, chosen)
    cluster.cleanup()
    return report(console, verdicts, quick, out_dir, "local drills", time.monotonic() - t0)


__all__ = ["Drill", "Verdict", "report", "run_drills", "run_set"]
