"""WrappedHandlers: an interceptor's wrapper is built once per method's handler, rebuilt when the handler changes,
and unknown methods (no handler) are never remembered."""

from __future__ import annotations

from mpcnet.transport.handlers import WrappedHandlers


def test_a_method_is_wrapped_once_and_rewrapped_for_a_new_handler() -> None:
    built: list[object] = []

    def build(handler: object) -> object:
        built.append(handler)
        return ("wrapped", handler)

    memo, first, second = WrappedHandlers(), object(), object()
    assert memo.get("/a/M", first, build) == ("wrapped", first)
    assert memo.get("/a/M", first, build) == ("wrapped", first)
    assert built == [first]
    assert memo.get("/a/M", second, build) == ("wrapped", second) and built == [first, second]
    assert memo.get("/a/Unknown", None, build) == ("wrapped", None)
    assert memo.get("/a/Unknown", None, build) == ("wrapped", None)
    assert built == [first, second, None, None] and set(memo._by_method) == {"/a/M"}
