"""Helpers shared by the round modules (message addressing, server collection)."""

from __future__ import annotations

from typing import Callable, Mapping, Protocol, TypeVar

from mpcnet.secagg.errors import ProtocolViolation
from mpcnet.secagg.stage import Stage, check_survivors, check_transition, previous
from mpcnet.secagg.state import ClientState, ServerState


class Request(Protocol):
    @property
    def round_id(self) -> str: ...
    @property
    def recipient(self) -> int: ...


class Response(Protocol):
    @property
    def round_id(self) -> str: ...
    @property
    def sender(self) -> int: ...


R = TypeVar("R", bound=Response)


def client_enter(state: ClientState, stage: Stage, request: Request) -> None:
    """Check the transition and that ``request`` is for this round and this client."""
    check_transition(state.stage, stage, state.params.active, f"client {state.client_id}")
    if request.round_id != state.params.round_id:
        raise ProtocolViolation(f"client {state.client_id}: request for another round at {stage.value}")
    if request.recipient != state.client_id:
        raise ProtocolViolation(f"client {state.client_id}: request addressed to client {request.recipient}")


def expected_senders(state: ServerState, stage: Stage) -> frozenset[int]:
    before = previous(stage, state.params.active)
    return frozenset(state.params.client_ids) if before is Stage.SETUP else state.after(before)


def server_collect(state: ServerState, stage: Stage, responses: Mapping[int, R],
                   validate: Callable[[int, R], str | None]) -> tuple[ServerState, dict[int, R]]:
    """Accept well-formed responses from expected senders; the rest count as dropped.

    Then record the new survivor set and check the threshold (raising
    :class:`~mpcnet.secagg.errors.InsufficientSurvivors` on failure).
    """
    check_transition(state.stage, stage, state.params.active, "server")
    expected = expected_senders(state, stage)
    accepted: dict[int, R] = {}
    rejected = dict(state.rejected)
    for cid in sorted(responses):
        msg = responses[cid]
        if cid not in expected:
            rejected[cid] = f"unexpected response at {stage.value}"
            continue
        if msg.round_id != state.params.round_id or msg.sender != cid:
            rejected[cid] = f"misaddressed response at {stage.value}"
            continue
        reason = validate(cid, msg)
        if reason is not None:
            rejected[cid] = f"{reason} at {stage.value}"
            continue
        accepted[cid] = msg
    survivors = frozenset(accepted)
    owners = survivors if stage in (Stage.ADVERTISE_KEYS, Stage.SHARE_KEYS) else state.after(Stage.SHARE_KEYS)
    check_survivors(stage, state.graph, state.params.threshold, survivors, owners)
    chain = dict(state.survivors)
    chain[stage] = survivors
    return state.replace(stage=stage, survivors=chain, rejected=rejected), accepted
