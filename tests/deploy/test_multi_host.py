"""docs/deploy.md, the multi-machine guide, step by step -- without leaving this machine.

Four "hosts": the hub (coordinator and dealer) and three organisations (one compute node each), each its own docker
network.  Docker isolates bridge networks from each other, so the only way between hosts is the port each host
publishes on the docker host's bridge address (`host.mpcnet`, host-gateway) -- as between machines that see only
each other's published ports.  Every host gets the guide's per-host `mpcnet.toml`, the CA certificate and only its
own key pair, read-only.  An MPC job then runs from a party on org1's network, over mutual TLS, and the test checks
that a peer's container address is *not* reachable directly.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from mpcnet import certs
from tests.deploy.conftest import docker, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]  # includes the image build
UID = 10001  # the image's user


def host_config(ports: dict[str, int], role: str, node_id: int = 0) -> str:
    """The guide's per-host mpcnet.toml (docs/deploy.md, step 3); `host.mpcnet:PORT` stands for each host's
    DNS name and port."""
    nodes = ", ".join(f'"host.mpcnet:{ports[f"node{i}"]}"' for i in (1, 2, 3))
    text = ("[cluster]\n"
            f'coordinator = "host.mpcnet:{ports["coordinator"]}"\n'
            f'dealer = "host.mpcnet:{ports["dealer"]}"\n'
            f"nodes = [{nodes}]\n"
            'secret_file = "cluster.secret"\n\n'
            '[tls]\ndir = "certs"\n\n'
            '[events]\ncluster = "three-orgs"\n\n')
    if role == "node":
        text += (f'[node]\nid = {node_id}\nlisten = "0.0.0.0:{ports[f"node{node_id}"]}"\n'
                 'state_dir = "/var/lib/mpcnet/state"\n')
    elif role in ("coordinator", "dealer"):
        text += f'[{role}]\nlisten = "0.0.0.0:{ports[role]}"\nstate_dir = "/var/lib/mpcnet/state"\n'
    return text


def bridge_address(image: str) -> str:
    """The docker host's address as containers see it (what host-gateway resolves to)."""
    hosts = docker("run", "--rm", "--add-host", "gw.mpcnet:host-gateway", "--entrypoint", "cat", image,
                   "/etc/hosts").stdout
    return next(line.split()[0] for line in hosts.splitlines() if line.strip().endswith("gw.mpcnet"))


@pytest.fixture()
def hosts(image: str, tmp_path: Path) -> Iterator[dict[str, object]]:
    tag = secrets.token_hex(3)
    names = {h: f"mpcnet-mh-{tag}-{h}" for h in ("hub", "org1", "org2", "org3")}
    try:
        for net in names.values():
            docker("network", "create", net)
        yield {"tag": tag, "networks": names, "dir": tmp_path}
    finally:
        ids = docker("ps", "-aq", "--filter", f"name=mpcnet-mh-{tag}-", check=False).stdout.split()
        if ids:
            docker("rm", "-f", *ids, check=False)
        for net in names.values():
            docker("network", "rm", net, check=False)


def test_three_organisations_each_run_one_node_reachable_only_through_published_ports(
        image: str, hosts: dict[str, object]) -> None:
    tag, nets, root = str(hosts["tag"]), hosts["networks"], Path(str(hosts["dir"]))
    assert isinstance(nets, dict)
    gw = bridge_address(image)
    ports = {name: free_port() for name in ("coordinator", "dealer", "node1", "node2", "node3")}

    # step 1 (the hub): the CA, and one certificate per host; step 2: each host receives ca.crt + its own pair
    ca = root / "ca"
    certs.init_ca(ca)
    secret = secrets.token_urlsafe(32)
    plan = {"coordinator": ("hub", "coordinator", "main", 0), "dealer": ("hub", "dealer", "main", 0),
            **{f"node{i}": (f"org{i}", "node", str(i), i) for i in (1, 2, 3)}}
    parties = ["hospital-a", "hospital-b", "hospital-c"]
    for who, (_host, role, name, _) in plan.items():
        certs.issue(ca, role, name)
    for p in parties:
        certs.issue(ca, "client", p)
    dirs: dict[str, Path] = {}
    for who, (_host, role, name, node_id) in list(plan.items()) + [("party", ("org1", "client", "", 0))]:
        d = root / who
        (d / "certs").mkdir(parents=True)
        shutil.copy(ca / "ca.crt", d / "certs")
        stems = [certs.Identity(role, name).stem] if who != "party" else [f"client-{p}" for p in parties]
        for stem in stems:
            for ext in ("crt", "key"):
                shutil.copy(ca / f"{stem}.{ext}", d / "certs")
        if who != "party":  # a party holds its certificates only: no cluster secret
            (d / "cluster.secret").write_text(secret)
            (d / "cluster.secret").chmod(0o600)
            (d / "mpcnet.toml").write_text(host_config(ports, role, node_id))
        assert not (d / "certs" / "ca.key").exists()  # the CA key never leaves the hub's CA directory
        dirs[who] = d
    user: list[str] = []
    if os.geteuid() == 0:  # the guide: `chown -R 10001:10001 /etc/mpcnet` (the image's user)
        for d in dirs.values():
            for path in [d, *d.rglob("*")]:
                os.chown(path, UID, UID)
    else:  # a developer without root: run the containers as the owner of the files
        user = ["--user", f"{os.getuid()}:{os.getgid()}"]

    # step 4: each host starts its role from the same image, publishing its one port
    def run(who: str, *cmd: str) -> None:
        host = plan[who][0]
        docker("run", "-d", "--name", f"mpcnet-mh-{tag}-{who}", "--network", nets[host], *user,
               "--add-host", "host.mpcnet:host-gateway", "-p", f"{gw}:{ports[who]}:{ports[who]}",
               "-v", f"{dirs[who]}:/etc/mpcnet:ro", "-e", "MPCNET_CONFIG=/etc/mpcnet/mpcnet.toml", image, *cmd)

    run("dealer", "dealer")
    for i in (1, 2, 3):
        run(f"node{i}", "node")
    run("coordinator", "coordinator")

    # step 5: a party on org1's network runs an MPC job against the hub's coordinator, over mutual TLS
    out = docker("run", "--rm", "--network", nets["org1"], *user, "--add-host", "host.mpcnet:host-gateway",
                 "-v", f"{dirs['party']}:/etc/mpcnet:ro", image,
                 "demo", "--coordinator", f"host.mpcnet:{ports['coordinator']}", "--tls-dir", "/etc/mpcnet/certs",
                 timeout=180, check=False)
    logs = {w: docker("logs", f"mpcnet-mh-{tag}-{w}", check=False).stderr[-1500:] for w in plan}
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:] + "\n" + "\n".join(
        f"--- {w}\n{t}" for w, t in logs.items())
    assert "all checks passed" in out.stdout and "mutual TLS" in out.stdout
    assert not any("PLAINTEXT" in t for t in logs.values())

    # the hosts really are apart: org1 cannot reach the coordinator's container address directly
    ip = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                f"mpcnet-mh-{tag}-coordinator").stdout.strip()
    probe = ("import socket, sys\ns = socket.socket(); s.settimeout(3)\n"
             f"sys.exit(0 if s.connect_ex(('{ip}', {ports['coordinator']})) == 0 else 7)")
    direct = docker("run", "--rm", "--network", nets["org1"], "--entrypoint", "python3", image, "-c", probe,
                    check=False, timeout=60)
    assert direct.returncode != 0, "org1 reached the coordinator's container address directly"
