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
PARAMS = SecAggParams("enc", IDS, threshold=3, vector_length=3, active=True, verify_keys=verify_keys_for(SIGN))


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
        size = int.from_bytes(e.data[:4], "big")
        body = json.loads(e.data[4:4 + size])
        assert body["type"] == e.type and body["v"] == 2
        assert e.data[4:4 + size] == json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def test_seeded_transcripts_are_identical() -> None:
    a, b = transcript(), transcript()
    assert [e.data for e in a] == [e.data for e in b]


def frame(header: bytes, words: bytes = b"") -> bytes:
    return len(header).to_bytes(4, "big") + header + words


def test_vector_words_follow_the_header_at_the_smallest_width() -> None:
    wide = MaskedInputResponse("r", 1, np.array([1, 2**64 - 1], dtype=np.uint64))
    data = encode(wide)
    header = b'{"masked":{"len":2,"word":8},"round_id":"r","sender":1,"type":"secagg.MaskedInputResponse","v":2}'
    assert data == frame(header, bytes.fromhex("0100000000000000" + "ff" * 8))
    back = decode(data)
    assert isinstance(back, MaskedInputResponse) and back.masked.tolist() == [1, 2**64 - 1]
    narrow = MaskedInputResponse("r", 1, np.array([1, 2**32 - 1], dtype=np.uint64))
    data = encode(narrow)
    assert data.endswith(bytes.fromhex("01000000ffffffff")) and b'"word":4' in data
    assert len(encode(MaskedInputResponse("r", 1, np.zeros(100_000, dtype=np.uint64)))) < 400_200
    # the wider width for small values is not canonical
    with pytest.raises(ProtocolViolation, match="canonical"):
        decode(frame(header, bytes.fromhex("0100000000000000" + "ffffffff00000000")))


def test_nested_round_trip() -> None:
    msg = UnmaskingResponse("r", 2, (RevealedShare(1, b"\x01" * 66),), ())
    assert decode(encode(msg)) == msg


MASKED = b'{"masked":{"len":2,"word":4},"round_id":"r","sender":1,"type":"secagg.MaskedInputResponse","v":2}'


@pytest.mark.parametrize("data", [
    b"", b"\x00\x00", frame(b"not json"), frame(b"[]"), frame(b'{"type":"secagg.Nope","v":2}'),
    frame(b'{"type":"secagg.AdvertiseKeysRequest","v":1}'),
    frame(b'{"recipient":1,"round_id":"r","type":"secagg.AdvertiseKeysRequest","v":2,"x":0}'),
    frame(b'{"recipient":"1","round_id":"r","type":"secagg.AdvertiseKeysRequest","v":2}'),
    frame(b'{"round_id":"r","recipient":1,"type":"secagg.AdvertiseKeysRequest","v":2}'),  # not sorted
    b"\xff\xff\xff\xff" + b'{"recipient":1,"round_id":"r","type":"secagg.AdvertiseKeysRequest","v":2}',
    frame(MASKED, bytes(7)),  # truncated words
    frame(MASKED, bytes(9)),  # trailing bytes
    frame(MASKED.replace(b'"word":4', b'"word":3'), bytes(6)),
    frame(MASKED.replace(b'"len":2', b'"len":-2'), bytes(8)),
    frame(b'{"masked":"0100","round_id":"r","sender":1,"type":"secagg.MaskedInputResponse","v":2}'),
    frame(b"[" * 100_000 + b"]" * 100_000),  # nested too deep for the parser: refused, not a RecursionError
])
def test_malformed_or_non_canonical_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        decode(data)


def test_one_spelling_per_value() -> None:
    """Decoding checks canonical form field by field (the header is not re-encoded): any other spelling of the
    same message -- upper-case or spaced hex, an escaped character, a repeated key, 8-byte words for small
    values, an empty vector at width 8 -- is refused, and the canonical bytes still decode."""
    msg = UnmaskingResponse("r", 2, (RevealedShare(1, b"\xab" * 66),), ())
    data = encode(msg)
    size = int.from_bytes(data[:4], "big")
    header = data[4:4 + size]
    assert decode(frame(header)) == msg
    for other in (header.replace(b"ab" * 66, b"AB" * 66), header.replace(b"ab" * 66, b"ab " * 65 + b"ab"),
                  header.replace(b'"r"', b'"\\u0072"'), header.replace(b',"sender":2', b',"sender":2,"sender":2')):
        assert other != header
        with pytest.raises(ProtocolViolation, match="canonical"):
            decode(frame(other))
    with pytest.raises(ProtocolViolation, match="canonical"):
        decode(frame(MASKED.replace(b'"len":2,"word":4', b'"len":0,"word":8')))
    # floats where integers belong, and an integer too long to parse
    for other in (MASKED.replace(b'"v":2', b'"v":2.0'), MASKED.replace(b'"word":4', b'"word":4.0'),
                  MASKED.replace(b'"len":2', b'"len":2.0'), MASKED.replace(b'"sender":1', b'"sender":' + b"9" * 5000)):
        with pytest.raises(ProtocolViolation):
            decode(frame(other, bytes(8)))
    empty = decode(frame(MASKED.replace(b'"len":2', b'"len":0')))
    assert isinstance(empty, MaskedInputResponse) and empty.masked.size == 0
