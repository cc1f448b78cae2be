"""`mpcnet agent --drill-hooks`: the hold file freezes exactly the named seats at the named stage, for a bounded
time, and is ignored when absent or malformed."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from mpcnet.client_agent import drill_hold
from mpcnet.secagg.stage import Stage


def test_hold_freezes_only_the_named_seat_at_the_named_stage(tmp_path: Path) -> None:
    (tmp_path / "r1.drill.json").write_text(json.dumps({"hold": {"stage": "share_keys", "seats": [5], "max_s": 0.3}}))
    asyncio.run(drill_hold(tmp_path, "r1", 4, "host:1")(Stage.SHARE_KEYS))  # another seat: no hold
    asyncio.run(drill_hold(tmp_path, "r1", 5, "host:1")(Stage.ADVERTISE_KEYS))  # another stage: no hold
    assert not list(tmp_path.glob("*.held"))
    t0 = time.monotonic()
    asyncio.run(drill_hold(tmp_path, "r1", 5, "host:1")(Stage.SHARE_KEYS))
    assert time.monotonic() - t0 >= 0.25  # it waited, and then went on by itself
    assert (tmp_path / "r1.seat-5.held").read_text() == "host:1"


def test_hold_without_or_with_a_broken_file_does_nothing(tmp_path: Path) -> None:
    asyncio.run(drill_hold(tmp_path, "r2", 1, "h")(Stage.SHARE_KEYS))
    (tmp_path / "r2.drill.json").write_text("{not json")
    asyncio.run(drill_hold(tmp_path, "r2", 1, "h")(Stage.SHARE_KEYS))
    (tmp_path / "r2.drill.json").write_text(json.dumps(["a list"]))
    asyncio.run(drill_hold(tmp_path, "r2", 1, "h")(Stage.SHARE_KEYS))
    assert not list(tmp_path.glob("*.held"))
