"""Quantization: stochastic rounding error bound, no wrap-around, FedAvg, exact integers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcnet.secagg import SecAggParams, Stage, run_round
from mpcnet.secagg.crypto import SeededRandom
from mpcnet.secagg.errors import ParamsError
from mpcnet.secagg.quantization import Quantizer, WeightedEncoder, decode_ints, encode_ints, uniforms

SETTINGS = settings(max_examples=40, deadline=None, database=None)
FLOATS = st.floats(min_value=-10, max_value=10, allow_nan=False, allow_infinity=False)


@SETTINGS
@given(st.lists(st.lists(FLOATS, min_size=3, max_size=3), min_size=1, max_size=6),
       st.sampled_from([8, 16, 32, 64]), st.floats(min_value=0.1, max_value=5), st.binary(min_size=16, max_size=16))
def test_sum_error_bound_and_no_wrap(vectors: list[list[float]], bits: int, clip: float, seed: bytes) -> None:
    n = len(vectors)
    q = Quantizer(clip=clip, max_clients=n, bits=bits)
    rng = SeededRandom(seed)
    total = np.zeros(3, dtype=np.uint64)
    for v in vectors:
        x = q.quantize(v, rng)
        assert int(x.max()) <= q.levels
        total = total + x
    assert int(total.max()) <= n * q.levels <= (1 << bits) - 1  # cannot wrap mod 2^k
    got = q.dequantize_sum(total & np.uint64((1 << bits) - 1 if bits < 64 else 2**64 - 1), n)
    want = np.clip(np.array(vectors), -clip, clip).sum(axis=0)
    assert np.all(np.abs(got - want) <= n * q.step * (1 + 1e-9) + 1e-9 * n * clip)


def test_stochastic_rounding_is_unbiased() -> None:
    q = Quantizer(clip=1.0, max_clients=2, bits=8)
    x = np.full(20_000, 0.3)
    rng = SeededRandom(bytes(16))
    mean = q.dequantize_sum(q.quantize(x, rng), 1).mean()
    assert abs(mean - 0.3) < 0.01 * q.step * 10
    vals = q.quantize(x, rng)
    assert set(np.unique(vals).tolist()) == {int(np.floor((0.3 + 1) / 2 * q.levels)),
                                             int(np.floor((0.3 + 1) / 2 * q.levels)) + 1}


def test_quantized_secure_aggregation_end_to_end() -> None:
    params = SecAggParams("quant", (1, 2, 3, 4), threshold=2, vector_length=5, bits=32)
    q = Quantizer(clip=2.0, max_clients=4, bits=32)
    rng = np.random.default_rng(0)  # test data only; quantization randomness is SeededRandom
    reals = {c: rng.uniform(-3, 3, 5) for c in params.client_ids}
    inputs = {c: q.quantize(reals[c], SeededRandom(bytes([c]) * 16)) for c in params.client_ids}
    total = run_round(inputs, params, {Stage.MASKED_INPUT_COLLECTION: {3}}, bytes(16))
    got = q.dequantize_sum(total, 3)
    want = sum(np.clip(reals[c], -2, 2) for c in (1, 2, 4))
    assert np.all(np.abs(got - want) < 3 * q.step)


def test_fedavg_weighted_mean() -> None:
    params = SecAggParams("fedavg", (1, 2, 3), threshold=2, vector_length=4 + 1, bits=32)
    enc = WeightedEncoder(clip=1.0, max_total_weight=10_000, bits=32)
    weights = {1: 100, 2: 300, 3: 50}
    models = {1: np.array([0.1, -0.2, 0.5, 0.9]), 2: np.array([0.3, 0.0, -0.5, 1.5]), 3: np.array([-1, 1, 0, 0.25])}
    inputs = {c: enc.encode(models[c], weights[c], SeededRandom(bytes([c]) * 16)) for c in params.client_ids}
    total = run_round(inputs, params, {Stage.UNMASKING: {2}}, bytes(16))
    mean, weight = enc.decode(total)
    assert weight == 450
    want = sum(weights[c] * np.clip(models[c], -1, 1) for c in models) / 450
    assert np.all(np.abs(mean - want) < enc.step)


def test_integers_aggregate_exactly() -> None:
    params = SecAggParams("ints", (1, 2, 3), threshold=2, vector_length=3, bits=16)
    vals = {1: [-5, 100, 32767], 2: [7, -200, -32768], 3: [0, 50, 1]}
    inputs = {c: encode_ints(np.array(v), 16) for c, v in vals.items()}
    total = run_round(inputs, params, None, bytes(16))
    assert decode_ints(total, 16).tolist() == [2, -50, 0]
    for bits in (1, 2, 63, 64):
        x = np.array([-1, 0], dtype=np.int64)
        assert decode_ints(encode_ints(x, bits), bits).tolist() == [-1, 0]
    with pytest.raises(ParamsError):
        encode_ints(np.array([40000]), 16)


def test_uniforms_and_validation() -> None:
    u = uniforms(1000, SeededRandom(bytes(16)))
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.05
    with pytest.raises(ParamsError):
        Quantizer(clip=0, max_clients=2)
    with pytest.raises(ParamsError):
        Quantizer(clip=1, max_clients=2**40, bits=32)
    with pytest.raises(ParamsError):
        Quantizer(clip=1, max_clients=2).quantize([float("nan")])
    with pytest.raises(ParamsError):
        WeightedEncoder(clip=1, max_total_weight=10).encode([0.0], 11)
