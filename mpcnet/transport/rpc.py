"""Servers, channels, status mapping and metadata helpers for grpc.aio."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import os
import signal
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from mpcnet import errors
from mpcnet.errors import MpcnetError
from mpcnet.transport.handlers import WrappedHandlers, WrappingInterceptor
from mpcnet.transport.metrics import MetricsInterceptor
from mpcnet.transport.tls import PeerIdentityInterceptor, target_options

if TYPE_CHECKING:
    from mpcnet.certs import Identity
    from mpcnet.transport.metrics import RoleMetrics
    from mpcnet.transport.tls import TlsFiles

log = logging.getLogger("mpcnet.transport")

PARTY_TOKEN_KEY = "mpcnet-party-token"
NODE_ID_KEY = "mpcnet-node-id"
# gRPC's own 4 MiB default stays the limit; arrays are chunked well below it.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
ALLOW_PLAINTEXT_ENV = "MPCNET_ALLOW_PLAINTEXT"
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    # A restarted peer is found again within about a second (gRPC's default backoff grows to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]

T = TypeVar("T")


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def metadata_value(context: grpc.aio.ServicerContext, key: str) -> str | None:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else v.decode()
    return None


def grpc_status(err: MpcnetError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, err.status, grpc.StatusCode.INTERNAL)


def servicer_errors(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Turn MpcnetError into ``context.abort(code, message)``; log unexpected errors
    without their arguments (they may hold shares) and report INTERNAL."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        try:
            return await method(self, request, context)
        except MpcnetError as exc:
            await context.abort(grpc_status(exc), str(exc))
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:  # noqa: BLE001 - last line of defence
            log.error("internal error in %s: %s", method.__name__, type(exc).__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method.__name__}: {type(exc).__name__}")
        raise AssertionError("unreachable")

    return wrapper


def stream_servicer_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Same as :func:`servicer_errors` for server-streaming (async generator) methods."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            async for item in method(self, request, context):
                yield item
        except MpcnetError as exc:
            await context.abort(grpc_status(exc), str(exc))
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:  # noqa: BLE001
            log.error("internal error in %s: %s", method.__name__, type(exc).__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method.__name__}: {type(exc).__name__}")

    return wrapper


# the diagnoses below, as they read when a peer passes one on in its own error: not classified a second time
_OWN_UNAVAILABLE_PHRASES = ("the TLS handshake failed (", "closed the connection during set-up (",
                            "cut the connection during the TLS handshake (", " is unreachable: ")


def from_rpc_error(exc: grpc.RpcError, who: str) -> MpcnetError:
    """Map a received gRPC error to the matching MpcnetError, naming the peer."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    name = code.name if code is not None else "UNKNOWN"
    cls = errors.BY_STATUS.get(name, MpcnetError)
    if name == "UNAVAILABLE":
        text = details or ""
        if any(phrase in text for phrase in _OWN_UNAVAILABLE_PHRASES):  # a peer relaying its own diagnosis
            return errors.PeerUnavailable(f"{who}: {text}")
        if ("Handshake read failed" in text or "Handshake write failed" in text) and "certificate" not in text.lower():
            # the connection was cut with no certificate complaint: most often a dying, restarting or non-TLS peer
            return errors.PeerUnavailable(f"{who} cut the connection during the TLS handshake ({text}): it may be "
                                          "down or restarting, or not serving TLS on that port; if it is up, check "
                                          "that it accepts this caller's certificate")
        if "andshake" in text or "Verification" in text or "certificate" in text:
            return errors.PeerUnavailable(f"{who}: the TLS handshake failed ({text}); check that both sides' "
                                          "certificates come from the cluster CA, are not expired, and that the "
                                          "peer presents the identity expected of it")
        if "Socket closed" in text:
            return errors.PeerUnavailable(f"{who} closed the connection during set-up ({text}): if it runs "
                                          "mutual TLS, this caller needs a valid, unexpired certificate from the "
                                          "cluster CA (plaintext callers are refused)")
        return errors.PeerUnavailable(f"{who} is unreachable: {details}")
    if name == "DEADLINE_EXCEEDED" and "Deadline" in (details or ""):
        return errors.PeerTimeout(f"{who} did not answer within the deadline")
    return cls(f"{who}: {details}")


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


