"""The bench's insecure baseline: plain FedAvg over gRPC (mpcnet/bench/plain_average.py)."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from mpcnet.bench.plain_average import (METHOD, NetworkPlainAggregator, PlainAverageProcess, encode_submission)
from mpcnet.fl.fedavg import PlainAggregator, Update
from mpcnet.fl.sampling import Draws


@pytest.fixture(scope="module")
def server() -> PlainAverageProcess:
    with PlainAverageProcess(idle_exit_s=120) as proc:
        yield proc


def _updates(n: int, dim: int) -> list[Update]:
    draws = Draws.seeded("plain-average-test")
    return [Update(cid, draws.normal(dim), 1 + cid) for cid in range(1, n + 1)]


def test_the_networked_mean_equals_numpys_weighted_mean(server: PlainAverageProcess) -> None:
    updates = _updates(12, 257)
    want = PlainAggregator().aggregate(1, updates, [])
    got = NetworkPlainAggregator(server.address).aggregate(1, updates, [3, 7])
    kept = [u for u in updates if u.client not in (3, 7)]
    expect = np.sum([u.samples * u.delta for u in kept], axis=0) / sum(u.samples for u in kept)
    np.testing.assert_allclose(got.mean, expect, rtol=1e-12)
    assert got.included == [u.client for u in kept] and got.dropped == [3, 7]
    assert got.total_samples == sum(u.samples for u in kept) and want.mean is not None


def test_bad_submissions_get_a_status_and_the_server_keeps_serving(server: PlainAverageProcess) -> None:
    with grpc.insecure_channel(server.address) as channel:
        submit = channel.unary_unary(METHOD)
        with pytest.raises(grpc.RpcError) as err:
            submit(b"\x01\x02\x03", timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "header" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:  # one of two clients: the round never completes
            submit(encode_submission(9001, 1, 2, 1.0, np.ones(4)), timeout=1)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(grpc.RpcError) as err:  # the same client again
            submit(encode_submission(9001, 1, 2, 1.0, np.ones(4)), timeout=1)
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        with pytest.raises(grpc.RpcError) as err:  # another length in the same round
            submit(encode_submission(9001, 2, 2, 1.0, np.ones(5)), timeout=1)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "parameters" in err.value.details()
        reply = submit(encode_submission(9002, 1, 1, 2.0, np.arange(3.0)), timeout=5)
        assert np.frombuffer(reply, dtype="<f8").tolist() == [0.0, 1.0, 2.0]


def test_many_rounds_in_a_row_each_average_exactly() -> None:
    # more rounds than the server remembers: old ones are forgotten, never the one being collected
    updates = _updates(5, 9)
    expect = np.sum([u.samples * u.delta for u in updates], axis=0) / sum(u.samples for u in updates)
    with PlainAverageProcess(idle_exit_s=60) as proc:
        agg = NetworkPlainAggregator(proc.address, rpc_timeout_s=10)
        for r in range(1, 26):
            np.testing.assert_allclose(agg.aggregate(r, updates, []).mean, expect, rtol=1e-12)
