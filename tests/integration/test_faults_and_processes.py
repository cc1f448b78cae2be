"""Processes: a silent peer becomes a named timeout; SIGTERM shuts down cleanly;
the role commands start; batch reuse is refused across a node restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import mpcnet
from mpcnet.cluster import REPO_ROOT, LocalCluster
from mpcnet.errors import MpcnetError, PeerTimeout
from tests.conftest import plan_for, unique

pytestmark = pytest.mark.integration


@pytest.fixture()
def small_cluster():
    c = LocalCluster(3, stage_timeout_s=3, rpc_timeout_s=3, job_timeout_s=30, log_level="INFO")
    c.start()
    yield c
    c.stop()
    c.cleanup()


def test_silent_peer_named_within_deadline_then_next_job_succeeds(small_cluster: LocalCluster) -> None:
    c = small_cluster
    alice = mpcnet.connect(c.coordinator, unique("alice"), timeout_s=10, job_timeout_s=60)
    job = alice.create_job()
    alice.share(job, "x", np.array([1.0, 2.0]))
    alice.share(job, "y", np.array([3.0, 4.0]))
    os.killpg(c.pid("node2"), signal.SIGSTOP)  # node 2 stops answering anyone
    try:
        t0 = time.monotonic()
        with pytest.raises(MpcnetError) as err:
            alice.run(job, mpcnet.Program().mul("z", "x", "y").output("z", to=[alice.name]))
        elapsed = time.monotonic() - t0
    finally:
        os.killpg(c.pid("node2"), signal.SIGCONT)
    msg = str(err.value)
    assert isinstance(err.value, PeerTimeout) or "DEADLINE" in type(err.value).status
    assert "node 2" in msg and job in msg and "prepare" in msg, msg
    assert elapsed < 20  # bounded by the 3 s stage deadline (+ abort), not the 30 s job deadline
    info = alice.job(job)
    assert info.state == "failed" and "node 2" in info.error
    # Node 2 is back: the next job runs and is exact.
    job2 = alice.create_job()
    alice.share(job2, "x", np.array([1.0, 2.0]))
    alice.share(job2, "y", np.array([3.0, 4.0]))
    alice.run(job2, mpcnet.Program().mul("z", "x", "y").output("z", to=[alice.name]))
    np.testing.assert_allclose(alice.reveal(job2, "z"), [3.0, 8.0], atol=2**-15)
    alice.close()


def test_peer_silent_mid_exchange_is_named_with_its_layer(small_cluster: LocalCluster) -> None:
    """Node 2 answers Prepare but never sends its opening: the others name it and the layer."""
    import grpc as _grpc
    from mpcnet.v1 import mpc_pb2 as pb
    from mpcnet.v1 import mpc_pb2_grpc as pbg
    c = small_cluster
    alice = mpcnet.connect(c.coordinator, unique("alice"), timeout_s=10, job_timeout_s=60)
    job = alice.create_job()
    alice.share(job, "x", np.array([1, 2]))
    alice.share(job, "y", np.array([3, 4]))
    # Drive the stages by hand so that node 2 is prepared but never executes.
    prog = mpcnet.Program().mul("z", "x", "y").output("z", to=[alice.name])
    from mpcnet.wire import program_to_proto
    from nodes.dealer import material_to_proto
    plan = plan_for(alice, job, prog)
    dealer = pbg.DealerStub(_grpc.insecure_channel(c.dealer))
    batch = dealer.CreateBatch(pb.CreateBatchRequest(job_id=job, items=[material_to_proto(m) for m in plan.material]),
                               timeout=10, metadata=c.auth_metadata)
    exe = pb.ExecuteRequest(job_id=job, program=program_to_proto(prog), plan_digest=plan.digest,
                            batch_id=batch.batch_id, node_epochs=batch.node_epochs, deadline_s=2)
    stubs = {i: pbg.NodeStub(_grpc.insecure_channel(c.nodes[i - 1])) for i in (1, 2, 3)}
    for i in (1, 2, 3):
        stubs[i].Prepare(exe, timeout=10, metadata=c.auth_metadata)
    t0 = time.monotonic()
    third = stubs[3].Execute.future(exe, timeout=20, metadata=c.auth_metadata)  # node 3 takes part; node 2 stays silent
    with pytest.raises(_grpc.RpcError) as err:
        stubs[1].Execute(exe, timeout=20, metadata=c.auth_metadata)
    assert time.monotonic() - t0 < 10
    with pytest.raises(_grpc.RpcError):
        third.result()
    assert err.value.code() == _grpc.StatusCode.DEADLINE_EXCEEDED
    assert "peer node 2 sent no opening" in err.value.details() and "layer 1" in err.value.details()
    assert "node 3" not in err.value.details()
    assert job in err.value.details()
    alice.close()


def test_consumed_batches_survive_node_restart(small_cluster: LocalCluster) -> None:
    c = small_cluster
    alice = mpcnet.connect(c.coordinator, unique("alice"))
    job = alice.create_job()
    alice.share(job, "x", np.array([5]))
    alice.share(job, "y", np.array([7]))
    alice.run(job, mpcnet.Program().mul("z", "x", "y").output("z", to=[alice.name]))
    journal = c.workdir / "node1" / "node1-consumed-batches.jsonl"
    before = journal.read_text()
    c.kill("node1", signal.SIGKILL)
    c.start_node(1)
    assert journal.read_text() == before  # journal kept; the restarted node loads it
    # Replaying the consumed batch to the restarted node is refused.
    import json
    import grpc as _grpc
    from mpcnet.v1 import mpc_pb2 as pb
    from mpcnet.v1 import mpc_pb2_grpc as pbg
    from mpcnet.wire import program_to_proto
    old_batch = json.loads(before.splitlines()[-1])["batch_id"]
    replay_job = alice.create_job()
    alice.share(replay_job, "x", np.array([5]))
    alice.share(replay_job, "y", np.array([7]))
    prog = mpcnet.Program().mul("z", "x", "y").output("z", to=[alice.name])
    exe = pb.ExecuteRequest(job_id=replay_job, program=program_to_proto(prog),
                            plan_digest=plan_for(alice, replay_job, prog).digest, batch_id=old_batch,
                            node_epochs=["any"] * 3, deadline_s=2)
    with pytest.raises(_grpc.RpcError) as err:
        pbg.NodeStub(_grpc.insecure_channel(c.nodes[0])).Prepare(exe, timeout=10, metadata=c.auth_metadata)
    assert err.value.code() == _grpc.StatusCode.ALREADY_EXISTS and old_batch in err.value.details()
    # The restarted node has a new dealer enrolment; a new job still works end to end.
    job2 = alice.create_job()
    alice.share(job2, "x", np.array([6]))
    alice.share(job2, "y", np.array([7]))
    alice.run(job2, mpcnet.Program().mul("z", "x", "y").output("z", to=[alice.name]))
    assert int(alice.reveal(job2, "z")[0]) == 42
    alice.close()


def test_sigint_is_graceful(small_cluster: LocalCluster) -> None:
    c = small_cluster
    os.killpg(c.pid("node2"), signal.SIGINT)
    assert c.procs["node2"].wait(timeout=15) == 0
    assert "node 2 shutting down" in (c.workdir / "node2.log").read_text()


def test_sigterm_is_graceful_and_health_reports_serving(small_cluster: LocalCluster) -> None:
    c = small_cluster
    for addr in [c.coordinator, c.dealer, *c.nodes]:
        with grpc.insecure_channel(addr) as ch:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
    codes = c.stop(grace_s=10)
    assert codes == {name: 0 for name in codes}, codes
    logs = c.log_text()
    assert "shutting down" in logs and "plaintext gRPC on loopback" in logs


@pytest.mark.parametrize("argv", [
    [sys.executable, "-m", "nodes.node", "--help"],
    [sys.executable, "-m", "nodes.dealer", "--help"],
    [sys.executable, "-m", "nodes.coordinator", "--help"],
    [sys.executable, "-m", "mpcnet.cli", "node", "--help"],
    [sys.executable, "-m", "mpcnet.cli", "--help"],
])
def test_role_commands_start(argv: list[str]) -> None:
    out = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "usage" in out.stdout.lower()


def test_bad_config_is_a_clear_error(tmp_path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[cluster\nnodes = 3")
    out = subprocess.run([sys.executable, "-m", "nodes.node", "--config", str(cfg), "--id", "1"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "not valid TOML" in out.stderr
    out = subprocess.run([sys.executable, "-m", "nodes.node", "--id", "9"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=60, env=dict(os.environ, MPCNET_NODES="127.0.0.1:1,127.0.0.1:2"))
    assert out.returncode == 2
    assert "node id must be in 1..2" in out.stderr


def test_dealer_restart_gives_fresh_material_and_jobs_continue(small_cluster: LocalCluster) -> None:
    c = small_cluster
    alice = mpcnet.connect(c.coordinator, unique("alice"))
    job = alice.create_job()
    alice.share(job, "x", np.array([2.0, 3.0]))
    alice.share(job, "y", np.array([4.0, 5.0]))
    c.kill("dealer", signal.SIGKILL)
    c.start_dealer()
    # The new dealer has no enrolments: the coordinator has the nodes enrol again, then runs the job.
    alice.run(job, mpcnet.Program().mul("z", "x", "y").output("z", to=[alice.name]))
    np.testing.assert_allclose(alice.reveal(job, "z"), [8.0, 15.0], atol=2**-15)
    assert "enrolled" in (c.workdir / "dealer.log").read_text()
    alice.close()


def test_finished_jobs_are_forgotten_after_the_ttl() -> None:
    from mpcnet.errors import FailedPrecondition
    with LocalCluster(2, output_ttl_s=1.5) as c:
        alice = mpcnet.connect(c.coordinator, unique("alice"))
        job = alice.create_job()
        alice.share(job, "x", np.array([6]))
        alice.share(job, "y", np.array([7]))
        alice.run(job, mpcnet.Program().mul("z", "x", "y").output("z", to=[alice.name]))
        assert int(alice.reveal(job, "z")[0]) == 42
        time.sleep(2.0)
        with pytest.raises(FailedPrecondition, match="expired"):
            alice.reveal(job, "z")
        alice.close()


def test_roles_die_with_a_killed_launcher(tmp_path) -> None:
    """SIGKILL the process that started a LocalCluster: its roles go too (no orphans)."""
    script = tmp_path / "launcher.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "from mpcnet.cluster import LocalCluster\n"
        "c = LocalCluster(2)\n"
        "c.start()\n"
        "print(' '.join(str(p.pid) for p in c.procs.values()), flush=True)\n"
        "time.sleep(120)\n")
    launcher = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert launcher.stdout is not None
        pids = [int(p) for p in launcher.stdout.readline().split()]
        assert len(pids) == 4
    finally:
        launcher.kill()
        launcher.wait(timeout=10)
    def running(pid: int) -> bool:
        try:
            return (Path(f"/proc/{pid}/stat").read_text().split()[2]) != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 15
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if running(p)]
        time.sleep(0.2)
    assert alive == [], f"orphaned role processes: {alive}"
