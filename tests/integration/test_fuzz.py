"""Fuzzing every servicer's request decoding, bounded: no crash, no hang, no unbounded memory.

Every method of every service (Coordinator, SecAgg, Dealer, Node) gets hypothesis-made requests:
random bytes, and well-formed messages whose fields are drawn from the message descriptor (strings, bytes,
numbers at their edges, unknown enum values, nested messages, maps, repeated fields).  Calls go in with the
cluster secret, so they pass authentication and reach the servicer's own checks.  Every call must end within
its deadline with a status a person can act on -- never INTERNAL or UNKNOWN (an exception the servicer did not
handle) -- and afterwards every role still serves, stays within a memory bound, and runs a job exactly.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import grpc
import numpy as np
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from hypothesis import HealthCheck, given, settings, strategies as st

import mpcnet
import mpcnet.errors
from mpcnet.cluster import LocalCluster
from mpcnet.v1 import mpc_pb2, secagg_pb2, secagg_pb2_grpc

pytestmark = pytest.mark.integration
EXAMPLES = 40  # per method: 23 methods, well under a minute in all
BAD = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
RSS_LIMIT_KB = 1_000_000

INTS = {FieldDescriptor.TYPE_INT32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-2**31, 2**31 - 1),
        FieldDescriptor.TYPE_SFIXED32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
        FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1), FieldDescriptor.TYPE_INT64: (-2**63, 2**63 - 1),
        FieldDescriptor.TYPE_SINT64: (-2**63, 2**63 - 1), FieldDescriptor.TYPE_SFIXED64: (-2**63, 2**63 - 1),
        FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1)}


def scalar(f: FieldDescriptor, depth: int, known: tuple[str, ...] = ()) -> st.SearchStrategy[Any]:
    if f.type in INTS:
        lo, hi = INTS[f.type]
        # edges and small values are where length and index checks live
        return st.one_of(st.sampled_from([0, 1, 2, 3, lo, hi, -1 if lo < 0 else hi - 1]), st.integers(lo, hi),
                         st.integers(0, 10))
    if f.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=64 if f.type == FieldDescriptor.TYPE_DOUBLE else 32)
    if f.type == FieldDescriptor.TYPE_STRING:
        # the ids of a live job and round (``known``) lead the fuzzer past "unknown job" into the real checks
        specials = st.sampled_from(["", "x", "y", "z", "job-1", "secagg-1", "a" * 200, "share_keys", "unmasking",
                                    "../etc"])
        if not known:
            return st.one_of(st.text(max_size=40), specials)
        return st.one_of(st.text(max_size=40), specials, st.sampled_from(known), st.sampled_from(known))
    if f.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=300)
    if f.type == FieldDescriptor.TYPE_ENUM:
        return st.one_of(st.sampled_from([v.number for v in f.enum_type.values]), st.integers(-5, 1000))
    return messages(f.message_type, depth + 1, known)


def messages(desc: Descriptor, depth: int = 0, known: tuple[str, ...] = ()) -> st.SearchStrategy[Any]:
    cls = message_factory.GetMessageClass(desc)
    if depth > 3:
        return st.just(cls())
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for f in desc.fields:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            key, value = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            optional[f.name] = st.dictionaries(scalar(key, depth, known), scalar(value, depth, known), max_size=4)
        elif f.is_repeated:
            optional[f.name] = st.lists(scalar(f, depth, known), max_size=4 if f.message_type else 12)
        else:
            optional[f.name] = scalar(f, depth, known)

    def build(fields: dict[str, Any]) -> Any:
        msg = cls()
        for name, value in fields.items():
            field = getattr(msg, name)
            if isinstance(value, dict):
                for k, v in value.items():
                    if hasattr(field[k], "CopyFrom"):
                        field[k].CopyFrom(v)
                    else:
                        field[k] = v
            elif isinstance(value, list):
                if value and hasattr(value[0], "SerializeToString"):
                    field.extend(value)
                else:
                    field.extend(value)
            elif hasattr(value, "SerializeToString"):
                field.CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return st.fixed_dictionaries({}, optional=optional).map(build)


def requests(method: MethodDescriptor, known: tuple[str, ...]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=400),
                     messages(method.input_type, 0, known).map(lambda m: m.SerializeToString()))


@pytest.fixture(scope="module")
def fuzz_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(3, stage_timeout_s=2, rpc_timeout_s=2, job_timeout_s=20, max_elements=20_000,
                     workdir=Path(tmp_path_factory.mktemp("fuzz")))
    with c:
        yield c


@pytest.fixture(scope="module")
def live(fuzz_cluster: LocalCluster) -> Iterator[tuple[tuple[str, ...], tuple[tuple[str, str], ...]]]:
    """A job with two inputs declared and shared, and a SecAgg round: their ids for the fuzzer, and the party's
    token metadata so coordinator calls get past authentication."""
    alice = mpcnet.connect(fuzz_cluster.coordinator, "fuzz-party", timeout_s=10)
    job = alice.create_job()
    alice.share(job, "x", np.array([1, 2]))
    alice.share(job, "y", np.array([3, 4]))
    stub = secagg_pb2_grpc.SecAggStub(grpc.insecure_channel(fuzz_cluster.coordinator))
    rnd = stub.CreateRound(secagg_pb2.SecAggCreateRoundRequest(params=secagg_pb2.SecAggRoundParams(
        client_ids=[1, 2, 3], threshold=2, vector_length=4, stage_deadline_s=2, join_deadline_s=30)), timeout=10,
        metadata=fuzz_cluster.auth_metadata)
    yield (job, rnd.round_id, "fuzz-party"), alice._md
    alice.close()


def targets(c: LocalCluster) -> list[tuple[str, MethodDescriptor]]:
    out = []
    for mod, service, address in ((mpc_pb2, "Coordinator", c.coordinator), (secagg_pb2, "SecAgg", c.coordinator),
                                  (mpc_pb2, "Dealer", c.dealer), (mpc_pb2, "Node", c.nodes[0])):
        for m in mod.DESCRIPTOR.services_by_name[service].methods:
            out.append((address, m))
    return out


METHODS = [(s, m.name) for s in ("Coordinator", "SecAgg", "Dealer", "Node")
           for mod in ((secagg_pb2,) if s == "SecAgg" else (mpc_pb2,))
           for m in mod.DESCRIPTOR.services_by_name[s].methods]


@pytest.mark.parametrize("service, name", METHODS, ids=[f"{s}.{n}" for s, n in METHODS])
def test_fuzzed_requests_get_a_status_never_a_crash(fuzz_cluster: LocalCluster, live: Any, service: str,
                                                    name: str) -> None:
    known, party_md = live
    address, method = next((a, m) for a, m in targets(fuzz_cluster)
                           if m.containing_service.name == service and m.name == name)
    path = f"/{method.containing_service.full_name}/{method.name}"
    channel = grpc.insecure_channel(address)
    md = fuzz_cluster.auth_metadata + tuple(party_md) + (("mpcnet-node-id", "2"),)
    seen: dict[str, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.lists(requests(method, known), min_size=1, max_size=3))
    def one(bodies: list[bytes]) -> None:
        ident = lambda b: b  # noqa: E731 - raw bytes on the wire
        try:
            if method.client_streaming:
                call = channel.stream_unary(path, request_serializer=ident, response_deserializer=ident)
                call(iter(bodies), timeout=5, metadata=md)
            elif method.server_streaming:
                call_s = channel.unary_stream(path, request_serializer=ident, response_deserializer=ident)
                for _ in call_s(bodies[0], timeout=5, metadata=md):
                    pass
            else:
                call_u = channel.unary_unary(path, request_serializer=ident, response_deserializer=ident)
                call_u(bodies[0], timeout=5, metadata=md)
            seen["OK"] = seen.get("OK", 0) + 1
        except grpc.RpcError as exc:
            code = exc.code()
            seen[code.name] = seen.get(code.name, 0) + 1
            assert code not in BAD, f"{path}: {code.name} {exc.details()}"
            assert exc.details(), f"{path}: {code.name} without a message"

    one()
    channel.close()
    print(f"{path}: {seen}")


def test_every_role_survives_the_fuzzing_and_still_computes(fuzz_cluster: LocalCluster) -> None:
    # runs after the fuzz cases (pytest keeps file order)
    for name, proc in fuzz_cluster.procs.items():
        assert proc.poll() is None, f"{name} died during fuzzing"
        status = Path(f"/proc/{proc.pid}/status").read_text()
        rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
        assert rss < RSS_LIMIT_KB, f"{name} holds {rss} kB after fuzzing"
    alice = mpcnet.connect(fuzz_cluster.coordinator, "after-fuzz", timeout_s=10)
    # The fuzzer holds the cluster secret, so its Dealer/Enroll calls really re-enrolled nodes with the dealer:
    # the first job may be refused (named: "a different dealer enrolment"), which makes those nodes enrol
    # afresh; the next job must be exact.
    errors = []
    for _ in range(3):
        job = alice.create_job()
        alice.share(job, "x", np.array([2, 3]))
        alice.share(job, "y", np.array([5, -7]))
        try:
            alice.run(job, mpcnet.Program().mul("z", "x", "y").output("z", to=[alice.name]))
        except mpcnet.errors.MpcnetError as exc:
            errors.append(str(exc))
            assert "dealer enrolment" in str(exc), exc
            time.sleep(0.5)
            continue
        np.testing.assert_array_equal(alice.reveal(job, "z"), [10, -21])
        break
    else:
        pytest.fail(f"no exact job after fuzzing: {errors}")
    assert len(errors) <= 1, errors
    alice.close()
    log = fuzz_cluster.log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 500: log.index("Traceback") + 2000]
