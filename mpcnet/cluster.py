"""Start a whole cluster as local processes on loopback (demo, bench, tests).

``LocalCluster`` writes a TOML config with free ports, starts the dealer,
the N nodes and the coordinator as separate OS processes (``python -m
nodes.<role>``), waits until each reports SERVING on the gRPC health service,
and on exit stops every process it started: SIGTERM, a grace period, then
SIGKILL.  Each child runs in its own process group so that nothing it forks
survives either.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mpcnet.certs import Identity
from mpcnet.transport.tls import TlsFiles

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_serving(address: str, timeout_s: float, proc: subprocess.Popen[Any] | None = None, what: str = "",
                 tls: "TlsFiles | None" = None, expect: "Identity | None" = None) -> None:
    """Poll the gRPC health service until SERVING (bounded by ``timeout_s``)."""
    from mpcnet.transport.rpc import sync_channel
    deadline = time.monotonic() + timeout_s
    with sync_channel(address, tls, expect) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what or address} exited with code {proc.returncode} during start-up")
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"{what or address} did not report SERVING within {timeout_s:g}s")


class LocalCluster:
    """Coordinator, dealer and ``n_nodes`` nodes as local processes."""

    def __init__(self, n_nodes: int = 3, workdir: str | os.PathLike[str] | None = None,
                 stage_timeout_s: float = 60.0, rpc_timeout_s: float = 30.0, job_timeout_s: float = 600.0,
                 max_elements: int = 4_000_000, log_level: str = "INFO", python: str = sys.executable,
                 start_timeout_s: float = 60.0, output_ttl_s: float = 3600.0, tls: bool = False,
                 mqtt: str = "", cluster_name: str = "local", metrics: bool = False,
                 faults: dict[str, Any] | None = None) -> None:
        if n_nodes < 2:
            raise ValueError("a cluster needs at least 2 nodes")
        self.n_nodes = n_nodes
        self._tmp = tempfile.TemporaryDirectory(prefix="mpcnet-") if workdir is None else None
        self.workdir = Path(workdir or self._tmp.name)  # type: ignore[union-attr]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.start_timeout_s = start_timeout_s
        self.coordinator = f"127.0.0.1:{free_port()}"
        self.dealer = f"127.0.0.1:{free_port()}"
        self.nodes = [f"127.0.0.1:{free_port()}" for _ in range(n_nodes)]
        self.config_path = self.workdir / "mpcnet.toml"
        self.cluster_secret = secrets.token_urlsafe(32)
        secret_path = self.workdir / "cluster.secret"
        secret_path.write_text(self.cluster_secret)
        secret_path.chmod(0o600)
        # tls=True: a fresh CA and one certificate per role in workdir/certs, plus "client local" for this
        # launcher's health checks, "client main" (the SecAgg client default) and "client alice"/"client bob".
        self.tls_dir: Path | None = None
        self.client_tls: TlsFiles | None = None
        tls_section = ""
        if tls:
            from mpcnet import certs
            self.tls_dir = self.workdir / "certs"
            certs.init_ca(self.tls_dir, force=True)
            for role, name in [("coordinator", "main"), ("dealer", "main"), ("client", "local"), ("client", "main"),
                               ("client", "alice"),
                               ("client", "bob")] + [("node", str(i)) for i in range(1, n_nodes + 1)]:
                certs.issue(self.tls_dir, role, name)
            self.client_tls = TlsFiles.load(self.tls_dir, "client", "local")
            tls_section = '\n[tls]\ndir = "certs"\n'
        nodes = ", ".join(f'"{a}"' for a in self.nodes)
        self.config_path.write_text(
            "[cluster]\n"
            f'coordinator = "{self.coordinator}"\ndealer = "{self.dealer}"\nnodes = [{nodes}]\n'
            f'max_elements = {max_elements}\nsecret_file = "cluster.secret"\n\n'
            f"[timeouts]\nrpc_s = {rpc_timeout_s}\nstage_s = {stage_timeout_s}\njob_s = {job_timeout_s}\n"
            f"output_ttl_s = {output_ttl_s}\n" + tls_section
            + (f'\n[events]\nmqtt = "{mqtt}"\ncluster = "{cluster_name}"\n' if mqtt else "")
        )
        self.log_level = log_level
        # metrics=True: each role serves Prometheus /metrics on its own loopback port (metrics_address(name))
        self.metrics_ports: dict[str, int] = {}
        if metrics:
            names = ["dealer", "coordinator"] + [self.node_name(i) for i in range(1, n_nodes + 1)]
            self.metrics_ports = {name: free_port() for name in names}
        # faults: {"node2": {"seed": ..., "rules": [...]}}: MPCNET_FAULTS of that role (mpcnet/transport/faults.py);
        # read at each (re)start, so a drill may change it between restarts
        self.faults: dict[str, Any] = dict(faults or {})
        self.procs: dict[str, subprocess.Popen[Any]] = {}
        self.logs: dict[str, Path] = {}

    def _spawn(self, name: str, module: str, *args: str) -> subprocess.Popen[Any]:
        log_path = self.workdir / f"{name}.log"
        self.logs[name] = log_path
        # MPCNET_PARENT_PID: the role exits when this launcher dies (nodes/common.py), so no orphans.
        env = dict(os.environ, MPCNET_CONFIG=str(self.config_path), MPCNET_LOG_LEVEL=self.log_level,
                   MPCNET_PARENT_PID=str(os.getpid()),
                   **({"MPCNET_METRICS_LISTEN": f"127.0.0.1:{self.metrics_ports[name]}"}
                      if name in self.metrics_ports else {}),
                   **({"MPCNET_FAULTS": json.dumps(self.faults[name])} if name in self.faults else {}),
                   PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        if name not in self.faults:
            env.pop("MPCNET_FAULTS", None)
        # the cluster's coordinator keeps its own ledger in its workdir: the user's MPCNET_LEDGER (a real
        # ledger, or one in a missing directory) must be neither charged by a demo nor stop the role starting
        for private in ("MPCNET_LEDGER", "MPCNET_DP_BUDGET"):
            env.pop(private, None)
        if name in ("coordinator", "dealer"):  # their journals (mpcnet/journal.py); nodes get --state-dir
            env["MPCNET_STATE_DIR"] = str(self.workdir / name)
        with open(log_path, "ab") as fh:
            proc = subprocess.Popen([self.python, "-m", module, *args], cwd=REPO_ROOT, env=env,
                                    stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.procs[name] = proc
        return proc

    @property
    def auth_metadata(self) -> tuple[tuple[str, str], ...]:
        """Metadata that lets a test call internal RPCs as a cluster role."""
        return (("mpcnet-cluster-auth", self.cluster_secret),)

    def node_name(self, node_id: int) -> str:
        return f"node{node_id}"

    def start_node(self, node_id: int, wait: bool = True) -> None:
        name = self.node_name(node_id)
        proc = self._spawn(name, "nodes.node", "--id", str(node_id),
                           "--state-dir", str(self.workdir / name))
        if wait:
            self._wait(self.nodes[node_id - 1], proc, name, Identity("node", str(node_id)))

    def start_dealer(self, wait: bool = True) -> None:
        proc = self._spawn("dealer", "nodes.dealer")
        if wait:
            self._wait(self.dealer, proc, "dealer", Identity("dealer", "main"))

    def start_coordinator(self, wait: bool = True) -> None:
        proc = self._spawn("coordinator", "nodes.coordinator")
        if wait:
            self._wait(self.coordinator, proc, "coordinator", Identity("coordinator", "main"))

    def start(self) -> "LocalCluster":
        try:
            dealer = self._spawn("dealer", "nodes.dealer")
            for i in range(1, self.n_nodes + 1):
                self.start_node(i, wait=False)
            coord = self._spawn("coordinator", "nodes.coordinator")
            self._wait(self.dealer, dealer, "dealer", Identity("dealer", "main"))
            for i in range(1, self.n_nodes + 1):
                self._wait(self.nodes[i - 1], self.procs[self.node_name(i)], f"node {i}", Identity("node", str(i)))
            self._wait(self.coordinator, coord, "coordinator", Identity("coordinator", "main"))
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, address: str, proc: subprocess.Popen[Any], what: str, expect: "Identity") -> None:
        wait_serving(address, self.start_timeout_s, proc, what, self.client_tls, expect)

    def metrics_address(self, name: str) -> str:
        """``http://127.0.0.1:PORT/metrics`` of role ``name`` (dealer, coordinator, node1, ...)."""
        return f"http://127.0.0.1:{self.metrics_ports[name]}/metrics"

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            proc.wait(timeout=10)

    def stop(self, grace_s: float = 5.0) -> dict[str, int | None]:
        """SIGTERM every process, wait ``grace_s``, SIGKILL the rest; return exit codes."""
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace_s
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        return {name: proc.returncode for name, proc in self.procs.items()}

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs.values() if p.exists())

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
