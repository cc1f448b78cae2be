"""Exhaustive dropout recovery: every drop pattern either gives the exact sum of
U3's inputs (mod 2^k) or aborts cleanly with InsufficientSurvivors naming the
stage predicted by the survivor rule."""

from __future__ import annotations

import itertools
from typing import Mapping

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcnet.secagg import GraphKind, InsufficientSurvivors, SecAggParams, Stage, run_round
from mpcnet.secagg.driver import signing_keys_for, verify_keys_for
from mpcnet.secagg.stage import rounds

SEED = b"dropout-tests-seed-0123456789abc"


def inputs_for(params: SecAggParams) -> dict[int, np.ndarray]:
    mod = 1 << params.bits
    return {c: np.array([(c * 2654435761 + j * 40503) % mod for j in range(params.vector_length)], dtype=np.uint64)
            for c in params.client_ids}


def expected(params: SecAggParams, drop_stage: Mapping[int, Stage]) -> tuple[str, object]:
    """Independent statement of the rule: ("sum", U3) or ("abort", stage)."""
    graph = params.graph()
    order = rounds(params.active)
    alive = set(params.client_ids)
    u2: set[int] = set()
    u3: set[int] = set()
    t = params.threshold
    for stage in order:
        alive = {c for c in alive if not (c in drop_stage and order.index(drop_stage[c]) <= order.index(stage))}
        owners = alive if stage in (Stage.ADVERTISE_KEYS, Stage.SHARE_KEYS) else u2
        if len(alive) < t or any(len((graph.neighbours(o) | {o}) & alive) < t for o in owners):
            return "abort", stage
        if stage is Stage.SHARE_KEYS:
            u2 = set(alive)
        if stage is Stage.MASKED_INPUT_COLLECTION:
            u3 = set(alive)
    return "sum", frozenset(u3)


def check(params: SecAggParams, drop_stage: Mapping[int, Stage], signing: Mapping[int, bytes] | None = None) -> str:
    inputs = inputs_for(params)
    drops: dict[Stage, set[int]] = {}
    for c, s in drop_stage.items():
        drops.setdefault(s, set()).add(c)
    kind, what = expected(params, drop_stage)
    if kind == "abort":
        with pytest.raises(InsufficientSurvivors) as info:
            run_round(inputs, params, drops, SEED, signing_keys=signing)
        assert info.value.stage is what
        assert info.value.survivors < params.threshold
        return "abort"
    got = run_round(inputs, params, drops, SEED, signing_keys=signing)
    assert isinstance(what, frozenset)
    want = np.zeros(params.vector_length, dtype=np.uint64)
    for c in what:
        want = (want + inputs[c]) & np.uint64((1 << params.bits) - 1)
    np.testing.assert_array_equal(got, want)
    return "sum"


COMPLETE = SecAggParams("drop/complete", (1, 2, 3, 4, 5), threshold=3, vector_length=3)


@pytest.mark.parametrize("stage", rounds(False), ids=lambda s: s.value)
def test_complete_graph_every_subset_at_every_stage(stage: Stage) -> None:
    outcomes = []
    for r in range(0, 6):
        for subset in itertools.combinations(COMPLETE.client_ids, r):
            outcomes.append(check(COMPLETE, {c: stage for c in subset}))
    assert outcomes.count("sum") == 16  # subsets of size <= 2
    assert outcomes.count("abort") == 16


def test_complete_graph_all_two_client_multi_stage_patterns() -> None:
    """Every way for up to two clients to drop, each at any stage (181 patterns)."""
    stages = rounds(False)
    count = 0
    for r in range(0, 3):
        for subset in itertools.combinations(COMPLETE.client_ids, r):
            for when in itertools.product(stages, repeat=r):
                assert check(COMPLETE, dict(zip(subset, when))) == "sum"
                count += 1
    assert count == 181


