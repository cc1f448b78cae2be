"""`make demo`: the embedded default, everything on loopback.

Starts a dealer, 3 compute nodes and a coordinator as separate processes,
has three input parties (hospitals A, B, C) secret-share private arrays,
computes a sum, an elementwise product, a dot product and the FedAvg
sample-size-weighted average, checks every result against numpy, prints
results, timings and a "who saw what" receipt, stops every process and
exits non-zero if any check failed.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

import mpcnet
from mpcnet.cluster import LocalCluster
from mpcnet.errors import MpcnetError

ULP = 2.0**-16


def run_demo(n_nodes: int = 3, console: Console | None = None) -> int:
    console = console or Console(width=max(Console().width, 110))
    cluster = LocalCluster(n_nodes)
    failures = 0
    t_start = time.perf_counter()
    try:
        with console.status("starting dealer, %d nodes and coordinator ..." % n_nodes):
            cluster.start()
        t_up = time.perf_counter() - t_start
        console.print(f"[bold]cluster up[/] in {t_up:.2f}s: coordinator {cluster.coordinator}, "
                      f"dealer {cluster.dealer}, nodes {', '.join(cluster.nodes)} (workdir {cluster.workdir})")
        failures = _workload(cluster.coordinator, console)
        failures += _secagg_round(cluster, console)
        failures += _dp_statistic(cluster.coordinator, console)
        failures += _federated(cluster, console)
    except (MpcnetError, RuntimeError, TimeoutError) as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        failures += 1
    finally:
        codes = cluster.stop()
        alive = [name for name, proc in cluster.procs.items() if proc.poll() is None]
        console.print(f"stopped {len(codes)} processes (exit codes {codes}); still running: {alive or 'none'}")
        if alive:
            failures += 1
        cluster.cleanup()
    console.print("[bold green]all checks passed[/]" if not failures else f"[bold red]{failures} check(s) failed[/]")
    return 0 if failures == 0 else 1


def run_remote_demo(coordinator: str, tls_dir: str | None = None, console: Console | None = None) -> int:
    """The MPC part of the demo against a cluster that is already running (compose, other machines).
    ``tls_dir``: holds ca.crt and client-hospital-a/b/c certificates (``mpcnet certs bootstrap`` makes them)."""
    console = console or Console(width=max(Console().width, 110))
    console.print(f"[bold]demo against {coordinator}[/] ({'mutual TLS' if tls_dir else 'plaintext'})")
    try:
        failures = _workload(coordinator, console, tls_dir)
    except MpcnetError as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        failures = 1
    console.print("[bold green]all checks passed[/]" if not failures else f"[bold red]{failures} check(s) failed[/]")
    return 0 if failures == 0 else 1


def _connect(coordinator: str, party: str, tls_dir: str | None) -> "mpcnet.Party":
    """Connect, retrying for a bounded while: a cluster that just reported healthy may still be enrolling."""
    deadline = time.monotonic() + 30
    while True:
        try:
            # certificate names are DNS labels: party hospital_a uses client-hospital-a.crt
            return mpcnet.connect(coordinator, party, tls_dir=tls_dir, tls_name=party.replace("_", "-"))
        except MpcnetError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _workload(coordinator: str, console: Console, tls_dir: str | None = None) -> int:
    # Private data of each party (never leaves the party in the clear).
    x = np.array([1.5, -2.0, 3.25, 4.0])          # hospital A
    y = np.array([2.0, 0.5, -1.0, 3.0])           # hospital B
    v = np.array([0.25, 1.0, 2.0, -0.5])          # hospital C
    weights = {"a": np.array([1.0, 2.0]), "b": np.array([3.0, 4.0]), "c": np.array([2.0, 2.0])}
    counts = {"a": 100, "b": 50, "c": 200}

    t = {}
    t0 = time.perf_counter()
    parties = {k: _connect(coordinator, f"hospital_{k}", tls_dir) for k in "abc"}
    a, b, c = parties["a"], parties["b"], parties["c"]
    job = a.create_job(parties=["hospital_b", "hospital_c"], name="demo")
    t["connect + create job"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    a.share(job, "x", x)
    b.share(job, "y", y)
    c.share(job, "v", v)
    for k, p in parties.items():
        p.share(job, f"w_{k}", weights[k])
        p.share(job, f"n_{k}", np.array(counts[k], dtype=np.int64))
    t["secret-share inputs"] = time.perf_counter() - t0

    program = (
        mpcnet.Program()
        .add("xy", "x", "y").add("total", "xy", "v")
        .mul("product", "x", "y")
        .dot("dot", "x", "y")
        .weighted_average("fedavg", ["w_a", "w_b", "w_c"], ["n_a", "n_b", "n_c"])
        .output("total", to=["hospital_a", "hospital_b", "hospital_c"])
        .output("product", to=["hospital_a"])
        .output("dot", to=["hospital_a", "hospital_b"])
        .output("fedavg", to=["hospital_a", "hospital_b", "hospital_c"])
    )
    t0 = time.perf_counter()
    result = a.run(job, program)
    t["run job (coordinator)"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    got = {
        "total": c.reveal(job, "total"),
        "product": a.reveal(job, "product"),
        "dot": b.reveal(job, "dot"),
        "fedavg": a.reveal(job, "fedavg"),
    }
    t["reveal outputs"] = time.perf_counter() - t0

    n = np.array([counts[k] for k in "abc"], dtype=float)
    expected: dict[str, Any] = {
        "total": x + y + v,
        "product": x * y,
        "dot": float(x @ y),
        "fedavg": (n[0] * weights["a"] + n[1] * weights["b"] + n[2] * weights["c"]) / n.sum(),
    }
    tolerance = {"total": 0.0, "product": 2 * ULP, "dot": 8 * ULP, "fedavg": 1e-4}
    table = Table(title=f"job {job}: results checked against numpy")
    for col in ("output", "revealed to", "MPC result", "numpy", "max |error|", "check"):
        table.add_column(col)
    readers = {o["name"]: ", ".join(o["revealed_to"]) for o in result.receipt.get("outputs", [])}
    failures = 0
    for name, value in got.items():
        err = float(np.max(np.abs(np.asarray(value, dtype=float) - expected[name])))
        ok = err <= tolerance[name]
        failures += 0 if ok else 1
        table.add_row(name, readers.get(name, "?"), np.array2string(np.asarray(value), precision=4),
                      np.array2string(np.asarray(expected[name]), precision=4), f"{err:.2e}",
                      "[green]ok[/]" if ok else "[red]FAIL[/]")
    console.print(table)
    # A party not named as reader is refused.
    try:
        c.reveal(job, "product")
        console.print("[red]FAIL: hospital_c could read 'product'[/]")
        failures += 1
    except MpcnetError as exc:
        console.print(f"[green]ok[/] hospital_c asking for 'product' was refused: {exc}")

    timing = Table(title="timings")
    timing.add_column("phase")
    timing.add_column("seconds", justify="right")
    for k, val in t.items():
        timing.add_row(k, f"{val:.3f}")
    timing.add_row("  of which dealer material (max over nodes)", f"{result.preprocessing_s:.3f}")
    timing.add_row("  of which online compute incl. openings", f"{result.online_s:.3f}")
    timing.add_row("opening layers (batched exchanges)", str(result.layers))
    timing.add_row("bytes exchanged between nodes", str(result.bytes_exchanged))
    console.print(timing)

    r = result.receipt
    console.print("[bold]who saw what[/] (privacy receipt, which the coordinator stores with the job; this "
                  "cluster's state goes when the demo ends):")
    owned = ", ".join(f"{inp['name']} ({inp['owner']})" for inp in r["inputs"])
    console.print(f"  inputs {owned}: each in the clear only at its owner; each node holds one uniformly "
                  "random additive share")
    console.print("  compute nodes saw: " + "; ".join(r["opened_to_nodes"]))
    for o in r["outputs"]:
        console.print(f"  output {o['name']}: revealed to {', '.join(o['revealed_to'])}")
    console.print(f"  coordinator saw: {r['coordinator_saw']}")
    console.print(f"  dealer saw: {r['dealer_saw']}")
    console.print(f"  trust: {r['trust_assumptions']}")
    for p in parties.values():
        p.close()
    return failures


def _secagg_round(cluster: LocalCluster, console: Console) -> int:
    """A SecAgg round over real client processes; two of them are SIGKILLed mid-round."""
    import json
    import os
    import subprocess

    import grpc
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from mpcnet.secagg_client import derive_input
    from mpcnet.v1 import secagg_pb2 as spb
    from mpcnet.secagg_wire import aggregate_of
    from mpcnet.v1 import secagg_pb2_grpc as spbg

    ids, t, length, bits = list(range(1, 9)), 5, 8, 32
    console.print(f"\n[bold]secure aggregation[/]: {len(ids)} clients, threshold {t}, complete graph, "
                  f"vectors of {length} in Z_2^{bits}; client 6 dies during ShareKeys and client 8 after it "
                  "(both SIGKILLed)")
    stub = spbg.SecAggStub(grpc.insecure_channel(cluster.coordinator))
    params = spb.SecAggRoundParams(client_ids=ids, threshold=t, vector_length=length, bits=bits,
                                   graph=spb.SECAGG_GRAPH_COMPLETE, stage_deadline_s=60.0, join_deadline_s=30.0)
    reply = stub.CreateRound(spb.SecAggCreateRoundRequest(params=params), timeout=10,
                             metadata=cluster.auth_metadata)
    round_id = str(reply.round_id)
    tokens = {int(k): str(v) for k, v in reply.client_tokens.items()}
    groups = [([1, 2, 3, 4, 5, 7], None), ([6], "share_keys"), ([8], "masked_input_collection")]
    procs = []
    for group, die_at in groups:
        cmd = [sys.executable, "-m", "mpcnet.cli", "client", "--coordinator", cluster.coordinator, "--round",
               round_id, "--ids", ",".join(map(str, group)), "--input-seed", "demo", "--timeout", "30"]
        if die_at:
            cmd += ["--die-at", die_at]
        env = dict(os.environ, MPCNET_CLIENT_TOKENS=json.dumps({str(c): tokens[c] for c in group}))
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      stdin=subprocess.DEVNULL))
    t0 = time.perf_counter()
    state = None
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as prog:
        task = prog.add_task("joining", total=None)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            state = stub.GetResult(spb.SecAggGetResultRequest(round_id=round_id), timeout=10,
                                   metadata=cluster.auth_metadata)
            prog.update(task, description=f"round {round_id}: {state.state}, stage {state.stage or 'joining'}")
            if state.state != "running":
                break
            time.sleep(0.2)
    elapsed = time.perf_counter() - t0
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=30))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait(timeout=10))
    if state is None or state.state != "done":
        reason = state.aborted.reason if state is not None else "no answer"
        console.print(f"[red]FAIL: SecAgg round did not finish: {reason}[/]")
        return 1
    included = sorted(state.done.included)
    total = np.zeros(length, dtype=np.uint64)
    for cid in included:
        total = total + derive_input("demo", cid, length, bits)
    expected = total & np.uint64((1 << bits) - 1)
    got = aggregate_of(state.done)
    ok = included == [1, 2, 3, 4, 5, 7] and bool(np.array_equal(got, expected))
    dropped = ", ".join(f"{d.client_id} (at {d.stage})" for d in state.done.dropped)
    console.print(f"round done in {elapsed:.2f}s; client process exit codes {codes} (-9 = SIGKILLed); the dead "
                  "clients were seen at once through their broken presence streams (stage deadline "
                  f"{params.stage_deadline_s:g}s, not waited out)")
    console.print(f"  sum over clients {included}: {'[green]exact[/]' if ok else '[red]WRONG[/]'} "
                  f"(checked against numpy); dropped: {dropped}")
    console.print("  the coordinator learned only this sum and who dropped; each client's vector stayed hidden "
                  f"behind pairwise and self masks (threshold {t}: any {t - 1} colluding clients with the "
                  "coordinator learn nothing more)")
    return 0 if ok else 1


def _dp_statistic(coordinator: str, console: Console) -> int:
    """A differentially private statistic: noise added inside the secret sharing, charged to the owner's data."""
    console.rule("[bold]a differentially private statistic (Laplace mechanism inside MPC)")
    ages = np.array([34, 51, 67, 45, 29, 72, 58, 41, 63, 38] * 20, dtype=float)  # hospital A's 200 patients
    a = mpcnet.connect(coordinator, "hospital_a_stats")
    job = a.create_job(parties=[], name="dp-demo")
    # DP-only: no output of the job may reveal the ages except through the noise; the bound is declared, not
    # derived from the data, and ages are non-negative, so one patient moves the sum by at most 120
    a.share(job, "age", ages, bound=120.0, nonnegative=True, dp_only=True)
    res = a.run(job, mpcnet.Program().dp_mean("mean_age", "age", epsilon=1.0).output("mean_age", to=[a.name]))
    got = float(a.reveal(job, "mean_age"))
    rel = res.receipt["differential_privacy"]["releases"][0]
    # sensitivity 120 / 200 = 0.6 years, scale ~0.6: |noise| < 25 fails with probability ~ e^-40
    ok = abs(got - ages.mean()) < 25
    console.print(f"mean age {got:.2f} (true {ages.mean():.2f}; {'[green]within the noise[/]' if ok else '[red]off[/]'})"
                  f": discrete Laplace, epsilon {rel['epsilon']:g}, sensitivity {rel['sensitivity']:g}, scale "
                  f"{rel['noise_scale']:.3g}; each of the nodes added one share, so none knows the noise")
    console.print(f"  ledger: {', '.join(f'{d} has epsilon {v:g} left' for d, v in rel['ledger_remaining'].items())}")
    a.close()
    return 0 if ok else 1


