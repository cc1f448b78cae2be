"""SecAgg+: the masked-input survivors must be connected in the graph.

On a sparse graph, dropouts can cut the survivors U3 into groups that share no pairwise mask.  The server
holds every y_u, and at Unmasking it learns every b_u and the dropped clients' keys, so it could unmask each
group's sum on its own -- a group of one is one client's input.  A review showed it on 8 clients of degree 2
with t = 2.  The server now aborts such a round before Unmasking, and an honest client refuses to reveal for a
survivor set that is not connected."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcnet.secagg import masked_input, unmasking
from mpcnet.secagg.crypto import SEED_BYTES
from mpcnet.secagg.driver import run_round
from mpcnet.secagg.errors import DisconnectedSurvivors, DisconnectedSurvivorsRefused
from mpcnet.secagg.graph import GraphKind, random_regular_graph
from mpcnet.secagg.params import SecAggParams
from mpcnet.secagg.stage import Stage
from tests.unit.test_secagg_support import run_until_masked_input

IDS = tuple(range(1, 9))
CYCLE = SecAggParams("split", IDS, threshold=2, vector_length=4, graph_kind=GraphKind.REGULAR, degree=2,
                     graph_seed=b"c" * SEED_BYTES)


def cycle_order(params: SecAggParams) -> list[int]:
    """The 2-regular graph's clients in the order of its one cycle."""
    graph = random_regular_graph(params.client_ids, 2, params.graph_seed)
    order = [params.client_ids[0]]
    while len(order) < len(params.client_ids):
        order.append(min(graph.neighbours(order[-1]) - set(order[-2:])))
    assert order[0] in graph.neighbours(order[-1])  # one cycle through everyone
    return order


def test_survivors_split_by_two_dropouts_abort_the_round_before_unmasking() -> None:
    order = cycle_order(CYCLE)
    drops = {order[0], order[3]}  # the cycle breaks into {order[1], order[2]} and {order[4..7]}
    inputs = {c: np.full(4, 1000 * c, dtype=np.uint64) for c in IDS}
    with pytest.raises(DisconnectedSurvivors, match="2 groups of sizes 4, 2") as err:
        run_round(inputs, CYCLE, {Stage.MASKED_INPUT_COLLECTION: drops})
    assert err.value.groups == [frozenset(order[4:]), frozenset(order[1:3])]
    assert err.value.stage is Stage.MASKED_INPUT_COLLECTION
    # one dropout leaves a path: connected, the round completes with the exact sum of the rest
    total = run_round(inputs, CYCLE, {Stage.MASKED_INPUT_COLLECTION: {order[0]}})
    assert np.array_equal(total, sum(inputs[c] for c in IDS if c != order[0]) % 2**32)


def test_an_honest_client_refuses_to_unmask_a_split_survivor_set() -> None:
    order = cycle_order(CYCLE)
    drops = {order[0], order[3]}
    rnd = run_until_masked_input(CYCLE)
    clients = rnd.clients
    for c, req in masked_input.server_request(rnd.server).items():
        if c not in drops:
            clients[c], _ = masked_input.client_step(clients[c], req, rnd.inputs[c])
    victim = order[1]  # with order[2], a group of two: with order[2]'s help the server would learn its input
    alive = tuple(sorted(set(IDS) - drops))
    request = unmasking.UnmaskingRequest(CYCLE.round_id, victim, alive, (order[0],), ())
    with pytest.raises(DisconnectedSurvivorsRefused, match="splits into 2 groups"):
        unmasking.client_step(clients[victim], request)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(4, 40), half_degree=st.integers(1, 3), members=st.data(),
       seed=st.binary(min_size=SEED_BYTES, max_size=SEED_BYTES))
def test_groups_partition_the_members_into_connected_pieces_with_no_edge_between(
        n: int, half_degree: int, members: st.DataObject, seed: bytes) -> None:
    degree = min(2 * half_degree, n - 1 - (n - 1) % 2)
    graph = random_regular_graph(range(1, n + 1), degree, seed)
    chosen = frozenset(members.draw(st.sets(st.integers(1, n))))
    groups = graph.groups(chosen)
    assert frozenset().union(*groups) == chosen and sum(map(len, groups)) == len(chosen)
    for g in groups:
        for other in groups:
            if other is not g:
                assert not any(graph.neighbours(u) & other for u in g)  # no edge between two groups
        # each group is connected: grown from one member through edges inside it, it reaches all of it
        reached, frontier = {min(g)}, [min(g)]
        while frontier:
            frontier = [v for u in frontier for v in graph.neighbours(u) & g if v not in reached
                        and not reached.add(v)]  # type: ignore[func-returns-value]
        assert reached == g


def test_degree_one_on_more_than_two_clients_is_refused_when_the_round_is_made() -> None:
    """Degree 1 is a perfect matching: no pair shares a mask with another, so every round would abort after all
    the clients' work (and before the connectivity check, each pair's sum was unmasked)."""
    from mpcnet.secagg.errors import ParamsError
    with pytest.raises(ParamsError, match="degree 1 on 4 clients splits them into pairs"):
        SecAggParams("d1", (1, 2, 3, 4), threshold=2, vector_length=1, graph_kind=GraphKind.REGULAR, degree=1)
    SecAggParams("d1", (1, 2), threshold=2, vector_length=1, graph_kind=GraphKind.REGULAR, degree=1)  # one pair
