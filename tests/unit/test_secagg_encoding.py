"""Canonical message encoding: round trip, determinism, strictness."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mpcnet.secagg import ProtocolViolation, SecAggParams, Stage, run_round
from mpcnet.secagg.driver import TranscriptEntry, signing_keys_for, verify_keys_for
from mpcnet.secagg.encoding import decode, encode
from mpcnet.secagg.masked_input import MaskedInputResponse
from mpcnet.secagg.unmasking import RevealedShare, UnmaskingResponse

IDS = (1, 2, 3, 4)
SIGN = signing_keys_for(IDS, bytes(16))
PARAMS = SecAggParams("enc", IDS, threshold=2, vector_length=3, active=True, verify_keys=verify_keys_for(SIGN))


def transcript() -> list[TranscriptEntry]:
    out: list[TranscriptEntry] = []
    inputs = {c: np.full(3, c, dtype=np.uint64) for c in IDS}
    run_round(inputs, PARAMS, {Stage.MASKED_INPUT_COLLECTION: {4}}, bytes(16), signing_keys=SIGN, transcript=out)
    return out


def test_every_message_round_trips_byte_for_byte() -> None:
    entries = transcript()
    assert {e.type for e in entries} >= {
        "secagg.AdvertiseKeysRequest", "secagg.AdvertiseKeysResponse", "secagg.ShareKeysRequest",
        "secagg.ShareKeysResponse", "secagg.MaskedInputRequest", "secagg.MaskedInputResponse",
        "secagg.ConsistencyCheckRequest", "secagg.ConsistencyCheckResponse", "secagg.UnmaskingRequest",
        "secagg.UnmaskingResponse"}
    for e in entries:
        msg = decode(e.data)
        assert encode(msg) == e.data
        body = json.loads(e.data)
        assert body["type"] == e.type and body["v"] == 1
        assert e.data == json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def test_seeded_transcripts_are_identical() -> None:
    a, b = transcript(), transcript()
    assert [e.data for e in a] == [e.data for e in b]


def test_vector_field_is_little_endian_u64_hex() -> None:
    msg = MaskedInputResponse("r", 1, np.array([1, 2**64 - 1], dtype=np.uint64))
    body = json.loads(encode(msg))
    assert body["masked"] == "0100000000000000" + "ff" * 8
    back = decode(encode(msg))
    assert isinstance(back, MaskedInputResponse) and back.masked.tolist() == [1, 2**64 - 1]


def test_nested_round_trip() -> None:
    msg = UnmaskingResponse("r", 2, (RevealedShare(1, b"\x01" * 66),), ())
    assert decode(encode(msg)) == msg


@pytest.mark.parametrize("data", [
    b"not json", b"[]", b'{"type":"secagg.Nope","v":1}', b'{"type":"secagg.AdvertiseKeysRequest","v":2}',
    b'{"recipient":1,"round_id":"r","type":"secagg.AdvertiseKeysRequest","v":1,"x":0}',
    b'{"recipient":"1","round_id":"r","type":"secagg.AdvertiseKeysRequest","v":1}',
    b'{"round_id":"r","recipient":1,"type":"secagg.AdvertiseKeysRequest","v":1}',  # not sorted: not canonical
    b'{"masked":"0100","round_id":"r","sender":1,"type":"secagg.MaskedInputResponse","v":1}',
])
def test_malformed_or_non_canonical_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        decode(data)
