"""Mutual TLS between roles: a cluster whose every channel is mTLS, and each way a caller is refused.

The cluster here is its own LocalCluster(tls=True): a fresh CA, one certificate per role.  Refusals tested:
a certificate from another CA, an expired certificate, a peer presenting another identity than the one
dialled, a plaintext client against a TLS server, a client certificate on an internal method, a node
certificate claiming another node id, and plaintext on a non-loopback address.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import mpcnet
from mpcnet import certs
from mpcnet.certs import CertError, Identity
from mpcnet.cluster import REPO_ROOT, LocalCluster
from mpcnet.errors import PeerUnavailable
from mpcnet.secagg_client import derive_input
from mpcnet.transport.rpc import NODE_ID_KEY, RoleServer, from_rpc_error, sync_channel
from mpcnet.transport.tls import TlsFiles
from mpcnet.v1 import mpc_pb2 as pb
from mpcnet.v1 import mpc_pb2_grpc as pbg

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[LocalCluster]:
    with LocalCluster(n_nodes=3, tls=True) as cluster:
        yield cluster


def health(address: str, tls: TlsFiles | None, expect: Identity | None) -> None:
    with sync_channel(address, tls, expect) as ch:
        try:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, f"peer at {address}") from None


def test_certs_cli_init_issue_show(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "mpcnet.cli", "certs"]
    run = lambda *a: subprocess.run(cli + list(a), capture_output=True, text=True, timeout=60)  # noqa: E731
    assert run("init", "--dir", str(tmp_path)).returncode == 0
    again = run("init", "--dir", str(tmp_path))
    assert again.returncode == 2 and "exists already" in again.stderr
    out = run("issue", "node", "2", "--dir", str(tmp_path), "--host", "10.0.0.7", "--host", "node2.example")
    assert out.returncode == 0, out.stderr
    assert oct((tmp_path / "node-2.key").stat().st_mode)[-3:] == "600"
    assert oct((tmp_path / "ca.key").stat().st_mode)[-3:] == "600"
    shown = json.loads(run("show", str(tmp_path / "node-2.crt")).stdout)
    assert shown["identity"] == ["node 2"] and "node2.example" in shown["dns"] and shown["ips"] == ["10.0.0.7"]
    bad = run("issue", "node", "Two!", "--dir", str(tmp_path))
    assert bad.returncode == 2 and "DNS label" in bad.stderr
    # certificates no process would accept are refused before anything is written: a node is named by its id,
    # the coordinator and the dealer are "main", and a --host must be an address or a host name
    for args, why in ((["node", "abc"], "named by its id"), (["node", "01"], "named by its id"),
                      (["coordinator", "backup"], "dials the coordinator as 'main'"),
                      (["dealer", "two"], "dials the dealer as 'main'"),
                      (["client", "bob", "--host", "not a host"], "not an IP address or a DNS host name"),
                      (["client", "bob", "--host", "a..b"], "not an IP address or a DNS host name"),
                      (["client", "bob", "--host=-x.example"], "not an IP address or a DNS host name")):
        refused = run("issue", *args, "--dir", str(tmp_path))
        assert refused.returncode == 2 and why in refused.stderr, (args, refused.stderr)
        assert refused.stderr.count("\n") == 1, refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.crt", "ca.key", "node-2.crt", "node-2.key"]
    with pytest.raises(CertError, match="one identity"):
        certs.issue(tmp_path, "client", "eve", hosts=["1.node.mpcnet"])  # a second identity smuggled as a host
    with pytest.raises(CertError, match="no CA"):
        certs.issue(tmp_path / "empty", "node", "1")


def test_mpc_job_and_secagg_round_over_mutual_tls(tls_cluster: LocalCluster, tmp_path: Path) -> None:
    c = tls_cluster
    assert c.tls_dir is not None
    alice = mpcnet.connect(c.coordinator, party="alice", tls_dir=str(c.tls_dir))
    bob = mpcnet.connect(c.coordinator, party="bob", tls_dir=str(c.tls_dir))
    job = alice.create_job(parties=["bob"])
    alice.share(job, "x", np.array([1, -2, 3]))
    bob.share(job, "y", np.array([4, 5, -6]))
    alice.run(job, mpcnet.Program().mul("z", "x", "y").dot("d", "x", "y").output("z", to=["alice"])
              .output("d", to=["bob"]))
    assert alice.reveal(job, "z").tolist() == [4, -10, -18]
    assert int(bob.reveal(job, "d")) == -24
    assert "mutual TLS on" in c.log_text() and "plaintext gRPC" not in c.log_text()

    # a SecAgg round: `mpcnet round create` with the coordinator's certificate, clients with "client main"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), MPCNET_CLUSTER_SECRET=c.cluster_secret,
               MPCNET_COORDINATOR=c.coordinator, MPCNET_TLS_DIR=str(c.tls_dir))
    env.pop("MPCNET_CLIENT_TOKENS", None)
    tokens = tmp_path / "tokens.json"
    made = subprocess.run([sys.executable, "-m", "mpcnet.cli", "round", "create", "--clients", "1-4", "--threshold",
                           "3", "--dim", "8", "--tokens-out", str(tokens)], env=env, capture_output=True, text=True,
                          timeout=60)
    assert made.returncode == 0, made.stderr
    rid = json.loads(made.stdout)["round"]
    ran = subprocess.run([sys.executable, "-m", "mpcnet.cli", "client", "--round", rid, "--ids", "1,2,3,4",
                          "--input-seed", "tls", "--tokens-file", str(tokens)], env=env, capture_output=True,
                         text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr + ran.stdout
    sum_file = tmp_path / "sum.json"
    res = subprocess.run([sys.executable, "-m", "mpcnet.cli", "round", "result", "--round", rid, "--sum-out",
                          str(sum_file)], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    want = sum(derive_input("tls", i, 8, 32).astype(object) for i in (1, 2, 3, 4))
    assert json.loads(sum_file.read_text()) == [int(v) % 2**32 for v in want]


def test_each_bad_caller_is_refused_with_a_clear_error(tls_cluster: LocalCluster, tmp_path: Path) -> None:
    c = tls_cluster
    assert c.tls_dir is not None
    coord = Identity("coordinator", "main")
    alice = TlsFiles.load(c.tls_dir, "client", "alice")
    health(c.coordinator, alice, coord)  # the good case

    other = tmp_path / "other-ca"
    certs.init_ca(other)
    certs.issue(other, "client", "alice")
    with pytest.raises(PeerUnavailable, match="TLS handshake failed"):
        health(c.coordinator, TlsFiles.load(other, "client", "alice"), coord)  # wrong CA (both ways)
    # a certificate from the other CA presented to the cluster, while trusting the cluster's CA
    forged = TlsFiles(Identity("client", "alice"), alice.ca, (other / "client-alice.crt").read_bytes(),
                      (other / "client-alice.key").read_bytes())
    with pytest.raises(PeerUnavailable, match="certificate from the cluster CA"):
        health(c.coordinator, forged, coord)

    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    certs.issue(c.tls_dir, "client", "expired", days=1, not_before=long_ago)
    with pytest.raises(PeerUnavailable, match="unexpired certificate"):
        health(c.coordinator, TlsFiles.load(c.tls_dir, "client", "expired"), coord)

    with pytest.raises(PeerUnavailable, match="identity expected"):
        health(c.nodes[0], alice, Identity("node", "2"))  # dialled node 1's address expecting node 2

    with pytest.raises(PeerUnavailable, match="plaintext callers are refused"):
        health(c.coordinator, None, None)

    # right CA, wrong role: a party's certificate on an internal node method; a node claiming another id
    with sync_channel(c.nodes[0], alice, Identity("node", "1")) as ch:
        with pytest.raises(grpc.RpcError) as err:
            pbg.NodeStub(ch).AbortJob(pb.AbortJobRequest(job_id="x"), timeout=5, metadata=c.auth_metadata)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "coordinator only" in err.value.details()
    node3 = TlsFiles.load(c.tls_dir, "node", "3")
    with sync_channel(c.nodes[0], node3, Identity("node", "1")) as ch:
        with pytest.raises(grpc.RpcError) as err:
            pbg.NodeStub(ch).AbortJob(pb.AbortJobRequest(job_id="x"), timeout=5,
                                      metadata=c.auth_metadata + ((NODE_ID_KEY, "2"),))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # the cluster still serves
    health(c.coordinator, alice, coord)


def test_plaintext_is_refused_off_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MPCNET_ALLOW_PLAINTEXT", raising=False)

    async def start() -> None:
        server = RoleServer("node9", "0.0.0.0:0")
        try:
            await server.start()
        finally:
            await server.stop(0)

    with pytest.raises(OSError, match="refusing plaintext gRPC on non-loopback"):
        asyncio.run(start())


def test_container_health_check_speaks_mtls_with_the_roles_own_certificate(tls_cluster: LocalCluster) -> None:
    """`python -m mpcnet.health_cli --role R` (compose's health check) over mTLS; a server presenting another
    identity than the one asked for fails the check."""
    def check(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        e = dict(os.environ, MPCNET_CONFIG=str(tls_cluster.config_path), **env)
        return subprocess.run([sys.executable, "-m", "mpcnet.health_cli", *args], capture_output=True, text=True,
                              timeout=60, env=e)

    for role, env in (("coordinator", {}), ("dealer", {}), ("node", {"MPCNET_NODE_ID": "2"})):
        out = check("--role", role, **env)
        assert out.returncode == 0, f"{role}: {out.stderr}"
    # node 2's certificate, but node 1's address: node 1 presents node-1's certificate -> refused
    wrong = check("--role", "node", "--address", tls_cluster.nodes[0], MPCNET_NODE_ID="2")
    assert wrong.returncode == 1 and "unhealthy" in wrong.stderr


def test_fedavg_checks_the_clients_certificate_before_it_spends(tls_cluster: LocalCluster) -> None:
    """SecAggAggregator.check_reachable (what `mpcnet fedavg --coordinator` runs before charging the ledger) tries
    the operator's certificate and the clients' one: an expired client certificate is found there, not in the
    first round after the charge."""
    from mpcnet.fl.fedavg import SecAggAggregator
    c = tls_cluster
    assert c.tls_dir is not None
    admin = TlsFiles.load(c.tls_dir, "coordinator", "main")
    good = SecAggAggregator(c.coordinator, c.auth_metadata, clip=1.0, max_total_samples=100,
                            tls=TlsFiles.load(c.tls_dir, "client", "alice"), admin_tls=admin)
    good.check_reachable()
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    certs.issue(c.tls_dir, "client", "stale", days=1, not_before=long_ago)
    stale = SecAggAggregator(c.coordinator, c.auth_metadata, clip=1.0, max_total_samples=100,
                             tls=TlsFiles.load(c.tls_dir, "client", "stale"), admin_tls=admin)
    with pytest.raises(PeerUnavailable, match="with the clients' certificate"):
        stale.check_reachable()
