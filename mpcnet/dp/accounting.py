"""Privacy accounting by Google's ``dp-accounting`` (never a hand-written composition formula).

* :func:`discrete_laplace_epsilon`: the PLD accountant's epsilon (delta = 0) for DLap(a) noise on a statistic
  of integer sensitivity -- the MPC jobs' dp_sum / dp_mean / dp_count releases.
* :func:`skellam_event` / :func:`skellam_epsilon`: distributed DP for FedAvg (mpcnet/fl/distributed_dp.py).
  The Skellam mechanism's Renyi-DP bound (Agarwal, Kairouz and Liu, NeurIPS 2021, Theorem 3.5) is stated as a
  ``ZCDpEvent(rho, xi)``; composition over rounds and the conversion to (epsilon, delta) are the library's.
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


def skellam_event(mu: float, l1: float, l2: float) -> Any:
    """One round of the multi-dimensional Skellam mechanism, Sk(mu, mu) per coordinate (variance 2 mu), on a
    statistic of L1 / L2 sensitivity ``l1`` / ``l2``, as a dp-accounting event.

    Agarwal, Kairouz, Liu (2021), Theorem 3.5: for integer alpha > 1,
        eps(alpha) <= alpha l2^2 / (4 mu) + min(((2 alpha - 1) l2^2 + 6 l1) / (16 mu^2), 3 l1 / (4 mu)).
    Keeping the first branch of the min (an upper bound of the min) makes it linear in alpha:
        eps(alpha) <= alpha (l2^2 / (4 mu) + l2^2 / (8 mu^2)) + (6 l1 - l2^2) / (16 mu^2),
    i.e. (xi, rho)-zCDP with rho = l2^2 / (4 mu) + l2^2 / (8 mu^2) and xi = max(0, (6 l1 - l2^2) / (16 mu^2))
    (xi rounded up to 0 when negative: looser, still valid)."""
    if not (mu > 0 and l2 > 0 and l1 > 0):
        raise InvalidInput("the Skellam event needs mu > 0 and positive sensitivities")
    dpa = _dp()
    rho = l2 * l2 / (4 * mu) + l2 * l2 / (8 * mu * mu)
    xi = max(0.0, (6 * l1 - l2 * l2) / (16 * mu * mu))
    return dpa.dp_event.ZCDpEvent(rho, xi)


def skellam_epsilon(mus: list[float], l1: float, l2: float, delta: float) -> float:
    """epsilon at ``delta`` after one Skellam round per entry of ``mus`` (each round's aggregate noise
    Sk(mu, mu)), by dp-accounting's RDP accountant at integer orders."""
    dpa = _dp()
    acc = dpa.rdp.RdpAccountant(orders=SKELLAM_ORDERS)
    counts: dict[float, int] = {}
    for mu in mus:
        counts[mu] = counts.get(mu, 0) + 1
    for mu, k in counts.items():
        acc.compose(skellam_event(mu, l1, l2), k)
    return float(acc.get_epsilon(delta))


__all__ = ["SKELLAM_ORDERS", "discrete_laplace_epsilon", "skellam_epsilon", "skellam_event"]
