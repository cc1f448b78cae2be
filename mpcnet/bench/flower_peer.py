"""Flower (``flwr`` 1.42) SecAgg+ peer for ``mpcnet bench secagg``, and its launcher.

This file is two things:

* the **peer program** (needs ``flwr==1.42.*`` and ``numpy`` only; imports
  nothing from mpcnet, so it runs in a separate venv)::

      python path/to/mpcnet/bench/flower_peer.py --clients 100 --dim 100000 \\
          --dropout 0.1 --graph sparse [--seed S]

  (``python -m mpcnet.bench.flower_peer ...`` works too when ``mpcnet`` is on
  ``sys.path``: ``mpcnet/__init__`` is lazy and imports nothing heavy).  It runs
  ONE SecAgg+ round in one process and prints exactly one JSON line on stdout
  (Flower's own log lines go to stderr).  Exit status 0 iff the aggregate
  matches numpy; 1 on mismatch or if Flower aborted the round;

* the **launcher** :func:`run_flower_benchmark`, importable from mpcnet without
  flwr: it runs the peer as a subprocess with a given interpreter (by file
  path, so the child never imports the ``mpcnet`` package) and returns the dict.

What is Flower code and what is glue
------------------------------------
Flower code, called unmodified (every computation of the protocol):

* server: ``flwr.server.workflow.SecAggPlusWorkflow`` -- its four per-stage
  methods ``setup_stage``, ``share_keys_stage``,
  ``collect_masked_vectors_stage``, ``unmask_stage`` are called in order on one
  ``WorkflowState`` (exactly what ``SecAggPlusWorkflow.__call__`` does; called
  one by one only to time each stage and to pick the dropouts after setup).
  They build the ring neighbour graph, route the encrypted key shares, sum the
  masked vectors, ``combine_shares`` (Shamir via PyCryptodome), regenerate
  private and pairwise masks (``pseudo_rand_gen``), ECDH for dropped clients,
  ``dequantize``;
* client: ``flwr.client.mod.secaggplus_mod`` (the SecAgg+ client mod) on a
  per-client ``Context`` -- key generation, ``create_shares``, Fernet
  encryption of shares, ``quantize`` (stochastic rounding), masking, unmask
  share selection; its ``call_next`` is Flower's legacy ClientApp handler
  ``handle_legacy_message_from_msgtype`` around a ``NumPyClient`` whose
  ``fit`` returns the client's precomputed float vector;
* messages: ``flwr.app.Message`` / ``RecordDict`` / ``ConfigRecord`` as built by
  the workflow and the mod; bytes are counted with Flower's own protobuf
  serialisation ``flwr.common.serde.message_to_proto(msg).ByteSize()``.

Glue (this file):

* ``_InProcessGrid`` -- a ``flwr.serverapp.Grid`` whose ``send_and_receive``
  stamps message ids the way Flower's ``InMemoryGrid`` does and calls each
  destination client's mod directly, sequentially, in this process (no
  SuperLink, no SuperNode, no simulation engine, no network, no
  serialisation on the timed path);
* dropout: after ``setup_stage`` a seeded draw picks ``round(P*N)`` clients;
  the grid delivers nothing to them from the collect-masked-vectors stage on
  (they "drop after ShareKeys": they never send a masked input).  The draw is
  repeated (up to 10,000 times, count reported) until every client's closed
  neighbourhood keeps >= threshold survivors, i.e. a dropout pattern Flower's
  ``_check_threshold`` accepts -- otherwise Flower (correctly) aborts;
* ``LegacyContext`` with a ``SimpleClientManager`` holding one
  ``GridClientProxy`` per node (what Flower's ``DefaultWorkflow`` does) and a
  ``FedAvg`` with ``fraction_fit=1`` so every client is sampled; its
  ``aggregate_fit`` is overridden to return the securely aggregated vector
  as-is (FedAvg would re-average N identical copies -- not SecAgg+ work);
  the global model sent in FitIns is empty (the benchmark measures the secure
  sum, not model download);
* timing, RSS, the numpy check.

Parameters (Flower's SecAgg+ defaults where Flower has them)
------------------------------------------------------------
* ``SecAggPlusWorkflow`` defaults: ``clipping_range=8.0``,
  ``quantization_range=2**22``, ``modulus_range=2**32``, ``max_weight=1000``.
  Every client reports ``num_examples = max_weight`` so the weighting factor
  is exactly 1 and the aggregate is the plain mean over surviving clients.
* ``num_shares`` (Flower's neighbourhood size, the client included): Flower
  has no default (it is a required argument; its example app uses 3).
  ``--graph sparse``: ``2*ceil(log2 N) + 1`` (capped at N) -- the SecAgg+
  O(log n) neighbourhood, identical to mpcnet's default degree
  ``2*ceil(log2 n)`` plus the client itself (odd, as Flower wants).
  ``--graph full``: ``num_shares = N`` (complete graph).  ``--num-shares``
  overrides.
* ``reconstruction_threshold``: Flower has no default either; its example uses
  2 of 3, so the ratio 2/3 is passed as a float (Flower computes
  ``max(2, round(2/3 * num_shares))``).  ``--threshold-ratio`` overrides.

Inputs: ``BenchData(seed)`` (benchdata.py, SHAKE-256); each client's vector
is its stream of ``dim`` floats in [-1, 1).  Flower's own randomness
(stochastic rounding, ring shuffle) is left to Flower, unseeded.  Correctness: the aggregate must
equal the numpy mean over survivors within one quantisation step
``2*clipping_range/quantization_range`` (per-element stochastic rounding error
< 1 step per client).

Output fields: ``round_s`` = wall time of the four stages with clients run
sequentially in-process (= ``server_s`` + sum of client time);
``round_s_parallel_clients`` = ``server_s`` + sum over stages of the slowest
client in that stage (what a deployment with one machine per client would
see, network excluded); ``server_s`` = stage time minus client time;
``client_s_mean`` / ``client_s_max`` over all clients (dropped clients
included, they do 2 of the 4 stages); ``bytes_per_client`` = mean protobuf
bytes per client, both directions, all stages (``bytes_up_per_client``,
``bytes_down_per_client`` split it); ``peak_rss_mb`` = ``ru_maxrss`` of this
one process, which holds the server and all N clients.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:
    from mpcnet.bench.benchdata import BenchData
except ImportError:  # run as a script path (e.g. in the Flower venv): this folder is on sys.path
    from benchdata import BenchData  # type: ignore[no-redef]

__all__ = ["run_flower_benchmark", "main"]

DEFAULT_SEED = 20261124
THRESHOLD_RATIO = 2 / 3


# --------------------------------------------------------------------------- launcher (no flwr import)
def run_flower_benchmark(clients: int, dim: int, dropout: float, graph: str, python: str = sys.executable,
                         timeout_s: float = 600.0, seed: int | None = None,
                         extra_args: list[str] | None = None) -> dict[str, Any]:
    """Run the Flower SecAgg+ peer with interpreter ``python``; return its JSON dict.

    The child is started by file path (never ``-m mpcnet...``) in a temporary
    working directory, so it imports neither mpcnet nor anything of this repo.
    Raises RuntimeError (with the tail of stderr) on timeout (the child's whole
    process group is killed), non-zero exit, or missing/invalid JSON.  A
    result with ``"correct": false`` comes back as a RuntimeError too.
    """
    if graph not in ("sparse", "full"):
        raise ValueError(f"graph must be 'sparse' or 'full', not {graph!r}")
    cmd = [python, str(Path(__file__).resolve()), "--clients", str(int(clients)), "--dim", str(int(dim)),
           "--dropout", repr(float(dropout)), "--graph", graph]
    if seed is not None:
        cmd += ["--seed", str(int(seed))]
    cmd += list(extra_args or [])
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    with tempfile.TemporaryDirectory(prefix="flwr-bench-") as tmp:
        out_path, err_path = Path(tmp) / "out", Path(tmp) / "err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            try:
                proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        start_new_session=True)
            except OSError as exc:
                raise RuntimeError(f"flwr peer: cannot start {python}: {exc}") from exc
            try:
                rc = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise RuntimeError(f"flwr peer timed out after {timeout_s:.0f} s: {' '.join(cmd)}\n"
                                   f"{_tail(err_path)}") from None
            finally:
                if proc.poll() is None:
                    _kill_group(proc)
        lines = [ln for ln in out_path.read_text(errors="replace").splitlines() if ln.strip()]
        result: dict[str, Any] | None = None
        if lines:
            try:
                result = json.loads(lines[-1])
            except json.JSONDecodeError:
                result = None
        if rc != 0 or result is None:
            raise RuntimeError(f"flwr peer failed (exit {rc}): {' '.join(cmd)}\n"
                               f"stdout: {lines[-1][:500] if lines else ''}\n{_tail(err_path)}")
        return result


def _kill_group(proc: "subprocess.Popen[bytes]") -> None:
    try:
        os.killpg(proc.pid, 9)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


# --------------------------------------------------------------------------- peer (imports flwr lazily)
def default_num_shares(n: int, graph: str) -> int:
    if graph == "full":
        return n
    return min(n, 2 * math.ceil(math.log2(n)) + 1)


def run_round(clients: int, dim: int, dropout: float, graph: str, seed: int,
              num_shares: int | None = None, threshold_ratio: float = THRESHOLD_RATIO) -> dict[str, Any]:
    import resource

    import numpy as np

    import flwr
    from flwr.app import Context, Message, RecordDict
    from flwr.client import NumPyClient
    from flwr.client.message_handler.message_handler import handle_legacy_message_from_msgtype
    from flwr.client.mod import secaggplus_mod
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
    from flwr.common.serde import message_from_proto, message_to_proto
    from flwr.compat.common import recorddict_compat as compat
    from flwr.server import ServerConfig
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.compat.grid_client_proxy import GridClientProxy
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import SecAggPlusWorkflow
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
    from flwr.server.workflow.constant import Key as WorkflowKey
    from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState
    from flwr.serverapp import Grid
    from flwr.supercore.task_identity import TaskIdentity

    if clients < 3:
        raise ValueError("need at least 3 clients")
    if not 0 <= dropout < 1:
        raise ValueError("dropout must be in [0, 1)")
    n_drop = int(round(dropout * clients))
    wf_num_shares: int | float
    ns = num_shares if num_shares is not None else default_num_shares(clients, graph)
    # Flower: an int num_shares must be > 2 (1 means "all"); full graph == num_shares N.
    wf_num_shares = ns
    max_weight = 1000.0
    workflow = SecAggPlusWorkflow(num_shares=wf_num_shares, reconstruction_threshold=float(threshold_ratio),
                                  max_weight=max_weight)
    clip, qrange = workflow.clipping_range, workflow.quantization_range
    if clients > workflow.modulus_range // qrange:
        print(f"warning: {clients} clients may overflow modulus_range/quantization_range "
              f"= {workflow.modulus_range // qrange}", file=sys.stderr)

    # what Flower's ServerApp runtime sets before a workflow runs (server/compat/app.py)
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = 1
    TaskIdentity.node_id = SUPERLINK_NODE_ID

    data = BenchData(seed)
    node_ids: list[int] = []
    seen: set[int] = set()
    while len(node_ids) < clients:  # Flower node ids: random positive 63-bit ints
        nid = int(data.integers(f"node-id/{len(seen)}", 2, 2**63 - 1, 1)[0])
        if nid not in seen:
            seen.add(nid)
            node_ids.append(nid)
    vectors = {nid: data.uniform(f"vector/{nid}", -1.0, 1.0, dim) for nid in node_ids}

    # ---- client side: one Context per node, Flower's legacy ClientApp path behind secaggplus_mod
    class _VecClient(NumPyClient):  # type: ignore[misc]
        def __init__(self, vec: Any) -> None:
            self.vec = vec

        def fit(self, parameters: Any, config: Any) -> Any:
            return [self.vec], int(max_weight), {}

    contexts = {nid: Context(run_id=1, node_id=nid, node_config={}, state=RecordDict(), run_config={})
                for nid in node_ids}

    def call_next_for(nid: int) -> Any:
        def client_fn(context: Context) -> Any:
            return _VecClient(vectors[nid]).to_client()

        def call_next(msg: Message, ctxt: Context) -> Message:
            return handle_legacy_message_from_msgtype(client_fn, msg, ctxt)
        return call_next

    call_nexts = {nid: call_next_for(nid) for nid in node_ids}

    stages = [Stage.SETUP, Stage.SHARE_KEYS, Stage.COLLECT_MASKED_VECTORS, Stage.UNMASK]
    client_time = {nid: 0.0 for nid in node_ids}
    client_stage_time: dict[str, dict[int, float]] = {st: {} for st in stages}  # stage -> nid -> s
    bytes_up = {nid: 0 for nid in node_ids}
    bytes_down = {nid: 0 for nid in node_ids}
    overhead = {"count_s": 0.0}
    dropped: set[int] = set()

    class _InProcessGrid(Grid):  # type: ignore[misc]
        """Delivers each message to its client's secaggplus_mod, in this process, sequentially."""

        def set_run(self, run: Any) -> None:
            self._run = run

        @property
        def run(self) -> Any:
            return getattr(self, "_run", None)

        def create_message(self, content: Any, message_type: str, dst_node_id: int, group_id: str,
                           ttl: float | None = None) -> Message:
            return Message(content=content, dst_node_id=dst_node_id, message_type=message_type,
                           group_id=group_id, ttl=ttl)

        def get_node_ids(self) -> list[int]:
            return list(node_ids)

        def push_messages(self, messages: Any) -> Any:
            raise NotImplementedError

        def pull_messages(self, message_ids: Any) -> Any:
            raise NotImplementedError

        def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Message]:
            replies: list[Message] = []
            for i, msg in enumerate(messages):
                md = msg.metadata.__dict__
                md["_run_id"] = 1
                md["_src_node_id"] = SUPERLINK_NODE_ID
                md["_message_id"] = f"m{id(msg)}-{i}"
                nid = msg.metadata.dst_node_id
                stage = msg.content.config_records[RECORD_KEY_CONFIGS][Key.STAGE]
                # the "wire": Flower's protobuf round trip gives the client its own copy of the
                # message (the mod mutates its ConfigRecord) and the byte count; not timed
                t0 = time.perf_counter()
                proto = message_to_proto(msg)
                bytes_down[nid] += proto.ByteSize()
                delivered = message_from_proto(proto)
                overhead["count_s"] += time.perf_counter() - t0
                if nid in dropped and stage in (Stage.COLLECT_MASKED_VECTORS, Stage.UNMASK):
                    continue  # dropped after ShareKeys: never answers again
                t0 = time.perf_counter()
                reply = secaggplus_mod(delivered, contexts[nid], call_nexts[nid])
                dt = time.perf_counter() - t0
                client_time[nid] += dt
                client_stage_time[stage][nid] = dt
                t0 = time.perf_counter()
                proto = message_to_proto(reply)
                bytes_up[nid] += proto.ByteSize()
                reply = message_from_proto(proto)
                overhead["count_s"] += time.perf_counter() - t0
                replies.append(reply)
            return replies

    grid = _InProcessGrid()

    # ---- server side: LegacyContext as DefaultWorkflow builds it
    class _SecureSumFedAvg(FedAvg):  # type: ignore[misc]
        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            # every FitRes already carries the securely aggregated parameters
            return (results[0][1].parameters if results else None), {}

    strategy = _SecureSumFedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=clients,
                                min_available_clients=clients)
    cm = SimpleClientManager()
    for nid in node_ids:
        cm.register(GridClientProxy(nid, grid, 1))
    base = Context(run_id=1, node_id=SUPERLINK_NODE_ID, node_config={}, state=RecordDict(), run_config={})
    context = LegacyContext(base, config=ServerConfig(num_rounds=1), strategy=strategy, client_manager=cm)
    context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
        ndarrays_to_parameters([]), keep_input=True)
    from flwr.app import ConfigRecord
    cfg = ConfigRecord()
    cfg[WorkflowKey.START_TIME] = time.time()
    cfg[WorkflowKey.CURRENT_ROUND] = 1
    context.state.config_records[MAIN_CONFIGS_RECORD] = cfg

    state = WorkflowState()
    stage_fns = [workflow.setup_stage, workflow.share_keys_stage, workflow.collect_masked_vectors_stage,
                 workflow.unmask_stage]
    stage_wall: dict[str, float] = {}
    halted_at: str | None = None
    redraws = 0
    for st, fn in zip(stages, stage_fns):
        c0 = overhead["count_s"]
        t0 = time.perf_counter()
        ok = fn(grid, context, state)
        stage_wall[st] = time.perf_counter() - t0 - (overhead["count_s"] - c0)
        if st == Stage.SETUP and ok and n_drop:
            # choose who drops after ShareKeys (glue; excluded from timing)
            for redraws in range(1, 10001):
                cand = set(data.sample(f"dropouts/{redraws}", node_ids, n_drop))
                alive = set(node_ids) - cand
                if all(len(state.nid_to_neighbours[u] & alive) >= state.threshold for u in node_ids):
                    break
            dropped.update(cand)
        if not ok:
            halted_at = st
            break

    stage_client = {st: sum(client_stage_time[st].values()) for st in stages}
    stage_client_max = {st: max(client_stage_time[st].values(), default=0.0) for st in stages}
    stage_server = {st: stage_wall.get(st, 0.0) - stage_client[st] for st in stages}
    round_s = sum(stage_wall.values())
    server_s = sum(stage_server.values())
    survivors = [nid for nid in node_ids if nid not in dropped]

    correct = False
    max_err = None
    if halted_at is None:
        agg = parameters_to_ndarrays(compat.arrayrecord_to_parameters(
            context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True))[0]
        expected = np.mean(np.stack([vectors[nid] for nid in survivors]), axis=0)
        step = 2 * clip / qrange
        max_err = float(np.max(np.abs(agg - expected))) if agg.shape == expected.shape else float("inf")
        correct = bool(agg.shape == expected.shape and max_err <= step * 1.0001 + 1e-9)

    ct = list(client_time.values())
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    notes = (f"Flower SecAggPlusWorkflow stage methods + secaggplus_mod run in one process, clients sequential, "
             f"no network/serialisation on the timed path; num_shares={state.num_shares} "
             f"({'complete graph' if graph == 'full' else '2*ceil(log2 N)+1 ring neighbourhood'}), "
             f"threshold={state.threshold} (ratio {threshold_ratio:.4g}); {len(dropped)} clients dropped after "
             f"ShareKeys (dropout set drawn {redraws}x to satisfy Flower's threshold check); "
             f"clipping_range={clip}, quantization_range=2^{int(math.log2(qrange))}, "
             f"modulus_range=2^{int(math.log2(workflow.modulus_range))}; bytes = flwr protobuf Message.ByteSize")
    if halted_at:
        notes += f"; Flower halted the round at stage {halted_at}"
    return {
        "impl": "flwr",
        "flwr_version": flwr.__version__ if hasattr(flwr, "__version__") else _dist_version("flwr"),
        "clients": clients, "dim": dim, "dropout": dropout, "graph": graph, "seed": seed,
        "num_shares": state.num_shares, "threshold": state.threshold,
        "dropped": len(dropped), "survivors": len(survivors),
        "round_s": round(round_s, 4),
        "round_s_parallel_clients": round(server_s + sum(stage_client_max.values()), 4),
        "server_s": round(server_s, 4),
        "client_s_mean": round(sum(ct) / len(ct), 4), "client_s_max": round(max(ct), 4),
        "bytes_per_client": int(round(sum(bytes_up[n] + bytes_down[n] for n in node_ids) / clients)),
        "bytes_up_per_client": int(round(sum(bytes_up.values()) / clients)),
        "bytes_down_per_client": int(round(sum(bytes_down.values()) / clients)),
        "peak_rss_mb": round(rss_kb / 1024, 1),
        "transport_serde_s": round(overhead["count_s"], 4),
        "stages": {st: {"wall_s": round(stage_wall.get(st, 0.0), 4), "server_s": round(stage_server[st], 4),
                        "clients_total_s": round(stage_client[st], 4),
                        "client_max_s": round(stage_client_max[st], 4)} for st in stages},
        "max_abs_err": max_err, "tolerance": 2 * clip / qrange,
        "correct": correct, "halted_at": halted_at,
        "python": sys.version.split()[0], "numpy": np.__version__,
        "notes": notes,
    }


def _dist_version(name: str) -> str:
    from importlib.metadata import version
    return version(name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Flower 1.42 SecAgg+ benchmark peer (one round, in-process)")
    ap.add_argument("--clients", type=int, required=True)
    ap.add_argument("--dim", type=int, required=True)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--graph", choices=("sparse", "full"), default="sparse")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--num-shares", type=int, default=None, help="override Flower's num_shares")
    ap.add_argument("--threshold-ratio", type=float, default=THRESHOLD_RATIO)
    args = ap.parse_args(argv)
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # anything Flower prints must not pollute the one JSON line
    try:
        res = run_round(args.clients, args.dim, args.dropout, args.graph, args.seed,
                        num_shares=args.num_shares, threshold_ratio=args.threshold_ratio)
    finally:
        sys.stdout = real_stdout
    print(json.dumps(res), flush=True)
    return 0 if res["correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
