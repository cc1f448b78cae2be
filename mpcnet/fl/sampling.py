"""Random draws for federated learning from a keyed AES-CTR stream (mpcnet.secagg.crypto), never numpy's RNG.

:class:`Draws` turns a :class:`~mpcnet.secagg.crypto.RandomSource` into vectorised uniforms, normals,
permutations and gamma/Dirichlet variates.  Data splits, initial weights and minibatch order take a seeded
source (``Draws.seeded("...")``: the same seed gives the same experiment); anything that protects privacy
(noise) takes ``Draws.secure()``, OS entropy.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

from mpcnet.secagg.crypto import OsRandom, RandomSource, SeededRandom

FloatArray = npt.NDArray[np.float64]


class Draws:
    """Vectorised variates from a byte source."""

    def __init__(self, source: RandomSource) -> None:
        self.source = source

    @staticmethod
    def seeded(seed: str | bytes, label: str = "") -> "Draws":
        key = hashlib.sha256(seed.encode() if isinstance(seed, str) else seed).digest()
        return Draws(SeededRandom(key, f"mpcnet-fl/{label}".encode()))

    @staticmethod
    def secure() -> "Draws":
        return Draws(OsRandom())

    def uint64(self, n: int) -> npt.NDArray[np.uint64]:
        return np.frombuffer(self.source.random_bytes(8 * n), dtype="<u8").astype(np.uint64)

    def uniform(self, n: int) -> FloatArray:
        """Uniform on [0, 1) with 53 random bits."""
        return (self.uint64(n) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53

    def open_uniform(self, n: int) -> FloatArray:
        """Uniform on (0, 1): safe under log."""
        return ((self.uint64(n) >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0 ** -53

    def normal(self, n: int) -> FloatArray:
        """Standard normals (Box-Muller)."""
        m = (n + 1) // 2
        u1, u2 = self.open_uniform(m), self.uniform(m)
        r = np.sqrt(-2.0 * np.log(u1))
        return np.concatenate([r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)])[:n]

    def permutation(self, n: int) -> npt.NDArray[np.int64]:
        return np.argsort(self.uint64(n), kind="stable").astype(np.int64)

    def gamma(self, shape: float, n: int) -> FloatArray:
        """Gamma(shape, 1) by Marsaglia and Tsang (2000); shape < 1 through the U^(1/shape) boost (which
        underflows to 0 for small shapes: :meth:`log_gamma` does not)."""
        out = self._gamma_at_least_one(shape, n)
        if shape < 1:
            out *= self.open_uniform(n) ** (1.0 / shape)
        return out

    def log_gamma(self, shape: float, n: int) -> FloatArray:
        """log of ``n`` Gamma(shape, 1) draws (the same draws as :meth:`gamma` from the same stream): finite
        where the boost's U^(1/shape) is below the smallest double (shape below about 0.002)."""
        out = np.log(self._gamma_at_least_one(shape, n))
        if shape < 1:
            out += np.log(self.open_uniform(n)) / shape
        return out

    def _gamma_at_least_one(self, shape: float, n: int) -> FloatArray:
        """Gamma(a, 1) draws with a = shape, or shape + 1 below 1 (the boost's base)."""
        if not 0 < shape < np.inf:  # NaN or inf would never pass the rejection step below: a hang
            raise ValueError(f"gamma shape must be finite and > 0, got {shape}")
        a = shape + 1.0 if shape < 1 else shape
        d = a - 1.0 / 3.0
        c = 1.0 / np.sqrt(9.0 * d)
        out = np.empty(n)
        todo = np.arange(n)
        while todo.size:  # each try is accepted with probability > 0.95
            x = self.normal(todo.size)
            v = (1.0 + c * x) ** 3
            u = self.open_uniform(todo.size)
            ok = (v > 0) & (np.log(u) < 0.5 * x * x + d - d * v + d * np.log(np.where(v > 0, v, 1.0)))
            out[todo[ok]] = d * v[ok]
            todo = todo[~ok]
        return out

    def dirichlet(self, alpha: float, k: int, n: int) -> FloatArray:
        """``n`` draws from the symmetric Dirichlet(alpha) on ``k`` categories, shape (n, k).  Normalised in log
        space: for a small alpha every Gamma draw of a row can underflow to 0, which would make the row uniform
        (no skew at all) where it should be nearly one-hot."""
        logg = self.log_gamma(alpha, n * k).reshape(n, k)
        g = np.exp(logg - logg.max(axis=1, keepdims=True))
        return g / g.sum(axis=1, keepdims=True)


__all__ = ["Draws"]
