"""Stages, survivor sets, parameters and graphs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcnet.secagg import GraphKind, IllegalTransition, InsufficientSurvivors, ParamsError, SecAggParams, Stage
from mpcnet.secagg import advertise_keys, masked_input, share_keys, unmasking
from mpcnet.secagg.graph import complete_graph, default_degree, random_regular_graph
from mpcnet.secagg.stage import check_survivors, check_transition, rounds
from mpcnet.secagg.state import new_server
from tests.unit.test_secagg_support import run_until_unmasking

SETTINGS = settings(max_examples=40, deadline=None, database=None)
P = SecAggParams("stages", (1, 2, 3, 4, 5), threshold=3, vector_length=2)


def test_only_the_next_round_is_legal() -> None:
    for active in (False, True):
        order = (Stage.SETUP,) + rounds(active)
        for a, b in itertools.product(order, repeat=2):
            legal = order.index(b) == order.index(a) + 1 and b is not Stage.SETUP
            if legal:
                check_transition(a, b, active, "x")
            else:
                with pytest.raises(IllegalTransition, match=f"{a.value} -> {b.value}"):
                    check_transition(a, b, active, "x")
    with pytest.raises(IllegalTransition):
        check_transition(Stage.MASKED_INPUT_COLLECTION, Stage.CONSISTENCY_CHECK, False, "x")


def test_server_steps_out_of_order_raise() -> None:
    server = new_server(P)
    with pytest.raises(IllegalTransition):
        share_keys.server_request(server)
    with pytest.raises(IllegalTransition):
        masked_input.server_step(server, {})
    with pytest.raises(IllegalTransition):
        unmasking.server_request(server)


def test_client_cannot_skip_a_round() -> None:
    rnd = run_until_unmasking(P)
    req = unmasking.server_request(rnd.server)[1]
    early = rnd.clients[1].replace(stage=Stage.SHARE_KEYS)
    with pytest.raises(IllegalTransition):
        unmasking.client_step(early, req)


def test_survivor_sets_only_shrink_and_are_recorded() -> None:
    rnd = run_until_unmasking(P, frozenset({4}))
    server = rnd.server
    reqs = unmasking.server_request(server)
    responses = {}
    for c in (1, 2, 3):
        _, responses[c] = unmasking.client_step(rnd.clients[c], reqs[c])
    server = unmasking.server_step(server, responses)
    chain = [server.after(s) for s in rounds(False)]
    assert chain == [frozenset(P.client_ids)] * 2 + [frozenset({1, 2, 3, 5}), frozenset({1, 2, 3})]
    assert all(a >= b for a, b in zip(chain, chain[1:]))
    np.testing.assert_array_equal(unmasking.result(server), np.full(2, 1 + 2 + 3 + 5, dtype=np.uint64))


def test_server_ignores_unexpected_and_malformed_responses() -> None:
    rnd = run_until_unmasking(P, frozenset({4}))
    reqs = unmasking.server_request(rnd.server)
    responses = {}
    for c in (1, 2, 3, 5):
        _, responses[c] = unmasking.client_step(rnd.clients[c], reqs[c])
    import dataclasses
    responses[5] = dataclasses.replace(responses[5], key_shares=())  # did not answer what was asked
    responses[4] = dataclasses.replace(responses[1], sender=4)  # 4 dropped before masked input
    server = unmasking.server_step(rnd.server, responses)
    assert server.after(Stage.UNMASKING) == frozenset({1, 2, 3})
    assert set(server.rejected) == {4, 5}
    np.testing.assert_array_equal(unmasking.result(server), np.full(2, 11, dtype=np.uint64))


def test_insufficient_survivors_names_stage_and_counts() -> None:
    g = complete_graph([1, 2, 3, 4])
    with pytest.raises(InsufficientSurvivors) as info:
        check_survivors(Stage.SHARE_KEYS, g, 3, frozenset({1, 2}), frozenset({1, 2}))
    e = info.value
    assert (e.stage, e.survivors, e.threshold) == (Stage.SHARE_KEYS, 2, 3)
    assert str(e) == "secure aggregation aborted after share_keys: 2 survivors in round, threshold 3"
    assert e.status == "ABORTED"


def test_below_threshold_advertise_aborts() -> None:
    server = new_server(P)
    resp = {}
    for c, req in advertise_keys.server_request(server).items():
        if c in (1, 2):
            _, resp[c] = advertise_keys.client_step(P, c, req)
    with pytest.raises(InsufficientSurvivors) as info:
        advertise_keys.server_step(server, resp)
    assert info.value.stage is Stage.ADVERTISE_KEYS


@pytest.mark.parametrize("kwargs", [
    dict(threshold=1), dict(threshold=6), dict(client_ids=(1, 1, 2)), dict(client_ids=(2, 1, 3)),
    dict(client_ids=(0, 1, 2)), dict(bits=0), dict(bits=65), dict(vector_length=0), dict(round_id="bad id"),
    dict(graph_seed=bytes(8)), dict(degree=2), dict(active=True), dict(verify_keys=(bytes(32),) * 5),
    dict(graph_kind=GraphKind.REGULAR, degree=3), dict(graph_kind=GraphKind.REGULAR, degree=2, threshold=4),
])
def test_bad_params_raise_at_construction(kwargs: dict) -> None:
    base = dict(round_id="p", client_ids=(1, 2, 3, 4, 5), threshold=3, vector_length=2)
    base.update(kwargs)
    with pytest.raises(ParamsError):
        SecAggParams(**base)  # type: ignore[arg-type]


def test_default_degree() -> None:
    assert default_degree(2) == 1
    assert default_degree(8) == 6
    assert default_degree(9) == 8
    assert default_degree(100) == 14
    assert default_degree(1000) == 20
    assert default_degree(7) == 6  # capped at n - 1
    for n in range(2, 200):
        k = default_degree(n)
        assert 1 <= k <= n - 1 and (n * k) % 2 == 0


@SETTINGS
@given(st.integers(min_value=2, max_value=60), st.data(), st.binary(min_size=32, max_size=32))
def test_random_regular_graph_is_k_regular_symmetric_deterministic(n: int, data: st.DataObject, seed: bytes) -> None:
    ks = [k for k in range(1, n) if (n * k) % 2 == 0]
    k = data.draw(st.sampled_from(ks))
    ids = list(range(10, 10 + n))
    g = random_regular_graph(ids, k, seed)
    for u in ids:
        assert len(g.neighbours(u)) == k and u not in g.neighbours(u)
        assert all(u in g.neighbours(v) for v in g.neighbours(u))
    assert g == random_regular_graph(list(reversed(ids)), k, seed)
    assert g.complete == (k == n - 1)


def test_graph_depends_on_public_seed() -> None:
    ids = list(range(1, 21))
    graphs = {tuple(sorted(random_regular_graph(ids, 4, bytes([i]) * 32).adjacency[1])) for i in range(8)}
    assert len(graphs) > 1
    with pytest.raises(ValueError):
        random_regular_graph(ids, 3, bytes(32)[:16])
    with pytest.raises(ValueError):
        random_regular_graph(list(range(1, 6)), 3, bytes(32))
