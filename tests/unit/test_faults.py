"""The fault schedule of mpcnet/transport/faults.py as pure function calls: deterministic, as specified."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from mpcnet.transport.faults import FaultConfigError, FaultSchedule, corrupt_bytes

EX = "/mpcnet.v1.Node/Exchange"


def schedule(*rules: dict[str, object], seed: str = "s") -> FaultSchedule:
    return FaultSchedule.parse(__import__("json").dumps({"seed": seed, "rules": list(rules)}))


def test_calls_after_and_method_patterns_pick_exactly_the_named_calls() -> None:
    s = schedule({"method": EX, "action": "drop", "calls": [2, 5]},
                 {"method": "*/Prepare", "action": "error", "after": 3})
    hits = [n for n in range(1, 10) if s.decide(EX, n)]
    assert hits == [2, 5]
    assert [n for n in range(1, 8) if s.decide("/mpcnet.v1.Node/Prepare", n)] == [4, 5, 6, 7]
    assert s.decide("/mpcnet.v1.Dealer/Enroll", 1) == []
    assert [f.action for f in s.decide(EX, 2)] == ["drop"]


def test_probability_is_seeded_and_close_to_its_rate() -> None:
    a = schedule({"method": EX, "action": "drop", "probability": 0.05}, seed="one")
    b = schedule({"method": EX, "action": "drop", "probability": 0.05}, seed="one")
    c = schedule({"method": EX, "action": "drop", "probability": 0.05}, seed="two")
    pick = lambda s: [n for n in range(1, 20_001) if s.decide(EX, n)]  # noqa: E731
    assert pick(a) == pick(b)  # same seed, same calls, whatever else happens
    assert pick(a) != pick(c)
    hits = len(pick(a))
    assert 800 < hits < 1200  # 5% of 20000 = 1000; a 6.5-sigma band, so this never flakes


def test_next_call_counts_per_method() -> None:
    s = schedule({"method": EX, "action": "error", "calls": [2]})
    assert s.next_call(EX) == (1, [])
    assert s.next_call("/other")[0] == 1
    n, faults = s.next_call(EX)
    assert n == 2 and [f.action for f in faults] == ["error"]


def test_delay_stays_within_its_jitter() -> None:
    s = schedule({"method": "*", "action": "delay", "delay_s": 0.1, "jitter_s": 0.02})
    delays = [s.decide(EX, n)[0].delay_s for n in range(1, 2001)]
    assert min(delays) >= 0.08 - 1e-12 and max(delays) <= 0.12 + 1e-12
    assert max(delays) - min(delays) > 0.03  # it really jitters


@given(st.binary(min_size=1, max_size=200), st.integers(min_value=0, max_value=2**64 - 1))
def test_corrupt_flips_exactly_one_byte(data: bytes, draw: int) -> None:
    out = corrupt_bytes(data, draw)
    assert len(out) == len(data)
    assert sum(1 for a, b in zip(data, out) if a != b) == 1


@pytest.mark.parametrize("text, why", [
    ("not json", "not JSON"),
    ('{"rules": [{"action": "explode"}]}', "must be one of"),
    ('{"rules": [{"action": "drop", "calls": [0]}]}', "1-based"),
    ('{"rules": [{"action": "drop", "probability": 2}]}', "probability"),
    ('{"rules": [{"action": "delay", "delay_s": 0.1, "jitter_s": 0.5}]}', "jitter_s"),
    ('{"rules": [{"action": "drop", "typo": 1}]}', "unknown fault rule field"),
    ('{"seed": 1}', "must be"),
])
def test_bad_schedules_are_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(FaultConfigError, match=why):
        FaultSchedule.parse(text)
