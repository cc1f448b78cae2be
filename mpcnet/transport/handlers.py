"""Wrap a gRPC method handler of any kind with a step before and a step after (server interceptors).

``guard(context)`` runs before the servicer method (it may abort the call) and returns ``finish(failed)``,
run after it however it ended.  One wrapper for the four handler kinds, so that interceptors (caller
identity, metrics) state only what they do.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import grpc

Finish = Callable[[bool], None]
Guard = Callable[[grpc.aio.ServicerContext], Awaitable[Finish]]


def _nothing(failed: bool) -> None:
    return None


NO_FINISH: Finish = _nothing


class WrappedHandlers:
    """Per-method memo of an interceptor's wrapped handlers.  The servicer's handler of a method is one object,
    so its wrapper is built once, not on every call (that cost is paid per RPC on the hot path).  Only
    registered methods are remembered (unknown ones have no handler), so the memo stays small."""

    def __init__(self) -> None:
        self._by_method: dict[str, tuple[Any, Any]] = {}

    def get(self, method: str, handler: Any, build: Callable[[Any], Any]) -> Any:
        hit = self._by_method.get(method)
        if hit is not None and hit[0] is handler:
            return hit[1]
        wrapped = build(handler)
        if handler is not None:
            self._by_method[method] = (handler, wrapped)
        return wrapped


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """A server interceptor whose work is a wrapper around each method's handler (:meth:`wrap`), built once per
    method through :class:`WrappedHandlers`."""

    def __init__(self) -> None:
        self.wrapped = WrappedHandlers()

    async def intercept_service(self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails) -> Any:
        method = details.method
        return self.wrapped.get(method, await continuation(details), lambda handler: self.wrap(method, handler))

    def wrap(self, method: str, handler: Any) -> Any:
        raise NotImplementedError


def wrap_handler(handler: Any, guard: Guard) -> Any:
    if handler is None:
        return handler
    if handler.unary_unary or handler.stream_unary:
        inner = handler.unary_unary or handler.stream_unary

        async def unary_reply(request: Any, context: grpc.aio.ServicerContext) -> Any:
            finish, failed = await guard(context), True
            try:
                out = await inner(request, context)
                failed = False
                return out
            finally:
                finish(failed)

        make = (grpc.unary_unary_rpc_method_handler if handler.unary_unary
                else grpc.stream_unary_rpc_method_handler)
        return make(unary_reply, handler.request_deserializer, handler.response_serializer)
    if handler.unary_stream or handler.stream_stream:
        inner_s = handler.unary_stream or handler.stream_stream

        async def stream_reply(request: Any, context: grpc.aio.ServicerContext) -> Any:
            finish, failed = await guard(context), True
            try:
                async for item in inner_s(request, context):
                    yield item
                failed = False
            finally:
                finish(failed)

        make = (grpc.unary_stream_rpc_method_handler if handler.unary_stream
                else grpc.stream_stream_rpc_method_handler)
        return make(stream_reply, handler.request_deserializer, handler.response_serializer)
    return handler
