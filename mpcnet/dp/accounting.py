"""Privacy accounting by Google's ``dp-accounting`` (never a hand-written composition formula).

* :func:`discrete_laplace_epsilon`: the PLD accountant's epsilon (delta = 0) for DLap(a) noise on a statistic
  of integer sensitivity -- the MPC jobs' dp_sum / dp_mean / dp_count releases.
* :func:`skellam_events` / :func:`skellam_epsilon`: distributed DP for FedAvg (mpcnet/fl/distributed_dp.py).
  The Skellam mechanism's Renyi-DP bound (Agarwal, Kairouz and Liu, NeurIPS 2021; the multi-dimensional bound,
  the same formula google-research/federated's distributed_dp accounting uses) is stated as ``ZCDpEvent``s;
  composition over rounds and the conversion to (epsilon, delta) are the library's.
"""

from __future__ import annotations

import logging
from typing import Any

from mpcnet.errors import InvalidInput

logging.getLogger("absl").setLevel(logging.ERROR)


def _dp() -> Any:
    try:
        import dp_accounting
    except ImportError:
        raise InvalidInput("differential privacy needs Google's dp-accounting: pip install 'mpcnet[fl]' "
                           "(make venv does)") from None
    return dp_accounting


def discrete_laplace_epsilon(parameter: float, sensitivity: int) -> float:
    """epsilon of one DLap(parameter) release at integer ``sensitivity`` (pure DP: delta = 0), by the PLD
    accountant (pessimistic discretisation: it may exceed parameter * sensitivity by ~1e-4, never fall below)."""
    dpa = _dp()
    from dp_accounting.pld import pld_privacy_accountant
    acc = pld_privacy_accountant.PLDAccountant()
    acc.compose(dpa.dp_event.DiscreteLaplaceDpEvent(parameter, int(sensitivity)))
    return float(acc.get_epsilon(0.0))


# The Skellam bound holds for integer orders alpha > 1 only: the accountant is restricted to those.
SKELLAM_ORDERS = tuple(range(2, 257)) + (320, 384, 512, 768, 1024)


def skellam_events(mu: float, l1: float, l2: float) -> tuple[Any, Any]:
    """One round of the multi-dimensional Skellam mechanism, Sk(mu, mu) = Poisson(mu) - Poisson(mu) per
    coordinate (variance V = 2 mu), on an integer statistic of L1 / L2 sensitivity ``l1`` / ``l2``, as two
    dp-accounting events, each a valid bound on its own.

    Agarwal, Kairouz, Liu (2021), stated for the variance V: for integer alpha > 1,
        eps(alpha) <= alpha l2^2 / (2 V) + min(((2 alpha - 1) l2^2 + 6 l1) / (4 V^2), 3 l1 / (2 V)).
    Each branch of the min is linear in alpha, i.e. (xi, rho)-zCDP:
        A: rho = l2^2 / (2 V) + l2^2 / (2 V^2),  xi = max(0, (6 l1 - l2^2) / (4 V^2))
        B: rho = l2^2 / (2 V),                   xi = 3 l1 / (2 V)
    (a negative xi is rounded up to 0: looser, still valid -- the library refuses xi < 0)."""
    if not (mu > 0 and l2 > 0 and l1 > 0):
        raise InvalidInput("the Skellam event needs mu > 0 and positive sensitivities")
    dpa = _dp()
    v = 2.0 * mu
    a = dpa.dp_event.ZCDpEvent(l2 * l2 / (2 * v) + l2 * l2 / (2 * v * v), max(0.0, (6 * l1 - l2 * l2) / (4 * v * v)))
    b = dpa.dp_event.ZCDpEvent(l2 * l2 / (2 * v), 3 * l1 / (2 * v))
    return a, b


def skellam_epsilon(mus: list[float], l1: float, l2: float, delta: float) -> float:
    """epsilon at ``delta`` after one Skellam round per entry of ``mus`` (each round's aggregate noise
    Sk(mu, mu)), by dp-accounting's RDP accountant at integer orders (where the bound holds); the smaller of the
    two branches' answers (each branch alone is a valid guarantee)."""
    dpa = _dp()
    counts: dict[float, int] = {}
    for mu in mus:
        counts[mu] = counts.get(mu, 0) + 1
    best = float("inf")
    for branch in (0, 1):
        acc = dpa.rdp.RdpAccountant(orders=SKELLAM_ORDERS)
        for mu, k in counts.items():
            acc.compose(skellam_events(mu, l1, l2)[branch], k)
        best = min(best, float(acc.get_epsilon(delta)))
    return best


__all__ = ["SKELLAM_ORDERS", "discrete_laplace_epsilon", "skellam_epsilon", "skellam_events"]
