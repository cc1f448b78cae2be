"""numpy models for federated training, as flat parameter vectors (what SecAgg sums).

A model is ``n_params``, ``init(draws)``, ``loss_grad(params, x, y)`` and ``predict(params, x)``.  Two ship:
softmax (multinomial logistic) regression and a one-hidden-layer MLP (tanh).  Training is a
:class:`LocalTrainer`: anything with ``train(params, x, y, draws) -> params``, so a user can bring another
framework (train there, hand back the flat vector); :class:`SgdTrainer` is the built-in minibatch SGD.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import math

import numpy as np
import numpy.typing as npt

from mpcnet.errors import InvalidInput
from mpcnet.fl.sampling import Draws

Vector = npt.NDArray[np.float64]


def _check_shape(n_features: int, n_classes: int) -> None:
    if n_features < 1 or n_classes < 2:
        raise InvalidInput(f"a classifier needs at least 1 feature and 2 classes, got {n_features} and {n_classes}")


def _softmax(z: Vector) -> Vector:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: Vector = e / e.sum(axis=1, keepdims=True)
    return out


def _xent_grad_logits(logits: Vector, y: npt.NDArray[np.int64]) -> tuple[float, Vector]:
    p = _softmax(logits)
    n = len(y)
    loss = float(-np.log(np.maximum(p[np.arange(n), y], 1e-300)).mean())
    p[np.arange(n), y] -= 1.0
    return loss, p / n


class Model(Protocol):
    @property
    def n_params(self) -> int: ...

    def init(self, draws: Draws) -> Vector: ...

    def loss_grad(self, params: Vector, x: Vector, y: npt.NDArray[np.int64]) -> tuple[float, Vector]: ...

    def predict(self, params: Vector, x: Vector) -> npt.NDArray[np.int64]: ...


@dataclass(frozen=True)
class SoftmaxRegression:
    n_features: int
    n_classes: int

    def __post_init__(self) -> None:
        _check_shape(self.n_features, self.n_classes)

    @property
    def n_params(self) -> int:
        return (self.n_features + 1) * self.n_classes

    def _unpack(self, params: Vector) -> tuple[Vector, Vector]:
        w = params[: self.n_features * self.n_classes].reshape(self.n_features, self.n_classes)
        return w, params[self.n_features * self.n_classes:]

    def init(self, draws: Draws) -> Vector:
        return np.zeros(self.n_params)

    def loss_grad(self, params: Vector, x: Vector, y: npt.NDArray[np.int64]) -> tuple[float, Vector]:
        w, b = self._unpack(params)
        loss, g = _xent_grad_logits(x @ w + b, y)
        return loss, np.concatenate([(x.T @ g).ravel(), g.sum(axis=0)])

    def predict(self, params: Vector, x: Vector) -> npt.NDArray[np.int64]:
        w, b = self._unpack(params)
        return np.argmax(x @ w + b, axis=1).astype(np.int64)


@dataclass(frozen=True)
class Mlp:
    n_features: int
    n_classes: int
    hidden: int = 32

    def __post_init__(self) -> None:
        _check_shape(self.n_features, self.n_classes)
        if self.hidden < 1:
            raise InvalidInput(f"the MLP needs at least 1 hidden unit, got {self.hidden}")

    @property
    def n_params(self) -> int:
        return self.n_features * self.hidden + self.hidden + self.hidden * self.n_classes + self.n_classes

    def _unpack(self, p: Vector) -> tuple[Vector, Vector, Vector, Vector]:
        f, h, c = self.n_features, self.hidden, self.n_classes
        a = f * h
        w1, b1 = p[:a].reshape(f, h), p[a:a + h]
        w2, b2 = p[a + h:a + h + h * c].reshape(h, c), p[a + h + h * c:]
        return w1, b1, w2, b2

    def init(self, draws: Draws) -> Vector:
        f, h, c = self.n_features, self.hidden, self.n_classes
        w1 = draws.normal(f * h) * np.sqrt(1.0 / f)
        w2 = draws.normal(h * c) * np.sqrt(1.0 / h)
        return np.concatenate([w1, np.zeros(h), w2, np.zeros(c)])

    def loss_grad(self, params: Vector, x: Vector, y: npt.NDArray[np.int64]) -> tuple[float, Vector]:
        w1, b1, w2, b2 = self._unpack(params)
        hid = np.tanh(x @ w1 + b1)
        loss, g = _xent_grad_logits(hid @ w2 + b2, y)
        gh = (g @ w2.T) * (1.0 - hid * hid)
        return loss, np.concatenate([(x.T @ gh).ravel(), gh.sum(axis=0), (hid.T @ g).ravel(), g.sum(axis=0)])

    def predict(self, params: Vector, x: Vector) -> npt.NDArray[np.int64]:
        w1, b1, w2, b2 = self._unpack(params)
        return np.argmax(np.tanh(x @ w1 + b1) @ w2 + b2, axis=1).astype(np.int64)


def make_model(kind: str, n_features: int, n_classes: int, hidden: int = 32) -> Model:
    if kind == "logreg":
        return SoftmaxRegression(n_features, n_classes)
    if kind == "mlp":
        return Mlp(n_features, n_classes, hidden)
    raise InvalidInput(f"unknown model {kind!r}: logreg or mlp")


class LocalTrainer(Protocol):
    def train(self, params: Vector, x: Vector, y: npt.NDArray[np.int64], draws: Draws) -> Vector: ...


@dataclass(frozen=True)
class SgdTrainer:
    """``epochs`` passes of minibatch SGD (order from ``draws``) with L2 weight decay ``l2``."""
    model: Model
    epochs: int = 1
    lr: float = 0.1
    batch_size: int = 16
    l2: float = 1e-4

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise InvalidInput(f"local training needs epochs >= 1 and batch size >= 1, got {self.epochs} and "
                               f"{self.batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0) or not (math.isfinite(self.l2) and self.l2 >= 0):
            raise InvalidInput(f"local training needs a learning rate > 0 and weight decay >= 0, got lr {self.lr:g}"
                               f" and l2 {self.l2:g}")

    def train(self, params: Vector, x: Vector, y: npt.NDArray[np.int64], draws: Draws) -> Vector:
        p = params.copy()
        for _ in range(self.epochs):
            order = draws.permutation(len(y))
            for start in range(0, len(y), self.batch_size):
                idx = order[start:start + self.batch_size]
                _, g = self.model.loss_grad(p, x[idx], y[idx])
                p -= self.lr * (g + self.l2 * p)
        return p


def accuracy(model: Model, params: Vector, x: Vector, y: npt.NDArray[np.int64]) -> float:
    return float((model.predict(params, x) == y).mean())


__all__ = ["LocalTrainer", "Mlp", "Model", "SgdTrainer", "SoftmaxRegression", "accuracy", "make_model"]