CLUSTER_AUTH_KEY = "mpcnet-cluster-auth"
# A SecAgg client's bearer token (from CreateRound), on Next and GetResult.
CLIENT_TOKEN_KEY = "mpcnet-client-token"
# Methods only cluster roles may call (parties use their own token on the others).
INTERNAL_METHODS = frozenset({
    "/mpcnet.v1.Node/OpenJob", "/mpcnet.v1.Node/DeclareInput", "/mpcnet.v1.Node/Prepare",
    "/mpcnet.v1.Node/Execute", "/mpcnet.v1.Node/Exchange", "/mpcnet.v1.Node/AbortJob",
    "/mpcnet.v1.Node/EnsureEnrolled", "/mpcnet.v1.Dealer/Enroll", "/mpcnet.v1.Dealer/CreateBatch",
    "/mpcnet.v1.Dealer/FetchCorrections", "/mpcnet.v1.SecAgg/CreateRound",
})


def _with_auth(metadata: Any, secret: str) -> grpc.aio.Metadata:
    md = grpc.aio.Metadata(*tuple(metadata or ()))
    md.add(CLUSTER_AUTH_KEY, secret)
    return md


class _ClusterAuthClient(grpc.aio.UnaryUnaryClientInterceptor):
    """Attach the cluster secret to every unary call a role makes to another role.

    grpc.aio applies client interceptors to unary calls only in practice, so
    streaming calls (Exchange, FetchCorrections) pass the metadata themselves.
    """

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def _details(self, d: Any) -> Any:
        return grpc.aio.ClientCallDetails(d.method, d.timeout, _with_auth(d.metadata, self.secret), d.credentials,
                                          d.wait_for_ready)

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)



def insecure_channel(address: str, cluster_secret: str = "", tls: "TlsFiles | None" = None,
                     expect: "Identity | None" = None) -> grpc.aio.Channel:
    """A channel to ``address``: mutual TLS when ``tls`` is given (the peer must present ``expect``'s
    certificate), plaintext otherwise (development on loopback)."""
    interceptors = [_ClusterAuthClient(cluster_secret)] if cluster_secret else None
    if tls is None:
        return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS, interceptors=interceptors)
    if expect is None:
        raise ValueError("a TLS channel needs the identity its peer must present")
    return grpc.aio.secure_channel(address, tls.channel_credentials(), options=CHANNEL_OPTIONS + target_options(expect),
                                   interceptors=interceptors)


def sync_channel(address: str, tls: "TlsFiles | None" = None, expect: "Identity | None" = None) -> grpc.Channel:
    """The blocking twin of :func:`insecure_channel` (CLI tools, the SDK)."""
    if tls is None:
        return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    if expect is None:
        raise ValueError("a TLS channel needs the identity its peer must present")
    return grpc.secure_channel(address, tls.channel_credentials(), options=CHANNEL_OPTIONS + target_options(expect))


class ClusterAuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuse internal methods from callers without the cluster secret (UNAUTHENTICATED)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        # one refusal handler per method, so that refused calls do not churn the outer interceptors' memos
        self.refusals = WrappedHandlers()

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or details.method not in INTERNAL_METHODS:
            return handler
        given = ""
        for k, v in details.invocation_metadata or ():
            if k == CLUSTER_AUTH_KEY:
                given = v if isinstance(v, str) else v.decode()
        if hmac.compare_digest(given.encode(), self.secret):
            return handler
        method = details.method
        return self.refusals.get(method, handler, lambda h: self._refusal(method, h))

    @staticmethod
    def _refusal(method: str, handler: Any) -> Any:
        message = f"{method} is for cluster roles only: missing or wrong {CLUSTER_AUTH_KEY}"

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        async def refuse_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
            yield None  # pragma: no cover - abort raises

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(refuse, handler.request_deserializer,
                                                       handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(refuse_stream, handler.request_deserializer,
                                                        handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(refuse, handler.request_deserializer,
                                                        handler.response_serializer)
        return handler


class _Malformed:
    """Stands in for a request whose bytes did not parse."""


class MalformedRequestInterceptor(WrappingInterceptor):
    """Answer unparseable request bytes with INVALID_ARGUMENT (gRPC says UNKNOWN)."""

    def wrap(self, method: str, handler: Any) -> Any:
        if handler is None or handler.request_deserializer is None:
            return handler
        deserialize = handler.request_deserializer
        message = f"malformed request to {method}: the bytes are not a valid protobuf message of this method"

        def safe(data: bytes) -> Any:
            try:
                return deserialize(data)
            except Exception:  # noqa: BLE001 - any parse failure
                return _Malformed()

        async def checked(iterator: Any) -> Any:  # a streamed request: the servicer sees the error as it reads
            async for item in iterator:
                if isinstance(item, _Malformed):
                    raise errors.InvalidInput(message)
                yield item

        if handler.unary_unary:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if isinstance(request, _Malformed):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)
                return await inner_uu(request, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, safe, handler.response_serializer)
        if handler.unary_stream:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if isinstance(request, _Malformed):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)
                async for item in inner_us(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(unary_stream, safe, handler.response_serializer)
        if handler.stream_unary:
            inner_su = handler.stream_unary

            async def stream_unary(request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
                return await inner_su(checked(request_iterator), context)

            return grpc.stream_unary_rpc_method_handler(stream_unary, safe, handler.response_serializer)
        if handler.stream_stream:
            inner_ss = handler.stream_stream

            async def stream_stream(request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
                async for item in inner_ss(checked(request_iterator), context):
                    yield item

            return grpc.stream_stream_rpc_method_handler(stream_stream, safe, handler.response_serializer)
        return handler


class RoleServer:
    """A grpc.aio server with the health service, plaintext warning and
    graceful shutdown on SIGTERM/SIGINT."""

    def __init__(self, role: str, listen: str, cluster_secret: str = "", tls: "TlsFiles | None" = None,
                 metrics: "RoleMetrics | None" = None) -> None:
        self.role = role
        self.listen = listen
        self.cluster_secret = cluster_secret
        self.tls = tls
        interceptors: list[grpc.aio.ServerInterceptor] = [MalformedRequestInterceptor()]
        if cluster_secret:
            interceptors.insert(0, ClusterAuthInterceptor(cluster_secret))
        if tls is not None:
            interceptors.insert(0, PeerIdentityInterceptor())
        if metrics is not None:
            interceptors.insert(0, MetricsInterceptor(metrics))
        # drills only: MPCNET_FAULTS puts a seeded fault schedule in front of everything, like the network would
        from mpcnet.transport.faults import interceptor_from_env
        self.faults = interceptor_from_env(role)
        if self.faults is not None:
            interceptors.insert(0, self.faults)
        self.server = grpc.aio.server(options=CHANNEL_OPTIONS, interceptors=interceptors)
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = 0
        self._stop = asyncio.Event()

    async def start(self) -> int:
        if self.tls is not None:
            self.port = self.server.add_secure_port(self.listen, self.tls.server_credentials())
        else:
            if not is_loopback(self.listen) and os.environ.get(ALLOW_PLAINTEXT_ENV) != "1":
                raise OSError(f"{self.role}: refusing plaintext gRPC on non-loopback address {self.listen}: "
                              "configure certificates ([tls] dir or MPCNET_TLS_DIR, made with `mpcnet certs`), "
                              f"or set {ALLOW_PLAINTEXT_ENV}=1 to accept an unencrypted network")
            self.port = self.server.add_insecure_port(self.listen)
        if self.port == 0:
            raise OSError(f"{self.role}: cannot listen on {self.listen}")
        if self.tls is not None:
            log.info("%s: mutual TLS on %s as %s (clients need a certificate from the cluster CA)", self.role,
                     self.listen, self.tls.identity)
        elif not is_loopback(self.listen):
            log.warning("%s: PLAINTEXT gRPC on non-loopback address %s (%s=1) - configure certificates "
                        "before carrying real data", self.role, self.listen, ALLOW_PLAINTEXT_ENV)
        else:
            log.warning("%s: plaintext gRPC on loopback %s (development mode, no TLS)", self.role, self.listen)
        if not self.cluster_secret:
            log.warning("%s: no cluster secret configured: internal RPCs (job control, openings, dealer material) "
                        "accept any caller - set MPCNET_CLUSTER_SECRET", self.role)
        # The health servicer starts out SERVING for ""; readiness is ours to declare.
        await self.set_serving(False)
        await self.server.start()
        return self.port

    async def set_serving(self, serving: bool, services: Sequence[str] = ("",)) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for svc in services:
            res = self.health.set(svc, status)
            if asyncio.iscoroutine(res):
                await res

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)

    async def wait_for_stop(self) -> None:
        await self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()

    async def stop(self, grace: float = 3.0) -> None:
        await self.set_serving(False)
        await self.server.stop(grace)
