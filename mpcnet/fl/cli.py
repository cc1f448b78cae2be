"""`mpcnet fedavg`: federated training on a demo dataset, through SecAgg and (for comparison) in the clear.

Without ``--coordinator`` it starts a local cluster of its own (loopback processes, like ``mpcnet demo``).
Prints per-round test accuracy for each aggregator side by side with centralised training on the pooled data,
and writes the run as JSON (``--out``)."""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import time
from pathlib import Path
from typing import Any

from mpcnet.fl import data as fldata
from mpcnet.fl import fedavg, models

DEFAULT_DELTA = 1e-5
DEFAULT_BUDGET = (10.0, 1e-4)  # what the built-in dataset's key gets on its first DP run


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=fldata.DATASETS, default="breast_cancer")
    p.add_argument("--model", choices=("logreg", "mlp"), default="logreg")
    p.add_argument("--hidden", type=int, default=32, help="MLP hidden units")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--per-round", type=int, default=0, help="clients sampled per round (0 = all)")
    p.add_argument("--epochs", type=int, default=1, help="local epochs per round")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--split", choices=("iid", "dirichlet"), default="iid")
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label-skew concentration (--split dirichlet)")
    p.add_argument("--clip", type=float, default=5.0, help="L2 bound on each client's update")
    p.add_argument("--dropout", type=float, default=0.0, help="fraction of each round's clients that drop mid-round")
    p.add_argument("--epsilon", type=float, default=None, help="the run's DP epsilon, central (the default) or "
                   "distributed (--dp distributed); central inf = clipping and the DP weighting without noise, sampled "
                   "from --seed; default: no DP")
    p.add_argument("--delta", type=float, default=DEFAULT_DELTA, help="DP delta")
    p.add_argument("--dp", choices=("central", "distributed"), default=None,
                   help="with --epsilon: central (the default: the server adds Gaussian noise after SecAgg) or "
                   "distributed (each client adds Skellam noise before masking; nobody sees an un-noised aggregate)")
    p.add_argument("--sample-rate", type=float, default=1.0, help="DP: Poisson sampling rate of clients per round")
    p.add_argument("--ledger", default=None, help="epsilon ledger (default MPCNET_LEDGER or "
                   "~/.mpcnet/epsilon-ledger.sqlite)")
    p.add_argument("--ledger-dataset", default=None, help="the ledger's key (default sklearn:<dataset>); another key "
                   "must already have a budget (`mpcnet ledger budget`): a mistyped key is refused, not given a "
                   "fresh budget")
    p.add_argument("--budget", type=float, nargs=2, metavar=("EPSILON", "DELTA"), default=None,
                   help=f"the budget the built-in dataset's key gets on its first DP run (default "
                   f"{DEFAULT_BUDGET[0]:g} {DEFAULT_BUDGET[1]:g}); a --ledger-dataset key needs a budget set "
                   "beforehand with `mpcnet ledger budget`")
    p.add_argument("--aggregator", choices=("secagg", "plain", "both"), default="both")
    p.add_argument("--graph", choices=("full", "sparse"), default="full",
                   help="SecAgg's graph: full (every pair of clients) or sparse (SecAgg+, O(log n) neighbours)")
    p.add_argument("--coordinator", default=None, help="a running coordinator (needs MPCNET_CLUSTER_SECRET[_FILE]); "
                   "default: a local cluster of its own")
    p.add_argument("--weight-cap", type=int, default=0, help="DP: weight each client min(n_k / CAP, 1), a public "
                   "cap fixed before looking at the data (default 0: every client weight 1)")
    p.add_argument("--seed", default="mpcnet-fl", help="seeds the split, initial weights and minibatch order (and "
                   "the clients sampled, except under central DP with noise, whose sample comes from OS entropy)")
    p.add_argument("--out", default=None, help="write the run (accuracy per round, outcomes, privacy receipts) "
                   "as JSON here, and each released model beside it as <stem>.<aggregator>.npy")