def _federated(cluster: LocalCluster, console: Console) -> int:
    """A short federated run through SecAgg with distributed DP, and its privacy receipt."""
    console.rule("[bold]federated averaging over SecAgg with distributed differential privacy")
    try:
        from mpcnet.fl import data as fldata
        from mpcnet.fl import fedavg, models
        from mpcnet.fl.cli import DEFAULT_BUDGET, ledger_release
        from mpcnet.fl.distributed_dp import calibrate_distributed
        from mpcnet.ledger import EpsilonLedger
        from mpcnet.receipt import fedavg_receipt
        ds = fldata.load("breast_cancer")
    except (ImportError, MpcnetError) as exc:
        console.print(f"[yellow]skipped: {exc} (pip install 'mpcnet[fl]'; make demo installs it)[/]")
        return 0
    # the README's privacy-utility settings: 20 clients, 10 rounds, clip 0.25 (there, epsilon 8 costs 2.0 points
    # on the mean of 5 runs; one run varies by 1-2 points)
    clients, rounds, clip = 20, 10, 0.25
    model = models.make_model("logreg", ds.n_features, ds.n_classes)
    trainer = models.SgdTrainer(model, epochs=1, lr=0.05)
    parts = fldata.split_iid(len(ds.y_train), clients)
    ddp = calibrate_distributed(8.0, 1e-5, rounds, clip=clip, dim=model.n_params, min_contributors=14,
                                max_clients=clients)
    cfg = fedavg.FedAvgConfig(rounds=rounds, clip=clip, dropout=0.1, ddp=ddp)
    # charged before the run, as `mpcnet fedavg` does, to a ledger of the demo's own that outlives it with the
    # receipt and the model (a new directory each run: the demo never spends a real ledger's budget)
    store = Path(tempfile.mkdtemp(prefix="mpcnet-demo-"))
    key = "sklearn:breast_cancer"
    mechanism, release = ledger_release(ddp, clients, "logreg", key)
    with EpsilonLedger(store / "ledger.sqlite") as ledger:
        ledger.charge_all([(key, "demo-fedavg", mechanism, release, ddp.epsilon, ddp.delta)],
                          default_budget=DEFAULT_BUDGET)
        remaining = list(ledger.remaining(key))
    charged = {"dataset": key, "path": str(ledger.path), "spent_by_this_model": [ddp.epsilon, ddp.delta],
               "remaining": remaining}
    agg = fedavg.SecAggAggregator(cluster.coordinator, cluster.auth_metadata, clip=clip,
                                  max_total_samples=len(ds.y_train))
    t0 = time.perf_counter()
    hist = fedavg.run_fedavg(model, trainer, ds, parts, cfg, agg)
    elapsed = time.perf_counter() - t0
    plain = fedavg.run_fedavg(model, trainer, ds, parts, fedavg.FedAvgConfig(rounds=rounds, clip=clip),
                              fedavg.PlainAggregator())
    console.print(f"breast-cancer data (scikit-learn), {clients} clients, {rounds} rounds, two clients dropping per "
                  f"round; each client adds Skellam noise before masking (epsilon 8, delta 1e-5): test accuracy "
                  + " -> ".join(f"{a:.3f}" for a in hist.accuracy) + f" ({elapsed:.1f}s); without DP, in the clear: "
                  f"{plain.accuracy[-1]:.3f} ({100 * (hist.accuracy[-1] - plain.accuracy[-1]):+.1f} points)")
    rows = [{"round": o.round, "sampled": o.sampled, "included": o.included, "dropped": o.dropped,
             "skipped": o.skipped, "noise_contributors": o.noise_contributors} for o in hist.rounds]
    rc = fedavg_receipt("demo-fedavg", "secagg", rows, clients, ddp, charged)
    assert hist.params is not None
    np.save(store / "model.npy", hist.params)
    (store / "receipt.json").write_text(json.dumps(rc, indent=1))
    console.print(f"[bold]privacy receipt of the model[/] (stored with it in {store}: receipt.json, model.npy, "
                  f"ledger.sqlite; `mpcnet receipt --file {store / 'receipt.json'}` shows it again):")
    for layer in rc["layers"]:
        console.print(f"  layer: {layer}")
    for r in rc["participants"]["rounds"]:
        console.print(f"  round {r['round']}: summed {r['included']}, dropped {r['dropped']}, "
                      f"{r['noise_contributors']} noise shares, threshold t = {r['threshold']} of "
                      f"{len(r['sampled'])}")
    dp = rc["differential_privacy"]
    console.print(f"  DP: {dp['mechanism']}, epsilon {dp['epsilon']:g} (realised {dp['realised_epsilon']:.3g}), "
                  f"delta {dp['delta']:g}; {dp['unit']}")
    console.print(f"  ledger {charged['path']}: {key} spent epsilon {ddp.epsilon:g}, delta {ddp.delta:g}; "
                  f"{remaining[0]:g}, delta {remaining[1]:g} left")
    console.print("  trust: " + "; ".join(rc["trust_assumptions"]))
    ok = hist.accuracy[-1] > 0.8 and all(len(r["dropped"]) == 2 for r in rc["participants"]["rounds"])
    if not ok:
        console.print("[red]federated run: accuracy or dropout accounting off[/]")
    return 0 if ok else 1


def main() -> int:
    return run_demo()


if __name__ == "__main__":
    sys.exit(main())
