"""The insecure baseline of `mpcnet bench fedavg`: plain FedAvg over gRPC, no privacy.

A FedAvg round without SecAgg still moves every client's update to the server: each client opens a channel
and sends its update in the clear, the server waits for the round's clients, computes the sample-weighted
mean and answers every caller with it (what Flower's plain FedAvg does with fit results).  The benchmark
compares SecAgg's round with this one -- the same training, the same client simulation (one channel per
client in one asyncio process), a server in its own process like the coordinator -- so the ratio is what
privacy adds to a federated round, not to an in-memory numpy sum (which the benchmark reports as well).

Wire (bench only, no proto): one unary method ``/mpcnet.bench.PlainAverage/Submit`` on raw bytes.
Request: ``<IIId`` round, client id, clients in the round, weight; then the update as little-endian float64.
Reply: the weighted mean as little-endian float64.  The server is a loopback development tool: no TLS, no
authentication, and it exits by itself after ``--idle-exit`` seconds without a request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import select
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import grpc
import numpy as np

from mpcnet.errors import InvalidInput
from mpcnet.fl.fedavg import RoundOutcome, Update, clear_round, weighted_mean
from mpcnet.transport.rpc import CHANNEL_OPTIONS, MAX_MESSAGE_BYTES, from_rpc_error, is_loopback

SERVICE = "mpcnet.bench.PlainAverage"
METHOD = f"/{SERVICE}/Submit"
HEADER = struct.Struct("<IIId")
MAX_DIM = (MAX_MESSAGE_BYTES - HEADER.size) // 8
KEEP_ROUNDS = 8  # finished rounds remembered (late duplicates get a clear error, memory stays bounded)
ABANDONED_S = 600.0  # an unfinished round untouched this long is dropped


def encode_submission(round_no: int, client: int, expected: int, weight: float, update: np.ndarray) -> bytes:
    if update.size > MAX_DIM:
        raise InvalidInput(f"the plain baseline sends one message per update: at most {MAX_DIM} parameters, "
                           f"got {update.size}")
    return HEADER.pack(round_no, client, expected, weight) + np.ascontiguousarray(update, dtype="<f8").tobytes()


@dataclass
class _Round:
    expected: int
    dim: int
    clients: set[int] = field(default_factory=set)  # who submitted (kept after the vectors are dropped)
    pending: dict[int, tuple[float, np.ndarray]] = field(default_factory=dict)  # until the mean is computed
    done: asyncio.Event = field(default_factory=asyncio.Event)
    mean: bytes = b""
    touched: float = field(default_factory=time.monotonic)


class PlainAverageServicer:
    def __init__(self) -> None:
        self.rounds: dict[int, _Round] = {}
        self.last_request = time.monotonic()

    def _forget_old_rounds(self) -> None:
        """Keep the last KEEP_ROUNDS finished rounds (round numbers are random: age is insertion order) and
        drop unfinished ones nobody has added to for ABANDONED_S."""
        now = time.monotonic()
        finished = [k for k, r in self.rounds.items() if r.done.is_set()]
        for key in finished[:max(0, len(finished) - KEEP_ROUNDS)]:
            del self.rounds[key]
        for key in [k for k, r in self.rounds.items() if not r.done.is_set() and now - r.touched > ABANDONED_S]:
            del self.rounds[key]

    async def submit(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.last_request = time.monotonic()
        if len(request) < HEADER.size or (len(request) - HEADER.size) % 8:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"a submission is a {HEADER.size}-byte header and float64 words; got {len(request)} bytes")
        round_no, client, expected, weight = HEADER.unpack_from(request)
        vec = np.frombuffer(request, dtype="<f8", offset=HEADER.size)
        if expected < 1 or not weight > 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "clients in the round must be >= 1 and the weight > 0")
        state = self.rounds.get(round_no)
        if state is None:
            self._forget_old_rounds()
            state = self.rounds[round_no] = _Round(expected, vec.size)
        if (state.expected, state.dim) != (expected, vec.size):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"round {round_no} has {state.expected} clients and {state.dim} parameters; client "
                                f"{client} says {expected} and {vec.size}")
        if client in state.clients or state.done.is_set():
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"round {round_no}: client {client} already submitted "
                                "or the round is over")
        state.clients.add(client)
        state.pending[client] = (weight, vec)
        state.touched = time.monotonic()
        if len(state.clients) == state.expected:
            # PlainAggregator's sum in its order (client ids ascending): the same float64 bits
            kept = [state.pending[c] for c in sorted(state.pending)]
            total = weighted_mean([w for w, _ in kept], [v for _, v in kept])
            state.mean = np.asarray(total, dtype="<f8").tobytes()
            state.pending.clear()
            state.done.set()
        if not state.done.is_set():
            remaining = context.time_remaining()
            timeout = 30.0 if remaining is None else remaining - 0.05  # answer before the caller gives up
            try:
                if timeout <= 0:
                    raise asyncio.TimeoutError
                await asyncio.wait_for(state.done.wait(), timeout=timeout)
            except asyncio.TimeoutError:
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                    f"round {round_no}: {len(state.clients)} of {state.expected} clients submitted "
                                    "before the deadline")
        return state.mean


async def serve(listen: str, idle_exit_s: float) -> None:
    if not is_loopback(listen):
        raise SystemExit(f"the plain-averaging server has no TLS and no authentication: listen on loopback, not {listen}")
    servicer = PlainAverageServicer()
    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    handler = grpc.method_handlers_generic_handler(SERVICE, {"Submit": grpc.unary_unary_rpc_method_handler(servicer.submit)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(listen)
    await server.start()
    print(f"listening on {listen.rsplit(':', 1)[0]}:{port}", flush=True)
    # bounded: gone once nobody calls (and at once with its launcher: die_with_parent in main)
    while time.monotonic() - servicer.last_request < idle_exit_s:
        await asyncio.sleep(min(1.0, idle_exit_s))
    await server.stop(1.0)


class PlainAverageProcess:
    """The server in a child process (like the coordinator, on its own core when there is one)."""

    def __init__(self, idle_exit_s: float = 600.0) -> None:
        self.idle_exit_s = idle_exit_s
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""

    def __enter__(self) -> "PlainAverageProcess":
        # MPCNET_PARENT_PID: the server exits when this launcher dies, even SIGKILLed (as LocalCluster's roles)
        self.proc = subprocess.Popen([sys.executable, "-m", "mpcnet.bench.plain_average", "--listen", "127.0.0.1:0",
                                      "--idle-exit", str(self.idle_exit_s)], stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "MPCNET_PARENT_PID": str(os.getpid())})
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60.0)  # the child prints its address once it serves
        line = self.proc.stdout.readline().strip() if ready else "nothing within 60 s"
        if not line.startswith("listening on "):
            self.__exit__()
            raise RuntimeError(f"the plain-averaging server did not start (said {line!r})")
        self.address = line.removeprefix("listening on ")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the server is not running"
        return self.proc.pid

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()


class NetworkPlainAggregator:
    """Plain FedAvg over gRPC: each client sends its update in the clear; the server returns the weighted mean."""

    name = "plain-grpc"

    def __init__(self, address: str, rpc_timeout_s: float = 60.0) -> None:
        self.address, self.rpc_timeout_s = address, rpc_timeout_s

    def aggregate(self, round_no: int, updates: Sequence[Update], drop: Sequence[int]) -> RoundOutcome:
        out, kept = clear_round(round_no, updates, drop)
        if out.skipped:
            return out
        tag = secrets.randbelow(2**32)  # the server's round key: unique across aggregators sharing a server

        async def client(u: Update) -> bytes:
            payload = encode_submission(tag, u.client, len(kept), float(u.samples), u.delta)
            async with grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS) as channel:
                try:
                    reply: bytes = await channel.unary_unary(METHOD)(payload, timeout=self.rpc_timeout_s)
                    return reply
                except grpc.RpcError as exc:
                    raise from_rpc_error(exc, f"plain-averaging server at {self.address} (client {u.client})") from None

        async def everyone() -> list[bytes]:
            return list(await asyncio.gather(*(client(u) for u in kept)))

        replies = asyncio.run(everyone())
        out.mean = np.frombuffer(replies[0], dtype="<f8").copy()
        out.total_samples = sum(u.samples for u in kept)
        return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mpcnet.bench.plain_average", description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--idle-exit", type=float, default=600.0, help="exit after this many seconds without a request")
    args = p.parse_args(argv)
    from nodes.common import die_with_parent
    die_with_parent()
    asyncio.run(serve(args.listen, args.idle_exit))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["NetworkPlainAggregator", "PlainAverageProcess", "PlainAverageServicer", "encode_submission"]
