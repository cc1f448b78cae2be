"""SecAgg across processes: the coordinator serves `SecAgg`, clients run as `mpcnet client` processes.

The coordinator is the session cluster's (tests/conftest.py); every round
here is created with short stage deadlines, and each client process runs
many logical clients.  A client that must crash runs in its own process,
which SIGKILLs itself right before answering the chosen stage (--die-at), so
the dropout is real and deterministic.  Every wait is bounded.  Clients get
their bearer tokens from CreateRound (through MPCNET_CLIENT_TOKENS or
--tokens-file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import grpc
import numpy as np
import pytest

from mpcnet.cluster import REPO_ROOT, LocalCluster
from mpcnet.secagg import advertise_keys
from mpcnet.secagg.encoding import encode
from mpcnet.secagg.driver import signing_keys_for, verify_keys_for
from mpcnet.secagg.quantization import WeightedEncoder
from mpcnet.secagg_client import dequantize_result, derive_input
from mpcnet.secagg_wire import aggregate_of, params_from_proto
from mpcnet.v1 import secagg_pb2 as spb
from mpcnet.v1 import secagg_pb2_grpc as spbg

pytestmark = pytest.mark.integration

STAGE_S = 2.5  # per-stage deadline: how long a crashed client is waited for
JOIN_S = 20.0  # advertise_keys deadline: covers client process start-up (closes early when all joined)
LENGTH = 16
PROC_TIMEOUT_S = 60.0


def stub(cluster: LocalCluster) -> spbg.SecAggStub:
    return spbg.SecAggStub(grpc.insecure_channel(cluster.coordinator))


class Round:
    def __init__(self, reply: spb.SecAggCreateRoundReply) -> None:
        self.id = str(reply.round_id)
        self.params = reply.params
        self.tokens = {int(k): str(v) for k, v in reply.client_tokens.items()}

    def tokens_for(self, ids: Sequence[int]) -> str:
        return json.dumps({str(cid): self.tokens[cid] for cid in ids})


def create_round(cluster: LocalCluster, ids: Sequence[int], t: int, *, plus: bool = False, degree: int = 0,
                 join_s: float = JOIN_S, length: int = LENGTH, bits: int = 32,
                 quantization: spb.SecAggQuantization | None = None,
                 verify_keys: Sequence[bytes] = (), stage_s: float = STAGE_S, operator_only: bool = False) -> Round:
    graph = spb.SECAGG_GRAPH_SECAGGPLUS if plus else spb.SECAGG_GRAPH_COMPLETE
    params = spb.SecAggRoundParams(client_ids=list(ids), threshold=t, vector_length=length, bits=bits, graph=graph,
                                   degree=degree, stage_deadline_s=stage_s, join_deadline_s=join_s,
                                   active=bool(verify_keys), verify_keys=list(verify_keys),
                                   sum_to_operator_only=operator_only)
    if quantization is not None:
        params.quantization.CopyFrom(quantization)
    reply = stub(cluster).CreateRound(spb.SecAggCreateRoundRequest(params=params), timeout=10,
                                      metadata=cluster.auth_metadata)
    assert sorted(reply.client_tokens) == sorted(ids)
    return Round(reply)


def spawn(cluster: LocalCluster, rnd: Round, ids: Sequence[int], seed: str | None,
          die_at: str | None = None, *, input_file: Path | None = None, tokens_file: Path | None = None,
          signing_keys_file: Path | None = None, verify_keys_file: Path | None = None, tokens: str | None = None,
          extra: Sequence[str] = ()) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "mpcnet.cli", "client", "--coordinator", cluster.coordinator, "--round", rnd.id,
           "--ids", ",".join(map(str, ids)), "--timeout", "20", *extra]
    cmd += ["--input-seed", seed] if seed is not None else ["--input-file", str(input_file)]
    if die_at:
        cmd += ["--die-at", die_at]
    if signing_keys_file is not None:
        cmd += ["--signing-keys-file", str(signing_keys_file)]
    if verify_keys_file is not None:
        cmd += ["--verify-keys-file", str(verify_keys_file)]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("MPCNET_CLIENT_TOKENS", None)
    if tokens_file is not None:
        cmd += ["--tokens-file", str(tokens_file)]
    else:
        env["MPCNET_CLIENT_TOKENS"] = rnd.tokens_for(ids) if tokens is None else tokens
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


def result(cluster: LocalCluster, rnd: Round,
           metadata: Sequence[tuple[str, str]] | None = None) -> spb.SecAggGetResultReply:
    reply: spb.SecAggGetResultReply = stub(cluster).GetResult(
        spb.SecAggGetResultRequest(round_id=rnd.id), timeout=10,
        metadata=cluster.auth_metadata if metadata is None else metadata)
    return reply


def test_no_dropout_exact_sum(cluster: LocalCluster) -> None:
    ids = [1, 2, 3, 4, 5]
    rnd = create_round(cluster, ids, t=3)
    code, lines, err = finish(spawn(cluster, rnd, ids, "nodrop"))
    assert code == 0, err[-2000:]
    assert [ln["state"] for ln in lines] == ["done"] * 5
    res = result(cluster, rnd)
    assert res.state == "done"
    assert list(res.done.included) == ids and not res.done.dropped
    assert np.array_equal(aggregate_of(res.done), expected_sum("nodrop", ids))


@pytest.mark.parametrize("stage, in_sum", [
    ("share_keys", [1, 2, 3, 4]),               # advertised keys, then died: no shares, no input
    ("masked_input_collection", [1, 2, 3, 4]),  # shared keys, then died: pairwise masks removed
    ("unmasking", [1, 2, 3, 4, 5]),             # sent its masked input, then died: its input counts
])
def test_one_client_sigkilled(cluster: LocalCluster, stage: str, in_sum: list[int]) -> None:
    rnd = create_round(cluster, [1, 2, 3, 4, 5], t=3)
    seed = f"kill-{stage}"
    victim = spawn(cluster, rnd, [5], seed, die_at=stage)
    survivors = spawn(cluster, rnd, [1, 2, 3, 4], seed)
    vcode, vlines, _ = finish(victim)
    code, lines, err = finish(survivors)
    assert vcode == -9 and vlines == []  # really SIGKILLed before printing anything
    assert code == 0, err[-2000:]
    assert [ln["state"] for ln in lines] == ["done"] * 4
    res = result(cluster, rnd)
    assert res.state == "done"
    assert list(res.done.included) == in_sum
    assert [(d.client_id, d.stage) for d in res.done.dropped] == [(5, stage)]
    assert np.array_equal(aggregate_of(res.done), expected_sum(seed, in_sum))
    # the round's privacy receipt names who was summed and who dropped, and at which stage
    receipt = json.loads(res.receipt_json)
    assert receipt["participants"] == {"registered": [1, 2, 3, 4, 5], "included": in_sum,
                                       "dropped": [{"client": 5, "stage": stage}]}
    assert "threshold t = 3 of 5" in receipt["layers"][0] and receipt["state"] == "done"


@pytest.mark.parametrize("stage, transport", [("share_keys", "session"), ("masked_input_collection", "session"),
                                              ("unmasking", "session"), ("masked_input_collection", "--no-session")])
def test_killed_client_is_seen_at_once_not_at_the_stage_deadline(cluster: LocalCluster, stage: str,
                                                                 transport: str) -> None:
    """With a 600 s stage deadline, the round still ends inside the 60 s process timeout: the killed client's
    Session stream (or, with --no-session, its Attend stream) breaks and the coordinator counts it as a dropout
    of the open stage at once."""
    ids = [1, 2, 3, 4, 5]
    rnd = create_round(cluster, ids, t=3, stage_s=600.0)
    seed = f"presence-{stage}-{transport}"
    live = spawn(cluster, rnd, [1, 2, 3, 4], seed)
    dying = spawn(cluster, rnd, [5], seed, die_at=stage, extra=[transport] if transport != "session" else [])
    rc_dead, _, _ = finish(dying)
    rc, lines, err = finish(live)
    assert rc_dead == -9
    assert rc == 0, err
    res = result(cluster, rnd)
    assert res.state == "done"
    assert [(d.client_id, d.stage) for d in res.done.dropped] == [(5, stage)]
    in_sum = [1, 2, 3, 4] if stage != "unmasking" else ids
    assert list(res.done.included) == in_sum
    assert np.array_equal(aggregate_of(res.done), expected_sum(seed, in_sum))
    assert res.done.word_bytes == 4 and len(res.done.sum) == 4 * LENGTH


def test_too_many_killed_aborts_naming_the_stage(cluster: LocalCluster) -> None:
    rnd = create_round(cluster, [1, 2, 3, 4, 5], t=3)  # n - t + 1 = 3 clients die
    victims = spawn(cluster, rnd, [3, 4, 5], "abort", die_at="masked_input_collection")
    survivors = spawn(cluster, rnd, [1, 2], "abort")
    assert finish(victims)[0] == -9
    code, lines, err = finish(survivors)
    assert code == 3, err[-2000:]
    for ln in lines:
        assert ln["state"] == "aborted"
        assert "masked_input_collection" in ln["reason"] and "threshold 3" in ln["reason"]
    res = result(cluster, rnd)
    assert res.state == "aborted" and res.aborted.stage == "masked_input_collection"
    assert "2 survivors" in res.aborted.reason
    receipt = json.loads(res.receipt_json)
    assert receipt["released"].startswith("nothing") and receipt["aborted"]["stage"] == "masked_input_collection"
    # who dropped, and who had sent a masked input: the receipt said "dropped: none" for such a round
    assert receipt["participants"]["dropped"] == [{"client": c, "stage": "masked_input_collection"} for c in (3, 4, 5)]
    assert receipt["participants"]["sent_masked_input"] == [1, 2]
    assert [d.client_id for d in res.aborted.dropped] == [3, 4, 5]


def test_secaggplus_round(cluster: LocalCluster) -> None:
    ids = list(range(1, 9))
    rnd = create_round(cluster, ids, t=3, plus=True, degree=4)
    code, lines, err = finish(spawn(cluster, rnd, ids, "plus"))
    assert code == 0, err[-2000:]
    res = result(cluster, rnd)
    assert res.state == "done" and list(res.done.included) == ids
    assert np.array_equal(aggregate_of(res.done), expected_sum("plus", ids))


def test_secaggplus_survivors_split_by_two_deaths_abort_the_round_before_unmasking(cluster: LocalCluster) -> None:
    """Degree 2 on 8 clients is one cycle: two SIGKILLed clients that are not neighbours cut the survivors into
    two arcs that share no mask.  The coordinator aborts at masked_input_collection, naming the split, instead
    of unmasking each arc's sum; every survivor hears it, and nothing is released."""
    from tests.unit.test_secagg_plus_connectivity import cycle_order
    ids = list(range(1, 9))
    rnd = create_round(cluster, ids, t=2, plus=True, degree=2)
    order = cycle_order(params_from_proto(rnd.params))
    dead = [order[0], order[3]]  # the arcs order[1:3] and order[4:] survive
    victims = spawn(cluster, rnd, dead, "split", die_at="masked_input_collection")
    survivors = spawn(cluster, rnd, [c for c in ids if c not in dead], "split")
    assert finish(victims)[0] == -9
    code, lines, err = finish(survivors)
    assert code == 3, err[-2000:]
    assert all(ln["state"] == "aborted" and "groups of sizes 4, 2" in ln["reason"] for ln in lines), lines
    res = result(cluster, rnd)
    assert res.state == "aborted" and res.aborted.stage == "masked_input_collection"
    assert json.loads(res.receipt_json)["released"].startswith("nothing")


