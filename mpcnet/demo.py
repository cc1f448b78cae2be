"""`make demo`: the embedded default, everything on loopback.

Starts a dealer, 3 compute nodes and a coordinator as separate processes,
has three input parties (hospitals A, B, C) secret-share private arrays,
computes a sum, an elementwise product, a dot product and the FedAvg
sample-size-weighted average, checks every result against numpy, prints
results, timings and a "who saw what" receipt, stops every process and
exits non-zero if any check failed.
"""

from __future__ import annotations

import sys
import time
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
        failures = _workload(cluster, console)
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


def _workload(cluster: LocalCluster, console: Console) -> int:
    # Private data of each party (never leaves the party in the clear).
    x = np.array([1.5, -2.0, 3.25, 4.0])          # hospital A
    y = np.array([2.0, 0.5, -1.0, 3.0])           # hospital B
    v = np.array([0.25, 1.0, 2.0, -0.5])          # hospital C
    weights = {"a": np.array([1.0, 2.0]), "b": np.array([3.0, 4.0]), "c": np.array([2.0, 2.0])}
    counts = {"a": 100, "b": 50, "c": 200}

    t = {}
    t0 = time.perf_counter()
    parties = {k: mpcnet.connect(cluster.coordinator, f"hospital_{k}") for k in "abc"}
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
    console.print("[bold]who saw what[/] (privacy receipt, stored with the job):")
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


def main() -> int:
    return run_demo()


if __name__ == "__main__":
    sys.exit(main())
