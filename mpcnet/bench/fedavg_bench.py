"""`mpcnet bench fedavg`: time per FedAvg round through SecAgg against the same training with plain (insecure)
averaging, in the same run, for several client counts; and the accuracy gap at epsilon = infinity (what
quantization costs).  Results in benchmarks/results/fedavg-<dataset>-<model>-<stamp>.json.

Four kinds of round are timed, with the same clients, training and seeds:

* *in memory*: the updates averaged with numpy in this process -- no network at all, the floor;
* *plain over gRPC*: each client sends its update in the clear to an averaging server in its own process
  (mpcnet/bench/plain_average.py), which answers with the weighted mean -- a federated round without
  privacy, the baseline the overhead ratio is quoted against;
* *SecAgg*: a SecAgg round on the coordinator of a local cluster (FEDAVG quantization);
* *SecAgg math in memory*: the same SecAgg round (graph, threshold, quantization) as function calls in this
  process -- every client's and the server's steps, no encoding, no gRPC, no coordinator process: the part of
  the SecAgg round no transport can remove (key agreement, masks, shares, Shamir), so the table shows how much
  of the overhead is the protocol's arithmetic and how much is moving its messages.

The four kinds take turns, ``repeats`` times over (memory, plain, SecAgg, SecAgg math; again ...), each time for
``rounds`` FedAvg rounds; a time is the median over all of a kind's rounds, and the table also gives the lowest
and highest of the repeats' own SecAgg / plain ratios -- on a shared machine one run's ratio can be a point or
more off the next one's.

A round's wall time counts everything the round does on this machine: local training of the sampled clients
(sequential here, in parallel on real devices), and for the networked rounds every client's channel and calls
(in this one process, asyncio: also sequential) and, for SecAgg, CreateRound, key agreement, masking and
unmasking and the coordinator's work over gRPC on loopback.  The clients' channels share one TCP connection
to each server (gRPC's global subchannel pool), in both networked kinds alike: no client pays the connection
setup a device would.  On real devices the client-side work runs in parallel; this benchmark does not pretend
it does.  What a deployment's round time would be governed by is the server's own work per round, so the table
also gives the CPU seconds the averaging server and the coordinator spent per round (Linux: from /proc; blank
elsewhere).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

from mpcnet.bench.plain_average import NetworkPlainAggregator, PlainAverageProcess
from mpcnet.bench.secagg_runner import proc_cpu_seconds
from mpcnet.errors import InvalidInput, make_output_dir
from mpcnet.fl import data as fldata
from mpcnet.fl import fedavg, models
from mpcnet.fl.fedavg import RoundOutcome, Update, clear_round, secagg_threshold

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


class SecAggMathAggregator:
    """A FedAvg round's SecAgg as function calls in this process (:func:`mpcnet.secagg.driver.run_round`): the
    networked round's graph, threshold and FEDAVG quantization, with OS entropy, and no transport.  The bench's
    floor under the networked SecAgg round; not a way to run FedAvg (the sum is computed where the inputs are)."""

    name = "secagg-in-memory"
    min_clients = 2

    def __init__(self, clip: float, max_total_samples: int, graph: str, threshold_fraction: float = 2 / 3,
                 bits: int = 32) -> None:
        from mpcnet.secagg.quantization import WeightedEncoder
        if graph not in ("full", "sparse"):
            raise InvalidInput("graph must be full (SecAgg) or sparse (SecAgg+)")
        self.graph, self.threshold_fraction, self.bits = graph, threshold_fraction, bits
        self.encoder = WeightedEncoder(clip, max_total_samples, bits)

    def aggregate(self, round_no: int, updates: Sequence[Update], drop: Sequence[int]) -> RoundOutcome:
        from mpcnet.secagg.driver import run_round
        from mpcnet.secagg.errors import InsufficientSurvivors
        from mpcnet.secagg.graph import GraphKind
        from mpcnet.secagg.params import SecAggParams
        from mpcnet.secagg.stage import Stage
        if any(u.integer for u in updates):
            raise InvalidInput("the in-memory SecAgg floor takes real-valued updates only (no distributed DP)")
        out, kept = clear_round(round_no, updates, drop)
        if out.skipped or len(updates) < 2:
            out.skipped = out.skipped or f"{len(updates)} client(s) sampled: SecAgg needs at least 2"
            out.included = []  # as the networked round: nobody's update is in a skipped round
            return out
        ids = tuple(sorted(u.client for u in updates))
        params = SecAggParams(f"bench-r{round_no}", ids, secagg_threshold(len(ids), self.graph,
                                                                          self.threshold_fraction),
                              len(updates[0].delta) + 1, self.bits,
                              GraphKind.REGULAR if self.graph == "sparse" else GraphKind.COMPLETE,
                              graph_seed=SecAggParams.fresh_graph_seed())
        inputs = {u.client: self.encoder.encode(u.delta, u.samples) for u in updates}
        try:
            total = run_round(inputs, params, {Stage.MASKED_INPUT_COLLECTION: set(drop)})
        except InsufficientSurvivors as exc:  # as the networked round: below threshold, the model is kept
            out.skipped, out.included = f"SecAgg round aborted: {exc}", []
            return out
        out.mean, out.total_samples = self.encoder.decode(total)
        return out


def _server_cpu_per_round(pid: int, run: Any, rounds: int) -> tuple[Any, float | None]:
    """``run()``'s result and the CPU seconds per round process ``pid`` spent meanwhile (None without /proc)."""
    try:
        before = proc_cpu_seconds(pid)
    except OSError:
        return run(), None
    result = run()
    return result, (proc_cpu_seconds(pid) - before) / rounds


