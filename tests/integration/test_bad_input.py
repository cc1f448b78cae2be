"""Bad input gets a gRPC status a person can act on; the cluster keeps serving.

Each case checks the status code and that the message names what is wrong,
then the module's last test runs a fresh job to prove no state was lost.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest

import mpcnet
from mpcnet.cluster import LocalCluster
from mpcnet.errors import AlreadyExists, InvalidInput, NotFound, PermissionDenied, Unauthenticated
from mpcnet.transport.rpc import NODE_ID_KEY, PARTY_TOKEN_KEY
from mpcnet.transport.tensors import array_chunks
from mpcnet.v1 import mpc_pb2 as pb
from mpcnet.v1 import mpc_pb2_grpc as pbg
from tests.conftest import plan_for, unique

pytestmark = pytest.mark.integration


@pytest.fixture()
def pair(cluster: LocalCluster):
    bob = mpcnet.connect(cluster.coordinator, unique("bob"))
    alice = mpcnet.connect(cluster.coordinator, unique("alice"))
    job = alice.create_job(parties=[bob.name])
    yield alice, bob, job
    alice.close()
    bob.close()


def node_stub(cluster: LocalCluster, node_id: int) -> pbg.NodeStub:
    return pbg.NodeStub(grpc.insecure_channel(cluster.nodes[node_id - 1]))


def test_wrong_length_share_refused(cluster: LocalCluster, pair) -> None:
    alice, _, job = pair
    alice._call("coordinator", alice.coordinator.DeclareInput,
                pb.DeclareInputRequest(job_id=job, secret=pb.SecretSpec(name="v", shape=[10], frac_bits=0)))
    short = np.zeros(7, dtype=np.uint64)
    msgs = [pb.InputChunk(job_id=job, secret="v", chunk=c) for c in array_chunks(short)]
    with pytest.raises(grpc.RpcError) as err:
        node_stub(cluster, 3).ProvideInput(iter(msgs), timeout=10, metadata=((PARTY_TOKEN_KEY, alice.token),))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "7 elements sent, 10 expected" in err.value.details()


def test_wrong_dtype_refused(cluster: LocalCluster, pair) -> None:
    alice, _, job = pair
    with pytest.raises(InvalidInput, match="frac_bits must be 0"):
        alice._call("coordinator", alice.coordinator.DeclareInput,
                    pb.DeclareInputRequest(job_id=job, secret=pb.SecretSpec(name="q", shape=[3], frac_bits=7)))
    with pytest.raises(InvalidInput, match="whole numbers|cannot encode"):
        alice.share(job, "s", np.array(["a", "b"]), integer=True)
    with pytest.raises(InvalidInput, match="out of fixed-point range"):
        alice.share(job, "big", np.array([1e300]))
    with pytest.raises(InvalidInput, match="NaN"):
        alice.share(job, "nan", np.array([np.nan]))


def test_shape_mismatch_refused_at_run(pair) -> None:
    alice, bob, job = pair
    alice.share(job, "x", np.ones(3))
    bob.share(job, "y", np.ones(4))
    with pytest.raises(InvalidInput, match=r"shapes \(3,\) and \(4,\) differ"):
        alice.run(job, mpcnet.Program().mul("z", "x", "y").output("z", to=[alice.name]))


def test_unknown_job_and_secret(cluster: LocalCluster, pair) -> None:
    alice, _, job = pair
    with pytest.raises(NotFound, match="unknown job 'job-nope'"):
        alice.share("job-nope", "x", np.ones(2))
    alice.share(job, "x", np.ones(2))
    with pytest.raises(InvalidInput, match="unknown secret 'ghost'"):
        alice.run(job, mpcnet.Program().add("z", "x", "ghost").output("z", to=[alice.name]))
    with pytest.raises(grpc.RpcError) as err:
        list(node_stub(cluster, 1).Reveal(pb.RevealRequest(job_id="job-nope", secret="z"), timeout=5,
                                          metadata=((PARTY_TOKEN_KEY, alice.token),)))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "unknown job 'job-nope'" in err.value.details()


def test_unregistered_party_refused(cluster: LocalCluster, pair) -> None:
    alice, _, job = pair
    stranger = mpcnet.connect(cluster.coordinator, unique("mallory"))
    with pytest.raises(PermissionDenied, match="not a party of job"):
        stranger.share(job, "m", np.ones(2))
    # Straight to a node with a made-up token: refused by the node itself.
    msgs = [pb.InputChunk(job_id=job, secret="x", seed=b"\x00" * 32)]
    with pytest.raises(grpc.RpcError) as err:
        node_stub(cluster, 1).ProvideInput(iter(msgs), timeout=5, metadata=((PARTY_TOKEN_KEY, "forged"),))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:
        node_stub(cluster, 1).ProvideInput(iter(msgs), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    coord = pbg.CoordinatorStub(grpc.insecure_channel(cluster.coordinator))
    with pytest.raises(grpc.RpcError) as err:
        coord.CreateJob(pb.CreateJobRequest(name="x"), timeout=5, metadata=((PARTY_TOKEN_KEY, "forged"),))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "register" in err.value.details()
    stranger.close()


def test_duplicate_names_refused(cluster: LocalCluster, pair) -> None:
    alice, bob, job = pair
    alice.share(job, "x", np.ones(2))
    with pytest.raises(AlreadyExists, match="secret 'x' is already declared"):
        bob.share(job, "x", np.ones(2))
    with pytest.raises(AlreadyExists, match="already registered"):
        mpcnet.connect(cluster.coordinator, alice.name)
    with pytest.raises(InvalidInput, match="already defined"):
        alice.run(job, mpcnet.Program().add("x", "x", "x").output("x", to=[alice.name]))


def test_replayed_share_refused(cluster: LocalCluster, pair) -> None:
    alice, _, job = pair
    alice.share(job, "x", np.ones(2))
    msgs = [pb.InputChunk(job_id=job, secret="x", seed=b"\x01" * 32)]
    with pytest.raises(grpc.RpcError) as err:
        node_stub(cluster, 1).ProvideInput(iter(msgs), timeout=5, metadata=((PARTY_TOKEN_KEY, alice.token),))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "already received" in err.value.details()


def test_reused_triple_batch_refused(cluster: LocalCluster, pair) -> None:
    from mpcnet.wire import program_to_proto
    from nodes.dealer import material_to_proto

    alice, bob, job = pair
    prog = mpcnet.Program().mul("z", "x", "y").output("z", to=[alice.name])
    jobs = [job, alice.create_job(parties=[bob.name])]
    for j in jobs:
        alice.share(j, "x", np.array([1, 2]))
        bob.share(j, "y", np.array([3, 4]))
    plan = plan_for(alice, job, prog)
    dealer = pbg.DealerStub(grpc.insecure_channel(cluster.dealer))
    batch = dealer.CreateBatch(pb.CreateBatchRequest(job_id=job, items=[material_to_proto(m) for m in plan.material]),
                               timeout=10, metadata=cluster.auth_metadata)

    def prepare(job_id: str, node_id: int):
        exe = pb.ExecuteRequest(job_id=job_id, program=program_to_proto(prog), plan_digest=plan.digest,
                                batch_id=batch.batch_id, node_epochs=batch.node_epochs, deadline_s=5)
        return node_stub(cluster, node_id).Prepare(exe, timeout=10, metadata=cluster.auth_metadata)

    prepare(jobs[0], 1)  # node 1 consumes the batch
    with pytest.raises(grpc.RpcError) as err:
        prepare(jobs[1], 1)  # ... and refuses it for another job
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert batch.batch_id in err.value.details() and "already consumed" in err.value.details()
    # The last node fetches the corrections once; the dealer refuses a second delivery.
    prepare(jobs[0], 3)
    with pytest.raises(grpc.RpcError) as err:
        list(dealer.FetchCorrections(pb.FetchCorrectionsRequest(batch_id=batch.batch_id, node_id=3), timeout=5, metadata=cluster.auth_metadata))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "never handed out twice" in err.value.details()
    # Only the last node receives data from the dealer; the others expand seeds.
    with pytest.raises(grpc.RpcError) as err:
        list(dealer.FetchCorrections(pb.FetchCorrectionsRequest(batch_id=batch.batch_id, node_id=1), timeout=5, metadata=cluster.auth_metadata))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Give up on both jobs cleanly.
    for j in jobs:
        for i in (1, 2, 3):
            node_stub(cluster, i).AbortJob(pb.AbortJobRequest(job_id=j, reason="test"), timeout=5, metadata=cluster.auth_metadata)


def test_oversized_and_malformed_messages(cluster: LocalCluster, pair) -> None:
    alice, _, job = pair
    # One message above gRPC's 4 MiB limit.
    big = pb.InputChunk(job_id=job, secret="x", chunk=pb.TensorChunk(data=b"\x00" * (5 << 20), total_elements=5 << 17))
    with pytest.raises(grpc.RpcError) as err:
        node_stub(cluster, 3).ProvideInput(iter([big]), timeout=10, metadata=((PARTY_TOKEN_KEY, alice.token),))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # A declared shape beyond the cluster limit.
    with pytest.raises(InvalidInput, match="exceed the cluster limit"):
        alice._call("coordinator", alice.coordinator.DeclareInput,
                    pb.DeclareInputRequest(job_id=job, secret=pb.SecretSpec(name="huge", shape=[10**9], frac_bits=0)))
    # Bytes that are not a protobuf message at all.
    ch = grpc.insecure_channel(cluster.nodes[0])
    raw = ch.unary_unary("/mpcnet.v1.Node/OpenJob", request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as err:
        raw(b"\xff\xff\xff\xff garbage", timeout=5, metadata=cluster.auth_metadata)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid protobuf message" in err.value.details()
    stream = ch.stream_unary("/mpcnet.v1.Node/ProvideInput", request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as err:
        stream(iter([b"\xff\xff\xff garbage"]), timeout=5, metadata=((PARTY_TOKEN_KEY, alice.token),))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Data that is not whole uint64 elements.
    alice._call("coordinator", alice.coordinator.DeclareInput,
                pb.DeclareInputRequest(job_id=job, secret=pb.SecretSpec(name="odd", shape=[2], frac_bits=0)))
    odd = pb.InputChunk(job_id=job, secret="odd", chunk=pb.TensorChunk(data=b"\x00" * 15, total_elements=2))
    with pytest.raises(grpc.RpcError) as err:
        node_stub(cluster, 3).ProvideInput(iter([odd]), timeout=5, metadata=((PARTY_TOKEN_KEY, alice.token),))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not whole uint64" in err.value.details()


def test_forged_peer_opening_refused(cluster: LocalCluster, pair) -> None:
    _, _, job = pair
    msg = pb.ExchangeChunk(job_id=job, layer=1, sender=2, chunk=pb.TensorChunk(data=b"", total_elements=0))
    with pytest.raises(grpc.RpcError) as err:
        node_stub(cluster, 1).Exchange(iter([msg]), timeout=5, metadata=((NODE_ID_KEY, "3"),) + cluster.auth_metadata)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_cluster_still_serves_after_bad_input(cluster: LocalCluster) -> None:
    bob = mpcnet.connect(cluster.coordinator, unique("bob"))
    alice = mpcnet.connect(cluster.coordinator, unique("alice"))
    job = alice.create_job(parties=[bob.name])
    alice.share(job, "x", np.array([2.5, -1.0]))
    bob.share(job, "y", np.array([2.0, 3.0]))
    alice.run(job, mpcnet.Program().mul("z", "x", "y").output("z", to=[alice.name]))
    np.testing.assert_allclose(alice.reveal(job, "z"), [5.0, -3.0], atol=2**-15)
    assert all(p.poll() is None for p in cluster.procs.values())


def test_declared_bounds_enforced(cluster: LocalCluster, pair) -> None:
    alice, bob, job = pair
    with pytest.raises(InvalidInput, match="exceed the declared bound"):
        alice.share(job, "x", np.array([5.0, -9.0]), bound=8.0)
    alice.share(job, "x", np.array([40000.0]), bound=65536.0)
    bob.share(job, "y", np.array([40000.0]), bound=65536.0)
    with pytest.raises(InvalidInput, match="may overflow"):
        alice.run(job, mpcnet.Program().mul("z", "x", "y").output("z", to=[alice.name]))
    info = alice.job(job)
    assert {s.name: s.bound for s in info.inputs} == {"x": 65536.0, "y": 65536.0}


def test_raw_input_revealed_only_to_owner(pair) -> None:
    alice, bob, job = pair
    alice.share(job, "salary", np.array([123456.0]))
    bob.share(job, "y", np.array([1.0]))
    with pytest.raises(PermissionDenied, match="raw input of"):
        bob.run(job, mpcnet.Program().add("junk", "y", "y").output("salary", to=[bob.name]))


@pytest.mark.parametrize("call", ["enroll", "abort", "create_batch", "exchange"])
def test_internal_rpcs_refuse_callers_without_the_cluster_secret(cluster: LocalCluster, pair, call: str) -> None:
    _, _, job = pair
    dealer = pbg.DealerStub(grpc.insecure_channel(cluster.dealer))
    node = node_stub(cluster, 1)
    wrong = (("mpcnet-cluster-auth", "guess"),)
    calls = {
        "enroll": lambda md: dealer.Enroll(pb.EnrollRequest(node_id=1), timeout=5, metadata=md),
        "abort": lambda md: node.AbortJob(pb.AbortJobRequest(job_id=job, reason="x"), timeout=5, metadata=md),
        "create_batch": lambda md: dealer.CreateBatch(pb.CreateBatchRequest(job_id=job), timeout=5, metadata=md),
        "exchange": lambda md: node.Exchange(iter([pb.ExchangeChunk(job_id=job, layer=1, sender=2)]), timeout=5,
                                             metadata=((NODE_ID_KEY, "2"),) + (md or ())),
    }
    for md in (None, wrong):
        with pytest.raises(grpc.RpcError) as err:
            calls[call](md)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "cluster roles only" in err.value.details()
    # The job was not aborted by the refused call: it still runs.
    alice, bob, _ = pair
    alice.share(job, "x", np.array([3]))
    bob.share(job, "y", np.array([4]))
    alice.run(job, mpcnet.Program().mul("z", "x", "y").output("z", to=[alice.name]))
    assert int(alice.reveal(job, "z")[0]) == 12