def test_bad_input_gets_actionable_status(cluster: LocalCluster) -> None:
    s = stub(cluster)

    md: tuple[tuple[str, str], ...] = ()

    def code_of(req: spb.SecAggNextRequest) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.RpcError) as err:
            s.Next(req, timeout=10, metadata=md)
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
    rnd = Round(s.CreateRound(spb.SecAggCreateRoundRequest(params=spb.SecAggRoundParams(
        client_ids=[1, 2], threshold=2, vector_length=4, stage_deadline_s=STAGE_S, join_deadline_s=STAGE_S)),
        timeout=10, metadata=cluster.auth_metadata))
    rid = rnd.id
    code, msg = code_of(spb.SecAggNextRequest(round_id=rid, client_id=9))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "client 9" in msg  # registration is told to no one
    md = (("mpcnet-client-token", rnd.tokens[1]),)
    joined = s.Next(spb.SecAggNextRequest(round_id=rid, client_id=1), timeout=10, metadata=md)
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
    first, second = s.Next.future(req, timeout=30, metadata=md), s.Next.future(req, timeout=30, metadata=md)
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
    assert result(cluster, rnd).state == "aborted"


def test_client_tokens_are_required(cluster: LocalCluster, tmp_path: Path) -> None:
    ids = [1, 2, 3]
    rnd = create_round(cluster, ids, t=2)
    s = stub(cluster)
    assert len(set(rnd.tokens.values())) == 3

    def refused(client_id: int, metadata: Sequence[tuple[str, str]]) -> str:
        with pytest.raises(grpc.RpcError) as err:
            s.Next(spb.SecAggNextRequest(round_id=rnd.id, client_id=client_id), timeout=10, metadata=metadata)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        return str(err.value.details())

    msg = refused(1, ())
    assert "mpcnet-client-token" in msg and "CreateRound" in msg
    refused(1, (("mpcnet-client-token", rnd.tokens[2]),))  # another client's token
    msg = refused(1, (("mpcnet-client-token", rnd.tokens[1] + "x"),))
    assert rnd.tokens[1] not in msg
    with pytest.raises(grpc.RpcError) as err:  # GetResult: neither the cluster secret nor a token
        s.GetResult(spb.SecAggGetResultRequest(round_id=rnd.id), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as err:
        s.GetResult(spb.SecAggGetResultRequest(round_id=rnd.id), timeout=10,
                    metadata=(("mpcnet-client-token", "not-a-token"),))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # `mpcnet client` refuses to start without a token for each of its ids ...
    code, lines, err_text = finish(spawn(cluster, rnd, [3], "auth", tokens=rnd.tokens_for([1, 2])))
    assert code == 2 and lines == [] and "no token for client(s) 3" in err_text
    # ... and a process with a wrong token for client 3 is refused at join (an error, never a participant).
    code, lines, _ = finish(spawn(cluster, rnd, [3], "auth", tokens=json.dumps({"3": rnd.tokens[1]})))
    assert code == 1 and lines[0]["state"] == "error"
    assert "mpcnet-client-token" in lines[0]["reason"] and rnd.tokens[1] not in lines[0]["reason"]

    # The honest clients (tokens from a file) still complete the round.
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(rnd.tokens_for(ids))
    code, lines, err_text = finish(spawn(cluster, rnd, ids, "auth", tokens_file=tokens_file))
    assert code == 0, err_text[-2000:]
    res = result(cluster, rnd, metadata=(("mpcnet-client-token", rnd.tokens[2]),))  # a client may read it
    assert res.state == "done" and list(res.done.included) == ids
    assert np.array_equal(aggregate_of(res.done), expected_sum("auth", ids))
    logs = cluster.log_text() + err_text
    assert not [cid for cid, tok in rnd.tokens.items() if tok in logs]  # tokens never logged


def test_fedavg_float_vectors_with_a_sigkilled_client(cluster: LocalCluster, tmp_path: Path) -> None:
    ids, dim, clip, max_weight = [1, 2, 3, 4], 6, 1.0, 10_000
    rng = np.random.default_rng(7)
    vectors = {cid: rng.uniform(-0.9, 0.9, dim) for cid in ids}
    weights = {1: 120, 2: 35, 3: 900, 4: 7}
    quant = spb.SecAggQuantization(encoding=spb.SECAGG_ENCODING_FEDAVG, clip=clip, bound=max_weight)
    rnd = create_round(cluster, ids, t=3, length=dim + 1, quantization=quant)
    assert rnd.params.quantization.encoding == spb.SECAGG_ENCODING_FEDAVG
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({str(c): {"vector": vectors[c].tolist(), "weight": weights[c]} for c in ids}))
    victim = spawn(cluster, rnd, [4], None, die_at="masked_input_collection", input_file=inputs)  # after ShareKeys
    survivors = spawn(cluster, rnd, [1, 2, 3], None, input_file=inputs)
    assert finish(victim)[0] == -9
    code, lines, err = finish(survivors)
    assert code == 0, err[-2000:]
    res = result(cluster, rnd)
    assert res.state == "done" and list(res.done.included) == [1, 2, 3]
    mean, total_weight = dequantize_result(rnd.params, res.done)
    alive = [1, 2, 3]
    assert total_weight == sum(weights[c] for c in alive)
    want = np.average(np.stack([vectors[c] for c in alive]), axis=0, weights=[weights[c] for c in alive])
    step = WeightedEncoder(clip, max_weight, 32).step  # the documented bound: < 2c/L per element
    assert float(np.max(np.abs(mean - want))) < step
    assert not np.array_equal(mean, want)  # really went through quantization

    # Float vectors need a quantized round: the head-room rule is enforced at CreateRound.
    bad = spb.SecAggQuantization(encoding=spb.SECAGG_ENCODING_REAL_SUM, clip=1.0, bound=2)
    with pytest.raises(grpc.RpcError) as exc:
        create_round(cluster, ids, t=3, quantization=bad)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "could wrap" in exc.value.details()


