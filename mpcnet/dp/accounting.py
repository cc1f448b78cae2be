"""Privacy accounting by Google's ``dp-accounting`` (never a hand-written composition formula).

* :func:`discrete_laplace_epsilon`: the PLD accountant's epsilon (delta = 0) for DLap(a) noise on a statistic
  of integer sensitivity -- the MPC jobs' dp_sum / dp_mean / dp_count releases.
* :func:`skellam_epsilon` (mpcnet/dp/skellam.py builds the event): distributed DP for FedAvg.
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


__all__ = ["discrete_laplace_epsilon"]
