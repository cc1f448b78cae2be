"""One MPyC party for the ``mpcnet bench mul|dot`` comparison, and its launcher.

The benchmark runs the same workload in MPyC (version 0.11) with 3 parties as
3 separate OS processes talking over loopback TCP.  This file is both:

* the **party program**, run once per party::

      python -m mpcnet.bench.mpyc_peer --op mul --size 1000000 \\
          -M3 -I <i> -P 127.0.0.1:<p0> -P 127.0.0.1:<p1> -P 127.0.0.1:<p2> --no-log

  (``python path/to/mpyc_peer.py ...`` works the same way).  ``--op``,
  ``--size``, ``--seed`` and ``--verbose`` are ours; everything else is left in
  ``sys.argv`` for MPyC, which parses it itself when ``mpyc`` / ``mpyc.runtime``
  is imported.  MPyC's party flags: ``-M m`` number of parties, ``-I i`` this
  party's index, ``-P host:port`` once per party (in party order), ``-B b``
  base port (party i on b+i, host ``localhost``), ``--no-log`` to silence its
  INFO logging (which it would otherwise write to *stdout*);

* the **launcher** :func:`run_mpyc_benchmark`, used by ``mpcnet/bench/runner.py``.
  It never imports ``mpyc`` (MPyC parses ``sys.argv`` at import time); only the
  child processes do.

Protocol (what MPyC does)
-------------------------
MPyC uses Shamir secret sharing over a prime field GF(p) with threshold
t = (m-1)//2, i.e. t = 1 for m = 3 parties (passive security, honest majority).

* *input*: the owner of a vector samples a random degree-t polynomial per
  element with the value as constant term and sends party j the evaluation at
  j+1 (one message per other party);
* *multiplication* of two shared vectors: every party multiplies its shares
  locally, which gives a degree-2t sharing of the product; a *degree reduction*
  ("resharing", Gennaro-Rabin-Rabin) follows: 2t+1 parties reshare their
  product share with a fresh degree-t polynomial and every party recombines
  the 2t+1 sub-shares with Lagrange coefficients -- one round, one message of
  N field elements from each resharing party to each other party.  No
  preprocessing / Beaver triples are involved;
* *dot product* ``x @ y``: the local share products are summed first (a local
  dot product on the shares), so only a single field element is reshared;
* *output*: each party sends its share to its t successors, receivers
  recombine by Lagrange interpolation and map the field element to a signed
  integer.

Secure type: ``mpc.SecInt(64)``, arrays via ``secint.array(numpy_int_array)``
(class ``SecureIntegerArray``), which is MPyC 0.11's vectorised array path
(``np_multiply`` / ``np_matmul`` on ``PrimeFieldArray`` values; shares are
numpy ``dtype=object`` arrays of Python ints or gmpy2 ``mpz``).  SecInt(64)'s
field is a prime of about 64 + k + 2 = 96 bits (k = 30, MPyC's default
statistical security parameter).  The alternative ``--sectype secfld``
(``mpc.SecFld(min_order=2**64, signed=True)``, a 65-bit prime) is also
supported.  MPyC's finite-field arrays are numpy object arrays for any prime,
so the modulus size matters little; measured on the 2-core benchmark machine at
N = 10^5, SecInt(64) was the faster of the two (mul compute 0.80 s vs 0.96 s,
input 0.40 s vs 0.57 s), hence the default -- it is also the natural match of
mpcnet's signed 64-bit values in Z_(2^64).  The values are small (|x|, |y| <
1000, |x.y| < 10^12 for N = 10^6), so either type holds them exactly.

MPyC is much faster with ``gmpy2`` installed (it says so at start-up);
install it next to ``mpyc`` for the benchmark.

Workload (mirrors ``mpcnet/bench/runner.py``)
--------------------------------------------
``BenchData(20261124)`` (benchdata.py, SHAKE-256); x, y = its streams "x" and
"y" of integers in [-1000, 1000) (benchmark data, not secrets).
Party 0 inputs x, party 1 inputs y; ``mul`` computes z = x * y elementwise,
``dot`` computes z = x . y; z is output to all parties and party 0 checks it
against numpy (exit status 1 on mismatch).

Timing (``time.perf_counter``, all parties synchronised by an all-to-all
``mpc.transfer`` right before the clock starts)
-----------------------------------------------------------------------------
* ``input_s``: building the secure arrays from the numpy vectors plus
  ``mpc.input`` of both vectors, until this party holds its shares of both;
* ``compute_s``: only the secure operation (local products + degree reduction
  with its communication), until this party's share of z is available;
* ``output_s``: ``mpc.output(z)`` until the value is known to this party
  (including MPyC's conversion to signed Python ints);
* ``end_to_end_s``: from the start of input to output received
  (= input_s + compute_s + output_s);
* ``peak_rss_mb``: ``ru_maxrss / 1024`` of party 0's process (Linux reports
  KiB); ``peak_rss_mb_parties`` lists it for all three parties.

Party 0 prints exactly one JSON line on stdout::

    {"op": "mul", "size": N, "parties": 3, "input_s": ..., "compute_s": ...,
     "output_s": ..., "end_to_end_s": ..., "peak_rss_mb": ..., "mpyc_version": "0.11",
     "field": "...", ...}

The other parties print nothing on stdout (diagnostics go to stderr).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import resource
import socket
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

PARTIES = 3
DATA_SEED = 20261124  # same seed as mpcnet/bench/runner.py: benchmark data, not secrets
VALUE_LOW, VALUE_HIGH = -1000, 1000
MODULE = "mpcnet.bench.mpyc_peer"
# .../mpcnet/bench/mpyc_peer.py -> repository root (the directory holding mpcnet/)
REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
log = logging.getLogger(MODULE)


# ---------------------------------------------------------------------------
# launcher (no mpyc import here)
# ---------------------------------------------------------------------------

def _free_loopback_ports(n: int) -> list[int]:
    """Ask the kernel for ``n`` distinct free TCP ports on the loopback address."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def party_command(op: str, size: int, index: int, ports: list[int], python: str = sys.executable,
                  sectype: str = "secint") -> list[str]:
    """The command line of party ``index`` (MPyC's flags after ours)."""
    cmd = [python, "-m", MODULE, "--op", op, "--size", str(size), "--sectype", sectype,
           f"-M{len(ports)}", "-I", str(index)]
    for port in ports:
        cmd += ["-P", f"{LOOPBACK}:{port}"]
    cmd.append("--no-log")
    return cmd


