"""The in-process event bus: MQTT-style topic filters, and events that cannot carry secrets."""

from __future__ import annotations

import numpy as np
import pytest

from mpcnet.events import InProcessEventBus, topic_matches


def test_wildcards_and_unsubscribe() -> None:
    bus = InProcessEventBus()
    seen: list[tuple[str, dict[str, object]]] = []
    stop = bus.subscribe("mpcnet/secagg/+", lambda topic, event: seen.append((topic, dict(event))))
    bus.publish("mpcnet/secagg/dropped", {"round": "r1", "client": 3, "stage": "share_keys"})
    bus.publish("mpcnet/jobs/started", {"job": "j"})
    stop()
    bus.publish("mpcnet/secagg/result", {"round": "r1", "included": [1, 2]})
    assert seen == [("mpcnet/secagg/dropped", {"round": "r1", "client": 3, "stage": "share_keys"})]
    assert topic_matches("mpcnet/#", "mpcnet/secagg/result") and not topic_matches("mpcnet/+", "mpcnet/a/b")


@pytest.mark.parametrize("value", [b"\x01" * 32, np.zeros(3, dtype=np.uint64), {"nested": 1}, [b"k"]])
def test_bytes_arrays_and_objects_refused(value: object) -> None:
    with pytest.raises(ValueError, match="events carry only"):
        InProcessEventBus().publish("mpcnet/secagg/stage", {"round": "r1", "payload": value})


def test_a_failing_handler_does_not_break_the_publisher() -> None:
    bus = InProcessEventBus()
    bus.subscribe("#", lambda topic, event: 1 / 0)  # type: ignore[func-returns-value]
    bus.publish("mpcnet/secagg/aborted", {"round": "r1", "reason": "x"})