def test_complete_graph_three_droppers_always_abort_at_the_third_drop() -> None:
    stages = rounds(False)
    for subset in itertools.combinations(COMPLETE.client_ids, 3):
        for when in itertools.product(stages, repeat=3):
            if len(set(when)) == 3 and list(when) == sorted(when, key=stages.index):
                assert check(COMPLETE, dict(zip(subset, when))) == "abort"


@settings(max_examples=40, deadline=None, database=None)
@given(st.dictionaries(st.sampled_from(COMPLETE.client_ids), st.sampled_from(rounds(False))))
def test_complete_graph_random_patterns(pattern: dict[int, Stage]) -> None:
    check(COMPLETE, pattern)


def test_bits_64_and_small_k() -> None:
    for bits in (64, 8, 1):
        params = SecAggParams("drop/bits", (1, 2, 3, 4), threshold=2, vector_length=5, bits=bits)
        assert check(params, {2: Stage.MASKED_INPUT_COLLECTION, 4: Stage.UNMASKING}) == "sum"


_SIGN = signing_keys_for(range(1, 6), b"active-signing-seed-0123456789ab")
ACTIVE = SecAggParams("drop/active", (1, 2, 3, 4, 5), threshold=3, vector_length=3, active=True,
                      verify_keys=verify_keys_for(_SIGN))


@pytest.mark.parametrize("stage", rounds(True), ids=lambda s: s.value)
def test_active_mode_every_subset_at_every_stage(stage: Stage) -> None:
    for r in range(0, 6):
        for subset in itertools.combinations(ACTIVE.client_ids, r):
            check(ACTIVE, {c: stage for c in subset}, _SIGN)


PLUS = SecAggParams("drop/plus", tuple(range(1, 9)), threshold=3, vector_length=2,
                    graph_kind=GraphKind.REGULAR, degree=4, graph_seed=bytes(range(7, 39)))


def test_secaggplus_graph_is_sparse() -> None:
    g = PLUS.graph()
    assert not g.complete and all(len(g.neighbours(c)) == 4 for c in PLUS.client_ids)


@pytest.mark.parametrize("stage", rounds(False), ids=lambda s: s.value)
def test_secaggplus_every_subset_at_every_stage(stage: Stage) -> None:
    outcomes = {"sum": 0, "abort": 0}
    for r in range(0, 9):
        for subset in itertools.combinations(PLUS.client_ids, r):
            outcomes[check(PLUS, {c: stage for c in subset})] += 1
    assert outcomes["sum"] > 0 and outcomes["abort"] > 0


@settings(max_examples=40, deadline=None, database=None)
@given(st.dictionaries(st.sampled_from(PLUS.client_ids), st.sampled_from(rounds(False)), max_size=4))
def test_secaggplus_random_multi_stage_patterns(pattern: dict[int, Stage]) -> None:
    check(PLUS, pattern)


def test_secaggplus_default_degree_with_dropouts() -> None:
    params = SecAggParams("drop/plus-default", tuple(range(1, 11)), threshold=4, vector_length=2,
                          graph_kind=GraphKind.REGULAR, graph_seed=bytes(32))
    assert params.effective_degree == 8
    assert check(params, {1: Stage.SHARE_KEYS, 5: Stage.MASKED_INPUT_COLLECTION, 9: Stage.UNMASKING}) == "sum"


def test_abort_reveals_no_share() -> None:
    """An abort before Unmasking happens before any share is requested or revealed."""
    from mpcnet.secagg.driver import TranscriptEntry

    transcript: list[TranscriptEntry] = []
    with pytest.raises(InsufficientSurvivors) as info:
        run_round(inputs_for(COMPLETE), COMPLETE, {Stage.MASKED_INPUT_COLLECTION: {1, 2, 3}}, SEED,
                  transcript=transcript)
    assert info.value.stage is Stage.MASKED_INPUT_COLLECTION
    assert "masked_input_collection" in str(info.value) and "threshold 3" in str(info.value)
    assert not any(e.type.startswith("secagg.Unmasking") for e in transcript)
