"""docker-compose.yml end to end: up with a scaled client service, healthy, an MPC job and a SecAgg round checked
exactly, metrics on the published port, then `down -v` leaves no container, network or volume behind.

Runs the README's quick-start commands (with free host ports and the test's image tags, so that a cluster the
developer already runs is not disturbed)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from typing import Iterator

import numpy as np
import pytest

from mpcnet.cluster import REPO_ROOT
from mpcnet.secagg_client import derive_input
from tests.deploy.conftest import docker, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]  # includes the image build
CLIENTS = 4
LONG_RUNNING = {"broker", "dealer", "node1", "node2", "node3", "coordinator", "client"}


class Compose:
    def __init__(self, cmd: list[str], project: str, env: dict[str, str]) -> None:
        self.cmd, self.project, self.env = cmd, project, env

    def __call__(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([*self.cmd, "-p", self.project, *args], cwd=REPO_ROOT, env=self.env,
                             capture_output=True, text=True, timeout=timeout)
        if check:
            assert out.returncode == 0, f"compose {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        return out

    def containers(self) -> list[dict[str, str]]:
        out = docker("ps", "-a", "--filter", f"label=com.docker.compose.project={self.project}", "--format",
                     '{{.Names}}\t{{.Status}}\t{{.Label "com.docker.compose.service"}}').stdout
        rows = [line.split("\t") for line in out.splitlines() if line.strip()]
        return [{"name": r[0], "status": r[1], "service": r[2]} for r in rows]

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.project}"
        return {kind: docker(*cmd, "--filter", label, "-q").stdout.split()
                for kind, cmd in (("containers", ("ps", "-a")), ("networks", ("network", "ls")),
                                  ("volumes", ("volume", "ls")))}


@pytest.fixture()
def cluster(images: tuple[str, str], compose: list[str]) -> Iterator[Compose]:
    project = f"mpcnettest{secrets.token_hex(3)}"
    ports = {var: str(free_port()) for var in (
        "MPCNET_COORDINATOR_PORT", "MPCNET_MQTT_PORT", "MPCNET_COORDINATOR_METRICS_PORT",
        "MPCNET_DEALER_METRICS_PORT", "MPCNET_NODE1_METRICS_PORT", "MPCNET_NODE2_METRICS_PORT",
        "MPCNET_NODE3_METRICS_PORT")}
    env = dict(os.environ, MPCNET_IMAGE=images[0], MPCNET_BROKER_IMAGE=images[1], MPCNET_CLIENT_SEED="compose-test",
               MPCNET_CLUSTER_NAME=project, **ports)
    c = Compose(compose, project, env)
    try:
        yield c
    finally:
        c("--profile", "tools", "down", "-v", "--remove-orphans", "--timeout", "10", check=False)


def test_compose_cluster_runs_an_mpc_job_and_a_secagg_round(cluster: Compose) -> None:
    t0 = time.monotonic()
    cluster("up", "-d", "--scale", f"client={CLIENTS}", timeout=300)
    deadline = time.monotonic() + 120
    while True:
        rows = [r for r in cluster.containers() if r["service"] in LONG_RUNNING]
        if len(rows) == len(LONG_RUNNING) - 1 + CLIENTS and all("(healthy)" in r["status"] for r in rows):
            break
        assert time.monotonic() < deadline, f"not healthy within 120 s: {rows}"
        time.sleep(0.5)
    print(f"compose: up -> all {len(rows)} long-running containers healthy in {time.monotonic() - t0:.1f} s")
    certs_row = [r for r in cluster.containers() if r["service"] == "certs"]
    assert certs_row and certs_row[0]["status"].startswith("Exited (0)")

    # deployment properties the issue asks for
    name = next(r["name"] for r in cluster.containers() if r["service"] == "coordinator")
    info = json.loads(docker("inspect", name).stdout)[0]
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert mounts["/var/lib/mpcnet/certs"]["RW"] is False  # certificates read-only
    assert info["Config"]["User"] == "mpcnet"

    # an MPC job from a one-shot container, every output checked against numpy inside, over mutual TLS
    demo = cluster("run", "--rm", "cli", "demo", "--coordinator", "coordinator:7100", timeout=180)
    assert "all checks passed" in demo.stdout and "mutual TLS" in demo.stdout, demo.stdout[-3000:]
    logs = cluster("logs", "coordinator").stdout + cluster("logs", "coordinator").stderr
    assert "PLAINTEXT" not in logs

    # a SecAgg round: the scaled client service claims the seats; `mpcnet watch` on the host follows the events
    watch = subprocess.Popen([sys.executable, "-m", "mpcnet.cli", "watch", "--mqtt",
                              f"127.0.0.1:{cluster.env['MPCNET_MQTT_PORT']}", "--cluster-name", cluster.project,
                              "--round", "r1", "--json", "--duration", "200"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)  # subscribed before the round starts
    ids = f"1-{CLIENTS}"
    script = (f"set -e; mpcnet round create --clients {ids} --threshold 3 --dim 64 --round-id r1 "
              "--stage-deadline 30 --join-deadline 30 --tokens-out /var/lib/mpcnet/rounds/r1.tokens.json; "
              "for i in $(seq 90); do rc=0; mpcnet round result --round r1 --sum-out /tmp/sum.json || rc=$?; "
              "[ $rc -eq 4 ] || break; sleep 1; done; [ $rc -eq 0 ] && echo SUM $(cat /tmp/sum.json); exit $rc")
    out = cluster("run", "--rm", "--entrypoint", "sh", "cli", "-c", script, timeout=240)
    lines = out.stdout.strip().splitlines()
    # the last state line: `round result` printed "running" while it polled
    state = json.loads([line for line in lines if line.startswith('{"round": "r1", "state"')][-1])
    assert state["state"] == "done" and state["included"] == list(range(1, CLIENTS + 1)), state
    got = np.array(json.loads(next(line for line in lines if line.startswith("SUM "))[4:]), dtype=np.uint64)
    want = sum(derive_input("compose-test", c, 64, 32).astype(np.uint64) for c in range(1, CLIENTS + 1)) % 2**32
    np.testing.assert_array_equal(got, want)
    try:
        events, _ = watch.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        watch.kill()
        events, _ = watch.communicate()
    topics = [json.loads(line)["topic"] for line in events.splitlines() if line.startswith("{")]
    assert f"mpcnet/{cluster.project}/rounds/r1/result" in topics, topics
    assert any(t.startswith(f"mpcnet/{cluster.project}/presence/") for t in topics), topics

    # Prometheus metrics on the published loopback port
    port = cluster.env["MPCNET_COORDINATOR_METRICS_PORT"]
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'mpcnet_rpc_total{code="OK",method="/mpcnet.v1.SecAgg/CreateRound"} 1.0' in text

    # the conformance suite against the deployment, from the one-shot container (mTLS, cluster secret file)
    conf = cluster("run", "--rm", "cli", "conformance", "--target", "coordinator:7100", timeout=300, check=False)
    assert conf.returncode == 0 and ", 0 failed, 0 skipped" in conf.stdout, conf.stdout[-4000:] + conf.stderr[-2000:]

    cluster("--profile", "tools", "down", "-v", "--timeout", "10", timeout=120)
    assert cluster.leftovers() == {"containers": [], "networks": [], "volumes": []}
