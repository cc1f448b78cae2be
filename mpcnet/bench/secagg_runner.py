"""`mpcnet bench secagg`: one SecAgg(+) round on mpcnet against Flower's SecAgg+, same run, same machine.

mpcnet side: a LocalCluster (its coordinator serves SecAgg); ``CreateRound``
with N clients, vector length D, RING mode with 32-bit words (Flower's
``modulus_range`` is 2^32 too), the complete graph or SecAgg+ with mpcnet's
default degree ``k = default_degree(N)``, threshold ``max(2, round(2/3 *
(k + 1)))`` (complete graph: ``k + 1 = N``).  The N logical clients run in K
worker processes (``--client-procs``, default 4).  A worker is ``mpcnet
client`` (``mpcnet.secagg_client.client_main``, unmodified) behind a thin
measuring shim (this module, ``--worker``): it is started and imported
*before* the round exists (so process start-up is not timed), reads the round
id and its clients' tokens on stdin, and counts, per logical client, the
protobuf bytes of every ``Next`` request and reply and the thread CPU time of
the core protocol steps (``_step``: key agreement, Shamir, AES-GCM, PRG
masks).  The ``round(P*N)`` dropping clients run in their own worker
processes launched with ``--die-at masked_input_collection``: they answer
ShareKeys, then SIGKILL themselves (the dropout set is redrawn until every
closed neighbourhood keeps >= t survivors, as in the Flower peer).

Reported: ``round_s`` = CreateRound to the result (the first "done" reply a
client received; nothing polls the coordinator).  The dead clients' presence
streams break when they SIGKILL themselves, so the coordinator closes the
masked-input stage as soon as the last survivor answered, without waiting
for the stage deadline: ``dropout_close_lag_s`` is the time from the last
survivor's masked input to the Unmasking requests reaching the clients
(the server step of MaskedInputCollection included);
coordinator CPU (utime+stime from /proc/<pid>/stat, before/after); client
CPU per logical client (core protocol steps only) and per worker process over
the round divided by its clients (includes JSON/hex codec, gRPC, asyncio);
bytes per client (measured: protobuf ``ByteSize`` of requests and replies,
no HTTP/2 framing); the expansion factor vs sending the raw vector (D * 4
bytes); the exact sum against numpy.

Flower side: :func:`mpcnet.bench.flower_peer.run_flower_benchmark` with the
interpreter of ``.venv-flower`` (``make flower-venv``), the same N, D,
dropout, neighbourhood size (``--num-shares k+1``) and threshold ratio.  The
ratio is Flower ``round_s`` (its four stages with the clients run
sequentially in one process, no network) / mpcnet ``round_s``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from mpcnet.bench.benchdata import BenchData
from mpcnet.errors import make_output_dir

__all__ = ["run_secagg_bench", "worker_main"]

DIE_STAGE = "masked_input_collection"  # Stage.MASKED_INPUT_COLLECTION.value: dies right after ShareKeys
INPUT_SEED = "mpcnet-bench-secagg"
BITS = 32
THRESHOLD_RATIO = 2 / 3
FLOWER_VENV = ".venv-flower"


# --------------------------------------------------------------------------- worker (one client process)
def worker_main(argv: list[str]) -> int:
    """``python -m mpcnet.bench.secagg_runner --worker <mpcnet client args without --round>``.

    Prints ``{"ready": true}``, reads ``{"round": id, "tokens": {...}}`` from stdin, runs ``mpcnet client``
    and prints its per-client lines, then one ``{"bench_worker": {...}}`` line."""
    import types

    import mpcnet.secagg_client as sc
    from mpcnet.cli import main as cli_main

    step_cpu: dict[int, float] = {}
    calls: list[dict[str, Any]] = []
    real_step, real_spbg = sc._step, sc.spbg

    def timed_step(stage: Any, params: Any, cid: int, *rest: Any) -> Any:
        t0 = time.thread_time()
        try:
            return real_step(stage, params, cid, *rest)
        finally:
            step_cpu[cid] = step_cpu.get(cid, 0.0) + time.thread_time() - t0

    class CountingStub:
        def __init__(self, channel: Any) -> None:
            self._stub = real_spbg.SecAggStub(channel)

        async def Next(self, req: Any, **kw: Any) -> Any:  # noqa: N802 - gRPC method name
            t0 = time.time()
            reply = await self._stub.Next(req, **kw)
            record(req, reply, t0)
            return reply

        def Attend(self, req: Any, **kw: Any) -> Any:  # noqa: N802 - gRPC method name
            return self._stub.Attend(req, **kw)

        def Session(self, **kw: Any) -> Any:  # noqa: N802 - gRPC method name
            return CountingSession(self._stub.Session(**kw))

    class CountingSession:
        """A Session stream whose exchanges (a written answer, the reply read) are recorded as Next calls are."""

        def __init__(self, stream: Any) -> None:
            self._stream, self._sent = stream, (None, 0.0)

        async def write(self, req: Any) -> None:
            self._sent = (req, time.time())
            await self._stream.write(req)

        async def read(self) -> Any:
            reply = await self._stream.read()
            req, t0 = self._sent
            if req is not None and hasattr(reply, "WhichOneof"):
                record(req, reply, t0)
            return reply

        async def code(self) -> Any:
            return await self._stream.code()

        def cancel(self) -> bool:
            return bool(self._stream.cancel())

    def record(req: Any, reply: Any, t0: float) -> None:
        calls.append({"cid": req.client_id, "stage": req.stage_answered, "t0": t0, "t1": time.time(),
                      "up": req.ByteSize(), "down": reply.ByteSize(), "outcome": reply.WhichOneof("outcome") or "",
                      "result": len(reply.done.sum) if reply.HasField("done") else 0})

    sc._step = timed_step  # type: ignore[assignment]
    sc.spbg = types.SimpleNamespace(SecAggStub=CountingStub)  # type: ignore[assignment]
    print(json.dumps({"ready": True}), flush=True)
    line = sys.stdin.readline()
    if not line:
        return 2
    job = json.loads(line)
    if not job["ids"]:
        print(json.dumps({"bench_worker": {"process_cpu_s": 0.0, "step_cpu_s": {}, "calls": [], "peak_rss_mb": 0}}))
        return 0
    os.environ["MPCNET_CLIENT_TOKENS"] = json.dumps(job["tokens"])
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    code = cli_main(["client", *argv, "--round", job["round"], "--ids", ",".join(map(str, job["ids"]))])
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    print(json.dumps({"bench_worker": {"process_cpu_s": cpu, "step_cpu_s": step_cpu, "calls": calls,
                                       "peak_rss_mb": round(r1.ru_maxrss / 1024, 1)}}), flush=True)
    return code


# --------------------------------------------------------------------------- orchestration
def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its threads (Linux /proc; OSError elsewhere)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def neighbourhood_size(clients: int, graph: str) -> int:
    from mpcnet.secagg.graph import default_degree
    return clients if graph == "full" else default_degree(clients) + 1


def bench_mpcnet(clients: int, dim: int, dropout: float, graph: str, procs: int, stage_deadline_s: float,
                 join_deadline_s: float, seed: int, console: Any) -> dict[str, Any]:
    import grpc
    import numpy as np

    from mpcnet.cluster import REPO_ROOT, LocalCluster
    from mpcnet.secagg_client import derive_input
    from mpcnet.secagg_wire import aggregate_of, params_from_proto
    from mpcnet.v1 import secagg_pb2 as spb
    from mpcnet.v1 import secagg_pb2_grpc as spbg

    ids = list(range(1, clients + 1))
    holders = neighbourhood_size(clients, graph)
    threshold = max(2, round(THRESHOLD_RATIO * holders))
    n_drop = int(round(dropout * clients))
    max_round_s = join_deadline_s + 4 * (stage_deadline_s + 35.0) + 60.0
    with LocalCluster(2, log_level="WARNING") as cluster:
        coord_pid = cluster.pid("coordinator")
        stub = spbg.SecAggStub(grpc.insecure_channel(cluster.coordinator))
        n_procs = max(1, min(procs, clients))
        per = math.ceil(clients / n_procs)
        n_drop_procs = math.ceil(n_drop / per) if n_drop else 0
        n_live_procs = max(1, n_procs - n_drop_procs)
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env.pop("MPCNET_CLIENT_TOKENS", None)
        workers: list[tuple[subprocess.Popen[str], bool, IO[bytes]]] = []
        logs_dir = cluster.workdir
        # Workers start (and import) before CreateRound.  Their --ids come with the round on stdin: the
        # dropout set can only be drawn on the round's graph, whose seed the server draws at CreateRound.
        for w in range(n_drop_procs + n_live_procs):
            dies = w < n_drop_procs
            cmd = [sys.executable, "-m", "mpcnet.bench.secagg_runner", "--worker", "--coordinator",
                   cluster.coordinator, "--input-seed", INPUT_SEED, "--timeout", str(join_deadline_s + 35.0)]
            if dies:
                cmd += ["--die-at", DIE_STAGE]
            err_fh: IO[bytes] = open(logs_dir / f"worker{w}.err", "wb")
            p = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=err_fh, text=True, start_new_session=True)
            workers.append((p, dies, err_fh))
        try:
            for p, _, _ in workers:
                ready = p.stdout.readline() if p.stdout else ""
                if '"ready"' not in ready:
                    raise RuntimeError(f"client worker {p.pid} did not start: {ready!r}")
            kind = spb.SECAGG_GRAPH_COMPLETE if graph == "full" else spb.SECAGG_GRAPH_SECAGGPLUS
            params = spb.SecAggRoundParams(client_ids=ids, threshold=threshold, vector_length=dim, bits=BITS,
                                           graph=kind, degree=0, stage_deadline_s=stage_deadline_s,
                                           join_deadline_s=join_deadline_s)
            cpu0 = proc_cpu_seconds(coord_pid)
            t0 = time.time()
            reply = stub.CreateRound(spb.SecAggCreateRoundRequest(params=params), timeout=30,
                                     metadata=cluster.auth_metadata)
            core = params_from_proto(reply.params)
            nbr = core.graph()
            # who drops after ShareKeys: every closed neighbourhood must keep >= t survivors (as the Flower glue)
            data = BenchData(seed)
            dropped: set[int] = set()
            redraws = 0
            if n_drop:
                for redraws in range(1, 10001):
                    cand = set(data.sample(f"dropouts/{redraws}", ids, n_drop))
                    alive = set(ids) - cand
                    if all(len(nbr.closed(u) & alive) >= threshold for u in ids):
                        break
                dropped = cand
            survivors = [c for c in ids if c not in dropped]
            groups: list[list[int]] = []
            drop_list = sorted(dropped)
            for w in range(n_drop_procs):
                groups.append(drop_list[w * per:(w + 1) * per])
            live_per = math.ceil(len(survivors) / n_live_procs)
            for w in range(n_live_procs):
                groups.append(survivors[w * live_per:(w + 1) * live_per])
            tokens = {int(k): str(v) for k, v in reply.client_tokens.items()}
            for (p, _, _), group in zip(workers, groups):
                if p.stdin is None:
                    continue
                p.stdin.write(json.dumps({"round": reply.round_id, "ids": group,
                                          "tokens": {str(c): tokens[c] for c in group}}) + "\n")
                p.stdin.close()
                p.stdin = None  # so that communicate() below does not flush it
            # No polling (it would load the coordinator): wait for the workers, whose clients return when the
            # round is done or aborted; the round's end is the first "done" reply a client received.
            outs: list[tuple[int | None, list[dict[str, Any]], bool]] = []
            for p, dies, fh in workers:
                try:
                    out, _ = p.communicate(timeout=max(1.0, max_round_s - (time.time() - t0)))
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, 9)
                    out, _ = p.communicate(timeout=10)
                fh.close()
                outs.append((p.returncode, [json.loads(x) for x in out.splitlines() if x.strip().startswith("{")],
                             dies))
            t_exit = time.time()
            cpu1 = proc_cpu_seconds(coord_pid)
            coord_peak_mb = _peak_rss_mb(coord_pid)
            res = stub.GetResult(spb.SecAggGetResultRequest(round_id=reply.round_id), timeout=30,
                                 metadata=cluster.auth_metadata)
            state = res.state
        finally:
            for p, _, fh in workers:
                if p.poll() is None:
                    try:
                        os.killpg(p.pid, 9)
                    except ProcessLookupError:
                        pass
                    p.wait(timeout=10)
                fh.close()
        errors = [f"worker {i}: {(logs_dir / f'worker{i}.err').read_text(errors='replace')[-1500:]}"
                  for i, (rc, _, dies) in enumerate(outs) if (rc != -9 if dies else rc != 0)]
        if state != "done":
            why = res.aborted.reason if res is not None and state == "aborted" else f"still {state}"
            raise RuntimeError(f"mpcnet round did not finish: {why}\n" + "\n".join(errors)
                               + "\n" + cluster.log_text()[-2000:])
        included = list(res.done.included)
        total = np.zeros(dim, dtype=np.uint64)
        for cid in included:
            total = total + derive_input(INPUT_SEED, cid, dim, BITS)
        total &= np.uint64((1 << BITS) - 1)
        exact = bool(np.array_equal(aggregate_of(res.done), total)) and sorted(included) == survivors

    # ---- per-client figures from the live workers
    step_cpu: dict[int, float] = {}
    up: dict[int, int] = {}
    down: dict[int, int] = {}
    calls: list[dict[str, Any]] = []
    proc_cpu_per_client: list[float] = []
    rss: list[float] = []
    for (rc, lines, dies), group in zip(outs, groups):
        for ln in lines:
            bw = ln.get("bench_worker")
            if bw is None:
                continue
            step_cpu.update({int(k): v for k, v in bw["step_cpu_s"].items()})
            calls += bw["calls"]
            proc_cpu_per_client += [bw["process_cpu_s"] / max(1, len(group))] * len(group)
            rss.append(bw["peak_rss_mb"])
    for c in calls:
        up[c["cid"]] = up.get(c["cid"], 0) + c["up"]
        down[c["cid"]] = down.get(c["cid"], 0) + c["down"]
    live_bytes = [up.get(c, 0) + down.get(c, 0) for c in survivors]
    # timeline (wall clock shared by all processes on this machine)
    stages = ["advertise_keys", "share_keys", "masked_input_collection", "unmasking"]
    prev = {"advertise_keys": "", "share_keys": "advertise_keys", "masked_input_collection": "share_keys",
            "unmasking": "masked_input_collection"}
    timeline: dict[str, dict[str, float]] = {}
    for st in stages:
        opened = [c["t1"] for c in calls if c["stage"] == prev[st] and c["outcome"] == "request"]
        answered = [c["t0"] for c in calls if c["stage"] == st]
        if opened and answered:
            timeline[st] = {"opened_at_s": round(min(opened) - t0, 4), "last_answer_at_s": round(max(answered) - t0, 4)}
    lag = 0.0
    if "masked_input_collection" in timeline and "unmasking" in timeline:
        lag = timeline["unmasking"]["opened_at_s"] - timeline["masked_input_collection"]["last_answer_at_s"]
    unmask_answers = [c["t0"] for c in calls if c["stage"] == "unmasking"]
    done_times = [c["t1"] for c in calls if c["outcome"] == "done"]
    # the coordinator's Unmasking server step: last share answer in -> first client told the round is done
    unmask_server_s = (min(done_times) - max(unmask_answers)) if unmask_answers and done_times else 0.0
    result_bytes = sum(c.get("result", 0) for c in calls if c["cid"] in set(survivors))
    done_at = [c["t1"] for c in calls if c["outcome"] == "done"]
    round_s = (min(done_at) if done_at else t_exit) - t0
    raw = dim * BITS // 8
    mean_bytes = sum(live_bytes) / len(live_bytes)
    sc = [step_cpu.get(c, 0.0) for c in survivors]
    notes = (f"RING mode, {BITS}-bit words, inputs uniform in Z_2^{BITS} (derive_input), exact sum mod 2^{BITS} "
             f"(Flower: float inputs quantized to 2^22 levels in a 2^32 ring - same ring size, plus its "
             f"quantize/dequantize); {'complete graph' if graph == 'full' else f'SecAgg+ degree {holders - 1}'} "
             f"(closed neighbourhood {holders} = Flower num_shares), threshold {threshold} "
             f"(max(2, round(2/3*{holders}))); {len(dropped)} clients SIGKILLed themselves at "
             f"{DIE_STAGE} (after ShareKeys; dropout set drawn {redraws}x to keep >= t survivors per "
             f"neighbourhood); {len(workers)} client processes ({n_drop_procs} dying), worker processes started "
             f"before CreateRound (start-up not timed); round_s = CreateRound to the first client's 'done' reply, "
             f"dead clients are seen through their broken Session streams (no stage-deadline wait; stage deadline "
             f"{stage_deadline_s:g}s); "
             f"client_step_cpu = thread CPU of the core protocol steps per logical client (survivors); "
             f"client_process_cpu_per_client = worker process CPU during the round / its clients (adds the payload "
             f"codec, gRPC, asyncio); bytes = protobuf ByteSize of each survivor's Next requests+replies "
             f"(measured, no HTTP/2 framing or token metadata); payloads are canonical v2 messages (JSON "
             f"header + raw 4-byte words per 32-bit element; the done reply carries the 4-byte-word aggregate, "
             f"counted in bytes and left out of *_excl_result); coordinator CPU from /proc/<pid>/stat utime+stime, CreateRound to after the workers exited")
    return {
        "clients": clients, "dim": dim, "dropout": dropout, "graph": graph, "degree": holders - 1,
        "neighbourhood": holders, "threshold": threshold, "dropped": len(dropped), "survivors": len(survivors),
        "client_processes": len(workers), "stage_deadline_s": stage_deadline_s, "join_deadline_s": join_deadline_s,
        "round_s": round(round_s, 4), "dropout_close_lag_s": round(lag, 4),
        "coordinator_cpu_s": round(cpu1 - cpu0, 4), "coordinator_peak_rss_mb": coord_peak_mb,
        "unmasking_server_step_s": round(unmask_server_s, 4),
        "client_step_cpu_s_mean": round(sum(sc) / len(sc), 4), "client_step_cpu_s_max": round(max(sc), 4),
        "client_process_cpu_per_client_s_mean": round(sum(proc_cpu_per_client) / max(1, len(proc_cpu_per_client)), 4),
        "client_process_cpu_per_client_s_max": round(max(proc_cpu_per_client, default=0.0), 4),
        "bytes_per_client": int(round(mean_bytes)), "bytes_per_client_max": max(live_bytes),
        "result_bytes_per_client": int(round(result_bytes / len(survivors))),
        "bytes_per_client_excl_result": int(round(mean_bytes - result_bytes / len(survivors))),
        "expansion_excl_result": round((mean_bytes - result_bytes / len(survivors)) / raw, 3),
        "bytes_up_per_client": int(round(sum(up.get(c, 0) for c in survivors) / len(survivors))),
        "bytes_down_per_client": int(round(sum(down.get(c, 0) for c in survivors) / len(survivors))),
        "raw_vector_bytes": raw, "expansion": round(mean_bytes / raw, 3),
        "timeline": timeline, "peak_rss_mb_per_client_process": max(rss, default=0.0),
        "exact_sum": exact, "included": len(included), "worker_errors": errors, "notes": notes,
    }


def run_secagg_bench(clients: int, dim: int, dropout: float = 0.1, graph: str = "sparse", client_procs: int = 4,
                     with_flower: bool = True, out_dir: str | None = None, stage_deadline_s: float = 120.0,
                     join_deadline_s: float = 120.0, flower_python: str | None = None,
                     flower_timeout_s: float = 1800.0, seed: int = 20261124, console: Any = None) -> int:
    from rich.console import Console
    from rich.table import Table

    from mpcnet.bench.runner import machine_description
    from mpcnet.cluster import REPO_ROOT

    console = console or Console(width=max(Console().width, 110))
    wrong = [f"{flag} {value:g}: {rule}" for flag, value, ok, rule in (
        ("--clients", clients, clients >= 3, "at least 3"), ("--dim", dim, dim >= 1, "at least 1"),
        ("--dropout", dropout, 0 <= dropout < 1, "a fraction in [0, 1)"),
        ("--client-procs", client_procs, client_procs >= 1, "at least 1"),
        ("--stage-deadline", stage_deadline_s, 0 < stage_deadline_s <= 3600, "seconds in (0, 3600]"),
        ("--join-deadline", join_deadline_s, 0 < join_deadline_s <= 3600, "seconds in (0, 3600]")) if not ok]
    if graph not in ("full", "sparse"):
        wrong.append(f"--graph {graph}: full or sparse")
    if wrong:
        console.print("[red]mpcnet bench secagg: " + "; ".join(wrong) + "[/]")
        return 2
    out = make_output_dir("--out", out_dir or REPO_ROOT / "benchmarks" / "results")
    fpy = ""
    if with_flower:
        fpy = flower_python or str(REPO_ROOT / FLOWER_VENV / "bin" / "python")
        if not Path(fpy).exists():
            console.print(f"[red]no Flower interpreter at {fpy}[/]: run `make flower-venv` (creates {FLOWER_VENV}/ "
                          "with flwr==1.42.0; it needs protobuf<7, hence its own venv), or pass --flower-python "
                          "PATH, or --no-flower")
            return 2
    with console.status(f"mpcnet SecAgg {graph} N={clients} D={dim:,} dropout={dropout}"):
        ours = bench_mpcnet(clients, dim, dropout, graph, client_procs, stage_deadline_s, join_deadline_s, seed,
                            console)
    peer: dict[str, Any] | None = None
    peer_error = ""
    if with_flower:
        from mpcnet.bench.flower_peer import run_flower_benchmark
        extra = ["--num-shares", str(ours["neighbourhood"]), "--threshold-ratio", repr(THRESHOLD_RATIO)]
        with console.status(f"Flower SecAgg+ N={clients} D={dim:,} (one process)"):
            try:
                peer = run_flower_benchmark(clients, dim, dropout, graph, python=fpy, timeout_s=flower_timeout_s,
                                            seed=seed, extra_args=extra)
            except (RuntimeError, OSError, ValueError) as exc:
                peer_error = str(exc)[-3000:]
        if peer is not None:
            peer["expansion"] = round(peer["bytes_per_client"] / ours["raw_vector_bytes"], 3)
            if peer.get("threshold") != ours["threshold"] or peer.get("num_shares") != ours["neighbourhood"]:
                ours["notes"] += (f"; NOTE: Flower ran num_shares={peer.get('num_shares')} "
                                  f"threshold={peer.get('threshold')}")
    ratios: dict[str, float] = {}
    if peer:
        ratios = {"round": round(peer["round_s"] / ours["round_s"], 3),
                  }
    result = {"benchmark": "secagg", "clients": clients, "dim": dim, "dropout": dropout, "graph": graph,
              "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine_description(),
              "mpcnet": ours, "flower": peer, "flower_error": peer_error,
              "ratios_flower_over_mpcnet": ratios,
              "ratio_notes": ("Flower round_s = its four SecAggPlusWorkflow stages with all clients run sequentially "
                              "in one process, no network or serialisation (its round_s_parallel_clients estimate "
                              "is NOT used); 'round' divides by mpcnet round_s (CreateRound to result, over gRPC, "
                              "with real SIGKILLed clients). > 1 means mpcnet is faster.")}
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    base = f"secagg-{graph}-n{clients}-d{dim}"
    path = out / f"{base}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2))
    (out / f"{base}-latest.json").write_text(json.dumps(result, indent=2))

    table = Table(title=f"SecAgg{'+' if graph == 'sparse' else ''} round, N = {clients}, D = {dim:,}, "
                        f"dropout {dropout:g} ({ours['dropped']} clients), t = {ours['threshold']} of "
                        f"{ours['neighbourhood']}")
    for col in ("metric", "mpcnet", "Flower", "Flower / mpcnet"):
        table.add_column(col, justify="left" if col == "metric" else "right")

    def row(label: str, a: float | None, b: float | None, fmt: str = "{:.3f}") -> None:
        table.add_row(label, "-" if a is None else fmt.format(a), "-" if b is None else fmt.format(b),
                      "-" if a is None or b is None or a == 0 else f"{b / a:.2f}x")

    pf = peer or {}
    row("round wall s", ours["round_s"], pf.get("round_s"))
    row("server s (mpcnet: coordinator CPU; Flower: server wall)", ours["coordinator_cpu_s"], pf.get("server_s"))
    row("coordinator Unmasking server step s (last share in -> done)", ours["unmasking_server_step_s"], None)
    row("coordinator peak RSS MB", ours["coordinator_peak_rss_mb"], None, "{:,.0f}")
    row("client s mean (mpcnet: protocol-step CPU)", ours["client_step_cpu_s_mean"], pf.get("client_s_mean"))
    row("client s max", ours["client_step_cpu_s_max"], pf.get("client_s_max"))
    row("client process CPU s per client (mean)", ours["client_process_cpu_per_client_s_mean"], None)
    row("bytes per client", ours["bytes_per_client"], pf.get("bytes_per_client"), "{:,.0f}")
    row("expansion vs raw D*4 bytes", ours["expansion"], pf.get("expansion"), "{:.2f}")
    row("expansion without the aggregate sent back to clients", ours["expansion_excl_result"], pf.get("expansion"),
        "{:.2f}")
    console.print(table)
    console.print(f"mpcnet exact sum: {'OK' if ours['exact_sum'] else 'MISMATCH'} ({ours['included']} inputs); "
                  f"masked-input stage closed {ours['dropout_close_lag_s']:.2f}s after the last survivor's input "
                  f"(stage deadline {ours['stage_deadline_s']:g}s)"
                  + (f"; Flower correct: {pf.get('correct')} (max err {pf.get('max_abs_err')})" if peer else ""))
    if peer_error:
        console.print(f"[yellow]Flower side failed:[/] {peer_error}")
    console.print(f"results written to {path}")
    if not ours["exact_sum"]:
        return 1
    return 0 if (peer or not with_flower) else 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return worker_main(argv[1:])
    ap = argparse.ArgumentParser(prog="mpcnet bench secagg")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--dim", type=int, default=10_000)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--graph", choices=("full", "sparse"), default="sparse")
    a = ap.parse_args(argv)
    return run_secagg_bench(a.clients, a.dim, a.dropout, a.graph)


if __name__ == "__main__":
    sys.exit(main())