def _kill_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
            except OSError:
                pass
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


def run_mpyc_benchmark(op: str, size: int, python: str = sys.executable, timeout_s: float = 600.0,
                       base_port: int | None = None, sectype: str = "secint") -> dict[str, Any]:
    """Run the 3-party MPyC benchmark as 3 local processes; return party 0's JSON result.

    Ports: ``base_port + i`` if given, else free loopback ports picked now.
    Raises RuntimeError (with the tail of each party's stderr) if a party fails,
    party 0 prints no JSON, or the run exceeds ``timeout_s``.  All three
    processes are killed on the way out whatever happens.
    """
    if op not in ("mul", "dot"):
        raise ValueError(f"op must be 'mul' or 'dot', not {op!r}")
    if size < 1:
        raise ValueError("size must be positive")
    ports = [base_port + i for i in range(PARTIES)] if base_port is not None else _free_loopback_ports(PARTIES)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("PYTHONUNBUFFERED", "1")
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="mpyc-bench-") as tmp:
        out_paths = [Path(tmp) / f"party{i}.out" for i in range(PARTIES)]
        err_paths = [Path(tmp) / f"party{i}.err" for i in range(PARTIES)]

        def failure(msg: str) -> RuntimeError:
            tails = "\n".join(f"--- party {i} (exit {procs[i].returncode if i < len(procs) else None}) stderr:\n"
                              f"{_tail(err_paths[i])}" for i in range(PARTIES))
            cmd0 = " ".join(party_command(op, size, 0, ports, python, sectype))
            return RuntimeError(f"MPyC {op} n={size}: {msg}\ncommand (party 0): {cmd0}\n{tails}")

        try:
            # Start the listeners (parties > 0) first; party 0 only connects (MPyC retries anyway).
            for i in reversed(range(PARTIES)):
                with open(out_paths[i], "wb") as out, open(err_paths[i], "wb") as err:
                    try:
                        proc = subprocess.Popen(party_command(op, size, i, ports, python, sectype),
                                                cwd=str(REPO_ROOT), env=env, stdin=subprocess.DEVNULL,
                                                stdout=out, stderr=err)
                    except OSError as exc:
                        raise RuntimeError(f"MPyC {op} n={size}: cannot start party {i} with {python}: {exc}") from exc
                    procs.insert(0, proc)
            deadline = time.monotonic() + timeout_s
            while True:
                codes = [p.poll() for p in procs]
                if any(c not in (None, 0) for c in codes):
                    # one party failed: give the others a moment to report, then fail
                    time.sleep(0.5)
                    raise failure(f"party {[i for i, c in enumerate(codes) if c not in (None, 0)]} failed")
                if all(c == 0 for c in codes):
                    break
                if time.monotonic() > deadline:
                    raise failure(f"timed out after {timeout_s:.0f} s")
                time.sleep(0.05)
            lines = [ln for ln in out_paths[0].read_text(errors="replace").splitlines() if ln.strip()]
            if not lines:
                raise failure("party 0 printed no result")
            try:
                result: dict[str, Any] = json.loads(lines[-1])
            except json.JSONDecodeError as exc:
                raise failure(f"party 0's last stdout line is not JSON ({exc}): {lines[-1][:200]!r}") from None
            return result
        finally:
            _kill_all(procs)


# ---------------------------------------------------------------------------
# party program (imports mpyc, inside functions only)
# ---------------------------------------------------------------------------