def fedavg_main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress
    from rich.table import Table

    from mpcnet.errors import InvalidInput, MpcnetError, check_output_file
    console = Console()
    # refusals and failures: one line on stderr, however narrow the terminal (or a pipe: rich would wrap at 80)
    errors = Console(stderr=True, soft_wrap=True)
    try:
        # two of check_run's checks, in terms of the flags and before a local cluster is started for nothing
        if args.clients < 1:
            raise ValueError(f"--clients {args.clients}: at least 1")
        if not 0 <= args.per_round <= args.clients:
            raise ValueError(f"--per-round {args.per_round}: from 1 to --clients ({args.clients}), or 0 for all")
        # (with central DP's Poisson sampling --per-round is refused below: the test is then on --clients, since a
        # single client could never make a SecAgg round and every round would be skipped with the epsilon spent)
        if args.aggregator != "plain" and 0 < (args.per_round or args.clients) < 2:
            raise ValueError("SecAgg needs at least 2 clients a round: raise --clients/--per-round, or average in "
                             "the clear with --aggregator plain")
        if args.out:
            check_output_file("--out", args.out)
        # flags that shape a DP run do nothing without --epsilon: the run would be non-private, told only by
        # its receipt
        shaping = [flag for flag, given in (("--dp", args.dp is not None), ("--sample-rate", args.sample_rate != 1.0),
                                            ("--weight-cap", args.weight_cap != 0),
                                            ("--delta", args.delta != DEFAULT_DELTA),
                                            ("--budget", args.budget is not None),
                                            ("--ledger", args.ledger is not None),
                                            ("--ledger-dataset", args.ledger_dataset is not None)) if given]
        if args.epsilon is None and shaping:
            raise ValueError(f"{', '.join(shaping)} without --epsilon: the run would have no differential privacy; "
                             "give --epsilon (e.g. --epsilon 8), or leave out " + ", ".join(shaping))
        # --epsilon inf adds no noise: the model is no DP release, and no finite budget can pay for it
        no_dp = args.epsilon == math.inf
        charging = [flag for flag, given in (("--ledger", args.ledger is not None),
                                             ("--ledger-dataset", args.ledger_dataset is not None),
                                             ("--budget", args.budget is not None)) if given]
        if no_dp and charging:
            raise ValueError(f"--epsilon inf with {', '.join(charging)}: a run without DP noise is not differentially "
                             "private, so it cannot be charged to a finite budget; leave out "
                             f"{', '.join(charging)} (the run is then charged nowhere), or give a finite --epsilon")
        from mpcnet.ledger import check_chosen_location, default_path
        if args.epsilon is not None and not no_dp:
            check_chosen_location(args.ledger)
        if args.out and Path(args.out).resolve() == Path(args.ledger or default_path()).resolve():
            raise ValueError(f"--out {args.out} is the epsilon ledger's file: the run's JSON would replace the "
                             "ledger's history; choose another --out")
        if args.budget is not None and not (0 < args.budget[0] < math.inf and 0 <= args.budget[1] < 1):
            raise ValueError(f"--budget {args.budget[0]:g} {args.budget[1]:g}: a budget is a finite epsilon > 0 and "
                             "0 <= delta < 1")
        if args.ledger_dataset is not None and not args.ledger_dataset.strip():
            raise ValueError("--ledger-dataset is empty: leave it out for the default key sklearn:<dataset>")
        ds = fldata.load(args.dataset, seed=args.seed)
        model = models.make_model(args.model, ds.n_features, ds.n_classes, args.hidden)
        trainer = models.SgdTrainer(model, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size)
        parts = (fldata.split_iid(len(ds.y_train), args.clients, args.seed) if args.split == "iid" else
                 fldata.split_dirichlet(ds.y_train, args.clients, args.alpha, args.seed))
        dp: Any = None
        ddp = None
        if args.epsilon is not None and args.dp == "distributed":
            from mpcnet.fl.distributed_dp import calibrate_distributed
            if math.isinf(args.epsilon):
                raise ValueError("distributed DP needs a finite --epsilon (for no noise, leave out --dp: --epsilon "
                                 "inf is central DP's clipping and weighting without noise)")
            if args.sample_rate != 1.0:
                raise ValueError("distributed DP claims no amplification by sampling: use --per-round, not "
                                 "--sample-rate")
            per_round = args.per_round or args.clients
            # t: the fewest clients a completed round can sum (the SecAgg threshold of the sample)
            t = max(2, math.ceil(2 / 3 * per_round))
            ddp = dp = calibrate_distributed(args.epsilon, args.delta, args.rounds, args.clip, model.n_params, t,
                                             per_round)
        elif args.epsilon is not None:
            if args.per_round:  # it would be ignored: central DP's accounting assumes Poisson sampling
                raise ValueError(f"--per-round {args.per_round}: central DP samples each client with probability "
                                 "--sample-rate (Poisson sampling, what its accounting assumes); use --sample-rate, "
                                 "or --dp distributed for a fixed number per round")
            from mpcnet.fl.privacy import calibrate
            dp = calibrate(args.epsilon, args.delta, args.rounds, args.sample_rate, args.clip)
        cfg = fedavg.FedAvgConfig(rounds=args.rounds, clients_per_round=args.per_round, clip=args.clip,
                                  dropout=args.dropout, seed=args.seed, dp=None if ddp else dp, ddp=ddp,
                                  weight_cap=args.weight_cap)
        # --coordinator's secret and TLS files: a setting, refused here like the others (exit 2)
        access = _coordinator(args) if args.aggregator != "plain" else (None, (), None, None)
    except (MpcnetError, ValueError) as exc:
        errors.print(f"[red]mpcnet fedavg: {escape(str(exc))}[/]")
        return 2
    console.print(f"{args.dataset}: {len(ds.y_train)} training / {len(ds.y_test)} test samples, "
                  f"{ds.n_features} features, {ds.n_classes} classes; {args.clients} clients ({args.split}"
                  f"{f', alpha {args.alpha}' if args.split == 'dirichlet' else ''}), model {args.model} "
                  f"({model.n_params} parameters)")
    kinds = ["secagg", "plain"] if args.aggregator == "both" else [args.aggregator]
    ledger_state: dict[str, Any] | None = None
    if ddp is not None:
        console.print(f"distributed DP: epsilon {ddp.epsilon:g}, delta {ddp.delta:g} over {ddp.rounds} rounds: every "
                      f"client adds Skellam noise with mu/t = {ddp.local_mu:.4g} (t = {ddp.min_contributors}); any "
                      f"{ddp.min_contributors} clients' sum carries noise std {ddp.noise_std:.3g} (noise multiplier "
                      f"{ddp.noise_multiplier:.3f}), by dp-accounting's RDP accountant")
    elif dp is not None:
        console.print(f"central DP: epsilon {dp.epsilon:g}, delta {dp.delta:g} over {dp.rounds} rounds at sampling "
                      f"rate {dp.sampling_rate:g}: noise multiplier {dp.noise_multiplier:.3f} (std "
                      f"{dp.noise_std:.3g} on the sum of clipped updates), by dp-accounting's RDP accountant")
        if dp.noise_multiplier == 0:  # a default ledger (MPCNET_LEDGER, ~/.mpcnet) is not a request to charge it
            console.print(f"epsilon inf: no noise, so the model is not differentially private and nothing is "
                          f"charged to the epsilon ledger ({default_path()})")
    histories: dict[str, fedavg.History] = {}
    cluster = None
    try:
        aggregators: dict[str, Any] = {}
        for kind in kinds:
            if kind == "plain":
                aggregators[kind] = fedavg.PlainAggregator()
                continue
            # the coordinator is started or checked before the ledger is charged: a run that cannot start spends
            # no epsilon
            address, md, tls, admin = access
            if address is None:
                from mpcnet.cluster import LocalCluster
                cluster = LocalCluster(3)
                cluster.start()
                address, md = cluster.coordinator, cluster.auth_metadata
            secure = fedavg.SecAggAggregator(address, md, clip=args.clip, max_total_samples=len(ds.y_train), tls=tls,
                                             admin_tls=admin, graph=args.graph)
            if args.coordinator:
                secure.check_reachable()
            aggregators[kind] = secure
        try:  # a setting that cannot work: exit 2, like the refusals before the cluster started
            # central DP: what rounds too small to aggregate add to delta (refused there when it is not small)
            small_delta = max(fedavg.check_run(cfg, agg, len(parts), model.n_params, [len(p) for p in parts])
                              for agg in aggregators.values())
        except InvalidInput as exc:
            errors.print(f"[red]mpcnet fedavg: {escape(str(exc))}[/]")
            return 2
        if dp is not None and dp.noise_multiplier > 0:
            try:
                ledger_state = _charge(args, dp, kinds, console, small_delta)
            except sqlite3.Error as exc:  # a fallback: the ledger wraps SQLite's errors as LedgerUnusable
                errors.print(f"[red]mpcnet fedavg: the epsilon ledger {escape(str(args.ledger or default_path()))} "
                              f"cannot be used: {escape(str(exc))} (`mpcnet ledger show` tells what it holds)[/]")
                return 2
            except MpcnetError as exc:
                from mpcnet.ledger import BudgetExceeded
                hint = ""
                if isinstance(exc, BudgetExceeded):  # what to do: the budget is the dataset's, set on its first run
                    hint = (f"; spend less (--epsilon), or raise the budget with `mpcnet ledger budget --ledger "
                            f"{args.ledger or default_path()} --dataset {exc.dataset} --epsilon E --delta D` "
                            "(--budget sets only the built-in key's first budget)")
                errors.print(f"[red]mpcnet fedavg: {escape(str(exc) + hint)}[/]")
                return 3 if isinstance(exc, BudgetExceeded) else 2  # 3: over budget; 2: the ledger file itself
        with console.status(f"centralised reference: {args.rounds * args.epochs} epochs on the pooled data ..."):
            central = fedavg.centralised(model, models.SgdTrainer(model, epochs=args.rounds * args.epochs,
                                                                  lr=args.lr, batch_size=args.batch_size), ds,
                                         args.seed)
        for kind, agg in aggregators.items():
            shortfall = (_ShortfallRecorder(args, kind, ddp, console, ledger_state)
                         if ddp is not None and ledger_state else None)
            with Progress(console=console, transient=True) as bar:
                task = bar.add_task(f"FedAvg ({kind})", total=args.rounds)

                def on_round(out: fedavg.RoundOutcome, _acc: float) -> None:
                    bar.advance(task)
                    if shortfall is not None:
                        shortfall.round_done(out)
                histories[kind] = fedavg.run_fedavg(model, trainer, ds, parts, cfg, agg, on_round=on_round)
    except MpcnetError as exc:
        errors.print(f"[red]mpcnet fedavg: {escape(str(exc))}[/]")
        return 1
    finally:
        if cluster is not None:
            cluster.stop()
            cluster.cleanup()
    table = Table(title=f"test accuracy per round (centralised on the pooled data: {central:.4f})")
    table.add_column("round")
    for kind in kinds:
        table.add_column(kind)
        table.add_column(f"{kind} s/round")
    for r in range(args.rounds + 1):
        row = [str(r)]
        for kind in kinds:
            h = histories[kind]
            out = h.rounds[r - 1] if r else None
            note = f" (skipped: {out.skipped[:40]})" if out and out.skipped else ""
            row += [f"{h.accuracy[r]:.4f}{note}", f"{out.seconds:.2f}" if out else "-"]
        table.add_row(*row)
    console.print(table)
    if "secagg" in histories and "plain" in histories:
        gap = abs(histories["secagg"].accuracy[-1] - histories["plain"].accuracy[-1])
        console.print(f"secure vs plain after {args.rounds} rounds: {100 * gap:.2f} percentage points apart")
    from mpcnet.receipt import fedavg_receipt, public_rounds
    runs: dict[str, Any] = {}
    for k, h in histories.items():
        rounds = [{"round": o.round, "sampled": o.sampled, "included": o.included, "dropped": o.dropped,
                   "skipped": o.skipped, "total_samples": o.total_samples, "seconds": o.seconds} for o in h.rounds]
        rounds = [dict(r, noise_contributors=o.noise_contributors) if ddp is not None else r
                  for r, o in zip(rounds, h.rounds)]
        # the run's JSON leaves with the model, as the receipt does: the same counts-only rounds when the sample is
        # secret
        runs[k] = {"accuracy": h.accuracy, "rounds": public_rounds(rounds, dp),
                   "receipt": fedavg_receipt(f"fedavg-{k}", k, rounds, args.clients, dp,
                                             _model_ledger(ledger_state, k, dp, small_delta),
                                             graph=args.graph, weight_cap=args.weight_cap,
                                             small_rounds_delta=small_delta)}
    for k, run in runs.items():
        rc = run["receipt"]
        eps = rc["differential_privacy"]["epsilon"]
        console.print(f"[bold]privacy receipt ({k})[/]: " + "; ".join(rc["layers"]) +
                      f". DP: {rc['differential_privacy']['mechanism']}, epsilon "
                      f"{'unbounded' if eps is None else f'{eps:.4g}'}{_planned(rc['differential_privacy'])}. "
                      "Trusts: " + "; ".join(rc["trust_assumptions"]))
    if args.out:
        try:
            # strict JSON: an infinite --epsilon is written as the string "inf" (JSON has no infinity)
            from mpcnet.jsonout import strict_json
            # The centralised reference is a model of the pooled data without DP: its accuracy is not released
            # with a DP run (it is printed on the operator's console above)
            reference: Any = central if dp is None else "withheld: a non-private model of the pooled data"
            for k, h in histories.items():  # each released model beside --out, named with its digest in the run
                if h.params is not None:
                    runs[k]["model"] = _save_model(Path(args.out), k, h.params)
            Path(args.out).write_text(json.dumps(strict_json({
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "args": vars(args),
                "centralised": reference, "runs": runs}), indent=1, default=str, allow_nan=False))
        except OSError as exc:  # checked writable before the run: the file system changed meanwhile
            errors.print(f"[red]mpcnet fedavg: --out {args.out} could not be written ({exc.strerror or exc}); the "
                          "receipts' summaries are printed above[/]")
            return 1
        console.print(f"written to {args.out}, with the models its receipts are about beside it ("
                      + ", ".join(run["model"]["file"] for run in runs.values() if "model" in run) + ")")
    return 0