def test_active_round_with_client_killed_at_consistency_check(cluster: LocalCluster, tmp_path: Path) -> None:
    ids = [1, 2, 3, 4, 5]
    keys: Mapping[int, bytes] = signing_keys_for(ids)
    rnd = create_round(cluster, ids, t=3, verify_keys=verify_keys_for(keys))
    assert rnd.params.active
    keys_file, pki = tmp_path / "signing.json", tmp_path / "verify.json"
    keys_file.write_text(json.dumps({str(c): k.hex() for c, k in keys.items()}))
    pki.write_text(json.dumps({str(c): k.hex() for c, k in zip(ids, verify_keys_for(keys))}))  # from the operator
    seed = "active"
    victim = spawn(cluster, rnd, [5], seed, die_at="consistency_check", signing_keys_file=keys_file,
                   verify_keys_file=pki)
    survivors = spawn(cluster, rnd, [1, 2, 3, 4], seed, signing_keys_file=keys_file, verify_keys_file=pki)
    assert finish(victim)[0] == -9
    code, lines, err = finish(survivors)
    assert code == 0, err[-2000:]
    assert [ln["state"] for ln in lines] == ["done"] * 4
    res = result(cluster, rnd)
    assert res.state == "done" and list(res.done.included) == ids  # 5 sent its masked input before dying
    assert [(d.client_id, d.stage) for d in res.done.dropped] == [(5, "consistency_check")]
    assert np.array_equal(aggregate_of(res.done), expected_sum(seed, ids))


