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
``rounds`` FedAvg rounds; a time is the median over all of a kind's rounds.  The overhead ratio is paired: each
repeat's median SecAgg round over the same repeat's median plain round, and the headline is the median of those
ratios, with their lowest and highest beside it (a ratio of medians pooled over the repeats would not cancel the
machine's drift between repeats, which is why the kinds take turns; on a shared machine one repeat's ratio can
be a point or more off the next one's).  The JSON keeps every round's time.

The plain server answers every client with the new mean (a FedAvg server hands the model back); the SecAgg round
gives its sum to the operator only (sum_to_operator_only) and its clients a short done reply.  Answering only one
client, or sending float32 instead of float64 updates, was measured not to change the plain round: per-call gRPC
costs dominate it.  The accuracy columns are without DP (``dp=None``: sample-weighted FedAvg) on both sides, so
their gap is SecAgg's quantization alone; the JSON also gives the largest difference between the two final models'
parameters.

A round's wall time counts everything the round does on this machine: local training of the sampled clients
(sequential here, in parallel on real devices), and for the networked rounds every client's channel and calls
(in this one process, asyncio: also sequential) and, for SecAgg, CreateRound, key agreement, masking and
unmasking and the coordinator's work over gRPC on loopback.  The clients' channels share one TCP connection
to each server (gRPC's global subchannel pool), in both networked kinds alike: no client pays the connection
setup a device would.  On real devices the client-side work runs in parallel; this benchmark does not pretend
it does.  What a deployment's round time would be governed by is the server's own work per round, so the table
also gives the CPU seconds the averaging server and the coordinator spent per round (Linux: from /proc, in clock
ticks, so summed over all the repeats before dividing by their rounds; blank elsewhere), and the JSON the CPU
seconds of this process (all the simulated clients) per round of each networked kind.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

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


def _server_cpu(pid: int, run: Any) -> tuple[Any, float | None, float]:
    """``run()``'s result, the CPU seconds process ``pid`` spent meanwhile (None without /proc), and this process's
    own CPU seconds meanwhile (the simulated clients, every thread)."""
    mine = time.process_time()
    try:
        before: float | None = proc_cpu_seconds(pid)
    except OSError:
        before = None
    result = run()
    used = None if before is None else proc_cpu_seconds(pid) - before
    return result, used, time.process_time() - mine


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
            cpu: dict[str, list[float]] = {"plain": [], "secure": []}  # the server's, each repeat
            own: dict[str, list[float]] = {"plain": [], "secure": []}  # this process's (the clients'), each repeat
            for rep in range(1, repeats + 1):
                which = f"{n} clients, repeat {rep}/{repeats}"
                with console.status(f"{which}: averaging in memory ..."):
                    runs["memory"].append(fedavg.run_fedavg(model, trainer, ds, parts, cfg, fedavg.PlainAggregator()))
                with console.status(f"{which}: plain averaging over gRPC ..."):
                    result, used, mine = _server_cpu(plain_server.pid, lambda: fedavg.run_fedavg(
                        model, trainer, ds, parts, cfg, NetworkPlainAggregator(plain_server.address)))
                    runs["plain"].append(result)
                    own["plain"].append(mine)
                    if used is not None:
                        cpu["plain"].append(used)
                with console.status(f"{which}: SecAgg ..."):
                    result, used, mine = _server_cpu(cluster.procs["coordinator"].pid, lambda: fedavg.run_fedavg(
                        model, trainer, ds, parts, cfg, agg))
                    runs["secure"].append(result)
                    own["secure"].append(mine)
                    if used is not None:
                        cpu["secure"].append(used)
                with console.status(f"{which}: SecAgg's arithmetic in memory ..."):
                    runs["math"].append(fedavg.run_fedavg(model, trainer, ds, parts, cfg, math_agg))
            m_s, p_s, s_s, a_s = (_median_round(runs[k]) for k in ("memory", "plain", "secure", "math"))
            # paired: each repeat's SecAgg over the same repeat's plain round, so that drift between repeats cancels
            ratios = [_median_round([s]) / _median_round([p]) for p, s in zip(runs["plain"], runs["secure"])]
            plain, secure, math_only = runs["plain"][-1], runs["secure"][-1], runs["math"][-1]
            gaps = [100 * abs(s.accuracy[-1] - p.accuracy[-1]) for p, s in zip(runs["plain"], runs["secure"])]
            param_gaps = [float(np.max(np.abs(s.params - p.params))) for p, s in zip(runs["plain"], runs["secure"])
                          if s.params is not None and p.params is not None]
            done = rounds * repeats

            def per_round(seconds: list[float]) -> float | None:  # clock ticks: summed over the repeats first
                return sum(seconds) / done if len(seconds) == repeats else None

            rows.append({"clients": n, "params": model.n_params, "graph": agg.graph, "memory_round_s": m_s,
                         "plain_round_s": p_s, "secure_round_s": s_s, "overhead_ratio": statistics.median(ratios),
                         "overhead_ratio_per_repeat": ratios, "overhead_ratio_pooled": s_s / p_s,
                         "overhead_ratio_vs_memory": s_s / m_s, "secagg_added_s": s_s - p_s,
                         "secagg_math_round_s": a_s, "secagg_math_ratio": a_s / p_s,
                         "secagg_math_accuracy": math_only.accuracy[-1],
                         "plain_server_cpu_s": per_round(cpu["plain"]),
                         "coordinator_cpu_s": per_round(cpu["secure"]),
                         "clients_process_cpu_s": {"plain": sum(own["plain"]) / done,
                                                   "secure": sum(own["secure"]) / done},
                         "round_seconds": {k: [[r.seconds for r in run.rounds] for run in v] for k, v in runs.items()},
                         "plain_accuracy": plain.accuracy[-1], "memory_accuracy": runs["memory"][-1].accuracy[-1],
                         "secure_accuracy": secure.accuracy[-1],
                         "accuracy_gap_points": max(gaps),
                         "max_parameter_difference": max(param_gaps) if param_gaps else None})
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
    """The median of the repeats' own ratios, and their lowest and highest when there are several."""
    each = row["overhead_ratio_per_repeat"]
    spread = f"\n({min(each):.2f}-{max(each):.2f})" if len(each) > 1 else ""
    return f"{row['overhead_ratio']:.2f}x{spread}"


def _cpu_pair(row: dict[str, Any]) -> str:
    plain, secure = row["plain_server_cpu_s"], row["coordinator_cpu_s"]
    return "" if plain is None or secure is None else f"{plain:.3f} / {secure:.3f}"


__all__ = ["SecAggMathAggregator", "run_fedavg_bench"]