def ledger_release(dp: Any, clients: int, model: str, data: str) -> tuple[str, dict[str, Any]]:
    """A FedAvg model's ledger row: its mechanism and parameters (``data``: what was trained on, whatever the
    ledger key)."""
    from mpcnet.fl.distributed_dp import DistributedDp
    if isinstance(dp, DistributedDp):
        return "skellam (distributed DP, RDP accounting)", {
            "noise_multiplier": dp.noise_multiplier, "mu": dp.mu, "min_contributors": dp.min_contributors,
            "scale": dp.scale, "l2": dp.l2, "clip": dp.clip, "rounds": dp.rounds, "clients": clients, "model": model,
            "data": data}
    return "gaussian (central DP, RDP accounting)", {
        "noise_multiplier": dp.noise_multiplier, "clip": dp.clip, "rounds": dp.rounds,
        "sampling_rate": dp.sampling_rate, "clients": clients, "model": model, "data": data}


def _save_model(out: Path, kind: str, params: Any) -> dict[str, Any]:
    """Write a released model as ``<out stem>.<kind>.npy`` beside ``--out``; what the run file says of it."""
    import hashlib

    import numpy as np
    path = out.with_name(f"{out.stem}.{kind}.npy")
    np.save(path, np.asarray(params, dtype=np.float64), allow_pickle=False)
    return {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "parameters": len(params)}