def test_an_active_client_trusts_the_operators_keys_not_the_coordinators(cluster: LocalCluster,
                                                                         tmp_path: Path) -> None:
    """A review showed a coordinator that put its own verify keys (or a passive round) in the parameters and
    read a client's input.  A client with a signing key now refuses a passive round, and an active round whose
    verify keys differ from its operator's file, before any key of its leaves (it drops at advertise_keys)."""
    ids = [1, 2, 3]
    keys: Mapping[int, bytes] = signing_keys_for(ids)
    signing, pki = tmp_path / "signing.json", tmp_path / "verify.json"
    signing.write_text(json.dumps({str(c): k.hex() for c, k in keys.items()}))
    other = signing_keys_for(ids, b"someone-else's-keys-0123456789ab")  # what a lying coordinator registered
    pki.write_text(json.dumps({str(c): k.hex() for c, k in zip(ids, verify_keys_for(keys))}))
    for rnd, words in ((create_round(cluster, ids, t=2, join_s=5.0, verify_keys=verify_keys_for(other)),
                        "differ from the ones its operator gave it"),
                       (create_round(cluster, ids, t=2, join_s=5.0), "passive (a coordinator that may lie")):
        code, lines, err = finish(spawn(cluster, rnd, [1], "pki", signing_keys_file=signing, verify_keys_file=pki))
        assert code == 1 and lines[0]["state"] == "error" and words in lines[0]["reason"], (lines, err[-2000:])
    no_pki = spawn(cluster, create_round(cluster, ids, t=2, join_s=5.0), [1], "pki", signing_keys_file=signing)
    code, _, err = finish(no_pki)
    assert code == 2 and "--signing-keys-file without --verify-keys-file" in err


def test_a_client_whose_input_does_not_fit_leaves_before_advertising_keys(cluster: LocalCluster,
                                                                          tmp_path: Path) -> None:
    """A vector of the wrong length is found when the round's parameters arrive, not at masked_input_collection:
    the client leaves before it advertises keys, so its dropout costs the others no unmasking, and says why."""
    ids, dim = [1, 2, 3, 4], 5
    quant = spb.SecAggQuantization(encoding=spb.SECAGG_ENCODING_FEDAVG, clip=1.0, bound=1000)
    rnd = create_round(cluster, ids, t=3, length=dim + 1, quantization=quant)
    inputs = tmp_path / "inputs.json"
    table = {str(c): {"vector": [0.25] * dim, "weight": 10 * c} for c in (1, 2, 3)}
    table["4"] = {"vector": [0.25] * (dim + 2), "weight": 40}  # two values too many
    inputs.write_text(json.dumps(table))
    procs = [spawn(cluster, rnd, [c], None, input_file=inputs) for c in ids]
    finished = [finish(p) for p in procs]
    assert [f[0] for f in finished[:3]] == [0, 0, 0], [f[2][-800:] for f in finished[:3]]
    code, lines, err = finished[3]
    assert code == 1 and lines[0]["state"] == "error" and lines[0]["stage"] == "setup", (code, lines, err[-800:])
    assert f"client 4 needs {dim} values" in lines[0]["reason"]
    res = result(cluster, rnd)
    assert res.state == "done" and list(res.done.included) == [1, 2, 3]
    assert [(d.client_id, d.stage) for d in res.done.dropped] == [(4, "advertise_keys")]
    mean, total_weight = dequantize_result(rnd.params, res.done)
    assert total_weight == 60 and np.allclose(mean, 0.25, atol=1e-6)


