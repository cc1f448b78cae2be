"""Honest-client rules: each refusal is its own test, and each raises its own error."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mpcnet.secagg import (ConsistencyRefused, DecryptionFailed, DoubleRevealRefused, IllegalTransition,
                           InvalidSignatureRefused, OutsideViewRefused, ProtocolViolation, RefusedRequest, Stage,
                           TooFewSurvivorsRefused)
from mpcnet.secagg import advertise_keys, consistency_check, masked_input, share_keys, unmasking
from mpcnet.secagg.driver import signing_keys_for, verify_keys_for
from mpcnet.secagg.params import SecAggParams
from mpcnet.secagg.state import new_server
from tests.unit.test_secagg_support import run_until_masked_input, run_until_unmasking

IDS = (1, 2, 3, 4, 5)
PASSIVE = SecAggParams("refuse/passive", IDS, threshold=3, vector_length=2)
SIGN = signing_keys_for(IDS, b"refusal-signing-seed-0123456789a")
ACTIVE = SecAggParams("refuse/active", IDS, threshold=3, vector_length=2, active=True,
                      verify_keys=verify_keys_for(SIGN))


@pytest.fixture(scope="module")
def after_drop() -> tuple:
    """Client 5 dropped before masked input: U2 = 1..5, U3 = 1..4."""
    rnd = run_until_unmasking(PASSIVE, frozenset({5}))
    return rnd, unmasking.server_request(rnd.server)


def test_honest_request_is_answered(after_drop: tuple) -> None:
    rnd, requests = after_drop
    assert requests[1].alive == (1, 2, 3, 4) and requests[1].dropped == (5,)
    _, resp = unmasking.client_step(rnd.clients[1], requests[1])
    assert [s.owner for s in resp.self_mask_shares] == [1, 2, 3, 4]
    assert [s.owner for s in resp.key_shares] == [5]


def test_refuses_self_mask_and_key_share_of_same_peer(after_drop: tuple) -> None:
    rnd, requests = after_drop
    bad = dataclasses.replace(requests[1], dropped=(2, 5))  # 2 is also alive
    with pytest.raises(DoubleRevealRefused, match=r"clients \[2\]"):
        unmasking.client_step(rnd.clients[1], bad)


def test_refuses_peer_outside_view_in_dropped(after_drop: tuple) -> None:
    rnd = run_until_unmasking(SecAggParams("refuse/six", (1, 2, 3, 4, 5, 6), threshold=3, vector_length=2),
                              frozenset({5}))
    req = unmasking.server_request(rnd.server)[1]
    # pretend client 6 never shared with client 1: remove it from client 1's view
    state = rnd.clients[1].replace(share_senders=rnd.clients[1].share_senders - {6})
    bad = dataclasses.replace(req, alive=tuple(a for a in req.alive if a != 6), dropped=(5, 6))
    with pytest.raises(OutsideViewRefused, match=r"\[6\]"):
        unmasking.client_step(state, bad)


def test_refuses_unknown_alive_peer(after_drop: tuple) -> None:
    rnd, requests = after_drop
    bad = dataclasses.replace(requests[1], alive=(1, 2, 3, 4, 99))
    with pytest.raises(OutsideViewRefused, match="99"):
        unmasking.client_step(rnd.clients[1], bad)


def test_refuses_being_listed_as_dropped(after_drop: tuple) -> None:
    rnd, requests = after_drop
    bad = dataclasses.replace(requests[1], alive=(2, 3, 4), dropped=(1, 5))
    with pytest.raises(OutsideViewRefused):
        unmasking.client_step(rnd.clients[1], bad)


def test_refuses_fewer_than_t_survivors(after_drop: tuple) -> None:
    rnd, requests = after_drop
    bad = dataclasses.replace(requests[1], alive=(1, 2), dropped=(5,))
    with pytest.raises(TooFewSurvivorsRefused, match="threshold 3"):
        unmasking.client_step(rnd.clients[1], bad)


def test_answers_unmasking_only_once(after_drop: tuple) -> None:
    rnd, requests = after_drop
    state, _ = unmasking.client_step(rnd.clients[2], requests[2])
    second = dataclasses.replace(requests[2], alive=(1, 2, 3), dropped=(4, 5))
    with pytest.raises(IllegalTransition):
        unmasking.client_step(state, second)


def test_refusals_are_refused_requests_and_hide_secrets(after_drop: tuple) -> None:
    rnd, requests = after_drop
    bad = dataclasses.replace(requests[1], dropped=(2, 5))
    with pytest.raises(RefusedRequest) as info:
        unmasking.client_step(rnd.clients[1], bad)
    assert info.value.status == "PERMISSION_DENIED"
    state = rnd.clients[1]
    text = str(info.value) + repr(state)
    assert state.self_seed is not None and state.self_seed.hex() not in text
    assert "c_sk" not in repr(state) and "self_seed" not in repr(state)


def test_tampered_ciphertext_is_one_opaque_error() -> None:
    """A routed share is opened at masked input, before any mask leaves the client: a flipped bit, another
    sender's ciphertext replayed, or a short one all fail the same way there, and no masked vector is sent."""
    rnd = run_until_masked_input(PASSIVE)
    clients = rnd.clients
    request = masked_input.server_request(rnd.server)[1]
    by_sender = {e.sender: e for e in request.shares}
    value = rnd.inputs[1]

    def routed_with(ciphertext: bytes) -> masked_input.MaskedInputRequest:
        shares = tuple(dataclasses.replace(e, ciphertext=ciphertext) if e.sender == 2 else e for e in request.shares)
        return dataclasses.replace(request, shares=shares)

    flipped = bytearray(by_sender[2].ciphertext)
    flipped[-1] ^= 1
    errors = []
    for bad in (bytes(flipped), by_sender[3].ciphertext, b"\x00" * 5):  # the 2nd: 3's ciphertext replayed as 2's
        with pytest.raises(DecryptionFailed) as info:
            masked_input.client_step(clients[1], routed_with(bad), value)
        errors.append(str(info.value))
    assert errors == ["share ciphertext failed authentication"] * 3
    # the honest request: each sender's shares are kept as opened, for unmasking to reveal
    state, _ = masked_input.client_step(clients[1], request, value)
    assert sorted(state.received_shares) == [2, 3, 4, 5]
    assert state.received_shares[2] == share_keys.open_shares(state, 2, by_sender[2].ciphertext)


