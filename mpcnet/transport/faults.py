"""Deterministic fault injection for drills: a gRPC server interceptor driven by a seeded schedule.

A role started with ``MPCNET_FAULTS`` (JSON, test and drill use only; the role logs a loud warning) runs every
incoming call through :class:`FaultInterceptor`.  The schedule is a list of rules::

    {"seed": "drill-1", "rules": [
        {"method": "/mpcnet.v1.Node/Exchange", "action": "delay", "delay_s": 0.1, "jitter_s": 0.02},
        {"method": "/mpcnet.v1.Node/Exchange", "action": "drop", "calls": [3]},
        {"method": "*/Enroll", "action": "duplicate", "probability": 0.5},
        {"method": "/mpcnet.v1.Node/Prepare", "action": "error", "after": 1}]}

``method`` is an fnmatch pattern on the full method name.  Which calls a rule hits: ``calls`` (1-based indices
of the calls to that method), else ``after`` (every call after the first N), else ``probability`` (default 1),
drawn from SHA-256(seed | rule index | method | call index) so that the same schedule hits the same calls in
every run, whatever the order in which different methods arrive.  Actions, as the network would do them:

* ``delay``: the message arrives late (``delay_s`` +- ``jitter_s``);
* ``drop``: the message is lost: the handler never runs and the caller waits out its own deadline;
* ``duplicate``: the message arrives twice: the handler runs again on the same request, the caller gets the
  first answer and the second outcome is logged (replays must be refused or harmless);
* ``corrupt``: one byte of the serialized request is flipped (what bytes the peer then sees; a message that no
  longer parses is refused as malformed);
* ``error``: the peer answers UNAVAILABLE at once (a crash between receiving and answering).

The decision (:meth:`FaultSchedule.decide`) is a pure function of the schedule and the call index.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Sequence

import grpc

from mpcnet.config import ConfigError

log = logging.getLogger("mpcnet.faults")
FAULTS_ENV = "MPCNET_FAULTS"
ACTIONS = ("delay", "drop", "duplicate", "corrupt", "error")
MAX_DROP_WAIT_S = 600.0


class FaultConfigError(ConfigError):
    """A bad MPCNET_FAULTS: the role refuses to start (a drill must not run a schedule other than it thinks)."""


@dataclass(frozen=True, slots=True)
class FaultRule:
    method: str
    action: str
    calls: tuple[int, ...] = ()
    after: int = -1
    probability: float = 1.0
    delay_s: float = 0.0
    jitter_s: float = 0.0

    @staticmethod
    def parse(raw: Mapping[str, Any]) -> "FaultRule":
        if not isinstance(raw, Mapping):
            raise FaultConfigError(f"a fault rule must be an object, got {raw!r}")
        unknown = set(raw) - {"method", "action", "calls", "after", "probability", "delay_s", "jitter_s"}
        if unknown:
            raise FaultConfigError(f"unknown fault rule field(s) {sorted(unknown)}")
        action = str(raw.get("action", ""))
        if action not in ACTIONS:
            raise FaultConfigError(f"fault action must be one of {', '.join(ACTIONS)}, got {action!r}")
        try:
            rule = FaultRule(method=str(raw.get("method", "*")), action=action,
                             calls=tuple(int(c) for c in raw.get("calls", ())), after=int(raw.get("after", -1)),
                             probability=float(raw.get("probability", 1.0)), delay_s=float(raw.get("delay_s", 0.0)),
                             jitter_s=float(raw.get("jitter_s", 0.0)))
        except (TypeError, ValueError) as exc:
            raise FaultConfigError(f"bad fault rule {dict(raw)!r}: {exc}") from None
        if not 0.0 <= rule.probability <= 1.0 or rule.delay_s < 0 or rule.jitter_s < 0 or rule.jitter_s > rule.delay_s:
            raise FaultConfigError(f"bad fault rule {dict(raw)!r}: probability in [0, 1], 0 <= jitter_s <= delay_s")
        if any(c < 1 for c in rule.calls):
            raise FaultConfigError("fault rule calls are 1-based call indices")
        return rule


@dataclass(frozen=True, slots=True)
class Fault:
    """What happens to one call."""

    action: str
    delay_s: float = 0.0
    byte_draw: int = 0  # which byte `corrupt` flips (mod the message length) and how


@dataclass
class FaultSchedule:
    seed: str
    rules: Sequence[FaultRule]
    counts: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def parse(text: str) -> "FaultSchedule":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise FaultConfigError(f"{FAULTS_ENV} is not JSON: {exc}") from None
        if isinstance(data, list):
            data = {"rules": data}
        if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
            raise FaultConfigError(f'{FAULTS_ENV} must be {{"seed": ..., "rules": [...]}} or a list of rules')
        return FaultSchedule(str(data.get("seed", "mpcnet-faults")), [FaultRule.parse(r) for r in data["rules"]])

    def _draw(self, i: int, method: str, n: int) -> int:
        digest = hashlib.sha256(f"{self.seed}|{i}|{method}|{n}".encode()).digest()
        return int.from_bytes(digest[:8], "big")

    def decide(self, method: str, n: int) -> list[Fault]:
        """The faults of the ``n``-th call (1-based) to ``method``: every matching rule that hits it, in order."""
        out = []
        for i, rule in enumerate(self.rules):
            if not fnmatch.fnmatchcase(method, rule.method):
                continue
            if rule.calls:
                hit = n in rule.calls
            elif rule.after >= 0:
                hit = n > rule.after
            else:
                hit = self._draw(i, method, n) < rule.probability * 2**64
            if not hit:
                continue
            draw = self._draw(i, method, -n)
            delay = rule.delay_s + (((draw % 2_000_001) / 1_000_000.0) - 1.0) * rule.jitter_s
            out.append(Fault(rule.action, max(0.0, delay), draw))
        return out

    def next_call(self, method: str) -> tuple[int, list[Fault]]:
        n = self.counts.get(method, 0) + 1
        self.counts[method] = n
        return n, self.decide(method, n)


def corrupt_bytes(data: bytes, draw: int) -> bytes:
    """Flip one byte of ``data`` (position and bit pattern from ``draw``); empty stays empty."""
    if not data:
        return data
    pos = draw % len(data)
    flip = (draw >> 32) % 255 + 1  # never 0: the byte really changes
    return data[:pos] + bytes([data[pos] ^ flip]) + data[pos + 1:]


class _ShadowContext:
    """The context of a duplicated message's second delivery: reads pass through, the outcome stays here."""

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self._context = context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def abort(self, code: grpc.StatusCode, details: str = "", *args: Any) -> None:
        raise _DuplicateRefused(code, details)

    def set_code(self, code: Any) -> None:
        pass

    def set_details(self, details: str) -> None:
        pass


