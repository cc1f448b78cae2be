"""Datasets that ship inside an installed package (scikit-learn's breast-cancer and digits: no download), a
seeded train/test split, standardisation with training statistics, and client splits: IID, or label skew by
a Dirichlet(alpha) per class (small alpha: each client sees few labels)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mpcnet.errors import InvalidInput
from mpcnet.fl.sampling import Draws

DATASETS = ("breast_cancer", "digits")


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: npt.NDArray[np.float64]
    y_train: npt.NDArray[np.int64]
    x_test: npt.NDArray[np.float64]
    y_test: npt.NDArray[np.int64]

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max()) + 1)


def load(name: str, test_fraction: float = 0.25, seed: str = "mpcnet-fl") -> Dataset:
    try:
        from sklearn import datasets
    except ImportError:
        raise InvalidInput("the demo datasets come with scikit-learn: pip install 'mpcnet[fl]' (make venv does)") \
            from None
    loaders = {"breast_cancer": datasets.load_breast_cancer, "digits": datasets.load_digits}
    if name not in loaders:
        raise InvalidInput(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    bunch = loaders[name]()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    if not 0 < test_fraction < 1:
        raise InvalidInput("test_fraction must be in (0, 1)")
    order = Draws.seeded(seed, f"split/{name}").permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    std[std == 0] = 1.0
    z = (x - mean) / std
    return Dataset(name, z[train], y[train], z[test], y[test])


def split_iid(n: int, clients: int, seed: str = "mpcnet-fl") -> list[npt.NDArray[np.int64]]:
    """Sample indices dealt round-robin after a seeded shuffle: every client gets n/clients (+-1)."""
    if not 1 <= clients <= n:
        raise InvalidInput(f"cannot split {n} samples over {clients} clients")
    order = Draws.seeded(seed, "iid").permutation(n)
    return [np.sort(order[k::clients]) for k in range(clients)]


def split_dirichlet(y: npt.NDArray[np.int64], clients: int, alpha: float, seed: str = "mpcnet-fl",
                    min_size: int = 2) -> list[npt.NDArray[np.int64]]:
    """Label skew: each class's samples are divided among the clients in Dirichlet(alpha) proportions.
    Redrawn (bounded) until every client has at least ``min_size`` samples."""
    if not 0 < alpha < np.inf:
        raise InvalidInput(f"the Dirichlet alpha must be finite and > 0, got {alpha}")
    if not 1 <= clients <= len(y) // max(min_size, 1):
        raise InvalidInput(f"cannot split {len(y)} samples over {clients} clients with >= {min_size} each")
    draws = Draws.seeded(seed, f"dirichlet/{alpha}")
    classes = np.unique(y)
    for _ in range(100):
        parts: list[list[int]] = [[] for _ in range(clients)]
        props = draws.dirichlet(alpha, clients, len(classes))
        for c, p in zip(classes, props):
            idx = np.flatnonzero(y == c)[draws.permutation(int((y == c).sum()))]
            cuts = (np.cumsum(p)[:-1] * len(idx)).astype(int)
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.array(p, dtype=np.int64)) for p in parts]
    raise InvalidInput(f"alpha={alpha} with {clients} clients leaves some client under {min_size} samples "
                       "in 100 draws: raise alpha or lower the client count")


__all__ = ["DATASETS", "Dataset", "load", "split_dirichlet", "split_iid"]