# ----------------------------------------------------------------- active mode


@pytest.fixture(scope="module")
def active_round() -> tuple:
    rnd = run_until_unmasking(ACTIVE, frozenset({5}), SIGN)
    return rnd, unmasking.server_request(rnd.server)


def test_active_honest_request_is_answered(active_round: tuple) -> None:
    rnd, requests = active_round
    assert len(requests[1].signatures) == 4
    unmasking.client_step(rnd.clients[1], requests[1])


def test_active_refuses_too_few_valid_signatures(active_round: tuple) -> None:
    rnd, requests = active_round
    sigs = requests[1].signatures
    forged = tuple(dataclasses.replace(s, signature=bytes(64)) for s in sigs[2:])
    with pytest.raises(ConsistencyRefused, match="2 valid"):
        unmasking.client_step(rnd.clients[1], dataclasses.replace(requests[1], signatures=sigs[:2] + forged))


def test_active_refuses_duplicate_signer_counted_twice(active_round: tuple) -> None:
    rnd, requests = active_round
    sigs = requests[1].signatures
    with pytest.raises(ConsistencyRefused):
        unmasking.client_step(rnd.clients[1], dataclasses.replace(requests[1], signatures=(sigs[0],) * 4))


def test_active_refuses_a_set_other_than_the_signed_one(active_round: tuple) -> None:
    rnd, requests = active_round
    bad = dataclasses.replace(requests[1], alive=(1, 2, 3), dropped=(5,))
    with pytest.raises(ConsistencyRefused, match="differs"):
        unmasking.client_step(rnd.clients[1], bad)


def test_active_consistency_check_refuses_set_without_self(active_round: tuple) -> None:
    rnd = run_until_unmasking(ACTIVE, frozenset({5}), SIGN)  # fresh: clients already past the check
    # rebuild one client at MASKED_INPUT_COLLECTION stage
    state = rnd.clients[1].replace(stage=Stage.MASKED_INPUT_COLLECTION, signed_survivors=None)
    req = consistency_check.ConsistencyCheckRequest(ACTIVE.round_id, 1, (2, 3, 4))
    with pytest.raises(OutsideViewRefused):
        consistency_check.client_step(state, req)
    req2 = consistency_check.ConsistencyCheckRequest(ACTIVE.round_id, 1, (1, 2))
    with pytest.raises(TooFewSurvivorsRefused):
        consistency_check.client_step(state, req2)


def test_active_refuses_advert_with_bad_signature() -> None:
    server = new_server(ACTIVE)
    clients, resp = {}, {}
    for c, req in advertise_keys.server_request(server).items():
        clients[c], resp[c] = advertise_keys.client_step(ACTIVE, c, req, signing_key=SIGN[c])
    server = advertise_keys.server_step(server, resp)
    req1 = share_keys.server_request(server)[1]
    forged = tuple(dataclasses.replace(p, signature=bytes(64)) if p.client_id == 3 else p for p in req1.peers)
    with pytest.raises(InvalidSignatureRefused, match="client 3"):
        share_keys.client_step(clients[1], dataclasses.replace(req1, peers=forged))