def _charge(args: argparse.Namespace, dp: Any, kinds: list[str], console: Any,
            small_delta: float = 0.0) -> dict[str, Any]:
    """Spend the run's budget before it starts: one release per aggregator run (each publishes a model)."""
    from mpcnet.ledger import EpsilonLedger, NoBudget, default_path
    builtin = f"sklearn:{args.dataset}"
    key = args.ledger_dataset or builtin
    # Only the built-in key gets a budget on its first run: any other key is typed by hand, and a typo would
    # otherwise start a fresh budget for the same data.  Such a key is set up with `mpcnet ledger budget`.
    default_budget = (args.budget or DEFAULT_BUDGET) if key == builtin else None
    path = Path(args.ledger or default_path())

    def no_budget(where: str) -> NoBudget:
        return NoBudget(f"dataset {key!r} has no budget: {where}; a --ledger-dataset key needs one set first: "
                        f"`mpcnet ledger budget --ledger {path} --dataset {key} --epsilon E --delta D`, or leave out "
                        "--ledger-dataset for the built-in key", key)

    if default_budget is None and not path.exists():  # refused without making one
        raise no_budget(f"the ledger {path} does not exist yet")
    with EpsilonLedger(args.ledger) as ledger:
        existing = ledger.budget(key)
        first = existing is None  # for the message only: the budget is made inside the charge
        if first and default_budget is None:
            raise no_budget(f"none in the ledger {ledger.path} (it holds: {', '.join(ledger.datasets()) or 'none'})")
        if existing is not None and args.budget is not None and tuple(args.budget) != existing:
            console.print(f"ledger: --budget not applied: dataset {key} already has the budget epsilon "
                          f"{existing[0]:g}, delta {existing[1]:g} (`mpcnet ledger budget` changes it)")
        mechanism, params = ledger_release(dp, args.clients, args.model, builtin)
        # the default budget is set in the same transaction as the charge: two first runs started together
        # cannot both set one (the later silently replacing the earlier's), nor charge against none
        if small_delta:
            params["delta_small_rounds"] = small_delta
        ledger.charge_all([(key, f"fedavg-{kind}", mechanism, params, dp.epsilon, dp.delta + small_delta)
                           for kind in kinds],
                          default_budget=default_budget)
        if first:
            budget = ledger.budget(key)
            assert budget is not None
            console.print(f"ledger: dataset {key} gets the budget epsilon {budget[0]:g}, delta {budget[1]:g}")
        eps, dl = ledger.remaining(key)
        console.print(f"ledger {ledger.path}: {key} spent epsilon {len(kinds) * dp.epsilon:g} for this run; "
                      f"{eps:g}, delta {dl:g} left")
        return {"dataset": key, "path": str(ledger.path),
                "spent_by_this_run": [len(kinds) * dp.epsilon, len(kinds) * (dp.delta + small_delta)],
                "remaining": [eps, dl]}


