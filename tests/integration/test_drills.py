"""Drills in the test suite: the seeded fault layer on real role processes, and `mpcnet drill --quick`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mpcnet
from mpcnet.cluster import REPO_ROOT, LocalCluster
from mpcnet.errors import MpcnetError

pytestmark = pytest.mark.integration


def mul_job(alice: mpcnet.Party) -> tuple[str, np.ndarray]:
    job = alice.create_job()
    alice.share(job, "x", np.array([3, -4, 5]))
    alice.share(job, "y", np.array([7, 8, -9]))
    alice.run(job, mpcnet.Program().mul("z", "x", "y").output("z", to=[alice.name]))
    return job, alice.reveal(job, "z")


@pytest.mark.parametrize("faults, names", [
    # node 2 loses the first opening it is sent: the job fails within the stage deadline, naming a node
    ({"node2": {"seed": "t", "rules": [{"method": "/mpcnet.v1.Node/Exchange", "action": "drop", "calls": [1]}]}},
     "node"),
    # node 3 crashes between receiving Execute and answering it
    ({"node3": {"seed": "t", "rules": [{"method": "/mpcnet.v1.Node/Execute", "action": "error", "calls": [1]}]}},
     "node 3"),
])
def test_injected_fault_is_a_clean_named_failure_and_the_next_job_is_exact(faults: dict, names: str) -> None:
    with LocalCluster(3, stage_timeout_s=3, rpc_timeout_s=3, job_timeout_s=30, faults=faults) as c:
        alice = mpcnet.connect(c.coordinator, "alice", timeout_s=10, job_timeout_s=60)
        t0 = time.monotonic()
        with pytest.raises(MpcnetError) as err:
            mul_job(alice)
        assert time.monotonic() - t0 < 20  # the stage deadline (3 s) bounds it, not the job's 30 s
        assert names in str(err.value), str(err.value)
        _, z = mul_job(alice)  # the schedule hit call 1 only
        np.testing.assert_array_equal(z, [21, -32, -45])
        alice.close()
        (role,) = faults
        assert "FAULT INJECTION ACTIVE" in c.logs[role].read_text()
    c.cleanup()


def test_a_bad_fault_schedule_stops_the_role_at_start(tmp_path: Path) -> None:
    env = dict(os.environ, MPCNET_FAULTS='{"rules": [{"action": "explode"}]}', MPCNET_LISTEN="127.0.0.1:0",
               PYTHONPATH=str(REPO_ROOT))
    out = subprocess.run([sys.executable, "-m", "nodes.dealer"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "configuration error" in out.stderr and "explode" in out.stderr


def test_quick_drill_set_meets_every_expectation(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "mpcnet.cli", "drill", "--quick", "--out", str(tmp_path)],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, COLUMNS="200"))
    print(out.stdout[-6000:])
    (report,) = tmp_path.glob("drill-quick-*.json")
    verdicts = json.loads(report.read_text())["verdicts"]
    missed = [v for v in verdicts if not v["ok"]]
    assert out.returncode == 0 and not missed, missed or out.stderr[-3000:]
    assert {v["scenario"] for v in verdicts} == {"secagg-kill-clients", "node-kill", "node-pause", "dealer-restart",
                                                  "coordinator-restart", "coordinator-kill-loop", "dealer-kill-loop",
                                                  "latency", "duplicate-messages", "corrupt-message"}
    assert len(verdicts) == 13


def test_dealer_ledger_refuses_a_second_batch_for_a_job_across_a_restart() -> None:
    import signal

    import grpc

    from mpcnet.v1 import mpc_pb2 as pb
    from mpcnet.v1 import mpc_pb2_grpc as pbg
    from nodes.dealer import material_to_proto
    from tests.conftest import plan_for

    with LocalCluster(3, stage_timeout_s=3, rpc_timeout_s=3, job_timeout_s=30) as c:
        alice = mpcnet.connect(c.coordinator, "alice", timeout_s=10)
        job = alice.create_job()
        alice.share(job, "x", np.array([1, 2]))
        alice.share(job, "y", np.array([3, 4]))
        plan = plan_for(alice, job, mpcnet.Program().mul("z", "x", "y").output("z", to=["alice"]))
        req = pb.CreateBatchRequest(job_id=job, items=[material_to_proto(m) for m in plan.material])

        def dealer() -> pbg.DealerStub:
            return pbg.DealerStub(grpc.insecure_channel(c.dealer))

        first = dealer().CreateBatch(req, timeout=10, metadata=c.auth_metadata)
        for restart in (False, True):
            if restart:
                c.kill("dealer", signal.SIGKILL)
                c.start_dealer()
                for i in range(1, 4):  # re-enrol with the new dealer instance
                    pbg.NodeStub(grpc.insecure_channel(c.nodes[i - 1])).EnsureEnrolled(
                        pb.EnsureEnrolledRequest(), timeout=10, metadata=c.auth_metadata)
            with pytest.raises(grpc.RpcError) as err:
                dealer().CreateBatch(req, timeout=10, metadata=c.auth_metadata)
            assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS and first.batch_id in err.value.details()
        # the batch issued before the restart is never delivered after it
        with pytest.raises(grpc.RpcError) as err:
            list(dealer().FetchCorrections(pb.FetchCorrectionsRequest(batch_id=first.batch_id, node_id=3),
                                           timeout=10, metadata=c.auth_metadata))
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        # and the job itself still cannot take a second batch through RunJob; a new job runs exactly
        with pytest.raises(MpcnetError, match="already had batch"):
            alice.run(job, mpcnet.Program().mul("z", "x", "y").output("z", to=["alice"]))
        _, z = mul_job(alice)
        np.testing.assert_array_equal(z, [21, -32, -45])
        alice.close()
    c.cleanup()
