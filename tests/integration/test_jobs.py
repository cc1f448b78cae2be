"""End to end through real processes: every program op against numpy."""

from __future__ import annotations

import numpy as np
import pytest

import mpcnet
from mpcnet.cluster import LocalCluster
from mpcnet.errors import PermissionDenied
from tests.conftest import unique

pytestmark = pytest.mark.integration
ULP = 2.0**-16


def two_parties(cluster: LocalCluster) -> tuple[mpcnet.Party, mpcnet.Party, str]:
    bob = mpcnet.connect(cluster.coordinator, unique("bob"))
    alice = mpcnet.connect(cluster.coordinator, unique("alice"))
    job = alice.create_job(parties=[bob.name])
    return alice, bob, job


def test_every_operation_matches_numpy(cluster: LocalCluster) -> None:
    rng = np.random.default_rng(7)
    x = rng.uniform(-50, 50, 64)
    y = rng.uniform(-50, 50, 64)
    A = rng.uniform(-5, 5, (4, 6))
    B = rng.uniform(-5, 5, (6, 3))
    i = rng.integers(-10**6, 10**6, 64)
    j = rng.integers(-10**3, 10**3, 64)
    alice, bob, job = two_parties(cluster)
    alice.share(job, "x", x)
    bob.share(job, "y", y)
    alice.share(job, "A", A)
    bob.share(job, "B", B)
    alice.share(job, "i", i)
    bob.share(job, "j", j)
    prog = (mpcnet.Program()
            .add("add", "x", "y").sub("sub", "x", "y").mul("mul", "x", "y").dot("dot", "x", "y")
            .matmul("matmul", "A", "B").sum("sum", "x").mean("mean", "y").mul_public("half", "x", 0.5)
            .mul_public("triple", "i", 3).mul("imul", "i", "j").dot("idot", "i", "j").add("mixed", "x", "j"))
    outs = ["add", "sub", "mul", "dot", "matmul", "sum", "mean", "half", "triple", "imul", "idot", "mixed"]
    for o in outs:
        prog.output(o, to=[alice.name])
    res = alice.run(job, prog)
    assert res.layers == 2  # products in one batched exchange, their truncations in the next
    got = {o: alice.reveal(job, o) for o in outs}
    np.testing.assert_array_equal(got["add"], fp(x) + fp(y))
    np.testing.assert_array_equal(got["sub"], fp(x) - fp(y))
    assert np.max(np.abs(got["mul"] - fp(x) * fp(y))) <= 2 * ULP
    assert abs(got["dot"] - fp(x) @ fp(y)) <= 2 * ULP
    assert np.max(np.abs(got["matmul"] - fp(A) @ fp(B))) <= 2 * ULP
    assert got["sum"] == pytest.approx(fp(x).sum(), abs=ULP)
    assert got["mean"] == pytest.approx(fp(y).mean(), abs=1e-4)
    assert np.max(np.abs(got["half"] - fp(x) * 0.5)) <= 2 * ULP
    np.testing.assert_array_equal(got["triple"], i * 3)
    np.testing.assert_array_equal(got["imul"], i * j)
    assert int(got["idot"]) == int(i @ j)
    np.testing.assert_array_equal(got["mixed"], fp(x) + j)
    assert got["imul"].dtype == np.int64


def fp(v: np.ndarray) -> np.ndarray:
    """The value as the cluster stores it (rounded to 16 fractional bits)."""
    return np.rint(np.asarray(v) * 2**16) / 2**16


def test_fedavg_example(cluster: LocalCluster) -> None:
    names = [unique(f"h{k}") for k in range(3)]
    parties = [mpcnet.connect(cluster.coordinator, n) for n in names]
    job = parties[0].create_job(parties=names[1:])
    for k, (w, n) in enumerate(zip([[1, 2], [3, 4], [2, 2]], [100, 50, 200])):
        parties[k].share(job, f"w{k}", np.array(w, dtype=float))
        parties[k].share(job, f"n{k}", np.array(n))
    parties[0].run(job, mpcnet.Program().weighted_average("avg", ["w0", "w1", "w2"], ["n0", "n1", "n2"])
                   .output("avg", to=names))
    avg = parties[2].reveal(job, "avg")
    np.testing.assert_allclose(avg, [1.857142857, 2.285714286], atol=1e-4)
    assert np.round(avg, 3).tolist() == [1.857, 2.286]


def test_outputs_only_to_named_readers(cluster: LocalCluster) -> None:
    alice, bob, job = two_parties(cluster)
    alice.share(job, "x", np.array([1, 2, 3]))
    bob.share(job, "y", np.array([4, 5, 6]))
    alice.run(job, mpcnet.Program().mul("z", "x", "y").output("z", to=[alice.name]))
    np.testing.assert_array_equal(alice.reveal(job, "z"), [4, 10, 18])
    with pytest.raises(PermissionDenied, match="revealed only to"):
        bob.reveal(job, "z")


@pytest.mark.slow
def test_million_element_arrays_end_to_end(cluster: LocalCluster) -> None:
    n = 1_000_000
    rng = np.random.default_rng(3)
    x = rng.integers(-2**20, 2**20, n)
    y = rng.integers(-2**20, 2**20, n)
    alice, bob, job = two_parties(cluster)
    alice.share(job, "x", x)
    bob.share(job, "y", y)
    res = alice.run(job, mpcnet.Program().mul("z", "x", "y").add("s", "x", "y").dot("d", "x", "y")
                    .output("z", to=[alice.name]).output("s", to=[alice.name]).output("d", to=[alice.name]))
    np.testing.assert_array_equal(alice.reveal(job, "z"), x * y)
    np.testing.assert_array_equal(alice.reveal(job, "s"), x + y)
    assert int(alice.reveal(job, "d")) == int(x @ y)
    # Openings of 2 x 10^6 + 2 x 10^6 elements went to 2 peers from each of 3 nodes, in chunks.
    assert res.bytes_exchanged == 3 * 2 * (4 * n) * 8


@pytest.mark.slow
def test_million_element_fixed_point_product_and_mean(cluster: LocalCluster) -> None:
    n = 1_000_000
    rng = np.random.default_rng(4)
    x = rng.uniform(-8, 8, n)
    y = rng.uniform(-8, 8, n)
    alice, bob, job = two_parties(cluster)
    alice.share(job, "x", x)
    bob.share(job, "y", y)
    res = alice.run(job, mpcnet.Program().mul("z", "x", "y").mean("m", "x")
                    .output("z", to=[alice.name]).output("m", to=[alice.name]))
    assert res.layers == 2  # Beaver openings, then one batched truncation exchange for 10^6 + 1 values
    z = alice.reveal(job, "z")
    assert np.max(np.abs(z - fp(x) * fp(y))) <= 2 * ULP
    assert abs(float(alice.reveal(job, "m")) - fp(x).mean()) <= 4 * ULP
