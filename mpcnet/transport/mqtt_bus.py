"""The MQTT event bus (aiomqtt): lifecycle events and presence with last-will messages.

:class:`MqttEventBus` implements :class:`~mpcnet.events.EventBus`.  ``publish``
never blocks and never fails the caller: events go to a bounded queue that a
background task sends to the broker.  While the broker is away, the task
reconnects with a bounded back-off, the queue keeps the newest
:data:`QUEUE_LIMIT` events, and older ones are dropped and counted.  So a
broker outage costs events, never computation.

Topics (``<cluster>`` is ``[events] cluster``, default ``local``):

* ``mpcnet/<cluster>/rounds/<round id>/{started,stage,dropped,result,aborted}``:
  the SecAgg round lifecycle, JSON objects of ids, stage names, counts and
  reasons;
* ``mpcnet/<cluster>/presence/<role>/<name>``: retained presence.
  ``{"state": "up"}`` on connect; ``{"state": "down"}`` on a clean stop; and
  the broker's last-will ``{"state": "gone"}`` when the process dies
  without closing its connection;
* ``mpcnet/<cluster>/presence/secagg/<round id>/<process name>``: a SecAgg
  client process, ``{"state": ..., "clients": [ids]}``. Its will lets the
  coordinator count all of its clients as dropouts at once.

Every payload passes :func:`~mpcnet.events.check_event`: no bytes, arrays or
nested objects, so no share, key, mask or input can be published.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from typing import Any, Callable

from mpcnet.events import Event, Handler, InProcessEventBus, check_event, deliver

log = logging.getLogger("mpcnet.events.mqtt")

QUEUE_LIMIT = 10_000
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.2, 5.0
CONNECT_TIMEOUT_S = 5.0
# A death closes the socket and the broker sends the will at once; keepalive only catches silent hangs, and is
# long enough that a process busy with protocol steps for a few seconds is not declared dead.
KEEPALIVE_S = 30


def parse_broker(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host:
        return address, 1883
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ValueError(f"MQTT broker address {address!r} must be host:port") from None


class MqttEventBus:
    """Events over MQTT; call :meth:`start` inside the event loop and :meth:`close` before it ends."""

    def __init__(self, broker: str, cluster: str, role: str, name: str,
                 presence_fields: Event | None = None, presence_topic: str | None = None,
                 will_fields: Event | None = None) -> None:
        self.host, self.port = parse_broker(broker)
        self.prefix = f"mpcnet/{cluster}"
        self.presence_topic = presence_topic or f"{self.prefix}/presence/{role}/{name}"
        self.presence_fields = dict(presence_fields or {})
        self.will_fields = dict(will_fields or {})  # only in the last will (e.g. proofs a live message must not show)
        check_event(self.presence_topic, {**self.presence_fields, **self.will_fields})
        self.identifier = f"mpcnet-{role}-{name}-{time.monotonic_ns() % 10**9}"
        self._queue: deque[tuple[str, bytes, bool]] = deque()
        self._wake = asyncio.Event()
        self._subs: list[tuple[str, Handler]] = []
        self._task: asyncio.Task[None] | None = None
        self._client: Any = None
        self.connected = asyncio.Event()
        self.dropped = 0
        self._closing = False

    # ------------------------------------------------------------------ EventBus

    def publish(self, topic: str, event: Event, retain: bool = False) -> None:
        check_event(topic, event)
        if len(self._queue) >= QUEUE_LIMIT:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append((topic, json.dumps(dict(event), sort_keys=True).encode(), retain))
        self._wake.set()

    def subscribe(self, topic_filter: str, handler: Handler) -> Callable[[], None]:
        entry = (topic_filter, handler)
        self._subs.append(entry)
        if self._client is not None:
            asyncio.get_running_loop().create_task(self._subscribe_one(topic_filter))

        def unsubscribe() -> None:
            if entry in self._subs:
                self._subs.remove(entry)

        return unsubscribe

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mqtt-bus")

    async def close(self, timeout_s: float = 2.0) -> None:
        """Say "down" (so a clean stop is not a death), flush what is queued, disconnect."""
        self._closing = True
        if self._client is not None:
            self.publish(self.presence_topic, {**self.presence_fields, "state": "down"}, retain=True)
            deadline = time.monotonic() + timeout_s
            while self._queue and self._client is not None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        if self._task is not None:
            self._task.cancel()
            try:
                await asyncio.wait_for(self._task, timeout_s)
            except (asyncio.CancelledError, TimeoutError):
                pass

    async def _subscribe_one(self, topic_filter: str) -> None:
        try:
            await self._client.subscribe(topic_filter, qos=1)
        except Exception as exc:  # noqa: BLE001 - resubscribed on reconnect
            log.debug("subscribe %s failed: %s", topic_filter, type(exc).__name__)

    async def _run(self) -> None:
        import aiomqtt

        backoff = RECONNECT_MIN_S
        gone = json.dumps({**self.presence_fields, **self.will_fields, "state": "gone"}, sort_keys=True).encode()
        while not self._closing:
            try:
                will = aiomqtt.Will(self.presence_topic, gone, qos=1, retain=True)
                async with aiomqtt.Client(self.host, self.port, identifier=self.identifier, will=will,
                                          keepalive=KEEPALIVE_S, timeout=CONNECT_TIMEOUT_S) as client:
                    self._client = client
                    for topic_filter, _ in list(self._subs):
                        await client.subscribe(topic_filter, qos=1)
                    up = json.dumps({**self.presence_fields, "state": "up"}, sort_keys=True).encode()
                    await client.publish(self.presence_topic, up, qos=1, retain=True)
                    self.connected.set()
                    backoff = RECONNECT_MIN_S
                    log.info("events: connected to MQTT broker %s:%d", self.host, self.port)
                    loop = asyncio.get_running_loop()
                    tasks = {loop.create_task(self._receive(client)), loop.create_task(self._send(client))}
                    try:  # either ending means the connection is gone: reconnect
                        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                        for task in done:
                            task.result()
                        raise ConnectionError("MQTT connection ended")
                    finally:
                        for task in tasks:
                            task.cancel()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - aiomqtt.MqttError, OSError: the broker is away
                log.warning("events: MQTT broker %s:%d unavailable (%s); retrying in %.1fs, computation goes on",
                            self.host, self.port, type(exc).__name__, backoff)
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(RECONNECT_MAX_S, backoff * 2)

    async def _send(self, client: Any) -> None:
        while True:
            while self._queue:
                topic, payload, retain = self._queue[0]
                await client.publish(topic, payload, qos=1, retain=retain)
                self._queue.popleft()
            self._wake.clear()
            await self._wake.wait()

    async def _receive(self, client: Any) -> None:
        async for message in client.messages:
            topic = str(message.topic)
            try:
                event = json.loads(bytes(message.payload))
            except (ValueError, TypeError):
                continue
            if not isinstance(event, dict):
                continue
            deliver(self._subs, topic, event)


def open_bus(broker: str, cluster: str, role: str, name: str) -> "MqttEventBus | InProcessEventBus":
    """The MQTT bus (started) when a broker is configured, else the in-process bus: nothing fails without one."""
    if not broker:
        return InProcessEventBus()
    bus = MqttEventBus(broker, cluster, role, name)
    bus.start()
    return bus


async def close_bus(bus: object) -> None:
    if isinstance(bus, MqttEventBus):
        await bus.close()