def test_done_reply_carries_the_aggregate_only_when_asked(cluster: LocalCluster) -> None:
    """In-process clients (the SDK path): want_result=True puts the aggregate into the done reply; without it the
    reply names who was included and the aggregate stays at the coordinator (GetResult)."""
    import asyncio

    from mpcnet.secagg_client import run_clients, seeded_inputs

    ids = [1, 2, 3]
    for want in (True, False):
        rnd = create_round(cluster, ids, t=2)
        outcomes = asyncio.run(run_clients(cluster.coordinator, rnd.id, ids, seeded_inputs("want"),
                                           tokens=rnd.tokens, want_result=want))
        assert [o.state for o in outcomes] == ["done"] * 3
        assert all(o.included == tuple(ids) for o in outcomes)
        if want:
            assert all(o.sum is not None and np.array_equal(o.sum, expected_sum("want", ids)) for o in outcomes)
        else:
            assert all(o.sum is None for o in outcomes)
        assert np.array_equal(aggregate_of(result(cluster, rnd).done), expected_sum("want", ids))


def test_sum_to_operator_only_keeps_the_sum_from_the_clients(cluster: LocalCluster) -> None:
    """A round created with sum_to_operator_only (as FedAvg's are): a client's want_result join is refused, its
    done reply and its GetResult (client token) name who was included, without the sum; the operator's GetResult
    (cluster secret) has the exact sum; the receipt says where the sum went."""
    import asyncio

    from mpcnet.secagg_client import run_clients, seeded_inputs

    ids = [1, 2, 3]
    rnd = create_round(cluster, ids, t=2, operator_only=True)
    assert rnd.params.sum_to_operator_only
    md = (("mpcnet-client-token", rnd.tokens[1]),)
    with pytest.raises(grpc.RpcError) as err:
        stub(cluster).Next(spb.SecAggNextRequest(round_id=rnd.id, client_id=1, want_result=True), timeout=10,
                           metadata=md)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "want_result" in err.value.details()
    outcomes = asyncio.run(run_clients(cluster.coordinator, rnd.id, ids, seeded_inputs("op-only"),
                                       tokens=rnd.tokens))
    assert [o.state for o in outcomes] == ["done"] * 3 and all(o.sum is None for o in outcomes)
    # after the round, a late want_result (a join or a stage's answer) gets the outcome without the sum
    late = stub(cluster).Next(spb.SecAggNextRequest(round_id=rnd.id, client_id=1, stage_answered="unmasking",
                                                    want_result=True), timeout=10, metadata=md)
    assert late.WhichOneof("outcome") == "done" and late.done.sum == b"" and list(late.done.included) == ids
    as_client = result(cluster, rnd, metadata=md)
    assert as_client.state == "done" and list(as_client.done.included) == ids and as_client.done.sum == b""
    operator = result(cluster, rnd)
    assert np.array_equal(aggregate_of(operator.done), expected_sum("op-only", ids))
    assert "operator only" in json.loads(as_client.receipt_json)["released"]
    plain = create_round(cluster, [1, 2], t=2)
    assert not plain.params.sum_to_operator_only


class ManualClient:
    """One client played by the test itself over the raw stub (the core steps, then whatever the test sends)."""

    def __init__(self, cluster: LocalCluster, rnd: Round, cid: int) -> None:
        from mpcnet.secagg.encoding import decode

        self.decode = decode
        self.stub, self.rnd, self.cid = stub(cluster), rnd, cid
        self.md = (("mpcnet-client-token", rnd.tokens[cid]),)
        self.presence = self.stub.Attend(spb.SecAggAttendRequest(round_id=rnd.id, client_id=cid), timeout=120,
                                         metadata=self.md)
        assert next(self.presence).state == "attending"
        joined = self.stub.Next(spb.SecAggNextRequest(round_id=rnd.id, client_id=cid), timeout=30, metadata=self.md)
        self.params = params_from_proto(joined.params)
        self.reply = joined
        self.state: Any = None

    def request(self) -> Any:
        return self.decode(self.reply.request.payload)

    def send(self, stage: str, message: object) -> spb.SecAggNextReply:
        reply: spb.SecAggNextReply = self.stub.Next(
            spb.SecAggNextRequest(round_id=self.rnd.id, client_id=self.cid, stage_answered=stage,
                                  response=encode(message)), timeout=60, metadata=self.md)
        self.reply = reply
        return reply

    def refused(self, stage: str, message: object) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.RpcError) as err:
            self.stub.Next(spb.SecAggNextRequest(round_id=self.rnd.id, client_id=self.cid, stage_answered=stage,
                                                 response=encode(message)), timeout=60, metadata=self.md)
        return err.value.code(), err.value.details()

    def advertise_and_share(self, tamper_share_for: int | None = None) -> None:
        from mpcnet.secagg import share_keys
        from mpcnet.secagg.share_keys import EncryptedShare, ShareKeysResponse

        self.state, adv = advertise_keys.client_step(self.params, self.cid, self.request())
        self.send("advertise_keys", adv)
        assert self.reply.request.stage == "share_keys"
        self.state, shares = share_keys.client_step(self.state, self.request())
        if tamper_share_for is not None:
            shares = ShareKeysResponse(shares.round_id, shares.sender, tuple(
                EncryptedShare(e.sender, e.receiver, e.ciphertext[:-1] + bytes([e.ciphertext[-1] ^ 1]))
                if e.receiver == tamper_share_for else e for e in shares.shares))
        else:
            # a share for the wrong recipient (two receivers swapped) and a short ciphertext: refused at once
            swapped = list(shares.shares)
            swapped[0], swapped[1] = (EncryptedShare(swapped[0].sender, swapped[1].receiver, swapped[0].ciphertext),
                                      EncryptedShare(swapped[1].sender, swapped[0].receiver, swapped[1].ciphertext))
            code, msg = self.refused("share_keys", ShareKeysResponse(shares.round_id, shares.sender, tuple(swapped)))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "neighbours" in msg, msg
            short = (EncryptedShare(shares.shares[0].sender, shares.shares[0].receiver, b"\x00" * 5),
                     *shares.shares[1:])
            code, msg = self.refused("share_keys", ShareKeysResponse(shares.round_id, shares.sender, short))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "malformed share ciphertext" in msg, msg
        self.send("share_keys", shares)
        assert self.reply.request.stage == "masked_input_collection", self.reply


