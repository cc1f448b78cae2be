"""Lifecycle events: an :class:`EventBus` protocol and its in-process twin.

Topics are ``/``-separated (``mpcnet/secagg/<round>/dropped``); a
subscription filter may use MQTT wildcards (``+`` one level, ``#`` the rest),
so the MQTT bus planned for deployments can implement the same protocol.

Events carry nothing secret: ids, stage names, counts, reasons.  The bus
fails closed -- :func:`check_event` refuses byte strings, arrays and any
value that is not a plain JSON scalar or a list of them, so a payload, key,
mask or input cannot be published by mistake.
"""

from __future__ import annotations

import logging
from typing import Callable, Mapping, Protocol

log = logging.getLogger("mpcnet.events")

Event = Mapping[str, object]
Handler = Callable[[str, Event], None]


class EventBus(Protocol):
    def publish(self, topic: str, event: Event) -> None: ...

    def subscribe(self, topic_filter: str, handler: Handler) -> Callable[[], None]:
        """Call ``handler(topic, event)`` for matching topics; returns an unsubscribe function."""
        ...


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def check_event(topic: str, event: Event) -> None:
    if not topic or any(c in topic for c in "+#\x00"):
        raise ValueError(f"invalid event topic {topic!r}")
    for key, value in event.items():
        if not isinstance(key, str):
            raise ValueError("event keys must be strings")
        if _scalar(value):
            continue
        if isinstance(value, (list, tuple)) and all(_scalar(v) for v in value):
            continue
        raise ValueError(f"event field {key!r} of {topic} is a {type(value).__name__}: events carry "
                         "only ids, names, counts and reasons")


def topic_matches(topic_filter: str, topic: str) -> bool:
    want, have = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(want):
        if part == "#":
            return True
        if i >= len(have) or (part != "+" and part != have[i]):
            return False
    return len(want) == len(have)


def deliver(subscriptions: list[tuple[str, Handler]], topic: str, event: Event) -> None:
    """Hand ``event`` to every matching handler; a failing handler is logged, never raised to the publisher."""
    for topic_filter, handler in list(subscriptions):
        if topic_matches(topic_filter, topic):
            try:
                handler(topic, event)
            except Exception as exc:  # noqa: BLE001 - a subscriber never breaks the publisher
                log.warning("event handler for %s failed: %s", topic_filter, type(exc).__name__)


class InProcessEventBus:
    """Synchronous delivery to handlers in this process; a failing handler is logged, not raised."""

    def __init__(self) -> None:
        self._subs: list[tuple[str, Handler]] = []

    def publish(self, topic: str, event: Event) -> None:
        check_event(topic, event)
        frozen = dict(event)
        log.debug("event %s %s", topic, frozen)
        deliver(self._subs, topic, frozen)

    def subscribe(self, topic_filter: str, handler: Handler) -> Callable[[], None]:
        entry = (topic_filter, handler)
        self._subs.append(entry)

        def unsubscribe() -> None:
            if entry in self._subs:
                self._subs.remove(entry)

        return unsubscribe
