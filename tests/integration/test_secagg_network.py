"""SecAgg across processes: the coordinator serves `SecAgg`, clients run as `mpcnet client` processes.

The coordinator is the session cluster's (tests/conftest.py); every round
here is created with short stage deadlines, and each client process runs
many logical clients.  A client that must crash runs in its own process,
which SIGKILLs itself right before answering the chosen stage (--die-at), so
the dropout is real and deterministic.  Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Sequence

import grpc
import numpy as np
import pytest

from mpcnet.cluster import REPO_ROOT, LocalCluster
from mpcnet.secagg import advertise_keys
from mpcnet.secagg.encoding import encode
from mpcnet.secagg_client import derive_input
from mpcnet.secagg_wire import params_from_proto, vector_from_bytes
from mpcnet.v1 import secagg_pb2 as spb
from mpcnet.v1 import secagg_pb2_grpc as spbg

pytestmark = pytest.mark.integration

STAGE_S = 2.5  # per-stage deadline: how long a crashed client is waited for
JOIN_S = 20.0  # advertise_keys deadline: covers client process start-up (closes early when all joined)
LENGTH = 16
PROC_TIMEOUT_S = 60.0


def stub(cluster: LocalCluster) -> spbg.SecAggStub:
    return spbg.SecAggStub(grpc.insecure_channel(cluster.coordinator))


def create_round(cluster: LocalCluster, ids: Sequence[int], t: int, *, plus: bool = False, degree: int = 0,
                 join_s: float = JOIN_S) -> str:
    graph = spb.SECAGG_GRAPH_SECAGGPLUS if plus else spb.SECAGG_GRAPH_COMPLETE
    params = spb.SecAggRoundParams(client_ids=list(ids), threshold=t, vector_length=LENGTH, bits=32, graph=graph,
                                   degree=degree, stage_deadline_s=STAGE_S, join_deadline_s=join_s)
    reply = stub(cluster).CreateRound(spb.SecAggCreateRoundRequest(params=params), timeout=10,
                                      metadata=cluster.auth_metadata)
    return str(reply.round_id)


def spawn(cluster: LocalCluster, round_id: str, ids: Sequence[int], seed: str,
          die_at: str | None = None) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "mpcnet.cli", "client", "--coordinator", cluster.coordinator, "--round", round_id,
           "--ids", ",".join(map(str, ids)), "--input-seed", seed, "--timeout", "20"]
    if die_at:
        cmd += ["--die-at", die_at]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def finish(proc: subprocess.Popen[str]) -> tuple[int, list[dict[str, Any]], str]:
    try:
        out, err = proc.communicate(timeout=PROC_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"client process did not finish within {PROC_TIMEOUT_S}s: {err[-2000:]}")
    return proc.returncode, [json.loads(line) for line in out.splitlines() if line.strip()], err


def expected_sum(seed: str, ids: Sequence[int]) -> np.ndarray:
    total = np.zeros(LENGTH, dtype=np.uint64)
    for cid in ids:
        total = total + derive_input(seed, cid, LENGTH, 32)
    return total & np.uint64(2**32 - 1)


def result(cluster: LocalCluster, round_id: str) -> spb.SecAggGetResultReply:
    reply: spb.SecAggGetResultReply = stub(cluster).GetResult(spb.SecAggGetResultRequest(round_id=round_id),
                                                              timeout=10)
    return reply


def test_no_dropout_exact_sum(cluster: LocalCluster) -> None:
    ids = [1, 2, 3, 4, 5]
    rid = create_round(cluster, ids, t=3)
    code, lines, err = finish(spawn(cluster, rid, ids, "nodrop"))
    assert code == 0, err[-2000:]
    assert [ln["state"] for ln in lines] == ["done"] * 5
    res = result(cluster, rid)
    assert res.state == "done"
    assert list(res.done.included) == ids and not res.done.dropped
    assert np.array_equal(vector_from_bytes(res.done.sum), expected_sum("nodrop", ids))


@pytest.mark.parametrize("stage, in_sum", [
    ("share_keys", [1, 2, 3, 4]),               # advertised keys, then died: no shares, no input
    ("masked_input_collection", [1, 2, 3, 4]),  # shared keys, then died: pairwise masks removed
    ("unmasking", [1, 2, 3, 4, 5]),             # sent its masked input, then died: its input counts
])
def test_one_client_sigkilled(cluster: LocalCluster, stage: str, in_sum: list[int]) -> None:
    rid = create_round(cluster, [1, 2, 3, 4, 5], t=3)
    seed = f"kill-{stage}"
    victim = spawn(cluster, rid, [5], seed, die_at=stage)
    survivors = spawn(cluster, rid, [1, 2, 3, 4], seed)
    vcode, vlines, _ = finish(victim)
    code, lines, err = finish(survivors)
    assert vcode == -9 and vlines == []  # really SIGKILLed before printing anything
    assert code == 0, err[-2000:]
    assert [ln["state"] for ln in lines] == ["done"] * 4
    res = result(cluster, rid)
    assert res.state == "done"
    assert list(res.done.included) == in_sum
    assert [(d.client_id, d.stage) for d in res.done.dropped] == [(5, stage)]
    assert np.array_equal(vector_from_bytes(res.done.sum), expected_sum(seed, in_sum))


def test_too_many_killed_aborts_naming_the_stage(cluster: LocalCluster) -> None:
    rid = create_round(cluster, [1, 2, 3, 4, 5], t=3)  # n - t + 1 = 3 clients die
    victims = spawn(cluster, rid, [3, 4, 5], "abort", die_at="masked_input_collection")
    survivors = spawn(cluster, rid, [1, 2], "abort")
    assert finish(victims)[0] == -9
    code, lines, err = finish(survivors)
    assert code == 3, err[-2000:]
    for ln in lines:
        assert ln["state"] == "aborted"
        assert "masked_input_collection" in ln["reason"] and "threshold 3" in ln["reason"]
    res = result(cluster, rid)
    assert res.state == "aborted" and res.aborted.stage == "masked_input_collection"
    assert "2 survivors" in res.aborted.reason


def test_secaggplus_round(cluster: LocalCluster) -> None:
    ids = list(range(1, 9))
    rid = create_round(cluster, ids, t=3, plus=True, degree=4)
    code, lines, err = finish(spawn(cluster, rid, ids, "plus"))
    assert code == 0, err[-2000:]
    res = result(cluster, rid)
    assert res.state == "done" and list(res.done.included) == ids
    assert np.array_equal(vector_from_bytes(res.done.sum), expected_sum("plus", ids))


def test_bad_input_gets_actionable_status(cluster: LocalCluster) -> None:
    s = stub(cluster)

    def code_of(req: spb.SecAggNextRequest) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.RpcError) as err:
            s.Next(req, timeout=10)
        return err.value.code(), err.value.details()

    # Creating a round is for cluster roles only; bad parameters are refused with the reason.
    params = spb.SecAggRoundParams(client_ids=[1, 2], threshold=2, vector_length=4, stage_deadline_s=STAGE_S)
    with pytest.raises(grpc.RpcError) as err:
        s.CreateRound(spb.SecAggCreateRoundRequest(params=params), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    bad = spb.SecAggRoundParams(client_ids=[1, 2], threshold=5, vector_length=4)
    with pytest.raises(grpc.RpcError) as err:
        s.CreateRound(spb.SecAggCreateRoundRequest(params=bad), timeout=10, metadata=cluster.auth_metadata)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "threshold" in err.value.details()

    assert code_of(spb.SecAggNextRequest(round_id="nope", client_id=1))[0] == grpc.StatusCode.NOT_FOUND
    rid = str(s.CreateRound(spb.SecAggCreateRoundRequest(params=spb.SecAggRoundParams(
        client_ids=[1, 2], threshold=2, vector_length=4, stage_deadline_s=STAGE_S, join_deadline_s=STAGE_S)),
        timeout=10, metadata=cluster.auth_metadata).round_id)
    code, msg = code_of(spb.SecAggNextRequest(round_id=rid, client_id=9))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "client 9" in msg
    joined = s.Next(spb.SecAggNextRequest(round_id=rid, client_id=1), timeout=10)
    assert joined.request.stage == "advertise_keys"
    code, msg = code_of(spb.SecAggNextRequest(round_id=rid, client_id=1, stage_answered="advertise_keys",
                                              response=b"{not json"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "malformed" in msg
    code, msg = code_of(spb.SecAggNextRequest(round_id=rid, client_id=1, stage_answered="bogus", response=b"x"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "unknown stage" in msg
    code, msg = code_of(spb.SecAggNextRequest(round_id=rid, client_id=1, stage_answered="unmasking", response=b"x"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "not open yet" in msg

    # A valid answer, then the same answer replayed while the stage is open.
    core_params = params_from_proto(joined.params)
    from mpcnet.secagg.encoding import decode
    _, answer = advertise_keys.client_step(core_params, 1, decode(joined.request.payload))  # type: ignore[arg-type]
    req = spb.SecAggNextRequest(round_id=rid, client_id=1, stage_answered="advertise_keys", response=encode(answer))
    first, second = s.Next.future(req, timeout=30), s.Next.future(req, timeout=30)
    outcomes: list[Any] = []
    for fut in (first, second):
        try:
            outcomes.append(fut.result(timeout=30))
        except grpc.RpcError as exc:
            outcomes.append(exc)
    refused = [o for o in outcomes if isinstance(o, grpc.RpcError)]
    assert len(refused) == 1, outcomes
    assert refused[0].code() == grpc.StatusCode.ALREADY_EXISTS and "replayed" in refused[0].details()
    # Client 2 never answers: the stage closes at its deadline and the round aborts, naming the stage.
    (outcome,) = [o for o in outcomes if not isinstance(o, grpc.RpcError)]
    assert outcome.aborted.stage == "advertise_keys" and "threshold 2" in outcome.aborted.reason
    # ... and the service keeps serving.
    assert result(cluster, rid).state == "aborted"
