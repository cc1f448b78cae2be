"""The rounds of secure aggregation as an enum with checked transitions.

Order: SETUP -> ADVERTISE_KEYS -> SHARE_KEYS -> MASKED_INPUT_COLLECTION
-> [CONSISTENCY_CHECK, active mode only] -> UNMASKING.  A party's ``stage``
is the last round it completed (server) or answered (client); a step for any
other round raises :class:`IllegalTransition`, so e.g. a client answers the
unmasking request at most once.

After every round the server checks the threshold (:func:`check_survivors`):
with survivors U_r, it needs |U_r| >= t, and for every client u whose
secrets may have to be reconstructed (u in U_r for the first two rounds, u in
U_2 afterwards) at least t live holders |N[u] & U_r| >= t.  For the complete
graph the second condition is the first.  On a sparse (SecAgg+) graph the
masked-input survivors U3 must also be connected in the graph: survivors in
two groups that share no pairwise mask would be unmasked group by group
(:class:`DisconnectedSurvivors`).  Otherwise the round aborts with
:class:`InsufficientSurvivors` naming the stage -- before any share that could
unmask an input is requested.
"""

from __future__ import annotations

from enum import Enum

from mpcnet.secagg.errors import DisconnectedSurvivors, IllegalTransition, InsufficientSurvivors
from mpcnet.secagg.graph import NeighbourGraph


class Stage(str, Enum):
    SETUP = "setup"
    ADVERTISE_KEYS = "advertise_keys"
    SHARE_KEYS = "share_keys"
    MASKED_INPUT_COLLECTION = "masked_input_collection"
    CONSISTENCY_CHECK = "consistency_check"
    UNMASKING = "unmasking"


def rounds(active: bool) -> tuple[Stage, ...]:
    """The rounds run, in order, in passive (semi-honest) or active mode."""
    base = (Stage.ADVERTISE_KEYS, Stage.SHARE_KEYS, Stage.MASKED_INPUT_COLLECTION)
    return base + ((Stage.CONSISTENCY_CHECK,) if active else ()) + (Stage.UNMASKING,)


def previous(stage: Stage, active: bool) -> Stage:
    order = (Stage.SETUP,) + rounds(active)
    if stage not in order[1:]:
        raise ValueError(f"{stage.value} is not a round in {'active' if active else 'passive'} mode")
    return order[order.index(stage) - 1]


def check_transition(current: Stage, requested: Stage, active: bool, who: str) -> None:
    order = (Stage.SETUP,) + rounds(active)
    if requested not in order[1:] or current not in order or order.index(requested) != order.index(current) + 1:
        raise IllegalTransition(current, requested, who)


def check_survivors(stage: Stage, graph: NeighbourGraph, threshold: int, survivors: frozenset[int],
                    owners: frozenset[int]) -> None:
    """Raise :class:`InsufficientSurvivors` unless ``survivors`` can carry on (see module doc)."""
    if len(survivors) < threshold:
        raise InsufficientSurvivors(stage, len(survivors), threshold)
    if graph.complete:
        return
    for owner in sorted(owners):
        live = len(graph.closed(owner) & survivors)
        if live < threshold:
            raise InsufficientSurvivors(stage, live, threshold, scope=f"neighbourhood of client {owner}")
    if stage is Stage.MASKED_INPUT_COLLECTION:
        groups = graph.groups(survivors)
        if len(groups) > 1:
            raise DisconnectedSurvivors(stage, groups, threshold)
