"""`mpcnet agent` (the compose client service) on loopback: four agents watch one rounds directory, three seats
are offered, each seat is taken exactly once, the sum is exact; the fourth agent stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mpcnet.cluster import REPO_ROOT, LocalCluster
from mpcnet.secagg_wire import aggregate_of
from tests.integration.test_secagg_network import LENGTH, expected_sum, result

pytestmark = pytest.mark.integration


class RoundRef:
    def __init__(self, round_id: str) -> None:
        self.id = round_id


def test_agents_claim_distinct_seats_and_the_sum_is_exact(cluster: LocalCluster, tmp_path: Path) -> None:
    rounds = tmp_path / "rounds"
    rounds.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), MPCNET_LOG_LEVEL="INFO")
    agents = [subprocess.Popen([sys.executable, "-m", "mpcnet.cli", "agent", "--coordinator", cluster.coordinator,
                                "--rounds-dir", str(rounds), "--input-seed", "agents", "--max-rounds", "1",
                                "--poll", "0.2", "--heartbeat", str(tmp_path / f"beat{i}")],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
              for i in range(4)]
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"beat{i}").exists() for i in range(4)):  # every agent is watching
            assert time.monotonic() < deadline and all(a.poll() is None for a in agents)
            time.sleep(0.1)
        create = subprocess.run([sys.executable, "-m", "mpcnet.cli", "round", "create", "--config",
                                 str(cluster.config_path), "--clients", "1-3", "--threshold", "2", "--dim",
                                 str(LENGTH), "--stage-deadline", "5", "--join-deadline", "20",
                                 "--tokens-out", str(rounds / "ag1.tokens.json"), "--round-id", "ag1"],
                                env=env, capture_output=True, text=True, timeout=60)
        assert create.returncode == 0, create.stderr
        # three agents take a seat each, finish their round and exit (--max-rounds 1)
        finished = []
        deadline = time.monotonic() + 90
        while len(finished) < 3:
            finished = [a for a in agents if a.poll() is not None]
            assert time.monotonic() < deadline, "agents did not finish the round within 90 s"
            time.sleep(0.2)
        assert all(a.returncode == 0 for a in finished)
        seats = sorted(p.name for p in rounds.glob("ag1.seat-*.json"))
        assert seats == ["ag1.seat-1.json", "ag1.seat-2.json", "ag1.seat-3.json"]
        outcomes = [json.loads((rounds / s).read_text()) for s in seats]
        assert all(o["state"] == "done" and o["included"] == [1, 2, 3] for o in outcomes), outcomes
        assert all("sum" not in o for o in outcomes)  # the agent never writes the aggregate
        holders = {(rounds / f"ag1.seat-{i}").read_text() for i in (1, 2, 3)}
        assert len(holders) == 3  # three different agents
        res = result(cluster, RoundRef("ag1"))  # type: ignore[arg-type]
        assert res.state == "done"
        np.testing.assert_array_equal(aggregate_of(res.done), expected_sum("agents", [1, 2, 3]))
        # the fourth found every seat taken and keeps watching; SIGTERM stops it cleanly
        (last,) = [a for a in agents if a.poll() is None]
        last.send_signal(signal.SIGTERM)
        assert last.wait(timeout=20) == 0
        assert "every seat is taken" in (last.stderr.read() if last.stderr else "")
    finally:
        for a in agents:
            if a.poll() is None:
                a.kill()
                a.wait(timeout=10)