def _median_round(runs: Sequence[Any]) -> float:
    """The median round time over every round of ``runs`` (FedAvg results)."""
    return statistics.median(r.seconds for run in runs for r in run.rounds)


def run_fedavg_bench(clients: list[int], rounds: int = 3, dataset: str = "digits", model_kind: str = "mlp",
                     hidden: int = 64, epochs: int = 5, graph: str = "sparse", out_dir: str | None = None,
                     repeats: int = 3) -> int:
    from rich.console import Console
    from rich.table import Table

    from mpcnet.cluster import LocalCluster
    console = Console(width=max(Console().width, 170))
    # every argument checked before any process starts
    if repeats < 1:
        raise InvalidInput(f"--repeats must be >= 1, got {repeats}")
    if not clients or min(clients) < 2:
        raise InvalidInput(f"client counts {list(clients)}: give at least one, each at least 2 (SecAgg sums two or "
                           "more)")
    ds = fldata.load(dataset)
    if max(clients) > len(ds.y_train):
        raise InvalidInput(f"{max(clients)} clients for {len(ds.y_train)} training samples: at most one client per "
                           "sample")
    model = models.make_model(model_kind, ds.n_features, ds.n_classes, hidden)
    trainer = models.SgdTrainer(model, epochs=epochs, lr=0.05)
    cfg = fedavg.FedAvgConfig(rounds=rounds)
    out = make_output_dir("--out", out_dir or DEFAULT_OUT)  # after the settings: a refused run leaves no directory
    rows: list[dict[str, Any]] = []
    with LocalCluster(3) as cluster, PlainAverageProcess() as plain_server:
        for n in clients:
            parts = fldata.split_iid(len(ds.y_train), n)
            round_graph = graph if n > 20 else "full"
            agg = fedavg.SecAggAggregator(cluster.coordinator, cluster.auth_metadata, clip=cfg.clip,
                                          max_total_samples=len(ds.y_train), graph=round_graph)
            math_agg = SecAggMathAggregator(cfg.clip, len(ds.y_train), round_graph)
            # The four kinds take turns, `repeats` times: a machine whose speed drifts during the run (other
            # tenants, frequency scaling) then slows every kind alike, and the spread of the per-repeat ratios
            # shows how far one run's ratio can be trusted.
            runs: dict[str, list[Any]] = {"memory": [], "plain": [], "secure": [], "math": []}
            cpu: dict[str, list[float]] = {"plain": [], "secure": []}
            for rep in range(1, repeats + 1):
                which = f"{n} clients, repeat {rep}/{repeats}"
                with console.status(f"{which}: averaging in memory ..."):
                    runs["memory"].append(fedavg.run_fedavg(model, trainer, ds, parts, cfg, fedavg.PlainAggregator()))
                with console.status(f"{which}: plain averaging over gRPC ..."):
                    result, used = _server_cpu_per_round(plain_server.pid, lambda: fedavg.run_fedavg(
                        model, trainer, ds, parts, cfg, NetworkPlainAggregator(plain_server.address)), rounds)
                    runs["plain"].append(result)
                    if used is not None:
                        cpu["plain"].append(used)
                with console.status(f"{which}: SecAgg ..."):
                    result, used = _server_cpu_per_round(cluster.procs["coordinator"].pid, lambda: fedavg.run_fedavg(
                        model, trainer, ds, parts, cfg, agg), rounds)
                    runs["secure"].append(result)
                    if used is not None:
                        cpu["secure"].append(used)
                with console.status(f"{which}: SecAgg's arithmetic in memory ..."):
                    runs["math"].append(fedavg.run_fedavg(model, trainer, ds, parts, cfg, math_agg))
            m_s, p_s, s_s, a_s = (_median_round(runs[k]) for k in ("memory", "plain", "secure", "math"))
            ratios = [_median_round([s]) / _median_round([p]) for p, s in zip(runs["plain"], runs["secure"])]
            plain, secure, math_only = runs["plain"][-1], runs["secure"][-1], runs["math"][-1]
            gaps = [100 * abs(s.accuracy[-1] - p.accuracy[-1]) for p, s in zip(runs["plain"], runs["secure"])]
            rows.append({"clients": n, "params": model.n_params, "graph": agg.graph, "memory_round_s": m_s,
                         "plain_round_s": p_s, "secure_round_s": s_s, "overhead_ratio": s_s / p_s,
                         "overhead_ratio_per_repeat": ratios,
                         "overhead_ratio_vs_memory": s_s / m_s, "secagg_added_s": s_s - p_s,
                         "secagg_math_round_s": a_s, "secagg_math_ratio": a_s / p_s,
                         "secagg_math_accuracy": math_only.accuracy[-1],
                         "plain_server_cpu_s": statistics.median(cpu["plain"]) if cpu["plain"] else None,
                         "coordinator_cpu_s": statistics.median(cpu["secure"]) if cpu["secure"] else None,
                         "plain_accuracy": plain.accuracy[-1], "memory_accuracy": runs["memory"][-1].accuracy[-1],
                         "secure_accuracy": secure.accuracy[-1],
                         "accuracy_gap_points": max(gaps)})
    table = Table(title=f"FedAvg round, {dataset} {model_kind} ({rows[0]['params']} parameters), {epochs} local "
                        f"epochs, median of {repeats} x {rounds} rounds", width=170)
    for col in ("clients", "graph", "in memory s", "plain gRPC s", "SecAgg s", "SecAgg / plain gRPC (repeats)",
                "SecAgg / in memory", "SecAgg math in memory s (/ plain gRPC)", "server CPU s: plain server / coordinator",
                "accuracy plain", "accuracy SecAgg", "gap (points)"):
        table.add_column(col, min_width=13 if col.endswith("(repeats)") else None)
    for r in rows:
        table.add_row(str(r["clients"]), r["graph"], f"{r['memory_round_s']:.3f}", f"{r['plain_round_s']:.3f}",
                      f"{r['secure_round_s']:.3f}", _ratio_cell(r), f"{r['overhead_ratio_vs_memory']:.2f}x",
                      f"{r['secagg_math_round_s']:.3f} ({r['secagg_math_ratio']:.2f}x)", _cpu_pair(r),
                      f"{r['plain_accuracy']:.4f}", f"{r['secure_accuracy']:.4f}", f"{r['accuracy_gap_points']:.2f}")
    console.print(table)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = out / f"fedavg-{dataset}-{model_kind}-{stamp}.json"
    from mpcnet.bench.runner import machine_description
    dest.write_text(json.dumps({"benchmark": "fedavg", "timestamp": stamp, "machine": machine_description(),
                                "dataset": dataset, "model": model_kind,
                                "hidden": hidden, "epochs": epochs, "rounds": rounds, "repeats": repeats, "rows": rows, "notes": __doc__}, indent=1))
    console.print(f"written to {dest}")
    return 0


def _ratio_cell(row: dict[str, Any]) -> str:
    """The ratio of the medians, and the lowest and highest of the repeats' own ratios when there are several."""
    each = row["overhead_ratio_per_repeat"]
    spread = f"\n({min(each):.2f}-{max(each):.2f})" if len(each) > 1 else ""
    return f"{row['overhead_ratio']:.2f}x{spread}"


def _cpu_pair(row: dict[str, Any]) -> str:
    plain, secure = row["plain_server_cpu_s"], row["coordinator_cpu_s"]
    return "" if plain is None or secure is None else f"{plain:.3f} / {secure:.3f}"


__all__ = ["SecAggMathAggregator", "run_fedavg_bench"]
