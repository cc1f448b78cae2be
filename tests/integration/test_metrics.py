"""Prometheus metrics: every role serves /metrics with RPC counts and latencies, bytes, triples, rounds, dropouts."""

from __future__ import annotations

import time
import urllib.request
from typing import Iterator

import numpy as np
import pytest

import mpcnet
from mpcnet.cluster import LocalCluster
from tests.integration.test_secagg_network import create_round, finish, result, spawn

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def metered() -> Iterator[LocalCluster]:
    with LocalCluster(n_nodes=3, metrics=True) as cluster:
        yield cluster


def scrape(cluster: LocalCluster, name: str) -> dict[str, float]:
    with urllib.request.urlopen(cluster.metrics_address(name), timeout=10) as resp:  # loopback only
        text = resp.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values


def scrape_until(cluster: LocalCluster, name: str, key: str, timeout_s: float = 5.0) -> dict[str, float]:
    """A scrape that holds ``key``, or the last one after ``timeout_s``.  gRPC aio sends an aborted call's status
    from ``abort``, before the server's interceptor has counted the call, so a scrape can come too early."""
    deadline = time.monotonic() + timeout_s
    values = scrape(cluster, name)
    while key not in values and time.monotonic() < deadline:
        time.sleep(0.05)
        values = scrape(cluster, name)
    return values


def total(values: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in values.items() if k.startswith(prefix))


def test_roles_export_what_they_did(metered: LocalCluster) -> None:
    party = mpcnet.connect(metered.coordinator, party="metered")
    job = party.create_job()
    party.share(job, "x", np.arange(1000))
    party.run(job, mpcnet.Program().mul("y", "x", "x").output("y", to=["metered"]))
    assert party.reveal(job, "y").tolist() == [i * i for i in range(1000)]
    rnd = create_round(metered, [1, 2, 3, 4], t=3, stage_s=600.0)
    live, dying = spawn(metered, rnd, [1, 2, 3], "metrics"), spawn(metered, rnd, [4], "metrics",
                                                                   die_at="masked_input_collection")
    assert finish(dying)[0] == -9 and finish(live)[0] == 0
    assert result(metered, rnd).state == "done"

    coord = scrape(metered, "coordinator")
    assert coord['mpcnet_secagg_rounds_total{outcome="done"}'] >= 1
    assert coord['mpcnet_secagg_dropouts_total{stage="masked_input_collection"}'] >= 1
    assert coord['mpcnet_rpc_total{code="OK",method="/mpcnet.v1.Coordinator/RunJob"}'] >= 1
    # each client joins and answers on one Session stream (the killed client's did not end OK)
    assert total(coord, 'mpcnet_rpc_total{code="OK",method="/mpcnet.v1.SecAgg/Session"}') >= 3
    assert coord['mpcnet_rpc_seconds_count{method="/mpcnet.v1.Coordinator/RunJob"}'] >= 1
    dealer = scrape(metered, "dealer")
    assert dealer["mpcnet_triples_served_total"] >= 1000
    for i in (1, 2, 3):
        node = scrape(metered, f"node{i}")
        assert node["mpcnet_bytes_sent_total"] > 0
        assert total(node, 'mpcnet_rpc_total{code="OK",method="/mpcnet.v1.Node/Exchange"}') >= 1
    # a refused call is counted with its status code
    with pytest.raises(mpcnet.errors.MpcnetError):
        party.reveal("no-such-job", "y")
    refused = 'mpcnet_rpc_total{code="NOT_FOUND",method="/mpcnet.v1.Coordinator/GetJob"}'
    assert scrape_until(metered, "coordinator", refused)[refused] >= 1


def test_structured_logs() -> None:
    """MPCNET_LOG_FORMAT=json: every log line of a role is one JSON object."""
    import json
    import os
    import subprocess
    import sys

    from mpcnet.cluster import REPO_ROOT

    env = dict(os.environ, MPCNET_LOG_FORMAT="json", PYTHONPATH=str(REPO_ROOT),
               MPCNET_NODES="127.0.0.1:1,127.0.0.1:2")
    proc = subprocess.Popen([sys.executable, "-m", "nodes.dealer", "--listen", "127.0.0.1:0"], env=env,
                            cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline() if proc.stderr else ""
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    record = json.loads(line)
    assert record["role"] == "dealer" and record["level"] in ("INFO", "WARNING") and record["msg"]
