"""`mpcnet drill --compose`: the drills against a docker-compose cluster, faults through the Docker SDK.

The cluster is docker-compose.yml with docker-compose.drills.yml on top (project ``mpcnet-drill`` unless
``--project``; started when it is not running, and taken down at the end when the drill started it, unless
``--keep``).  The override grants NET_ADMIN, makes the SecAgg agents obey drill hold files, and adds a
``drill-runner`` container on the private network.  The drill talks to the cluster through that container:
``docker exec -i drill-runner python3 -m mpcnet.drill_compose serve`` reads one JSON command per line and
answers with JSON lines (MPC jobs as a party, SecAgg rounds as the operator), because the nodes' addresses
(node1:7201, ...) only resolve inside the compose network.  Faults are the Docker SDK's: ``kill`` (SIGKILL),
``pause`` (the cgroup freezer: SIGSTOP for a container), ``network disconnect``, and ``tc``/``nft`` run as root
inside a container (``exec_run``).

Scenarios (each bounded in time; every wait below has a timeout):

* ``secagg-kill-clients``: agents holding n - t seats are frozen at a stage (hold file) and ``docker kill``ed
  there -> exact sum of the included; one more -> clean abort naming the stage.
* ``node-kill`` / ``node-pause``: node 2's container is killed or paused mid-job -> the job fails naming node 2;
  the next job after ``start``/``unpause`` is exact; no triple batch consumed twice (the node journals are read
  out of the stopped or running containers).
* ``dealer-restart``, ``coordinator-restart``, ``kill-loop``: as the local drills, with ``docker kill`` and
  ``docker start``; the coordinator's SQLite journal is on its volume.
* ``latency`` (100 +- 20 ms on every node), ``packet-loss`` (5 % of what every node receives), ``bandwidth``
  (node 2 sends at most 20 Mbit/s): ``tc qdisc ... netem`` where the kernel has it.  Without sch_netem (seen
  on this project's CI kernel: CONFIG_NET_SCH_NETEM is not set) loss is an nftables rule (``numgen random
  mod 100 < 5 drop``) and latency the seeded in-process fault layer (the nodes are recreated with
  ``MPCNET_FAULTS``); the verdict's fault column says which was used.  The bandwidth cap is ``tbf``.
* ``node-partition``: node 2 is disconnected from the compose network mid-job and reconnected ->
  the job fails naming node 2; the next one is exact.
* ``client-partition``: two of six agents (t = 4) are cut off at masked_input_collection -> dropouts and the
  exact sum of the other four; after the heal a round with all six is exact.
* ``broker-outage``: the MQTT broker is stopped -> an MPC job and a SecAgg round are exact anyway; the broker
  is started -> events (the next round's result) arrive again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import queue
import secrets
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from mpcnet.cluster import REPO_ROOT
from mpcnet.drills import (STAGES, Verdict, dealer_verdict, kill_loop_verdict, node_fault_verdict, report,
                            restart_verdict, run_set, until_exact)

PROJECT = "mpcnet-drill"
FILES = ("docker-compose.yml", "docker-compose.drills.yml")
CLIENTS = 6
ROUNDS_DIR = "/var/lib/mpcnet/rounds"
STATE_DIR = "/var/lib/mpcnet/state"
LONG_RUNNING = ("broker", "dealer", "node1", "node2", "node3", "coordinator")
# docker-compose.yml's published loopback ports: variable -> (service, container port)
PORTS = {"MPCNET_COORDINATOR_PORT": ("coordinator", 7100), "MPCNET_COORDINATOR_METRICS_PORT": ("coordinator", 9100),
         "MPCNET_MQTT_PORT": ("broker", 1883), "MPCNET_DEALER_METRICS_PORT": ("dealer", 9100),
         "MPCNET_NODE1_METRICS_PORT": ("node1", 9100), "MPCNET_NODE2_METRICS_PORT": ("node2", 9100),
         "MPCNET_NODE3_METRICS_PORT": ("node3", 9100)}


# ====================================================================== inside the drill-runner container
def _z_hash(z: Any) -> str:
    import numpy as np
    return hashlib.sha256(np.ascontiguousarray(z).tobytes()).hexdigest()[:16]


class _Runner:
    """The container side: one command per stdin line, answers on stdout (``tag`` echoed)."""

    def __init__(self, seed: str) -> None:
        from mpcnet.config import load_config
        self.seed = seed
        self.cfg = load_config()
        self.parties = 0
        self.alice: Any = None
        self._secagg: Any = None
        self.out_lock = threading.Lock()

    def emit(self, **fields: Any) -> None:
        with self.out_lock:
            sys.stdout.write(json.dumps(fields) + "\n")
            sys.stdout.flush()

    def party(self) -> Any:
        import mpcnet
        if self.alice is None:
            self.parties += 1
            name = f"drill-{secrets.token_hex(3)}-{self.parties}"
            # the job deadline outlives the cluster's (docker-compose.drills.yml: stage 15 s, job 90 s), so
            # that a stuck node is reported by the coordinator, naming it, rather than by this party's timeout
            self.alice = mpcnet.connect(self.cfg.coordinator, name, timeout_s=10, job_timeout_s=150,
                                        tls_dir=self.cfg.tls_dir, tls_name="main")
        return self.alice

    def op_job(self, tag: str, n: int = 20_000) -> None:
        from mpcnet.drills import drill_job
        from mpcnet.errors import MpcnetError
        try:
            alice = self.party()
        except MpcnetError as exc:
            self.emit(tag=tag, exact=False, err=str(exc), seconds=0.0, job="")
            return
        ids: list[str] = []
        exact, err, seconds, z = drill_job(alice, n, lambda job: self.emit(tag=tag, event="shared", job=job), ids)
        self.emit(tag=tag, exact=exact, err=err, seconds=seconds, job=ids[0] if ids else "",
                  **({"z_hash": _z_hash(z)} if z is not None else {}))

    def op_job_info(self, tag: str, job: str) -> None:
        from mpcnet.errors import MpcnetError
        try:
            info = self.party().job(job)
            z = _z_hash(self.party().reveal(job, "z")) if info.state == "done" else ""
            self.emit(tag=tag, state=info.state, z_hash=z)
        except MpcnetError as exc:
            self.emit(tag=tag, state="error", err=str(exc))

    def secagg(self) -> Any:
        from mpcnet.transport.rpc import sync_channel
        from mpcnet.transport.tls import Identity, TlsFiles
        from mpcnet.v1 import secagg_pb2_grpc as spbg
        if self._secagg is None:  # one channel: gRPC reconnects it after a coordinator restart
            tls = TlsFiles.load(self.cfg.tls_dir, "coordinator", "main")
            self._secagg = spbg.SecAggStub(sync_channel(self.cfg.coordinator, tls, Identity("coordinator", "main")))
        return self._secagg

    @property
    def operator(self) -> tuple[tuple[str, str], ...]:
        from mpcnet.transport.rpc import CLUSTER_AUTH_KEY
        return ((CLUSTER_AUTH_KEY, self.cfg.cluster_secret),)

    def op_round_create(self, tag: str, n: int, t: int, length: int = 16, round_id: str = "",
                        join_s: float = 30.0, stage_s: float = 10.0, hold: dict[str, Any] | None = None,
                        tokens: bool = True) -> None:
        import grpc

        from mpcnet.v1 import secagg_pb2 as spb
        rounds = Path(ROUNDS_DIR)
        round_id = round_id or f"drill-{secrets.token_hex(4)}"
        if hold:  # before the tokens: the agents read it when the stage comes
            (rounds / f"{round_id}.drill.json").write_text(json.dumps({"hold": hold}))
        params = spb.SecAggRoundParams(round_id=round_id, client_ids=list(range(1, n + 1)), threshold=t,
                                       vector_length=length, bits=32, graph=spb.SECAGG_GRAPH_COMPLETE,
                                       stage_deadline_s=stage_s, join_deadline_s=join_s)
        try:
            reply = self.secagg().CreateRound(spb.SecAggCreateRoundRequest(params=params), timeout=10,
                                              metadata=self.operator)
        except grpc.RpcError as exc:
            self.emit(tag=tag, error_code=exc.code().name, err=str(exc.details()))
            return
        if tokens:
            tmp = rounds / f".{round_id}.tokens.tmp"
            tmp.write_text(json.dumps({str(k): v for k, v in reply.client_tokens.items()}))
            os.replace(tmp, rounds / f"{round_id}.tokens.json")
        self.emit(tag=tag, round_id=reply.round_id)

    def op_round_result(self, tag: str, round_id: str) -> None:
        import grpc
        import numpy as np

        from mpcnet.secagg_client import derive_input
        from mpcnet.secagg_wire import aggregate_of
        from mpcnet.v1 import secagg_pb2 as spb
        try:
            res = self.secagg().GetResult(spb.SecAggGetResultRequest(round_id=round_id), timeout=5,
                                          metadata=self.operator)
        except grpc.RpcError as exc:
            gone = exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            self.emit(tag=tag, state="unreachable" if gone else "unknown", err=f"{exc.code().name}: {exc.details()}")
            return
        line: dict[str, Any] = {"state": res.state, "stage": res.stage}
        if res.state == "done":
            included = sorted(res.done.included)
            got = aggregate_of(res.done)
            want = sum(derive_input(self.seed, c, len(got), 32).astype(np.uint64) for c in included) % 2**32
            line.update(included=included, dropped=sorted(d.client_id for d in res.done.dropped),
                        exact=bool(np.array_equal(got, want)), sum_hash=_z_hash(got))
        elif res.state == "aborted":
            line.update(reason=res.aborted.reason, aborted_stage=res.aborted.stage)
        self.emit(tag=tag, **line)

    def op_seats(self, tag: str, round_id: str) -> None:
        seats: dict[str, Any] = {}
        for path in Path(ROUNDS_DIR).glob(f"{round_id}.seat-*"):
            rest = path.name[len(round_id) + len(".seat-"):]
            cid, _, kind = rest.partition(".")
            entry = seats.setdefault(cid, {})
            try:
                text = path.read_text()
            except OSError:
                continue
            if kind == "":
                entry["holder"] = text.split(":")[0]
            elif kind == "held":
                entry["held"] = True
            elif kind == "json":
                entry["outcome"] = json.loads(text)
        self.emit(tag=tag, seats=seats)

    def op_reset(self, tag: str) -> None:
        if self.alice is not None:
            self.alice.close()
            self.alice = None
        self.emit(tag=tag, ok=True)

    def serve(self) -> int:
        for line in sys.stdin:
            if not line.strip():
                continue
            cmd = json.loads(line)
            op, tag = cmd.pop("op"), cmd.pop("tag")
            try:
                getattr(self, f"op_{op}")(tag, **cmd)
            except Exception as exc:  # an answer for every command: the drill must never wait for nothing
                self.emit(tag=tag, crashed=f"{type(exc).__name__}: {exc}"[:300])
        return 0


def serve_main(argv: list[str]) -> int:
    import logging
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    seed = argv[argv.index("--input-seed") + 1] if "--input-seed" in argv else "compose"
    return _Runner(seed).serve()


# ====================================================================== on the host: the cluster
def docker_sdk() -> Any:
    """The Docker SDK (``pip install 'mpcnet[drills]'``), imported by name: the repository's own ``docker/``
    directory (image files) would otherwise shadow it for type checkers."""
    import importlib
    try:
        sdk = importlib.import_module("docker")
    except ImportError:
        sdk = None
    if sdk is None or not hasattr(sdk, "from_env"):
        raise RuntimeError("the Docker SDK is not installed: pip install 'mpcnet[drills]' (make venv does)")
    return sdk


def compose_command() -> list[str]:
    """`docker compose` (v2 plugin) when present, else docker-compose 1.29+ (Debian's package)."""
    import shutil
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise RuntimeError("neither `docker compose` nor docker-compose is installed")


class DrillError(RuntimeError):
    pass


class ComposeCluster:
    """A compose project with the drills override, reached through the Docker SDK and the runner's pipe."""

    def __init__(self, project: str = PROJECT, seed: str = "compose", env: dict[str, str] | None = None) -> None:
        self.project, self.seed = project, seed
        self.docker = docker_sdk().from_env(timeout=60)
        self.cmd = compose_command()
        self.env = dict(os.environ, MPCNET_CLIENT_SEED=seed, MPCNET_CLUSTER_NAME=project, **(env or {}))
        self.started_here = False
        self.extra_files: list[str] = []
        self._runner: subprocess.Popen[str] | None = None
        self._replies: dict[str, "queue.Queue[dict[str, Any]]"] = {}
        self._lock = threading.Lock()

    # -- compose
    def compose(self, *args: str, timeout: float = 300, files: list[str] | None = None) -> str:
        fs = [x for f in (list(FILES) + self.extra_files if files is None else files) for x in ("-f", f)]
        out = subprocess.run([*self.cmd, "-p", self.project, *fs, *args], cwd=REPO_ROOT, env=self.env,
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise DrillError(f"compose {' '.join(args)}: {out.stderr[-1500:]}")
        return out.stdout

    def containers(self, service: str | None = None, all: bool = False) -> list[Any]:
        labels = [f"com.docker.compose.project={self.project}"]
        if service:
            labels.append(f"com.docker.compose.service={service}")
        return sorted(self.docker.containers.list(all=all, filters={"label": labels}), key=lambda c: c.name)

    def container(self, service: str) -> Any:
        found = self.containers(service, all=True)
        if not found:
            raise DrillError(f"no {service} container in compose project {self.project}")
        return found[0]

    def running(self) -> bool:
        return all(self.containers(s) for s in (*LONG_RUNNING, "drill-runner"))

    def up(self) -> float:
        """Start the project (or bring a running one to these files: compose recreates only what differs);
        returns the seconds until every role was healthy."""
        t0 = time.monotonic()
        self.started_here = not self.running()
        self.env.update(self.host_ports())
        self.compose("up", "-d", "--scale", f"client={CLIENTS}", timeout=600)
        self.wait_healthy(120)
        return time.monotonic() - t0

    def host_ports(self) -> dict[str, str]:
        """Host ports for the published ones: a running project keeps its own (so `up` recreates nothing for
        them), a new one gets free loopback ports (so it never collides with a cluster the user runs);
        variables the caller set win."""
        import socket
        out = {}
        for var, (service, port) in PORTS.items():
            if var in self.env:
                continue
            found = ""
            for c in self.containers(service):
                bound = (c.attrs["HostConfig"].get("PortBindings") or {}).get(f"{port}/tcp") or []
                found = bound[0].get("HostPort", "") if bound else ""
            if not found:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", 0))
                    found = str(sock.getsockname()[1])
            out[var] = found
        return out

    def wait_healthy(self, within_s: float, services: tuple[str, ...] = LONG_RUNNING) -> None:
        deadline = time.monotonic() + within_s
        while True:
            states = {}
            for s in (*services, "client"):
                for c in self.containers(s, all=True):
                    c.reload()
                    states[c.name] = c.attrs["State"].get("Health", {}).get("Status", c.status)
            if states and all(v == "healthy" for v in states.values()) and \
                    len(self.containers("client")) >= CLIENTS:
                return
            if time.monotonic() > deadline:
                raise DrillError(f"not healthy within {within_s:.0f} s: {states}")
            time.sleep(0.5)

    def down(self) -> None:
        self.close_runner()
        self.compose("down", "-v", "--remove-orphans", "--timeout", "10", timeout=300)

    # -- the runner pipe
    def runner(self) -> subprocess.Popen[str]:
        if self._runner is None or self._runner.poll() is not None:
            name = self.container("drill-runner").name
            self._runner = subprocess.Popen(
                ["docker", "exec", "-i", name, "python3", "-m", "mpcnet.drill_compose", "serve", "--input-seed",
                 self.seed], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                bufsize=1)
            threading.Thread(target=self._read, args=(self._runner,), daemon=True).start()
        return self._runner

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("{"):
                msg = json.loads(line)
                self._queue(msg.get("tag", "")).put(msg)

    def _queue(self, tag: str) -> "queue.Queue[dict[str, Any]]":
        with self._lock:
            return self._replies.setdefault(tag, queue.Queue())

    def send(self, op: str, **args: Any) -> str:
        tag = secrets.token_hex(6)
        self._queue(tag)
        proc = self.runner()
        assert proc.stdin is not None
        proc.stdin.write(json.dumps({"op": op, "tag": tag, **args}) + "\n")
        proc.stdin.flush()
        return tag

    def wait(self, tag: str, timeout: float, event: str | None = None) -> dict[str, Any]:
        """The next line for ``tag``: its answer, or the event ``event`` when given."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DrillError(f"the drill runner gave no answer within {timeout:.0f} s")
            try:
                msg = self._queue(tag).get(timeout=left)
            except queue.Empty:
                continue
            if "crashed" in msg:
                raise DrillError(f"drill runner: {msg['crashed']}")
            if event is None and "event" in msg:
                continue
            return msg

    def call(self, op: str, timeout: float = 90, **args: Any) -> dict[str, Any]:
        return self.wait(self.send(op, **args), timeout)

    def close_runner(self) -> None:
        if self._runner is not None and self._runner.poll() is None:
            assert self._runner.stdin is not None
            self._runner.stdin.close()
            try:
                self._runner.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._runner.kill()
        self._runner = None

    # -- reading files out of containers (running or stopped)
    def read_file(self, service: str, path: str) -> str:
        try:
            stream, _ = self.container(service).get_archive(path)
        except docker_sdk().errors.NotFound:
            return ""
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            fh = tar.extractfile(member) if member is not None else None
            return fh.read().decode() if fh is not None else ""

    def consumed_batches(self) -> dict[str, list[str]]:
        out = {}
        for i in (1, 2, 3):
            text = self.read_file(f"node{i}", f"{STATE_DIR}/node{i}-consumed-batches.jsonl")
            out[f"node{i}"] = [json.loads(line)["batch_id"] for line in text.splitlines() if line.strip()]
        return out

    def root_exec(self, service: str, *cmd: str) -> tuple[int, str]:
        res = self.container(service).exec_run(list(cmd), user="root")
        return int(res.exit_code), res.output.decode(errors="replace").strip()

    def network(self) -> Any:
        nets = self.docker.networks.list(filters={"label": [f"com.docker.compose.project={self.project}"]})
        if not nets:
            raise DrillError(f"no network of compose project {self.project}")
        return nets[0]


# ====================================================================== on the host: the scenarios
class ComposeDrill:
    def __init__(self, cluster: ComposeCluster, quick: bool) -> None:
        self.c = cluster
        self.quick = quick
        self._netem: bool | None = None

    # -- MPC jobs through the runner
    def job(self, n: int = 20_000, on_shared: Callable[[], None] | None = None, ids: list[str] | None = None,
            timeout: float = 120) -> tuple[bool, str, float]:
        tag = self.c.send("job", n=n)
        if on_shared is not None:
            first = self.c.wait(tag, timeout, event="shared")
            if first.get("event") == "shared":
                if ids is not None:
                    ids.append(first["job"])
                on_shared()
                res = self.c.wait(tag, timeout)
            else:
                res = first
        else:
            res = self.c.wait(tag, timeout)
        if ids is not None and res.get("job") and res["job"] not in ids:
            ids.append(res["job"])
        return bool(res["exact"]), str(res["err"]), float(res["seconds"])

    def recovered_job(self, within_s: float = 40.0) -> tuple[bool, str]:
        return until_exact(self.job, within_s, pause_s=0.3)

    def no_batch_twice(self) -> bool:
        return all(len(ids) == len(set(ids)) for ids in self.c.consumed_batches().values())

    def baseline(self) -> float:
        self.recovered_job()
        return min(self.job(n=200_000)[2] for _ in range(2))

    # -- SecAgg through the runner and the agents
    def round(self, n: int, t: int, **kw: Any) -> str:
        res = self.c.call("round_create", n=n, t=t, **kw)
        if "round_id" not in res:
            raise DrillError(f"CreateRound refused: {res.get('error_code')}: {res.get('err')}")
        return str(res["round_id"])

    def result(self, rid: str) -> dict[str, Any]:
        return self.c.call("round_result", timeout=30, round_id=rid)

    def seats(self, rid: str) -> dict[str, Any]:
        return dict(self.c.call("seats", timeout=30, round_id=rid)["seats"])

    def wait_round(self, rid: str, within_s: float, watch_stage: str | None = None,
                   since: float | None = None) -> tuple[dict[str, Any], float | None]:
        """Poll until the round ends; also when it first left ``watch_stage`` (after ``since``)."""
        deadline = time.monotonic() + within_s
        left_at = None
        while True:
            res = self.result(rid)
            if watch_stage and left_at is None and (res["state"] != "running" or res["stage"] != watch_stage):
                left_at = time.monotonic()
            if res["state"] not in ("running", "unreachable") or time.monotonic() > deadline:
                return res, None if left_at is None or since is None else max(0.0, left_at - since)
            time.sleep(0.05)

    def wait_seats(self, rid: str, want: Callable[[dict[str, Any]], bool], within_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + within_s
        while True:
            seats = self.seats(rid)
            if want(seats) or time.monotonic() > deadline:
                return seats
            time.sleep(0.1)

    def agent(self, hostname: str) -> Any:
        for c in self.c.containers("client", all=True):
            if c.id.startswith(hostname) or c.attrs["Config"]["Hostname"] == hostname:
                return c
        raise DrillError(f"no client container with hostname {hostname}")

    def agents_idle(self, within_s: float = 60) -> None:
        """Every agent container runs and is healthy (none still busy in an old round is checked by seats)."""
        for c in self.c.containers("client", all=True):
            c.reload()
            if c.status != "running":
                c.start()
        self.c.wait_healthy(within_s, services=())

    def secagg_kill(self, stage: str, extra: bool) -> Verdict:
        n, t = CLIENTS, 4
        kills = n - t + (1 if extra else 0)
        dying = list(range(n - kills + 1, n + 1))
        self.agents_idle()
        rid = self.round(n, t, hold={"stage": stage, "seats": dying, "max_s": 60})
        seats = self.wait_seats(rid, lambda s: all(s.get(str(d), {}).get("held") for d in dying), 60)
        fault = f"docker kill {kills} of {n} agents (t={t}) held at {stage}"
        held = [d for d in dying if seats.get(str(d), {}).get("held")]
        if len(held) != len(dying):
            return Verdict("secagg-kill-clients", fault, "", f"only seats {held} of {dying} reached {stage}",
                           None, None, False)
        victims = [self.agent(seats[str(d)]["holder"]) for d in dying]
        for v in victims:
            v.kill()
        t_fault = time.monotonic()
        res, detect = self.wait_round(rid, 90, watch_stage=stage, since=t_fault)
        end = time.monotonic()
        for v in victims:
            v.start()
        if res["state"] == "running":
            return Verdict("secagg-kill-clients", fault, "", "round still running after 90 s (HANG)", None, None,
                           False)
        if not extra:
            expected = "exact sum of the included clients"
            ok = res["state"] == "done" and res["exact"] and set(res["dropped"]) <= set(dying) and \
                set(range(1, n - kills + 1)) <= set(res["included"])
            observed = (f"done, {'exact' if res.get('exact') else 'WRONG'} sum of {len(res['included'])} included; "
                        f"dropped {res['dropped']}") if res["state"] == "done" else str(res["state"])
        else:
            expected = f"clean abort naming {stage}"
            reason = str(res.get("reason", ""))
            ok = res["state"] == "aborted" and stage in (str(res.get("aborted_stage")) + " " + reason)
            observed = f"{res['state']}: {reason[:90]}" if reason else str(res["state"])
        return Verdict("secagg-kill-clients", fault, expected, observed,
                       None if detect is None else round(detect, 3), round(end - t_fault, 3), ok)

    # -- node faults
    def node_fault(self, kind: str) -> Verdict:
        node = self.c.container("node2")
        net = self.c.network()
        timer: dict[str, float] = {}
        actions = {"node-kill": ("docker kill node2 mid-job (200k elements)", node.kill, node.start),
                   "node-pause": ("docker pause node2 mid-job (200k elements)", node.pause, node.unpause),
                   "node-partition": ("docker network disconnect node2 mid-job (200k elements), then reconnect",
                                      lambda: net.disconnect(node, force=True),
                                      lambda: net.connect(node, aliases=["node2"]))}
        fault, hit, heal = actions[kind]

        def later() -> None:
            time.sleep(0.05)
            timer["fault"] = time.monotonic()  # before the call: the fault lands while the SDK call returns
            hit()

        self.recovered_job()
        healed = False
        try:
            exact, err, _ = self.job(n=200_000, on_shared=lambda: threading.Thread(target=later, daemon=True).start())
            t_err = time.monotonic()
            time.sleep(0.2)  # the fault thread has run
            heal()
            healed = True
            again, err2 = self.recovered_job()
            t_ok = time.monotonic()
        finally:
            if not healed:
                try:
                    heal()
                except Exception:  # the cleanup of a drill that already failed
                    pass
        fault_t = timer.get("fault", t_err)
        return node_fault_verdict(kind, fault, exact, err, again, err2, self.no_batch_twice(), t_err - fault_t,
                                  t_ok - fault_t)

    def dealer_restart(self) -> Verdict:
        self.recovered_job()
        before = {b for ids in self.c.consumed_batches().values() for b in ids}
        dealer = self.c.container("dealer")
        dealer.kill()
        t_fault = time.monotonic()
        dealer.start()
        exact, err = self.recovered_job()
        t_ok = time.monotonic()
        return dealer_verdict("docker kill the dealer, docker start it", exact, err, before,
                              self.c.consumed_batches(), self.no_batch_twice(), t_ok - t_fault)

    def coordinator_back(self, within_s: float = 60) -> None:
        deadline = time.monotonic() + within_s
        while self.result("no-such-round")["state"] == "unreachable":
            if time.monotonic() > deadline:
                raise DrillError(f"the coordinator did not answer within {within_s:.0f} s of its restart")
            time.sleep(0.2)

    def coordinator_restart(self) -> Verdict:
        problems: list[str] = []
        self.agents_idle()
        ids: list[str] = []
        exact, err, _ = self.job(ids=ids)
        z_before = self.c.call("job_info", job=ids[0]).get("z_hash") if exact else None
        r1 = self.round(CLIENTS, 4)
        before, _ = self.wait_round(r1, 60)
        r2 = self.round(CLIENTS + 2, 4, join_s=60.0)  # two seats nobody takes: the round waits at advertise_keys
        self.wait_seats(r2, lambda s: sum(1 for v in s.values() if "holder" in v) >= CLIENTS, 30)
        time.sleep(1.0)
        if self.result(r2)["state"] != "running":
            problems.append("round 2 was not running before the kill")
        coord = self.c.container("coordinator")
        coord.kill()
        t_fault = time.monotonic()
        seats = self.wait_seats(r2, lambda s: sum(1 for v in s.values() if "outcome" in v) >= CLIENTS, 60)
        t_clients = time.monotonic()
        states = {v["outcome"]["state"] for v in seats.values() if "outcome" in v}
        if states != {"error"} or sum(1 for v in seats.values() if "outcome" in v) < CLIENTS:
            problems.append(f"round 2's agents ended {sorted(states)}, not all with a clean error")
        coord.start()
        self.coordinator_back()
        after1, after2 = self.result(r1), self.result(r2)
        if before["state"] != "done" or after1.get("sum_hash") != before.get("sum_hash"):
            problems.append("round 1's result changed or was lost")
        if after2["state"] != "aborted" or "restarted" not in str(after2.get("reason")):
            problems.append(f"round 2 is {after2['state']}, not aborted for the restart")
        again_r1 = self.c.call("round_create", n=4, t=3, round_id=r1, tokens=False)
        if again_r1.get("error_code") != "ALREADY_EXISTS":
            problems.append(f"re-creating round 1 gave {again_r1}")
        info = self.c.call("job_info", job=ids[0])
        if info["state"] != "done" or z_before is None or info.get("z_hash") != z_before:
            problems.append(f"job {ids[0]} is {info['state']} after the restart, or its output changed")
        again, err2 = self.recovered_job()
        t_ok = time.monotonic()
        if not again:
            problems.append(f"the next job failed: {err2[:80]}")
        return restart_verdict("docker kill the coordinator during a half-joined round, docker start", problems,
                               t_clients - t_fault, t_ok - t_fault)

    def kill_loop(self, service: str, times: int) -> Verdict:
        ids: list[str] = []
        outcomes: list[tuple[bool, str]] = []
        problems: list[str] = []
        recover: list[float] = []
        target = self.c.container(service)
        for _ in range(times):
            tag = self.c.send("job", n=100_000)
            time.sleep(secrets.randbelow(400) / 1000.0)  # a random point: before, during or after the job
            target.kill()
            t_fault = time.monotonic()
            target.start()
            try:
                res = self.c.wait(tag, 120)
            except DrillError:
                problems.append("a job hung across the kill")
                break
            outcomes.append((bool(res["exact"]), str(res["err"])))
            if res.get("job"):
                ids.append(res["job"])
            if service == "coordinator":
                self.coordinator_back()
            exact, err = self.recovered_job()
            recover.append(time.monotonic() - t_fault)
            if not exact:
                problems.append(f"the job after the restart failed: {err[:60]}")
        for j in ids:
            if self.c.call("job_info", job=j)["state"] in ("running", "error"):
                problems.append(f"job {j} is still running or unknown after the restart")
        if not self.no_batch_twice():
            problems.append("a triple batch was consumed twice")
        return kill_loop_verdict(service, f"docker kill the {service} {times}x at random points of running jobs",
                                 outcomes, problems, recover)

    # -- network shaping
    def netem(self) -> bool:
        if self._netem is None:
            dev = self.iface("node1")
            rc, _ = self.c.root_exec("node1", "tc", "qdisc", "add", "dev", dev, "root", "netem", "delay", "1ms")
            if rc == 0:
                self.c.root_exec("node1", "tc", "qdisc", "del", "dev", dev, "root")
            self._netem = rc == 0
        return self._netem

    def shaped(self, scenario: str, fault: str, apply: Callable[[], None], undo: Callable[[], None]) -> Verdict:
        baseline = self.baseline()
        try:
            apply()
            # a warm-up job under the fault: recreated nodes are found again by their peers' channels first
            warm, err = self.recovered_job()
            exact, err, took = self.job(n=200_000, timeout=300) if warm else (False, err, 0.0)
        finally:
            undo()
        t0 = time.monotonic()
        again, err2 = self.recovered_job()
        recover = time.monotonic() - t0
        observed = ("exact" if exact else f"FAILED: {err[:90]}") + \
            f" in {took:.2f} s (baseline {baseline:.2f} s, x{took / max(baseline, 1e-9):.1f}); " \
            f"after the fault is gone: {'exact' if again else err2[:60]}"
        return Verdict(scenario, fault, "exact result, slower", observed, None, round(recover, 3),
                       exact and again and self.no_batch_twice())

    def iface(self, service: str) -> str:
        """The container's interface on the compose network (eth0 at first; a reconnect renames it)."""
        rc, out = self.c.root_exec(service, "ip", "-o", "-4", "addr", "show")
        names = [line.split()[1].split("@")[0] for line in out.splitlines() if len(line.split()) > 1]
        found = [n for n in names if n != "lo"]
        if rc != 0 or not found:
            raise DrillError(f"no network interface in {service}: {out[:200]}")
        return found[0]

    def tc_all(self, *args: str, nodes: tuple[int, ...] = (1, 2, 3)) -> None:
        for i in nodes:
            rc, out = self.c.root_exec(f"node{i}", "tc", args[0], args[1], "dev", self.iface(f"node{i}"), *args[2:])
            if rc != 0:
                raise DrillError(f"tc {' '.join(args)} in node{i}: {out}")

    def tc_clear(self, nodes: tuple[int, ...] = (1, 2, 3)) -> None:
        for i in nodes:
            self.c.root_exec(f"node{i}", "tc", "qdisc", "del", "dev", self.iface(f"node{i}"), "root")

    def latency(self) -> Verdict:
        if self.netem():
            return self.shaped("latency", "tc netem delay 100ms 20ms on every node",
                               lambda: self.tc_all("qdisc", "add", "root", "netem", "delay", "100ms", "20ms"),
                               self.tc_clear)
        schedule = {"seed": "drill-latency", "rules": [{"method": "/mpcnet.v1.Node/Exchange", "action": "delay",
                                                        "delay_s": 0.1, "jitter_s": 0.02}]}
        override = Path(tempfile.mkdtemp(prefix="mpcnet-drill-")) / "faults.yml"
        override.write_text("services:\n" + "".join(
            f"  node{i}:\n    environment:\n      MPCNET_FAULTS: '{json.dumps(schedule)}'\n" for i in (1, 2, 3)))

        def recreate(files: list[str]) -> None:
            self.c.extra_files = files
            self.c.compose("up", "-d", "--no-deps", "node1", "node2", "node3")
            self.c.wait_healthy(120)

        return self.shaped("latency", "openings of every node 100 +- 20 ms late (no sch_netem in this kernel: the "
                           "in-process fault layer, nodes recreated with MPCNET_FAULTS)",
                           lambda: recreate([str(override)]), lambda: recreate([]))

    def packet_loss(self) -> Verdict:
        if self.netem():
            return self.shaped("packet-loss", "tc netem loss 5% on every node",
                               lambda: self.tc_all("qdisc", "add", "root", "netem", "loss", "5%"),
                               self.tc_clear)

        def apply() -> None:
            for i in (1, 2, 3):
                for rule in (["add", "table", "inet", "drill"],
                             ["add", "chain", "inet", "drill", "loss", "{ type filter hook input priority 0 ; }"],
                             ["add", "rule", "inet", "drill", "loss", "meta", "l4proto", "tcp", "numgen", "random",
                              "mod", "100", "<", "5", "drop"]):
                    rc, out = self.c.root_exec(f"node{i}", "nft", *rule)
                    if rc != 0:
                        raise DrillError(f"nft {' '.join(rule)} in node{i}: {out}")

        def undo() -> None:
            for i in (1, 2, 3):
                self.c.root_exec(f"node{i}", "nft", "delete", "table", "inet", "drill")

        return self.shaped("packet-loss", "5% of the TCP packets every node receives dropped (nftables numgen; no "
                           "sch_netem in this kernel)", apply, undo)

    def bandwidth(self) -> Verdict:
        return self.shaped("bandwidth", "node 2 sends at most 20 Mbit/s (tc tbf)",
                           lambda: self.tc_all("qdisc", "add", "root", "tbf", "rate", "20mbit", "burst", "64kb",
                                               "latency", "400ms", nodes=(2,)),
                           lambda: self.tc_clear(nodes=(2,)))

    # -- partitions of clients, broker outage
    def client_partition(self) -> Verdict:
        n, t, stage = CLIENTS, 4, "masked_input_collection"
        cut = [n - 1, n]
        self.agents_idle()
        net = self.c.network()
        rid = self.round(n, t, stage_s=5.0, hold={"stage": stage, "seats": cut, "max_s": 3})
        seats = self.wait_seats(rid, lambda s: all(s.get(str(d), {}).get("held") for d in cut), 60)
        fault = f"docker network disconnect {len(cut)} of {n} agents (t={t}) at {stage}, then reconnect"
        victims = [self.agent(seats[str(d)]["holder"]) for d in cut if "holder" in seats.get(str(d), {})]
        if len(victims) != len(cut):
            return Verdict("client-partition", fault, "", f"the seats {cut} were not held at {stage}", None, None,
                           False)
        for v in victims:
            net.disconnect(v, force=True)
        t_fault = time.monotonic()
        try:
            res, detect = self.wait_round(rid, 90, watch_stage=stage, since=t_fault)
            # heal once the cut agents gave up on the round (their calls have deadlines)
            self.wait_seats(rid, lambda s: all("outcome" in s.get(str(d), {}) for d in cut), 60)
        finally:
            for v in victims:
                net.connect(v)
        r2 = self.round(n, t)
        res2, _ = self.wait_round(r2, 90)
        t_ok = time.monotonic()
        first_ok = res["state"] == "done" and res.get("exact") and set(res["dropped"]) == set(cut)
        second_ok = res2["state"] == "done" and res2.get("exact") and res2["included"] == list(range(1, n + 1))
        observed = (f"{res['state']}, {'exact' if res.get('exact') else 'NOT exact'} sum of {res.get('included')}, "
                    f"dropped {res.get('dropped')}; after the heal: {res2['state']} with "
                    f"{len(res2.get('included', []))} of {n} included, {'exact' if res2.get('exact') else 'NOT exact'}")
        return Verdict("client-partition", fault, "the cut clients are dropouts, exact sum of the rest; after the "
                       "heal a round with everyone is exact", observed, None if detect is None else round(detect, 3),
                       round(t_ok - t_fault, 3), bool(first_ok and second_ok))

    def broker_outage(self) -> Verdict:
        broker = self.c.container("broker")
        self.agents_idle()
        baseline = self.baseline()
        broker.kill()
        t_fault = time.monotonic()
        problems: list[str] = []
        try:
            exact, err, took = self.job(n=200_000)
            if not exact:
                problems.append(f"the job during the outage failed: {err[:80]}")
            r1 = self.round(CLIENTS, 4)
            res1, _ = self.wait_round(r1, 90)
            if res1["state"] != "done" or not res1.get("exact"):
                problems.append(f"the round during the outage: {res1['state']}")
        finally:
            broker.start()
        self.c.wait_healthy(60, services=("broker",))
        t_back = time.monotonic()
        # a subscriber from the runner container: does the next round's result reach the broker again?
        runner = self.c.container("drill-runner").name
        deadline = time.monotonic() + 60
        got = False
        while not got and time.monotonic() < deadline:
            rid = f"after-outage-{secrets.token_hex(3)}"
            watch = subprocess.Popen(["docker", "exec", runner, "mpcnet", "watch", "--mqtt", "broker:1883",
                                      "--cluster-name", self.c.project, "--round", rid, "--json", "--duration", "40"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            time.sleep(2.0)  # subscribed before the round starts
            self.round(CLIENTS, 4, round_id=rid)
            self.wait_round(rid, 60)
            try:
                out, _ = watch.communicate(timeout=45)
            except subprocess.TimeoutExpired:
                watch.kill()
                out, _ = watch.communicate()
            topics = [json.loads(line).get("topic", "") for line in out.splitlines() if line.startswith("{")]
            got = any(t.endswith(f"rounds/{rid}/result") for t in topics)
        t_events = time.monotonic()
        if not got:
            problems.append("no round result event reached a subscriber within 60 s of the broker's return")
        observed = (f"during the outage: job exact in {took:.2f} s (baseline {baseline:.2f} s), round exact; broker "
                    f"healthy {t_back - t_fault:.1f} s after the kill; the next round's result event arrived"
                    if not problems else "; ".join(problems))
        return Verdict("broker-outage", "docker kill the MQTT broker; docker start it",
                       "computation unaffected; events resume", observed, None, round(t_events - t_fault, 3),
                       not problems)

    def scenarios(self) -> dict[str, Callable[[], list[Verdict]]]:
        stages = ("share_keys",) if self.quick else STAGES
        return {
            "secagg-kill-clients": lambda: [self.secagg_kill(s, extra) for s in stages for extra in (False, True)],
            "node-kill": lambda: [self.node_fault("node-kill")],
            "node-pause": lambda: [self.node_fault("node-pause")],
            "node-partition": lambda: [self.node_fault("node-partition")],
            "client-partition": lambda: [self.client_partition()],
            "dealer-restart": lambda: [self.dealer_restart()],
            "coordinator-restart": lambda: [self.coordinator_restart()],
            "kill-loop": lambda: [self.kill_loop("coordinator", 2 if self.quick else 5),
                                  self.kill_loop("dealer", 2 if self.quick else 5)],
            "latency": lambda: [self.latency()],
            "packet-loss": lambda: [self.packet_loss()],
            "bandwidth": lambda: [self.bandwidth()],
            "broker-outage": lambda: [self.broker_outage()],
        }


QUICK = ("secagg-kill-clients", "node-kill", "node-partition", "client-partition", "coordinator-restart",
         "packet-loss", "bandwidth", "broker-outage")


def run_compose_drills(names: list[str], quick: bool = False, out_dir: str | None = None, project: str = PROJECT,
                       keep: bool = False, env: dict[str, str] | None = None) -> int:
    from rich.console import Console
    console = Console(width=max(Console().width, 160))
    t0 = time.monotonic()
    cluster = ComposeCluster(project, env=env)
    probe = ComposeDrill(cluster, quick)
    table = probe.scenarios()
    unknown = [n for n in names if n != "all" and n not in table]
    if unknown:
        console.print(f"[red]unknown scenario(s) {unknown}[/]; known: {', '.join(table)}")
        return 2
    chosen = [n for n in table if (n in QUICK or not quick)] if "all" in names or not names else names
    verdicts: list[Verdict] = []
    try:
        with console.status(f"compose project {project}: up ..."):
            took = cluster.up()
        console.print(f"compose project {project}: healthy in {took:.1f} s "
                      f"({'started by this drill' if cluster.started_here else 'already running'})")
        verdicts = run_set(console, table, chosen)
    finally:
        cluster.close_runner()
        if cluster.started_here and not keep:
            with console.status(f"compose project {project}: down ..."):
                cluster.down()
    return report(console, verdicts, quick, out_dir, f"compose drills ({project})", time.monotonic() - t0,
                  prefix="drill-compose")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        sys.exit(serve_main(sys.argv[2:]))
    print("usage: python3 -m mpcnet.drill_compose serve [--input-seed SEED]  (inside the drill-runner container)",
          file=sys.stderr)
    sys.exit(2)
