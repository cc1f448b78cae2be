"""The same docker-compose.yml as a Docker Swarm stack (`docker stack deploy`) on a single-node swarm.

The test makes the swarm itself when the engine is not in one (`docker swarm init` on 127.0.0.1) and leaves it
afterwards; an engine that is already a swarm manager is used as it is and left so.  The stack file comes from
scripts/compose_to_stack.py (ports dropped: the test reaches the stack only from one-shot containers on its
attachable overlay network).  It checks every service converges to healthy, the client service scales, an MPC
job and a SecAgg round give the exact answers, and `docker stack rm` plus the volumes leave nothing behind.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from typing import Iterator

import numpy as np
import pytest

from mpcnet.cluster import REPO_ROOT
from mpcnet.secagg_client import derive_input
from tests.deploy.conftest import docker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]  # includes the image build
CLIENTS = 3
ROLES = ("broker", "dealer", "node1", "node2", "node3", "coordinator", "client")


@pytest.fixture()
def swarm(images: tuple[str, str]) -> Iterator[None]:
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
    made = state != "active"
    had_gwbridge = bool(docker("network", "ls", "-q", "--filter", "name=^docker_gwbridge$").stdout.strip())
    if made:
        docker("swarm", "init", "--advertise-addr", "127.0.0.1", timeout=120)
    try:
        yield
    finally:
        if made:
            docker("swarm", "leave", "--force", timeout=120, check=False)
            if not had_gwbridge:
                docker("network", "rm", "docker_gwbridge", check=False)


def stack_containers(stack: str) -> list[dict[str, str]]:
    out = docker("ps", "-a", "--filter", f"label=com.docker.stack.namespace={stack}", "--format",
                 '{{.Names}}\t{{.Status}}\t{{.Label "com.docker.swarm.service.name"}}').stdout
    return [dict(zip(("name", "status", "service"), line.split("\t"))) for line in out.splitlines() if line]


def test_compose_file_deploys_as_a_swarm_stack(swarm: None, images: tuple[str, str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    stack = f"mpcnetst{secrets.token_hex(3)}"
    stack_file = tmp_path / "stack.yml"
    conv = subprocess.run([sys.executable, "scripts/compose_to_stack.py", "--no-ports", "docker-compose.yml"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert conv.returncode == 0, conv.stderr
    stack_file.write_text(conv.stdout)
    env = dict(os.environ, MPCNET_IMAGE=images[0], MPCNET_BROKER_IMAGE=images[1],
               MPCNET_CLIENT_SEED="swarm-test", MPCNET_CLUSTER_NAME=stack)
    net, certs_vol, rounds_vol = f"{stack}_private", f"{stack}_certs", f"{stack}_rounds"
    try:
        t0 = time.monotonic()
        dep = subprocess.run(["docker", "stack", "deploy", "--resolve-image", "never", "-c", str(stack_file), stack],
                             env=env, capture_output=True, text=True, timeout=180)
        assert dep.returncode == 0, dep.stderr
        docker("service", "scale", "--detach", f"{stack}_client={CLIENTS}", timeout=60)
        deadline = time.monotonic() + 240
        while True:
            running = [c for c in stack_containers(stack) if c["status"].startswith("Up")]
            healthy = {c["service"] for c in running if "(healthy)" in c["status"]}
            n_clients = sum(1 for c in running if c["service"] == f"{stack}_client" and "(healthy)" in c["status"])
            if healthy >= {f"{stack}_{r}" for r in ROLES} and n_clients == CLIENTS:
                break
            assert time.monotonic() < deadline, f"stack not healthy within 240 s: {stack_containers(stack)}"
            time.sleep(1)
        print(f"swarm: deploy -> every service healthy in {time.monotonic() - t0:.1f} s")
        done = [c for c in stack_containers(stack) if c["service"] == f"{stack}_certs"]
        assert any(c["status"].startswith("Exited (0)") for c in done), done

        one_shot = ["run", "--rm", "--network", net, "-v", f"{certs_vol}:/var/lib/mpcnet/certs:ro",
                    "-v", f"{rounds_vol}:/var/lib/mpcnet/rounds", "-e", "MPCNET_COORDINATOR=coordinator:7100",
                    "-e", "MPCNET_TLS_DIR=/var/lib/mpcnet/certs",
                    "-e", "MPCNET_CLUSTER_SECRET_FILE=/var/lib/mpcnet/certs/cluster.secret"]
        demo = docker(*one_shot, images[0], "demo", "--coordinator", "coordinator:7100", timeout=180, check=False)
        assert demo.returncode == 0 and "all checks passed" in demo.stdout, demo.stdout[-3000:] + demo.stderr[-2000:]

        script = (f"set -e; mpcnet round create --clients 1-{CLIENTS} --threshold 2 --dim 32 --round-id s1 "
                  "--stage-deadline 30 --join-deadline 30 --tokens-out /var/lib/mpcnet/rounds/s1.tokens.json; "
                  "for i in $(seq 90); do rc=0; mpcnet round result --round s1 --sum-out /tmp/sum.json || rc=$?; "
                  "[ $rc -eq 4 ] || break; sleep 1; done; [ $rc -eq 0 ] && echo SUM $(cat /tmp/sum.json); exit $rc")
        out = docker(*one_shot, "--entrypoint", "sh", images[0], "-c", script, timeout=240, check=False)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
        lines = out.stdout.strip().splitlines()
        # the last state line: `round result` printed "running" while it polled
        state = json.loads([line for line in lines if line.startswith('{"round": "s1", "state"')][-1])
        assert state["included"] == list(range(1, CLIENTS + 1)), state
        got = np.array(json.loads(next(line for line in lines if line.startswith("SUM "))[4:]), dtype=np.uint64)
        want = sum(derive_input("swarm-test", c, 32, 32).astype(np.uint64) for c in range(1, CLIENTS + 1)) % 2**32
        np.testing.assert_array_equal(got, want)
    finally:
        docker("stack", "rm", stack, timeout=120, check=False)
        deadline = time.monotonic() + 120
        while stack_containers(stack) and time.monotonic() < deadline:
            time.sleep(1)
        for _ in range(30):  # the volumes are free once the tasks' containers are gone
            vols = docker("volume", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}").stdout.split()
            if not vols or docker("volume", "rm", *vols, check=False).returncode == 0:
                break
            time.sleep(1)
        for _ in range(30):
            if not docker("network", "ls", "-q", "--filter", f"name={net}").stdout.strip():
                break
            time.sleep(1)
    assert stack_containers(stack) == []
    assert docker("volume", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}").stdout.split() == []
