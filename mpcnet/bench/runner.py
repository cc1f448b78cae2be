"""`mpcnet bench mul|dot --size N`: mpcnet against MPyC, same run, same machine.

mpcnet side: a LocalCluster (dealer, 3 node processes, coordinator) on
loopback; party "alice" inputs x, party "bob" inputs y (integer vectors),
the job computes x*y (mul) or x.y (dot) and alice reveals it.  Reported:

* ``online_s``: the compute phase on the nodes - Beaver openings included,
  dealer material excluded (max over nodes, as the nodes measure it);
* ``compute_with_preprocessing_s``: the whole RunJob (dealer material + online);
* ``end_to_end_s``: input sharing + RunJob + reveal, as the client sees it.

MPyC side: 3 MPyC parties as separate processes (see mpyc_peer.py), timing
the secure operation (``compute_s``) and input-to-output (``end_to_end_s``).
Ratios are MPyC time / mpcnet time (> 1 means mpcnet is faster).  Each side
runs ``repeats`` times and the median is used.  Results go to
benchmarks/results/ as JSON with a description of the machine.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

import mpcnet
from mpcnet.bench.benchdata import BenchData
from mpcnet.cluster import REPO_ROOT, LocalCluster
from mpcnet.errors import make_output_dir


def machine_description() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        pass
    import grpc
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_gib, 1),
            "python": platform.python_version(), "numpy": np.__version__, "grpcio": grpc.__version__}


def bench_mpcnet(workload: str, size: int, repeats: int, console: Console) -> dict[str, Any]:
    data = BenchData(20261124)  # benchmark data, not secrets; mpyc_peer rebuilds the same
    x = data.integers("x", -1000, 1000, size)
    y = data.integers("y", -1000, 1000, size)
    expected = x * y if workload == "mul" else int(x @ y)
    runs: list[dict[str, float]] = []
    rss: list[int] = []
    with LocalCluster(3, max_elements=max(4_000_000, 2 * size), log_level="WARNING") as cluster:
        alice = mpcnet.connect(cluster.coordinator, "alice")
        bob = mpcnet.connect(cluster.coordinator, "bob")
        for rep in range(repeats):
            with console.status(f"mpcnet {workload} n={size}: run {rep + 1}/{repeats}"):
                job = alice.create_job(parties=["bob"], name=f"bench-{workload}")
                t0 = time.perf_counter()
                alice.share(job, "x", x)
                bob.share(job, "y", y)
                t1 = time.perf_counter()
                prog = mpcnet.Program()
                prog = prog.mul("z", "x", "y") if workload == "mul" else prog.dot("z", "x", "y")
                res = alice.run(job, prog.output("z", to=["alice"]))
                t2 = time.perf_counter()
                z = alice.reveal(job, "z")
                t3 = time.perf_counter()
            if not np.array_equal(np.asarray(z), np.asarray(expected)):
                raise RuntimeError(f"mpcnet {workload} result differs from numpy")
            runs.append({"input_s": t1 - t0, "online_s": res.online_s, "preprocessing_s": res.preprocessing_s,
                         "compute_with_preprocessing_s": t2 - t1, "output_s": t3 - t2, "end_to_end_s": t3 - t0,
                         "bytes_exchanged": res.bytes_exchanged})
            rss.append(max(res.peak_rss_kb))
        alice.close()
        bob.close()
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return {"runs": runs, "median": med, "peak_rss_mb_per_node": round(max(rss) / 1024, 1), "nodes": 3}


def run_bench(workload: str, size: int, repeats: int = 3, with_mpyc: bool = True, out_dir: str | None = None,
              console: Console | None = None) -> int:
    console = console or Console(width=max(Console().width, 110))
    if size < 1 or repeats < 1:
        console.print(f"[red]mpcnet bench {workload}: --size and --repeats must be at least 1 (got {size}, {repeats})[/]")
        return 2
    out = make_output_dir("--out", out_dir or REPO_ROOT / "benchmarks" / "results")
    ours = bench_mpcnet(workload, size, repeats, console)
    peer: dict[str, Any] | None = None
    peer_error = ""
    if with_mpyc:
        from mpcnet.bench.mpyc_peer import run_mpyc_benchmark
        peer_runs = []
        for rep in range(max(1, min(repeats, 2))):
            with console.status(f"MPyC {workload} n={size}: run {rep + 1} (3 party processes)"):
                try:
                    peer_runs.append(run_mpyc_benchmark(workload, size, python=sys.executable))
                except (RuntimeError, TimeoutError, OSError) as exc:
                    peer_error = str(exc)[-2000:]
                    break
        if peer_runs:
            peer = {"runs": peer_runs,
                    "median": {k: statistics.median(r[k] for r in peer_runs)
                               for k in ("input_s", "compute_s", "output_s", "end_to_end_s")},
                    "peak_rss_mb": max(r.get("peak_rss_mb", 0) for r in peer_runs),
                    "field": peer_runs[0].get("field", ""), "mpyc_version": peer_runs[0].get("mpyc_version", "")}
    m = ours["median"]
    ratios: dict[str, float] = {}
    if peer:
        pm = peer["median"]
        ratios = {
            "compute_online": pm["compute_s"] / m["online_s"],
            "compute_incl_preprocessing": pm["compute_s"] / m["compute_with_preprocessing_s"],
            "end_to_end": pm["end_to_end_s"] / m["end_to_end_s"],
        }
    result = {"benchmark": workload, "size": size, "repeats": repeats,
              "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": machine_description(), "mpcnet": ours, "mpyc": peer, "mpyc_error": peer_error,
              "ratios_mpyc_over_mpcnet": ratios}
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    path = out / f"{workload}-{size}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2))
    (out / f"{workload}-{size}-latest.json").write_text(json.dumps(result, indent=2))

    table = Table(title=f"{workload}, n = {size:,} (median of runs; 3 parties on loopback)")
    for col in ("phase", "mpcnet s", "MPyC s", "MPyC / mpcnet"):
        table.add_column(col, justify="right" if col != "phase" else "left")
    pm = peer["median"] if peer else {}
    def row(label: str, ours_s: float, peer_s: float | None) -> None:
        table.add_row(label, f"{ours_s:.3f}", "-" if peer_s is None else f"{peer_s:.3f}",
                      "-" if peer_s is None else f"{peer_s / ours_s:.1f}x")
    row("compute (online, openings incl.)", m["online_s"], pm.get("compute_s"))
    row("compute incl. dealer preprocessing", m["compute_with_preprocessing_s"], pm.get("compute_s"))
    row("input sharing", m["input_s"], pm.get("input_s"))
    row("output", m["output_s"], pm.get("output_s"))
    row("end to end", m["end_to_end_s"], pm.get("end_to_end_s"))
    console.print(table)
    console.print(f"peak RSS per node process: mpcnet {ours['peak_rss_mb_per_node']} MB"
                  + (f", MPyC {peer['peak_rss_mb']} MB (field {peer['field']})" if peer else ""))
    if peer_error:
        console.print(f"[yellow]MPyC side failed:[/] {peer_error}")
    console.print(f"results written to {path}")
    return 0 if (peer or not with_mpyc) else 1
