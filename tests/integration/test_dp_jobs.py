"""The Laplace mechanism for MPC statistics through real processes: the coordinator's ledger charges each
release to the input owner's data before anything runs, refuses past the budget with the balance, and the
receipt carries the mechanism, epsilon and balance."""

from __future__ import annotations

import contextlib
import json
from typing import Any, Iterator

import numpy as np
import pytest

import mpcnet
from mpcnet.cluster import LocalCluster
from mpcnet.errors import InvalidInput, PermissionDenied, ResourceExhausted
from mpcnet.ledger import EpsilonLedger
from mpcnet.sdk import RunResult
from tests.conftest import unique

pytestmark = pytest.mark.integration


def _ledger(cluster: LocalCluster) -> EpsilonLedger:
    return EpsilonLedger(cluster.workdir / "coordinator" / "epsilon-ledger.sqlite")


@contextlib.contextmanager
def _ledger_held(cluster: LocalCluster) -> Iterator[None]:
    """Another writer (this test, inside a write transaction) holds the coordinator's ledger meanwhile."""
    import sqlite3
    with _ledger(cluster):
        pass  # the file exists (the coordinator makes it at its first charge)
    other = sqlite3.connect(str(cluster.workdir / "coordinator" / "epsilon-ledger.sqlite"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def _count_job(party: Any) -> tuple[str, mpcnet.Program]:
    """A job of ``party`` whose one output is a DP count of its 50 flags, at epsilon 1."""
    job = party.create_job()
    party.share(job, "flags", np.ones(50, dtype=np.int64), bound=1, nonnegative=True, dp_only=True)
    return job, mpcnet.Program().dp_count("n", "flags", 1.0).output("n", to=[party.name])


def test_dp_statistics_receipt_ledger_and_refusal(cluster: LocalCluster) -> None:
    alice = mpcnet.connect(cluster.coordinator, unique("alice"))
    bob = mpcnet.connect(cluster.coordinator, unique("bob"))
    x = np.linspace(0, 10, 500)
    flags = (np.arange(500) % 5 == 0).astype(np.int64)

    def run(out_name: str, eps: float) -> tuple[RunResult, str]:
        job = alice.create_job(parties=[bob.name])
        alice.share(job, "x", x, bound=10.0, dp_only=True)
        alice.share(job, "flags", flags, bound=1, nonnegative=True, dp_only=True)
        prog = (mpcnet.Program().dp_mean(out_name, "x", eps).dp_count("n", "flags", eps)
                .output(out_name, to=[bob.name]).output("n", to=[bob.name]))
        return alice.run(job, prog), job

    res, job = run("avg", 1.0)
    avg, n = float(bob.reveal(job, "avg")), float(bob.reveal(job, "n"))
    # mean of 500 values in [-10, 10]: sensitivity 20 / 500 = 0.04, scale 0.04 / epsilon; P(|noise| > 1) ~ e^-25
    assert abs(avg - x.mean()) < 1.0 and abs(n - flags.sum()) < 30 and n == round(n)
    dp = res.receipt["differential_privacy"]
    assert dp["guarantee"].startswith("pure epsilon-DP")
    rel = {r["output"]: r for r in dp["releases"]}
    assert rel["avg"]["sensitivity"] == pytest.approx(20.0 / 500) and rel["n"]["sensitivity"] == 1.0
    assert rel["avg"]["datasets"] == [f"party:{alice.name}"]
    # the default budget is 10: two releases of 1 spent
    assert rel["n"]["ledger_remaining"][f"party:{alice.name}"] == pytest.approx(8.0)

    # the same query under other names (job, output) still spends from alice's data: 4 more of 8 left
    run("mean_again", 2.0)
    with _ledger(cluster) as led:
        assert led.remaining(f"party:{alice.name}")[0] == pytest.approx(4.0)
        names = [r.name for r in led.releases(f"party:{alice.name}")]
        assert len(names) == 4 and all(r.mechanism.startswith("discrete Laplace") for r in
                                       led.releases(f"party:{alice.name}"))
        # a mean's row gives its sensitivity and scale in the mean's units, as the receipt does
        mean_row = next(r for r in led.releases(f"party:{alice.name}") if r.name.endswith("/avg"))
        assert mean_row.params["sensitivity"] == pytest.approx(20.0 / 500) and mean_row.params["rows"] == 500
        assert mean_row.params["noise"] == f"discrete Laplace, scale {rel['avg']['noise_scale']:.6g}"
    # past the budget: refused before anything runs, with what is left; nothing is charged
    with pytest.raises(ResourceExhausted, match=r"epsilon \d.* left"):
        run("avg3", 3.0)
    with _ledger(cluster) as led:
        assert led.remaining(f"party:{alice.name}")[0] == pytest.approx(4.0)


def test_dp_only_inputs_leave_only_through_noise_and_exact_outputs_are_named(cluster: LocalCluster) -> None:
    alice = mpcnet.connect(cluster.coordinator, unique("alice"))
    job = alice.create_job(parties=[])
    alice.share(job, "x", np.arange(10.0), bound=16.0, nonnegative=True, dp_only=True)
    alice.share(job, "y", np.arange(10.0), bound=16.0)
    # the raw sum of a DP-only input is refused before anything is charged or run; the job stays open
    with pytest.raises(InvalidInput, match="declared DP-only: such an input can only be the argument of dp_"):
        alice.run(job, mpcnet.Program().dp_sum("s", "x", 0.5).sum("raw", "x")
                  .output("s", to=[alice.name]).output("raw", to=[alice.name]))
    # nor may it be opened in a value nobody outputs (weighted_average opens its total count to the nodes)
    with pytest.raises(InvalidInput, match="'x', which its owner declared DP-only"):
        alice.run(job, mpcnet.Program().weighted_average("wa", ["y"], ["x"]).dp_sum("s", "x", 0.5)
                  .output("s", to=[alice.name]))
    # an epsilon the nodes could not sample is refused before the charge, not after it
    with pytest.raises(InvalidInput, match="cannot be released here"):
        alice.run(job, mpcnet.Program().dp_sum("s", "x", 0.5).dp_sum("tiny", "x", 1e-10)
                  .output("s", to=[alice.name]).output("tiny", to=[alice.name]))
    with _ledger(cluster) as led:
        assert led.releases(f"party:{alice.name}") == []  # none of the refused jobs above charged anything
    res = alice.run(job, mpcnet.Program().dp_sum("s", "x", 0.5).sum("exact", "y")
                    .output("s", to=[alice.name]).output("exact", to=[alice.name]))
    dp = res.receipt["differential_privacy"]
    assert dp["exact_outputs"] == ["exact"] and "not covered by DP" in dp["note"]
    assert dp["releases"][0]["sensitivity"] == 16.0  # non-negative values: one row moves the sum by B
    assert "DP-only" in [i for i in res.receipt["inputs"] if i["name"] == "x"][0]["public"]
    assert float(alice.reveal(job, "exact")) == pytest.approx(45.0, abs=1e-3)
    with pytest.raises(InvalidInput, match="explicit bound"):
        alice.share(alice.create_job(parties=[]), "z", np.ones(3), dp_only=True)


def test_receipt_cli_shows_a_jobs_receipt_to_the_operator_only(cluster: LocalCluster, tmp_path) -> None:
    import os
    import subprocess
    import sys

    from mpcnet.cluster import REPO_ROOT
    alice = mpcnet.connect(cluster.coordinator, unique("alice"))
    job = alice.create_job(parties=[])
    alice.share(job, "x", np.arange(20.0), bound=32.0, dp_only=True)
    alice.run(job, mpcnet.Program().dp_sum("s", "x", 0.5).output("s", to=[alice.name]))
    env = dict(os.environ, MPCNET_CLUSTER_SECRET=cluster.cluster_secret, MPCNET_COORDINATOR=cluster.coordinator,
               PYTHONPATH=str(REPO_ROOT))
    cmd = [sys.executable, "-m", "mpcnet.cli", "receipt", "--job", job]
    shown = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert f"privacy receipt of {job}" in shown.stdout and "s (sum of x): epsilon 0.5" in shown.stdout
    as_json = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(as_json.stdout)["differential_privacy"]["releases"][0]["sensitivity"] == 64.0
    env.pop("MPCNET_CLUSTER_SECRET")
    refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "cluster secret" in refused.stderr
    # a wrong secret says so (it said "missing mpcnet-party-token metadata: register the party first")
    wrong = subprocess.run(cmd, env=dict(env, MPCNET_CLUSTER_SECRET="not-the-secret"), capture_output=True,
                           text=True, timeout=60)
    assert wrong.returncode == 2 and "wrong cluster secret" in wrong.stderr, wrong.stderr
    # a party that is not in the job cannot read it either
    bob = mpcnet.connect(cluster.coordinator, unique("bob"))
    with pytest.raises(PermissionDenied):
        bob.job(job)
    assert json.loads(alice.job(job).receipt_json)["differential_privacy"]["releases"][0]["output"] == "s"


def test_a_party_sees_only_its_own_ledger_balance_and_the_operator_all(cluster: LocalCluster) -> None:
    from mpcnet.transport.rpc import sync_channel
    from mpcnet.v1 import mpc_pb2 as pb
    from mpcnet.v1 import mpc_pb2_grpc as pbg
    alice = mpcnet.connect(cluster.coordinator, unique("alice"))
    bob = mpcnet.connect(cluster.coordinator, unique("bob"))
    job = alice.create_job(parties=[bob.name])
    alice.share(job, "x", np.arange(10.0), bound=16.0, nonnegative=True, dp_only=True)
    bob.share(job, "y", np.arange(10.0), bound=16.0, nonnegative=True, dp_only=True)
    res = alice.run(job, mpcnet.Program().dp_sum("sx", "x", 0.5).dp_sum("sy", "y", 0.25)
                    .output("sx", to=[alice.name, bob.name]).output("sy", to=[alice.name, bob.name]))
    a, b = f"party:{alice.name}", f"party:{bob.name}"

    def balances(receipt: dict) -> dict:
        return {r["output"]: r["ledger_remaining"] for r in receipt["differential_privacy"]["releases"]}

    # each release is charged to its owner's data; each party is told its own data's balance only (what the
    # other's data has left would tell what it spent in jobs this party was not in)
    assert [r["datasets"] for r in res.receipt["differential_privacy"]["releases"]] == [[a], [b]]
    assert balances(res.receipt) == {"sx": {a: pytest.approx(9.5)}, "sy": {}}
    assert "operator" in res.receipt["differential_privacy"]["releases"][1]["ledger_remaining_note"]
    assert balances(json.loads(alice.job(job).receipt_json)) == {"sx": {a: pytest.approx(9.5)}, "sy": {}}
    assert balances(json.loads(bob.job(job).receipt_json)) == {"sx": {}, "sy": {b: pytest.approx(9.75)}}
    with sync_channel(cluster.coordinator) as channel:  # the operator (cluster secret): every balance
        info = pbg.CoordinatorStub(channel).GetJob(pb.GetJobRequest(job_id=job), metadata=cluster.auth_metadata,
                                                   timeout=30)
    operator_view = json.loads(info.receipt_json)
    assert balances(operator_view) == {"sx": {a: pytest.approx(9.5)}, "sy": {b: pytest.approx(9.75)}}
    assert all("ledger_remaining_note" not in r for r in operator_view["differential_privacy"]["releases"])

    # a refusal tells the balance to the data's owner only: bob asks too much of alice's data (9.5 left)
    job2 = alice.create_job(parties=[bob.name])
    alice.share(job2, "x", np.arange(10.0), bound=16.0, nonnegative=True, dp_only=True)
    too_much = mpcnet.Program().dp_sum("sx", "x", 9.75).output("sx", to=[alice.name, bob.name])
    with pytest.raises(ResourceExhausted) as refused:
        bob.run(job2, too_much)
    assert "than it has left" in str(refused.value) and a in str(refused.value)
    assert "9.5" not in str(refused.value)
    with pytest.raises(ResourceExhausted, match=r"which has epsilon 9\.5, delta 0 left"):
        alice.run(job2, too_much)


def test_a_coordinator_whose_ledger_is_unusable_refuses_dp_releases_without_naming_its_files(tmp_path) -> None:
    """The reason (and the server's path) goes to the coordinator's log; the party gets FAILED_PRECONDITION."""
    from mpcnet.errors import FailedPrecondition
    with LocalCluster(2, workdir=tmp_path / "cluster") as own:
        ledger = own.workdir / "coordinator" / "epsilon-ledger.sqlite"
        ledger.parent.mkdir(parents=True, exist_ok=True)
        ledger.write_bytes(b"this is no database " * 100)
        alice = mpcnet.connect(own.coordinator, unique("alice"))
        job = alice.create_job()
        alice.share(job, "flags", np.ones(50, dtype=np.int64), bound=1, nonnegative=True, dp_only=True)
        with pytest.raises(FailedPrecondition, match="epsilon ledger cannot be used") as refused:
            alice.run(job, mpcnet.Program().dp_count("n", "flags", 1.0).output("n", to=[alice.name]))
        assert str(ledger) not in str(refused.value) and "not a database" not in str(refused.value)
        assert "file is not a database" in own.logs["coordinator"].read_text()


def test_a_ledger_damaged_after_its_first_charge_refuses_the_job_and_keeps_it_open(tmp_path) -> None:
    """A malformed page came back as INTERNAL 'DatabaseError', with neither the ledger nor the reason in the log;
    a ledger truncated to 0 bytes was made again, every party's budget fresh.  Both are FAILED_PRECONDITION now,
    the log names the file and the reason, nothing is charged, and the job runs once the file is restored."""
    import sqlite3
    from contextlib import closing

    from mpcnet.errors import FailedPrecondition
    with LocalCluster(2, workdir=tmp_path / "cluster") as own:
        ledger = own.workdir / "coordinator" / "epsilon-ledger.sqlite"
        alice = mpcnet.connect(own.coordinator, unique("alice"))
        prog = mpcnet.Program().dp_count("n", "flags", 1.0).output("n", to=[alice.name])

        def new_job() -> str:
            job = alice.create_job()
            alice.share(job, "flags", np.ones(50, dtype=np.int64), bound=1, nonnegative=True, dp_only=True)
            return job
        alice.run(new_job(), prog)
        with closing(sqlite3.connect(ledger)) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'budgets'").fetchone()[0]
        intact = ledger.read_bytes()
        job = new_job()
        with open(ledger, "r+b") as f:
            f.seek((root - 1) * 4096)
            f.write(b"\xa5" * 200)
        with pytest.raises(FailedPrecondition, match="epsilon ledger cannot be used") as refused:
            alice.run(job, prog)
        assert str(ledger) not in str(refused.value)
        assert f"the epsilon ledger {ledger} cannot be used: database disk image is malformed; nothing was " \
               "charged" in own.logs["coordinator"].read_text()
        ledger.write_bytes(b"")
        with pytest.raises(FailedPrecondition, match="epsilon ledger cannot be used"):
            alice.run(job, prog)
        assert f"{ledger} exists but is empty" in own.logs["coordinator"].read_text()
        assert ledger.stat().st_size == 0  # not made again
        ledger.write_bytes(intact)
        res = alice.run(job, prog)  # still open
        assert res.receipt["differential_privacy"]["releases"][0]["ledger_remaining"][f"party:{alice.name}"] == \
            pytest.approx(8.0)  # 1 of 10 before, 1 now: the refusals charged nothing


def test_a_busy_ledger_aborts_the_charge_and_leaves_the_job_open_to_run_again(cluster: LocalCluster) -> None:
    """Another writer (here: this test, inside a write transaction) holds the coordinator's ledger past its busy
    timeout: the run is ABORTED with a message to run it again -- not UNAVAILABLE, which reads as an unreachable
    coordinator -- nothing is charged, and the same job then runs."""
    from mpcnet.errors import Aborted
    alice = mpcnet.connect(cluster.coordinator, unique("alice"))
    job, prog = _count_job(alice)
    with _ledger_held(cluster):
        with pytest.raises(Aborted, match="epsilon ledger is busy with another writer; nothing was charged and the "
                                          "job is still open: run it again") as busy:
            alice.run(job, prog)
        assert "epsilon-ledger.sqlite" not in str(busy.value)  # the server's file stays in the server's log
    with _ledger(cluster) as led:
        assert led.releases(f"party:{alice.name}") == []
    res = alice.run(job, prog)
    assert abs(float(alice.reveal(job, "n")) - 50) < 30
    assert res.receipt["differential_privacy"]["releases"][0]["epsilon"] == pytest.approx(1.0)


def test_a_caller_leaving_mid_charge_leaves_a_failed_job_with_the_receipt_of_its_charge(cluster: LocalCluster) -> None:
    """The ledger write runs in a thread nothing can stop: when the caller's deadline passes while the ledger is
    busy, the charge still lands once the other writer lets go.  The job must then fail with a receipt of the
    charge -- not go back to open, where a retry would charge again (from a review)."""
    import time

    from mpcnet.errors import MpcnetError
    alice = mpcnet.connect(cluster.coordinator, unique("alice"), job_timeout_s=2)
    job, prog = _count_job(alice)
    with _ledger_held(cluster), pytest.raises(MpcnetError):  # the caller's 2 s pass within the 10 s busy wait
        alice.run(job, prog)
    deadline = time.monotonic() + 20
    while alice.job(job).state not in ("failed", "open") and time.monotonic() < deadline:
        time.sleep(0.1)
    info = alice.job(job)
    assert info.state == "failed"
    assert "cancelled by the caller) before its nodes were told to run" in json.loads(info.receipt_json)["outcome"]
    with _ledger(cluster) as led:
        assert [r.name for r in led.releases(f"party:{alice.name}")] == [f"{job}/n"]  # charged once
    with pytest.raises(MpcnetError):  # and not again: the job is over
        mpcnet.connect(cluster.coordinator, alice.name).run(job, prog)
    with _ledger(cluster) as led:
        assert len(led.releases(f"party:{alice.name}")) == 1


def test_a_charged_job_that_fails_before_its_nodes_run_keeps_a_receipt_of_its_charge(tmp_path) -> None:
    """The receipt is journalled with the charge: with the dealer down the job fails after its releases were
    charged and before any node ran (a review found the ledger's charge with no receipt behind it, and `mpcnet
    receipt --job` saying the job never got that far).  Each party still sees its own data's balance only."""
    import os
    import subprocess
    import sys

    from mpcnet.cluster import REPO_ROOT
    from mpcnet.errors import MpcnetError
    with LocalCluster(3, workdir=tmp_path / "c") as own:
        alice = mpcnet.connect(own.coordinator, "alice", timeout_s=20, job_timeout_s=30)
        bob = mpcnet.connect(own.coordinator, "bob", timeout_s=20, job_timeout_s=30)
        job = alice.create_job(parties=["bob"])
        alice.share(job, "x", np.ones(10), bound=10.0, dp_only=True)
        bob.share(job, "y", np.ones(10), bound=10.0, dp_only=True)
        own.kill("dealer")
        with pytest.raises(MpcnetError):
            alice.run(job, mpcnet.Program().dp_sum("sx", "x", 2.0).dp_sum("sy", "y", 1.0)
                      .output("sx", to=["alice"]).output("sy", to=["alice"]))
        info = alice.job(job)
        assert info.state == "failed"
        receipt = json.loads(info.receipt_json)
        assert "before its nodes were told to run: nothing was released" in receipt["outcome"]
        assert "the charge stands" in receipt["outcome"]
        releases = receipt["differential_privacy"]["releases"]
        assert [(r["output"], r["epsilon"]) for r in releases] == [("sx", 2.0), ("sy", 1.0)]
        assert [r["ledger_remaining"] for r in releases] == [{"party:alice": pytest.approx(8.0)}, {}]  # not bob's
        env = dict(os.environ, MPCNET_CLUSTER_SECRET=own.cluster_secret, MPCNET_COORDINATOR=own.coordinator,
                   PYTHONPATH=str(REPO_ROOT))
        shown = subprocess.run([sys.executable, "-m", "mpcnet.cli", "receipt", "--job", job], env=env,
                               capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert "outcome: the job failed" in shown.stdout and "party:bob 9 left" in shown.stdout  # the operator's


def test_a_job_cut_short_after_its_nodes_were_told_to_run_keeps_its_receipt(tmp_path) -> None:
    """The receipt is journalled before Execute is sent.  The coordinator is stopped while the nodes execute (a
    crash at that moment), the nodes finish and serve the DP release to its reader, then the coordinator is
    SIGKILLed and restarted: the job is failed, its receipt kept and marked with how it ended (a review found such
    a job with its charge and no receipt), and the nodes, told to abort it, serve its output no more."""
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    import grpc

    from mpcnet.cluster import REPO_ROOT
    from mpcnet.core import fixedpoint
    from mpcnet.core.sharing import reconstruct
    from mpcnet.transport.tensors import ArrayAssembler
    from mpcnet.v1 import mpc_pb2 as pb
    from mpcnet.v1 import mpc_pb2_grpc as pbg

    slow = {"seed": "s", "rules": [{"method": "/mpcnet.v1.Node/Execute", "action": "delay", "delay_s": 3.0}]}
    with LocalCluster(3, workdir=tmp_path / "c", faults={f"node{i}": slow for i in (1, 2, 3)}) as own:
        alice = mpcnet.connect(own.coordinator, "alice", job_timeout_s=60)
        job = alice.create_job()
        alice.share(job, "age", np.full(50, 40.0), bound=120.0, nonnegative=True, dp_only=True)
        failed: list[BaseException] = []

        def run() -> None:
            try:
                alice.run(job, mpcnet.Program().dp_mean("m", "age", 2.0).output("m", to=["alice"]))
            except BaseException as exc:  # noqa: BLE001 - the coordinator dies under it
                failed.append(exc)

        def share_of(node: int) -> np.ndarray:
            assembler = ArrayAssembler(1, 1, "share")
            for chunk in alice.nodes[node].Reveal(pb.RevealRequest(job_id=job, secret="m"), timeout=10,
                                                  metadata=alice._md):
                assembler.add(chunk)
            return assembler.result(())

        runner = threading.Thread(target=run)
        runner.start()
        stub = pbg.CoordinatorStub(grpc.insecure_channel(own.coordinator))
        deadline = time.monotonic() + 60

        def told_to_run() -> bool:  # the receipt journalled with the charge has an outcome: not told to run yet
            kept = stub.GetJob(pb.GetJobRequest(job_id=job), timeout=10, metadata=own.auth_metadata).receipt_json
            return bool(kept) and "outcome" not in json.loads(kept)

        while not told_to_run():
            assert time.monotonic() < deadline, "the receipt never appeared while the job ran"
            time.sleep(0.05)
        os.kill(own.pid("coordinator"), signal.SIGSTOP)  # the nodes are executing (their Execute is held 3 s)
        while True:  # the nodes finish and serve the release to its reader, the coordinator none the wiser
            try:
                shares = [share_of(i) for i in (1, 2, 3)]
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline + 60, "the nodes never finished"
                time.sleep(0.2)
        assert abs(float(fixedpoint.decode(reconstruct(shares), 16)) - 40.0) < 20  # a noisy mean of 40s
        own.kill("coordinator")
        own.start_coordinator()
        runner.join(60)
        assert failed, "run() should fail: its coordinator died"
        env = dict(os.environ, MPCNET_CLUSTER_SECRET=own.cluster_secret, PYTHONPATH=str(REPO_ROOT))
        shown = subprocess.run([sys.executable, "-m", "mpcnet.cli", "receipt", "--job", job, "--coordinator",
                                own.coordinator, "--json"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                               timeout=60)
        assert shown.returncode == 0, shown.stderr
        receipt = json.loads(shown.stdout)
        assert receipt["state"] == "failed" and "some outputs may have reached their readers" in receipt["outcome"]
        assert receipt["differential_privacy"]["releases"][0]["epsilon"] == pytest.approx(2.0)
        with _ledger(own) as led:
            assert [r.epsilon for r in led.releases("party:alice")] == [pytest.approx(2.0)]
        # the restarted coordinator tells the nodes to abort the job: they drop its output
        while True:
            try:
                share_of(1)
            except grpc.RpcError as exc:
                if "was aborted" in (exc.details() or ""):
                    break
            assert time.monotonic() < deadline + 120, "node 1 still serves the failed job's output"
            time.sleep(0.2)


def test_a_local_cluster_keeps_its_own_ledger_whatever_the_users_mpcnet_ledger(tmp_path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """make demo and mpcnet fedavg start a LocalCluster: the user's MPCNET_LEDGER (here in a directory that does
    not exist, which would stop a coordinator using it) is not handed to its coordinator, whose DP releases are
    charged to the cluster's own ledger (a review found make demo charging the user's real ledger)."""
    users = tmp_path / "missing" / "my-ledger.sqlite"
    monkeypatch.setenv("MPCNET_LEDGER", str(users))
    monkeypatch.setenv("MPCNET_DP_BUDGET", "0")  # would refuse every first release
    with LocalCluster(3, workdir=tmp_path / "c") as own:
        alice = mpcnet.connect(own.coordinator, "alice")
        job = alice.create_job()
        alice.share(job, "flags", np.ones(20, dtype=np.int64), bound=1, nonnegative=True, dp_only=True)
        alice.run(job, mpcnet.Program().dp_count("n", "flags", 1.0).output("n", to=["alice"]))
        with EpsilonLedger(own.workdir / "coordinator" / "epsilon-ledger.sqlite") as led:
            assert [r.name for r in led.releases("party:alice")] == [f"{job}/n"]
    assert not users.parent.exists()