def _model_ledger(state: dict[str, Any] | None, kind: str, dp: Any, small_delta: float) -> dict[str, Any] | None:
    """What one model's receipt shows of the ledger: the run's state, with what this model's release spent (each
    model is a release of its own: --aggregator both publishes two, and spent_by_this_run counts both)."""
    if not state:
        return state
    extra = sum(o["epsilon"] for o in state.get("overruns", []) if o["release"] == f"fedavg-{kind}")
    return {**state, "spent_by_this_model": [dp.epsilon + extra, dp.delta + small_delta]}


def _planned(privacy: dict[str, Any]) -> str:
    """' (planned E)' when a distributed-DP run spent more than it was calibrated for."""
    planned = privacy.get("planned_epsilon")
    return f" (planned {planned:g}: rounds short of noise)" if planned is not None and privacy["epsilon"] > planned \
        else ""


class _ShortfallRecorder:
    """Distributed DP: a round that summed fewer than t clients' noise spent more than was charged.  After each
    round, the epsilon of the rounds so far at their actual noise (and the rest at the planned t) is compared with
    what the ledger already holds for this run; any excess is recorded at once, so a run that crashes later has
    still recorded what it spent."""

    def __init__(self, args: argparse.Namespace, kind: str, ddp: Any, console: Any,
                 ledger_state: dict[str, Any]) -> None:
        self.args, self.kind, self.ddp, self.console = args, kind, ddp, console
        self.ledger_state = ledger_state  # what the receipts show of the ledger: kept up to date here
        self.contributors: list[int] = []
        self.recorded = ddp.epsilon  # charged before the run

    def round_done(self, out: Any) -> None:
        if out.skipped or out.mean is None:
            return  # nothing was released
        self.contributors.append(out.noise_contributors)
        planned_rest = [self.ddp.min_contributors] * max(0, self.ddp.rounds - len(self.contributors))
        realised = self.ddp.realised_epsilon(self.contributors + planned_rest)
        if realised <= self.recorded + 1e-9:
            return
        from mpcnet.ledger import EpsilonLedger
        key = self.args.ledger_dataset or f"sklearn:{self.args.dataset}"
        extra = realised - self.recorded
        with EpsilonLedger(self.args.ledger) as ledger:
            ledger.record_overrun(key, f"fedavg-{self.kind} round {out.round} (shortfall)",
                                  "skellam (distributed DP): round below t",
                                  {"round": out.round, "noise_contributors": out.noise_contributors,
                                   "t": self.ddp.min_contributors}, extra, 0.0)
            eps, dl = ledger.remaining(key)
        self.recorded = realised
        self.ledger_state["remaining"] = [eps, dl]
        self.ledger_state["spent_by_this_run"][0] += extra
        self.ledger_state.setdefault("overruns", []).append({"release": f"fedavg-{self.kind}", "round": out.round,
                                                             "epsilon": extra})
        self.console.print(f"[yellow]ledger: round {out.round} summed {out.noise_contributors} noise shares, fewer "
                           f"than t = {self.ddp.min_contributors}: recorded epsilon {extra:.4g} more ({eps:g} "
                           "left)[/]")


def _coordinator(args: argparse.Namespace) -> tuple[str | None, tuple[tuple[str, str], ...], Any, Any]:
    """(address, operator metadata, client TLS, operator TLS) of ``--coordinator``; None without it."""
    if not args.coordinator:
        return None, (), None, None
    from mpcnet.config import load_config
    from mpcnet.errors import InvalidInput
    from mpcnet.transport.rpc import CLUSTER_AUTH_KEY
    cfg = load_config()
    if not cfg.cluster_secret:
        raise InvalidInput("--coordinator needs the cluster secret: set MPCNET_CLUSTER_SECRET_FILE (CreateRound is "
                           "an operator call)")
    tls = admin = None
    if cfg.tls_dir:  # the simulated clients use the client certificate, CreateRound the operator's
        from mpcnet.transport.tls import TlsFiles
        tls = TlsFiles.load(cfg.tls_dir, "client", cfg.tls_name or "main")
        admin = TlsFiles.load(cfg.tls_dir, "coordinator", "main")
    return args.coordinator, ((CLUSTER_AUTH_KEY, cfg.cluster_secret),), tls, admin


__all__ = ["add_arguments", "fedavg_main"]