class _DuplicateRefused(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code


class FaultInterceptor(grpc.aio.ServerInterceptor):
    """Apply a :class:`FaultSchedule` to calls with a unary or client-streamed request (every protocol message:
    Prepare, Execute, Exchange, ProvideInput, Enroll, Next, ...); server-streamed replies pass untouched, and so
    do bidirectional SecAgg Sessions (a drill that puts faults on SecAgg answers runs `mpcnet client
    --no-session`, whose answers are Next calls)."""

    def __init__(self, schedule: FaultSchedule, role: str = "") -> None:
        self.schedule = schedule
        self.role = role

    async def intercept_service(self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or not (handler.unary_unary or handler.stream_unary):
            return handler  # server-streaming replies (Reveal, FetchCorrections, Attend) and Sessions pass untouched
        method = details.method
        deserialize = handler.request_deserializer

        async def before(request: Any, context: grpc.aio.ServicerContext) -> tuple[Any, bool]:
            """Apply this call's faults to ``request`` (the first message of a stream); (request, duplicate?)."""
            n, faults = self.schedule.next_call(method)
            for fault in faults:  # one log line per fault applied: what a drill counts
                log.warning("FAULT %s: %s call %d of %s", self.role, fault.action, n, method)
                if fault.action == "delay":
                    await asyncio.sleep(fault.delay_s)
                elif fault.action == "error":
                    await context.abort(grpc.StatusCode.UNAVAILABLE, f"fault injected: {self.role} failed "
                                        f"before answering {method}")
                elif fault.action == "drop":
                    remaining = context.time_remaining()
                    await asyncio.sleep(min(MAX_DROP_WAIT_S, remaining if remaining is not None else MAX_DROP_WAIT_S))
                    await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "fault injected: message lost")
                elif fault.action == "corrupt" and request is not None:
                    raw = corrupt_bytes(request.SerializeToString(), fault.byte_draw)
                    try:
                        request = deserialize(raw) if deserialize else type(request).FromString(raw)
                    except Exception:
                        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                            f"malformed {method} request (fault injected: a corrupted byte)")
            return request, any(f.action == "duplicate" for f in faults)

        async def again(call: Callable[[grpc.aio.ServicerContext], Awaitable[Any]], n_context: Any) -> None:
            try:
                await call(_ShadowContext(n_context))
                log.warning("FAULT %s: the duplicate of a %s call was accepted", self.role, method)
            except _DuplicateRefused as exc:
                log.warning("FAULT %s: the duplicate of a %s call was refused (%s)", self.role, method, exc)
            except Exception as exc:  # the second delivery must not take the first one's answer with it
                log.warning("FAULT %s: the duplicate of a %s call raised %s", self.role, method, type(exc).__name__)

        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                request, dup = await before(request, context)
                reply = await inner(request, context)
                if dup:
                    await again(lambda ctx: inner(request, ctx), context)
                return reply

            return grpc.unary_unary_rpc_method_handler(unary, deserialize, handler.response_serializer)
        inner_s = handler.stream_unary

        async def streamed(request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
            # the stream is read whole first (drills only): the faults act on the message as a unit
            chunks = [c async for c in request_iterator]
            first, dup = await before(chunks[0] if chunks else None, context)
            if chunks:
                chunks[0] = first

            async def replay() -> Any:
                for c in chunks:
                    yield c

            reply = await inner_s(replay(), context)
            if dup:
                await again(lambda ctx: inner_s(replay(), ctx), context)
            return reply

        return grpc.stream_unary_rpc_method_handler(streamed, deserialize, handler.response_serializer)


def interceptor_from_env(role: str) -> FaultInterceptor | None:
    """The fault interceptor ``MPCNET_FAULTS`` asks for, or None (the normal case)."""
    text = os.environ.get(FAULTS_ENV, "").strip()
    if not text:
        return None
    schedule = FaultSchedule.parse(text)
    log.warning("%s: FAULT INJECTION ACTIVE (%s, %d rule(s), seed %r) - drills and tests only", role, FAULTS_ENV,
                len(schedule.rules), schedule.seed)
    return FaultInterceptor(schedule, role)


__all__ = ["FAULTS_ENV", "Fault", "FaultConfigError", "FaultInterceptor", "FaultRule", "FaultSchedule",
           "corrupt_bytes", "interceptor_from_env"]
