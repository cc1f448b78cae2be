"""`mpcnet fedavg-sweep`: the privacy-utility trade-off -- test accuracy per round for several epsilons (central
or distributed DP through SecAgg), the mean over seeds, as a table, JSON and a PNG plot.  Sweeps are experiments on public
demo data: they do not spend from the epsilon ledger (say so in any report)."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from mpcnet.errors import InvalidInput, make_output_dir
from mpcnet.fl import data as fldata
from mpcnet.fl import fedavg, models, privacy
from mpcnet.fl.distributed_dp import calibrate_distributed

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
NOT_CHARGED = ("not charged to any epsilon ledger: a utility study on the public demo data (each model trained "
               "here would be a release on data that needs protecting; `mpcnet fedavg` charges those)")


def epsilon_list(text: str) -> list[float]:
    """``--epsilons``: comma-separated, each a number > 0 or inf (no noise: clipping and DP weighting only)."""
    try:
        out = [math.inf if e.strip() in ("inf", "∞") else float(e) for e in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated numbers or inf, e.g. 0.5,1,2,8,inf") from None
    if any(not e > 0 for e in out):
        raise argparse.ArgumentTypeError(f"{text!r}: every epsilon must be > 0 (or inf)")
    twice = sorted({e for e in out if out.count(e) > 1})
    if twice:  # the second curve would replace the first under the same label
        raise argparse.ArgumentTypeError(f"{text!r}: epsilon {twice[0]:g} given twice")
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=fldata.DATASETS, default="breast_cancer")
    p.add_argument("--model", choices=("logreg", "mlp"), default="logreg")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--clip", type=float, default=0.25,
                   help="L2 bound on each update (0.25: best of a few tried at eps 8)")
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--epsilons", type=epsilon_list, default="0.5,1,2,8,inf",
                   help="comma-separated epsilons, each > 0 or inf")
    p.add_argument("--seeds", type=int, default=3, help="runs per epsilon (the noise differs; the mean is shown)")
    p.add_argument("--split", choices=("iid", "dirichlet"), default="iid")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--aggregator", choices=("secagg", "plain"), default="secagg")
    p.add_argument("--dp", choices=("central", "distributed"), default="central",
                   help="central: Gaussian noise added by the server; distributed: Skellam noise from every client")
    p.add_argument("--out", default=None, help="directory for the JSON and PNG (default benchmarks/results)")


def sweep_main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from mpcnet.cluster import LocalCluster
    console = Console()
    epsilons = args.epsilons
    if args.seeds < 1:
        raise InvalidInput(f"--seeds {args.seeds}: at least one run per epsilon")
    if args.aggregator == "secagg" and args.clients < 2:
        raise InvalidInput(f"--clients {args.clients}: SecAgg needs at least 2 (or --aggregator plain)")
    if args.dp == "distributed" and args.clients < 2:
        raise InvalidInput(f"--clients {args.clients}: distributed DP sums the noise of at least 2 clients")
    ds = fldata.load(args.dataset)
    model = models.make_model(args.model, ds.n_features, ds.n_classes)
    trainer = models.SgdTrainer(model, epochs=1, lr=0.05)
    parts = (fldata.split_iid(len(ds.y_train), args.clients) if args.split == "iid" else
             fldata.split_dirichlet(ds.y_train, args.clients, args.alpha))
    curves: dict[str, list[float]] = {}
    noise: dict[str, float] = {}
    fedavg.FedAvgConfig(rounds=args.rounds, clip=args.clip)  # checks both before anything runs
    plans: list[tuple[float | None, Any, Any]] = []  # (epsilon, central DP, distributed DP), calibrated up front
    for eps in [None, *epsilons]:  # None: no DP at all (FedAvg weights, no clipping weights)
        if eps is not None and args.dp == "distributed" and not math.isinf(eps):
            plans.append((eps, None, calibrate_distributed(eps, args.delta, args.rounds, args.clip, model.n_params,
                                                           max(2, math.ceil(2 / 3 * args.clients)), args.clients)))
        else:
            plans.append((eps, None if eps is None else privacy.calibrate(eps, args.delta, args.rounds, 1.0,
                                                                          args.clip), None))
    out = make_output_dir("--out", args.out or DEFAULT_OUT)  # after the checks above, before the sweep
    cluster = LocalCluster(3).start() if args.aggregator == "secagg" else None
    try:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("sweep", total=(len(epsilons) + 1) * args.seeds)
            for eps, dp, ddp in plans:
                label = "non-private" if eps is None else f"eps={eps:g}"
                runs = []
                for s in range(args.seeds):
                    agg: Any = fedavg.PlainAggregator() if cluster is None else fedavg.SecAggAggregator(
                        cluster.coordinator, cluster.auth_metadata, clip=args.clip, max_total_samples=len(ds.y_train))
                    cfg = fedavg.FedAvgConfig(rounds=args.rounds, clip=args.clip, dp=dp, ddp=ddp, seed=f"sweep-{s}")
                    runs.append(fedavg.run_fedavg(model, trainer, ds, parts, cfg, agg).accuracy)
                    bar.advance(task)
                curves[label] = np.mean(runs, axis=0).tolist()
                noise[label] = ddp.noise_multiplier if ddp else 0.0 if dp is None else dp.noise_multiplier
    finally:
        if cluster is not None:
            cluster.stop()
            cluster.cleanup()
    base = curves["non-private"][-1]
    table = Table(title=f"{args.dataset}: test accuracy after {args.rounds} rounds, {args.clients} clients, "
                        f"mean of {args.seeds} runs ({args.aggregator}, {args.dp} DP; delta {args.delta:g}, "
                        f"clip {args.clip:g})")
    for col in ("privacy", "noise multiplier", "accuracy", "vs non-private (points)"):
        table.add_column(col)
    for label, curve in curves.items():
        table.add_row(label, f"{noise[label]:.3f}", f"{curve[-1]:.4f}", f"{100 * (curve[-1] - base):+.2f}")
    console.print(table)
    console.print(NOT_CHARGED)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    stem = out / f"fedavg-privacy-{args.dataset}-{'' if args.dp == 'central' else 'distributed-'}{stamp}"
    from mpcnet.jsonout import strict_json  # epsilon inf is "inf": JSON has no infinity
    stem.with_suffix(".json").write_text(json.dumps(strict_json({"when": stamp, "args": vars(args), "curves": curves,
                                                                 "dp": args.dp, "noise_multiplier": noise,
                                                                 "ledger": NOT_CHARGED}),
                                                    indent=1, allow_nan=False))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    # non-private last, dashed over the others: where clipping never bites it lies exactly on eps=inf
    for label in sorted(curves, key=lambda name: name == "non-private"):
        curve = curves[label]
        same = label == "non-private" and curves.get("eps=inf") == curve
        ax.plot(range(len(curve)), curve, marker="x" if label == "non-private" else "o", markersize=3,
                label=label + (" (= eps=inf)" if same else ""), linestyle="--" if label == "non-private" else "-")
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    over = "over SecAgg" if args.aggregator == "secagg" else "averaged in the clear"
    ax.set_title(f"FedAvg {over}, {args.dp} DP: {args.dataset}, {args.clients} clients, mean of {args.seeds}",
                 fontsize=10)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=120)
    console.print(f"written: {stem.with_suffix('.json')}, {stem.with_suffix('.png')}")
    return 0


__all__ = ["add_arguments", "sweep_main"]