def test_bad_round_messages_are_refused_and_the_round_goes_on(cluster: LocalCluster) -> None:
    """Client 5 (played by the test) sends a share for the wrong recipient, a short ciphertext, a masked vector of
    the wrong length and one outside the modulus, replays an answer, and answers out of order: each is refused
    with an actionable status and the round finishes exactly for the other four (5 leaves after ShareKeys)."""
    from mpcnet.secagg.masked_input import MaskedInputResponse

    ids = [1, 2, 3, 4, 5]
    rnd = create_round(cluster, ids, t=3, bits=16, stage_s=600.0)
    seed = "badmsg"
    cheat = None
    honest = spawn(cluster, rnd, [1, 2, 3, 4], seed)
    try:
        cheat = ManualClient(cluster, rnd, 5)
        cheat.advertise_and_share()
        code, msg = cheat.refused("advertise_keys", advertise_keys.AdvertiseKeysResponse(
            rnd.id, 5, cheat.state.own_keys))  # a replay of an earlier stage's answer
        assert code == grpc.StatusCode.ALREADY_EXISTS and "replayed" in msg, msg
        code, msg = cheat.refused("unmasking", MaskedInputResponse(rnd.id, 5, np.zeros(LENGTH, dtype=np.uint64)))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "not open yet" in msg, msg
        code, msg = cheat.refused("masked_input_collection",
                                  MaskedInputResponse(rnd.id, 5, np.zeros(LENGTH - 1, dtype=np.uint64)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and f"have {LENGTH} elements" in msg, msg
        code, msg = cheat.refused("masked_input_collection",
                                  MaskedInputResponse(rnd.id, 5, np.full(LENGTH, 2**16, dtype=np.uint64)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "Z_(2^16)" in msg, msg
        code, msg = cheat.refused("masked_input_collection",
                                  MaskedInputResponse(rnd.id, 4, np.zeros(LENGTH, dtype=np.uint64)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "another round or sender" in msg, msg
    finally:
        if cheat is not None:
            cheat.presence.cancel()  # client 5 leaves: a dropout of masked_input_collection at once
    rc, lines, err = finish(honest)
    assert rc == 0, err
    res = result(cluster, rnd)
    assert res.state == "done" and list(res.done.included) == [1, 2, 3, 4]
    assert [(d.client_id, d.stage) for d in res.done.dropped] == [(5, "masked_input_collection")]
    want = sum((derive_input(seed, c, LENGTH, 16).astype(object) for c in [1, 2, 3, 4]), np.zeros(LENGTH, object))
    assert aggregate_of(res.done).tolist() == [int(v) % 2**16 for v in want]


def test_undecryptable_share_costs_its_receiver_not_the_round(cluster: LocalCluster) -> None:
    """Client 5 sends client 1 a corrupted share ciphertext: client 1 finds it out before masking anything (a
    clear error, it sends no masked input), the others -- client 5 included -- finish with the exact sum."""
    from mpcnet.secagg import masked_input, unmasking

    ids = [1, 2, 3, 4, 5]
    rnd = create_round(cluster, ids, t=3, stage_s=600.0)
    seed = "undecryptable"
    victim = spawn(cluster, rnd, [1], seed)
    others = spawn(cluster, rnd, [2, 3, 4], seed)
    cheat = ManualClient(cluster, rnd, 5)
    try:
        cheat.advertise_and_share(tamper_share_for=1)
        value = derive_input(seed, 5, LENGTH, 32)
        cheat.state, masked = masked_input.client_step(cheat.state, cheat.request(), value)
        cheat.send("masked_input_collection", masked)
        assert cheat.reply.request.stage == "unmasking"
        cheat.state, shares = unmasking.client_step(cheat.state, cheat.request())
        cheat.send("unmasking", shares)
        assert cheat.reply.WhichOneof("outcome") == "done"
    finally:
        cheat.presence.cancel()
    rc_victim, lines, _ = finish(victim)
    assert rc_victim == 1 and lines[0]["state"] == "error" and lines[0]["stage"] == "masked_input_collection"
    assert "failed authentication" in lines[0]["reason"]
    rc, _, err = finish(others)
    assert rc == 0, err
    res = result(cluster, rnd)
    assert list(res.done.included) == [2, 3, 4, 5]
    assert np.array_equal(aggregate_of(res.done), expected_sum(seed, [2, 3, 4, 5]))


def test_duplicate_ids_second_presence_and_late_join_refused(cluster: LocalCluster) -> None:
    s = stub(cluster)
    dup = spb.SecAggRoundParams(client_ids=[1, 2, 2, 3], threshold=2, vector_length=4)
    with pytest.raises(grpc.RpcError) as err:
        s.CreateRound(spb.SecAggCreateRoundRequest(params=dup), timeout=10, metadata=cluster.auth_metadata)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "distinct" in err.value.details()
    ids = [1, 2, 3]
    rnd = create_round(cluster, ids, t=2, join_s=3.0)
    first = ManualClient(cluster, rnd, 1)
    with pytest.raises(grpc.RpcError) as err:
        next(s.Attend(spb.SecAggAttendRequest(round_id=rnd.id, client_id=1), timeout=10, metadata=first.md))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS and "presence" in err.value.details()
    for rid, cid, md, code in (("nope", 1, first.md, grpc.StatusCode.NOT_FOUND),
                               (rnd.id, 9, first.md, grpc.StatusCode.UNAUTHENTICATED),
                               (rnd.id, 2, first.md, grpc.StatusCode.UNAUTHENTICATED)):  # 1's token for client 2
        with pytest.raises(grpc.RpcError) as err:
            next(s.Attend(spb.SecAggAttendRequest(round_id=rid, client_id=cid), timeout=10, metadata=md))
        assert err.value.code() == code, err.value.details()
    second = ManualClient(cluster, rnd, 2)
    answers = {}
    for c in (first, second):
        c.state, answers[c.cid] = advertise_keys.client_step(c.params, c.cid, c.request())
    # clients 1 and 2 answer; client 3 never joins before AdvertiseKeys closes (join deadline 3 s)
    f1 = first.stub.Next.future(spb.SecAggNextRequest(round_id=rnd.id, client_id=1, stage_answered="advertise_keys",
                                                      response=encode(answers[1])), timeout=60, metadata=first.md)
    r2 = second.send("advertise_keys", answers[2])
    assert r2.request.stage == "share_keys" and f1.result(timeout=60).request.stage == "share_keys"
    late_md = (("mpcnet-client-token", rnd.tokens[3]),)
    with pytest.raises(grpc.RpcError) as err:
        s.Next(spb.SecAggNextRequest(round_id=rnd.id, client_id=3), timeout=10, metadata=late_md)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "advertise_keys" in err.value.details()
    for c in (first, second):
        c.presence.cancel()


def test_session_next_and_silent_clients_share_one_round(cluster: LocalCluster) -> None:
    """The three client transports are one protocol: Session streams, Next calls with an Attend stream, and Next
    calls alone give one exact sum together."""
    ids = [1, 2, 3, 4, 5, 6]
    rnd = create_round(cluster, ids, t=4)
    procs = [spawn(cluster, rnd, [1, 2], "mixed"), spawn(cluster, rnd, [3, 4], "mixed", extra=["--no-session"]),
             spawn(cluster, rnd, [5, 6], "mixed", extra=["--no-attend"])]
    for proc in procs:
        code, lines, err = finish(proc)
        assert code == 0, err[-2000:]
        assert [ln["state"] for ln in lines] == ["done", "done"]
    res = result(cluster, rnd)
    assert res.state == "done" and list(res.done.included) == ids
    assert np.array_equal(aggregate_of(res.done), expected_sum("mixed", ids))


def session_refusal(s: spbg.SecAggStub, messages: Sequence[spb.SecAggNextRequest],
                    md: Sequence[tuple[str, str]]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        list(s.Session(iter(messages), timeout=10, metadata=md))
    return err.value.code(), err.value.details()


def test_session_bad_input_gets_actionable_status(cluster: LocalCluster) -> None:
    import queue

    from mpcnet.secagg.encoding import decode

    s = stub(cluster)
    rnd = create_round(cluster, [1, 2, 3], t=2, join_s=20.0)
    md = {cid: (("mpcnet-client-token", tok),) for cid, tok in rnd.tokens.items()}
    # the first message decides the round and client, and is checked as a Next call's would be
    assert session_refusal(s, [spb.SecAggNextRequest(round_id="nope", client_id=1)], md[1])[0] == \
        grpc.StatusCode.NOT_FOUND
    code, msg = session_refusal(s, [spb.SecAggNextRequest(round_id=rnd.id, client_id=9)], md[1])
    assert code == grpc.StatusCode.UNAUTHENTICATED and "client 9" in msg  # registration is told to no one
    code, msg = session_refusal(s, [spb.SecAggNextRequest(round_id=rnd.id, client_id=2)], md[1])
    assert code == grpc.StatusCode.UNAUTHENTICATED and "mpcnet-client-token" in msg
    # bytes that are no SecAggNextRequest at all
    raw = grpc.insecure_channel(cluster.coordinator).stream_stream(
        "/mpcnet.v1.SecAgg/Session", request_serializer=lambda b: b,
        response_deserializer=spb.SecAggNextReply.FromString)
    with pytest.raises(grpc.RpcError) as err:
        list(raw(iter([b"\xff\xff\xff"]), timeout=10, metadata=md[1]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "malformed request" in err.value.details()

    # client 3 holds an Attend stream: a Session of its own is a second presence, refused
    third = ManualClient(cluster, rnd, 3)
    code, msg = session_refusal(s, [spb.SecAggNextRequest(round_id=rnd.id, client_id=3)], md[3])
    assert code == grpc.StatusCode.ALREADY_EXISTS and "open already" in msg

    # client 1 joins with Next and answers on a Session; clients 2 and 3 answer with Next
    answers = {}
    for cid in (1, 2):
        joined = s.Next(spb.SecAggNextRequest(round_id=rnd.id, client_id=cid), timeout=10, metadata=md[cid])
        _, answers[cid] = advertise_keys.client_step(params_from_proto(joined.params), cid,
                                                     decode(joined.request.payload))  # type: ignore[arg-type]
    _, answers[3] = advertise_keys.client_step(third.params, 3, third.request())
    outbox: queue.Queue[spb.SecAggNextRequest | None] = queue.Queue()
    replies = s.Session(iter(outbox.get, None), timeout=60, metadata=md[1])
    outbox.put(spb.SecAggNextRequest(round_id=rnd.id, client_id=1, stage_answered="advertise_keys",
                                     response=encode(answers[1])))
    others = [s.Next.future(spb.SecAggNextRequest(round_id=rnd.id, client_id=cid, stage_answered="advertise_keys",
                                                  response=encode(answers[cid])), timeout=60, metadata=md[cid])
              for cid in (2, 3)]
    try:
        assert next(replies).request.stage == "share_keys"  # the stage opened once all three answered
        assert all(f.result(timeout=60).request.stage == "share_keys" for f in others)
        # a later message naming another client ends the session with the reason ...
        outbox.put(spb.SecAggNextRequest(round_id=rnd.id, client_id=2, stage_answered="share_keys", response=b"x"))
        with pytest.raises(grpc.RpcError) as err:
            next(replies)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "round and client of its first message" in err.value.details()
    finally:
        outbox.put(None)
    # ... and the client is gone from the round at once (its presence ended)
    code, msg = session_refusal(s, [spb.SecAggNextRequest(round_id=rnd.id, client_id=1)], md[1])
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "declared gone" in msg
    third.presence.cancel()


def test_round_cli_create_run_result(cluster: LocalCluster, tmp_path: Path) -> None:
    """The README's round walk-through: `mpcnet round create`, `mpcnet client --tokens-file`, `mpcnet round result`."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), MPCNET_CLUSTER_SECRET=cluster.cluster_secret,
               MPCNET_COORDINATOR=cluster.coordinator)
    env.pop("MPCNET_CLIENT_TOKENS", None)
    cli = [sys.executable, "-m", "mpcnet.cli", "round"]
    tokens = tmp_path / "tokens.json"
    out = subprocess.run(cli + ["create", "--clients", "1-4", "--threshold", "3", "--dim", str(LENGTH),
                                "--stage-deadline", "600", "--tokens-out", str(tokens)],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert created["clients"] == 4 and created["graph"] == "full" and oct(tokens.stat().st_mode)[-3:] == "600"
    client = subprocess.run([sys.executable, "-m", "mpcnet.cli", "client", "--round", created["round"], "--ids",
                             "1,2,3,4", "--input-seed", "cli", "--tokens-file", str(tokens)],
                            env=env, capture_output=True, text=True, timeout=PROC_TIMEOUT_S)
    assert client.returncode == 0, client.stderr
    sum_file = tmp_path / "sum.json"
    res = subprocess.run(cli + ["result", "--round", created["round"], "--sum-out", str(sum_file)],
                         env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    line = json.loads(res.stdout)
    assert line["state"] == "done" and line["included"] == [1, 2, 3, 4] and line["dropped"] == []
    assert line["receipt"]["participants"]["included"] == [1, 2, 3, 4]  # the CLI shows the round's receipt
    shown = subprocess.run([sys.executable, "-m", "mpcnet.cli", "receipt", "--round", created["round"]], env=env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "summed: [1, 2, 3, 4]; dropped: none" in shown.stdout and "threshold t = 3 of 4" in shown.stdout
    assert json.loads(sum_file.read_text()) == expected_sum("cli", [1, 2, 3, 4]).tolist()
    again = subprocess.run([sys.executable, "-m", "mpcnet.cli", "client", "--round", created["round"], "--ids", "1",
                            "--input-seed", "cli", "--tokens-file", str(tokens)],
                           env=env, capture_output=True, text=True, timeout=PROC_TIMEOUT_S)
    assert again.returncode == 1 and f"round {created['round']} is over (done)" in again.stdout  # started twice
    no_secret = dict(env)
    no_secret.pop("MPCNET_CLUSTER_SECRET")
    bad = subprocess.run(cli + ["result", "--round", created["round"]], env=no_secret, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "cluster secret" in bad.stderr


def test_round_receipt_survives_a_coordinator_restart(tmp_path: Path) -> None:
    """The receipt is rebuilt from the journal (parameters and outcome) after the coordinator is SIGKILLed."""
    with LocalCluster(2, workdir=tmp_path / "cluster", stage_timeout_s=20, rpc_timeout_s=10) as own:
        rnd = create_round(own, [1, 2, 3, 4], t=3, operator_only=True)
        victim = spawn(own, rnd, [4], "restart", die_at="masked_input_collection")
        survivors = spawn(own, rnd, [1, 2, 3], "restart")
        assert finish(victim)[0] == -9 and finish(survivors)[0] == 0
        before = json.loads(result(own, rnd).receipt_json)
        own.kill("coordinator")
        own.start_coordinator()
        kept = result(own, rnd)
        after = json.loads(kept.receipt_json)
        assert after == before
        # the journal keeps sum_to_operator_only: a client's token still gets no sum after the restart
        assert np.array_equal(aggregate_of(kept.done), expected_sum("restart", [1, 2, 3]))
        as_client = result(own, rnd, metadata=(("mpcnet-client-token", rnd.tokens[2]),))
        assert as_client.state == "done" and as_client.done.sum == b"" and list(as_client.done.included) == [1, 2, 3]
        # how a finished round ended is told to its own clients only, not to a caller without a token of it
        for token, told in (("forged", False), (rnd.tokens[1], True)):
            md = (("mpcnet-client-token", token),)
            with pytest.raises(grpc.RpcError) as err:
                stub(own).Next(spb.SecAggNextRequest(round_id=rnd.id, client_id=1), timeout=10, metadata=md)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert ("is done" in err.value.details()) == told, err.value.details()
        assert after["participants"]["dropped"] == [{"client": 4, "stage": "masked_input_collection"}]
