"""Processes: a silent peer becomes a named timeout; SIGTERM shuts down cleanly;
the role commands start; batch reuse is refused across a node restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import mpcnet
from mpcnet.cluster import REPO_ROOT, LocalCluster
from mpcnet.errors import MpcnetError, PeerTimeout
from tests.conftest import unique

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
    assert "node 2" in msg and job in msg and "layer 1" in msg, msg
    assert elapsed < 30  # bounded by the stage deadline, not the client's
    info = alice.job(job)
    assert info.state == "failed" and "node 2" in info.error
    # Node 2 is back: the next job runs and is exact.
    job2 = alice.create_job()
    alice.share(job2, "x", np.array([1.0, 2.0]))
    alice.share(job2, "y", np.array([3.0, 4.0]))
    alice.run(job2, mpcnet.Program().mul("z", "x", "y").output("z", to=[alice.name]))
    np.testing.assert_allclose(alice.reveal(job2, "z"), [3.0, 8.0], atol=2**-15)
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
    # The restarted node has a new dealer enrolment; a new job still works end to end.
    job2 = alice.create_job()
    alice.share(job2, "x", np.array([6]))
    alice.share(job2, "y", np.array([7]))
    alice.run(job2, mpcnet.Program().mul("z", "x", "y").output("z", to=[alice.name]))
    assert int(alice.reveal(job2, "z")[0]) == 42
    alice.close()


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
