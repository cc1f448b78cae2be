"""The offline image: `make image` builds it without a registry, and its roles form a cluster on a docker network.

The images come from conftest.py's session fixture (scripts/build_image.sh; the Debian bases are cached once
built).  The test starts a dealer, two nodes and a coordinator as plaintext containers on a network it creates
(configured by environment variables only), runs an MPC job from a one-shot container, and removes every
container and the network.
"""

from __future__ import annotations

import secrets
import time
from typing import Iterator

import pytest

from tests.deploy.conftest import docker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]  # includes the image build


@pytest.fixture()
def network() -> Iterator[str]:
    name = f"mpcnet-test-{secrets.token_hex(4)}"
    docker("network", "create", name)
    try:
        yield name
    finally:
        ids = docker("ps", "-aq", "--filter", f"network={name}", check=False).stdout.split()
        if ids:
            docker("rm", "-f", *ids, check=False)
        docker("network", "rm", name, check=False)


def test_image_runs_every_role(image: str) -> None:
    assert docker("run", "--rm", image, "version").stdout.strip() == "0.1.0"
    out = docker("run", "--rm", "--entrypoint", "id", image).stdout
    assert "uid=10001(mpcnet)" in out  # not root
    history = docker("history", "--no-trunc", image).stdout
    assert "CLUSTER_SECRET" not in history  # no secret baked in


def test_containers_form_a_cluster_on_a_private_network(image: str, network: str) -> None:
    suffix = network.rsplit("-", 1)[1]
    names = {role: f"{role}-{suffix}" for role in ("dealer", "node1", "node2", "coordinator")}
    env = ["-e", f"MPCNET_NODES={names['node1']}:7201,{names['node2']}:7202", "-e", f"MPCNET_DEALER={names['dealer']}:7150",
           "-e", f"MPCNET_COORDINATOR={names['coordinator']}:7100", "-e", "MPCNET_ALLOW_PLAINTEXT=1",
           "-e", f"MPCNET_CLUSTER_SECRET={secrets.token_urlsafe(16)}"]
    run = ["run", "-d", "--network", network, *env]
    docker(*run, "--name", names["dealer"], "-e", "MPCNET_LISTEN=0.0.0.0:7150", image, "dealer")
    for i in (1, 2):
        docker(*run, "--name", names[f"node{i}"], "-e", f"MPCNET_LISTEN=0.0.0.0:720{i}",
               "-e", "MPCNET_STATE_DIR=/var/lib/mpcnet/state", image, "node", "--id", str(i))
    docker(*run, "--name", names["coordinator"], "-e", "MPCNET_LISTEN=0.0.0.0:7100", image, "coordinator")
    script = (f"import time, numpy as np, mpcnet\n"
              f"deadline = time.monotonic() + 60\n"
              f"while True:\n"
              f"    try:\n"
              f"        a = mpcnet.connect('{names['coordinator']}:7100', party='a', timeout_s=5); break\n"
              f"    except mpcnet.errors.MpcnetError:\n"
              f"        if time.monotonic() > deadline: raise\n"
              f"        time.sleep(0.5)\n"
              f"j = a.create_job(); a.share(j, 'x', np.array([3, -4, 5]))\n"
              f"a.run(j, mpcnet.Program().mul('y', 'x', 'x').output('y', to=['a']))\n"
              f"print(a.reveal(j, 'y').tolist())\n"
              # a DP statistic: the coordinator's image has dp-accounting and keeps a ledger in its home
              f"j = a.create_job(); a.share(j, 'v', np.arange(100.0), bound=100.0, dp_only=True)\n"
              f"r = a.run(j, mpcnet.Program().dp_sum('s', 'v', 1.0).output('s', to=['a']))\n"
              f"rel = r.receipt['differential_privacy']['releases'][0]\n"
              f"print('dp', rel['epsilon'], rel['ledger_remaining']['party:a'], abs(float(a.reveal(j, 's')) - 4950) < 10000)\n"
              f"print([9, 16, 25])\n")
    t0 = time.monotonic()
    out = docker("run", "--rm", "--network", network, "--entrypoint", "python3", image, "-c", script, timeout=120,
                 check=False)
    assert out.returncode == 0, out.stderr + "\n" + docker("logs", names["coordinator"], check=False).stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[9, 16, 25]"
    assert "dp 1.0 9.0 True" in out.stdout.splitlines()  # epsilon 1 charged, 9 of the default 10 left
    assert time.monotonic() - t0 < 120
    logs = docker("logs", names["node1"], check=False).stderr
    assert "PLAINTEXT gRPC on non-loopback" in logs  # announced loudly
