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


def test_the_networked_mean_is_plain_aggregators_to_the_bit(server: PlainAverageProcess) -> None:
    updates = _updates(12, 257)
    want = PlainAggregator().aggregate(1, updates, [3, 7])
    got = NetworkPlainAggregator(server.address).aggregate(1, updates, [3, 7])
    assert want.mean is not None and got.mean is not None
    np.testing.assert_array_equal(got.mean, want.mean)  # the same sum in the same order: identical float64
    assert got.included == want.included == [u.client for u in updates if u.client not in (3, 7)]
    assert got.dropped == [3, 7] and got.total_samples == want.total_samples


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


def test_the_server_exits_when_the_process_that_started_it_is_killed() -> None:
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    launcher = subprocess.Popen([sys.executable, "-c", "import time\nfrom mpcnet.bench.plain_average import "
                                 "PlainAverageProcess\np = PlainAverageProcess().__enter__()\nprint(p.pid, flush=True)\n"
                                 "time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert launcher.stdout is not None
        server_pid = int(launcher.stdout.readline())
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait(10)

        def alive() -> bool:  # a reaped process has no /proc entry; an unreaped one is a zombie
            try:
                return Path(f"/proc/{server_pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            except OSError:
                return False

        deadline = time.monotonic() + 15
        while alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(), "the orphaned plain-averaging server kept running"
    finally:
        launcher.kill()
        if launcher.stdout is not None:
            launcher.stdout.close()
