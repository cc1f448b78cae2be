"""The round's value encoding (SecAggRoundParams.quantization) and the client's float inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mpcnet.errors import InvalidInput
from mpcnet.secagg.errors import ParamsError
from mpcnet.secagg_client import dequantize_result, file_inputs, load_signing_keys, load_tokens
from mpcnet.secagg_wire import FEDAVG, REAL_SUM, RING, encoding_from_proto, params_from_proto, vector_to_bytes
from mpcnet.v1 import secagg_pb2 as spb


def params(encoding: int = 0, clip: float = 0.0, bound: int = 0, length: int = 3, bits: int = 32,
           n: int = 4) -> spb.SecAggRoundParams:
    return spb.SecAggRoundParams(round_id="r", client_ids=list(range(1, n + 1)), threshold=2, vector_length=length,
                                 bits=bits, quantization=spb.SecAggQuantization(encoding=encoding, clip=clip,
                                                                                bound=bound))


def test_encodings_are_checked() -> None:
    assert encoding_from_proto(params()).kind == RING
    enc = encoding_from_proto(params(spb.SECAGG_ENCODING_REAL_SUM, clip=1.0))
    assert enc.kind == REAL_SUM and enc.bound == 4  # default head-room: the number of clients
    with pytest.raises(ParamsError, match="could wrap"):
        encoding_from_proto(params(spb.SECAGG_ENCODING_REAL_SUM, clip=1.0, bound=3))
    with pytest.raises(ParamsError, match="fewer than 2 levels"):
        encoding_from_proto(params(spb.SECAGG_ENCODING_REAL_SUM, clip=1.0, bits=2))
    with pytest.raises(ParamsError, match="clip"):
        encoding_from_proto(params(spb.SECAGG_ENCODING_FEDAVG, bound=10))
    with pytest.raises(ParamsError, match="bound"):
        encoding_from_proto(params(spb.SECAGG_ENCODING_FEDAVG, clip=1.0))
    with pytest.raises(ParamsError, match="vector_length"):
        encoding_from_proto(params(spb.SECAGG_ENCODING_FEDAVG, clip=1.0, bound=10, length=1))
    with pytest.raises(ParamsError, match="real_sum and fedavg"):
        encoding_from_proto(params(clip=1.0))


def test_float_file_inputs_round_trip(tmp_path: Path) -> None:
    p = params(spb.SECAGG_ENCODING_FEDAVG, clip=2.0, bound=100, length=3)
    core, enc = params_from_proto(p), encoding_from_proto(p)
    assert enc.kind == FEDAVG and enc.float_length == 2
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"1": {"vector": [0.5, -1.0], "weight": 3}, "2": {"vector": [1.5, 3.0], "weight": 1}}))
    source = file_inputs(path)
    total = (source(1, core, enc) + source(2, core, enc)) & np.uint64(2**32 - 1)
    mean, weight = dequantize_result(p, spb.SecAggDone(sum=vector_to_bytes(total), included=[1, 2]))
    assert weight == 4
    assert np.max(np.abs(mean - [0.75, -0.25])) < enc.weighted().step  # 3.0 clipped to 2.0
    with pytest.raises(InvalidInput, match="needs 2 values"):
        file_inputs_bad = tmp_path / "bad.json"
        file_inputs_bad.write_text(json.dumps({"1": {"vector": [0.5], "weight": 3}}))
        file_inputs(file_inputs_bad)(1, core, enc)


def test_tokens_and_keys_are_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MPCNET_CLIENT_TOKENS", raising=False)
    with pytest.raises(InvalidInput, match="--tokens-file"):
        load_tokens(None, [1])
    monkeypatch.setenv("MPCNET_CLIENT_TOKENS", json.dumps({"1": "secret-token-1"}))
    assert load_tokens(None, [1]) == {1: "secret-token-1"}
    with pytest.raises(InvalidInput, match="client\\(s\\) 2") as err:
        load_tokens(None, [1, 2])
    assert "secret-token-1" not in str(err.value)
    monkeypatch.setenv("MPCNET_CLIENT_TOKENS", "{not json secret-token-1")
    with pytest.raises(InvalidInput) as err:
        load_tokens(None, [1])
    assert "secret-token-1" not in str(err.value)
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"1": "ab" * 32, "2": "abcd"}))
    assert load_signing_keys(str(keys), [1]) == {1: bytes([0xAB]) * 32}
    with pytest.raises(InvalidInput, match="client 2"):
        load_signing_keys(str(keys), [2])