def test_server_drops_advert_with_bad_signature() -> None:
    server = new_server(ACTIVE)
    resp = {}
    for c, req in advertise_keys.server_request(server).items():
        _, resp[c] = advertise_keys.client_step(ACTIVE, c, req, signing_key=SIGN[c])
    resp[4] = dataclasses.replace(resp[4], keys=dataclasses.replace(resp[4].keys, signature=bytes(64)))
    server = advertise_keys.server_step(server, resp)
    assert server.after(Stage.ADVERTISE_KEYS) == frozenset({1, 2, 3, 5})
    assert "invalid key advertisement" in server.rejected[4]


def test_share_keys_refuses_too_few_keys_and_foreign_keys() -> None:
    server = new_server(PASSIVE)
    clients, resp = {}, {}
    for c, req in advertise_keys.server_request(server).items():
        clients[c], resp[c] = advertise_keys.client_step(PASSIVE, c, req)
    server = advertise_keys.server_step(server, resp)
    req1 = share_keys.server_request(server)[1]
    with pytest.raises(TooFewSurvivorsRefused):
        share_keys.client_step(clients[1], dataclasses.replace(req1, peers=req1.peers[:2]))
    altered = (dataclasses.replace(req1.peers[0], c_pk=req1.peers[1].c_pk),) + req1.peers[1:]
    with pytest.raises(ProtocolViolation):
        share_keys.client_step(clients[1], dataclasses.replace(req1, peers=altered))
    with pytest.raises(ProtocolViolation):
        share_keys.client_step(clients[1], dataclasses.replace(req1, round_id="other-round"))


def test_masked_input_refuses_wrong_input() -> None:
    rnd = run_until_unmasking(PASSIVE)
    state = rnd.clients[1].replace(stage=Stage.SHARE_KEYS)
    from mpcnet.secagg import masked_input
    from mpcnet.secagg.errors import ParamsError
    req = masked_input.MaskedInputRequest(PASSIVE.round_id, 1, ())
    with pytest.raises(ParamsError):
        masked_input.client_step(state, req, np.array([1, 2], dtype=np.int64))  # type: ignore[arg-type]
    with pytest.raises(ParamsError):
        masked_input.client_step(state, req, np.array([1, 1 << 40], dtype=np.uint64))
    with pytest.raises(TooFewSurvivorsRefused):
        masked_input.client_step(state, req, np.array([1, 2], dtype=np.uint64))


def test_active_mode_is_refused_where_it_would_not_hold() -> None:
    """A review split the survivors' views on SecAgg+ (its consistency signatures are a neighbourhood's) and
    with t <= n/2 (two groups of t signing different survivor sets): such active rounds cannot be made."""
    from mpcnet.secagg.errors import ParamsError
    from mpcnet.secagg.graph import GraphKind
    ten = tuple(range(1, 11))
    keys = verify_keys_for(signing_keys_for(ten, b"refusal-signing-seed-0123456789a"))
    with pytest.raises(ParamsError, match="active mode needs the complete graph"):
        SecAggParams("a-plus", ten, threshold=3, vector_length=1, graph_kind=GraphKind.REGULAR, degree=4, active=True,
                     verify_keys=keys)
    with pytest.raises(ParamsError, match="active mode needs a threshold above n/2"):
        SecAggParams("a5", ten, threshold=5, vector_length=1, active=True, verify_keys=keys)
    SecAggParams("a6", ten, threshold=6, vector_length=1, active=True, verify_keys=keys)


def test_a_client_takes_the_pki_from_its_operator_not_from_the_coordinator() -> None:
    from mpcnet.secagg.errors import UntrustedParamsRefused
    from mpcnet.secagg.params import check_trusted
    pki = dict(zip(IDS, ACTIVE.verify_keys))
    check_trusted(ACTIVE, 1, SIGN[1], pki)  # the operator's keys: fine
    check_trusted(PASSIVE, 1, None, None)  # a passive client in a passive round
    with pytest.raises(UntrustedParamsRefused, match="passive"):
        check_trusted(PASSIVE, 1, SIGN[1], pki)  # a downgrade
    with pytest.raises(UntrustedParamsRefused, match="must come from the operator"):
        check_trusted(ACTIVE, 1, SIGN[1], None)
    swapped = dataclasses.replace(ACTIVE, verify_keys=(ACTIVE.verify_keys[0], bytes(32), *ACTIVE.verify_keys[2:]))
    with pytest.raises(UntrustedParamsRefused, match=r"differ .* \(clients \[2\]\)"):
        check_trusted(swapped, 1, SIGN[1], pki)
    with pytest.raises(UntrustedParamsRefused, match=r"clients \[5\]"):
        check_trusted(ACTIVE, 1, SIGN[1], {c: k for c, k in pki.items() if c != 5})