def _own_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=MODULE, add_help=False, allow_abbrev=False,
        description="One MPyC party of the mpcnet mul/dot benchmark; other flags go to MPyC.")
    parser.add_argument("--op", choices=("mul", "dot"), required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--sectype", choices=("secint", "secfld"), default="secint",
                        help="SecInt(64) (default) or SecFld(min_order=2**64, signed=True)")
    parser.add_argument("--seed", type=int, default=DATA_SEED)
    parser.add_argument("--verbose", action="store_true", help="MPyC INFO logging on stderr")
    return parser


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _bind_loopback_only(loop: Any) -> None:
    """Make MPyC's listening socket bind to 127.0.0.1 (it passes no host, i.e. all interfaces)."""
    original = loop.create_server

    @functools.wraps(original)
    async def create_server(*args: Any, **kwargs: Any) -> Any:
        if len(args) < 2 and kwargs.get("host") is None:
            kwargs["host"] = LOOPBACK
        return await original(*args, **kwargs)

    try:
        loop.create_server = create_server
    except (AttributeError, TypeError):  # e.g. an extension-type loop
        log.warning("could not restrict MPyC's listener to %s", LOOPBACK)


async def _party(opts: argparse.Namespace) -> int:
    import mpyc
    import numpy as np
    from mpyc.runtime import mpc

    n: int = opts.size
    data = BenchData(opts.seed)  # the same data as mpcnet's side (runner.py)
    x_np = data.integers("x", VALUE_LOW, VALUE_HIGH, n)
    y_np = data.integers("y", VALUE_LOW, VALUE_HIGH, n)

    await mpc.start()
    pid: int = mpc.pid
    if len(mpc.parties) != PARTIES:
        log.error("expected %d parties, MPyC has %d", PARTIES, len(mpc.parties))
        await mpc.shutdown()
        return 2
    if opts.sectype == "secint":
        stype = mpc.SecInt(64)
        field_desc = f"SecInt(64): GF(p), p {stype.field.order.bit_length()}-bit prime"
    else:
        stype = mpc.SecFld(min_order=2**64, signed=True)
        field_desc = f"SecFld(min_order=2**64, signed): GF(p), p {stype.field.order.bit_length()}-bit prime"
    sarray = stype.array

    await mpc.transfer(None)  # all-to-all: everybody starts the clock together
    t0 = time.perf_counter()
    xa = sarray(x_np) if pid == 0 else sarray(None, shape=(n,))
    ya = sarray(y_np) if pid == 1 else sarray(None, shape=(n,))
    x = mpc.input(xa, senders=0)
    y = mpc.input(ya, senders=1)
    await mpc.gather(x, y)
    t1 = time.perf_counter()
    z = x * y if opts.op == "mul" else x @ y
    await mpc.gather(z)  # this party's share of z, i.e. after the degree reduction
    t2 = time.perf_counter()
    out: Any = await mpc.output(z)
    if opts.sectype == "secfld":  # field elements -> signed ints, as SecInt's output does itself
        out = stype.field.array.intarray(out) if opts.op == "mul" else int(out)
    t3 = time.perf_counter()

    ok = True
    if pid == 0:
        if opts.op == "mul":
            got = np.asarray(out, dtype=object).astype(np.int64)
            ok = bool(np.array_equal(got, x_np * y_np))
        else:
            expected = int(np.dot(x_np.astype(object), y_np.astype(object)))
            ok = int(out) == expected
            if not ok:
                log.error("dot: got %s, expected %s", out, expected)
    rss_all: list[float] = await mpc.transfer(_rss_mb(), receivers=0)
    nbytes = sum(p.protocol.nbytes_sent for p in mpc.parties if p.pid != pid and p.protocol is not None)
    await mpc.shutdown()

    if pid != 0:
        return 0
    if not ok:
        print(f"MPyC {opts.op} n={n}: result does not match numpy", file=sys.stderr)
        return 1
    result: dict[str, Any] = {
        "op": opts.op, "size": n, "parties": PARTIES,
        "input_s": round(t1 - t0, 6), "compute_s": round(t2 - t1, 6), "output_s": round(t3 - t2, 6),
        "end_to_end_s": round(t3 - t0, 6), "peak_rss_mb": _rss_mb(),
        "mpyc_version": mpyc.__version__, "field": field_desc,
        "gmpy2": os.getenv("MPYC_NOGMPY") != "1" and _has_gmpy2(),
        "peak_rss_mb_parties": rss_all, "bytes_sent_party0": nbytes,
    }
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def _has_gmpy2() -> bool:
    import importlib.util
    return importlib.util.find_spec("gmpy2") is not None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    opts, rest = _own_arg_parser().parse_known_args(args)
    if opts.size < 1:
        print("--size must be positive", file=sys.stderr)
        return 2
    # MPyC logs with logging.basicConfig(stream=sys.stdout): configure the root
    # logger first (on stderr) so that call is a no-op and stdout stays clean.
    logging.basicConfig(format="{asctime} [mpyc party] {message}", style="{", stream=sys.stderr,
                        level=logging.INFO if opts.verbose else logging.WARNING)
    sys.argv = [sys.argv[0]] + rest  # leave only MPyC's flags for it to parse on import
    from mpyc.runtime import mpc  # parses sys.argv and sets up this party

    _bind_loopback_only(mpc._loop)
    return int(mpc.run(_party(opts)))


if __name__ == "__main__":
    sys.exit(main())
