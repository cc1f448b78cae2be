"""Central differential privacy for FedAvg: calibration and accounting by Google's ``dp-accounting`` (RDP).

The privacy unit is one client (user-level DP): neighbouring runs differ by all of one client's data.  Per
round, each client is sampled independently with probability q (Poisson sampling, what the accountant
amplifies), its update is clipped to L2 norm C and weighted by min(n_k / n_cap, 1) <= 1, so adding or removing
one client moves the sum of weighted updates by at most C.  The trusted noise-adder (the coordinator, after
SecAgg has summed) adds N(0, (z C)^2) per coordinate and divides by the public expected weight
q * sum_k w_k (a fixed denominator: the actual participants' count is not used, it would be sensitive).

``calibrate`` finds the smallest noise multiplier z with epsilon(delta) <= the target after ``rounds`` rounds;
``epsilon_spent`` is the accountant's answer for a given z.  No formula here is hand-written.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mpcnet.errors import InvalidInput
from mpcnet.fl.sampling import Draws

# the accountant logs a warning for every RDP order it cannot evaluate at small sigma; they are excluded, which
# only makes the answer conservative
logging.getLogger("absl").setLevel(logging.ERROR)


@dataclass(frozen=True)
class CentralDp:
    """What a DP FedAvg run promises: (epsilon, delta) over ``rounds`` rounds at sampling rate q."""
    epsilon: float
    delta: float
    noise_multiplier: float
    rounds: int
    sampling_rate: float
    clip: float

    @property
    def noise_std(self) -> float:
        """Per-coordinate standard deviation of the noise on the sum of weighted updates."""
        return self.noise_multiplier * self.clip


def _accountant() -> object:
    try:
        from dp_accounting import rdp
    except ImportError:
        raise InvalidInput("differential privacy needs Google's dp-accounting: pip install 'mpcnet[fl]' "
                           "(make venv does)") from None
    return rdp.RdpAccountant()


def epsilon_spent(noise_multiplier: float, delta: float, rounds: int, sampling_rate: float) -> float:
    """epsilon at ``delta`` after ``rounds`` Poisson-sampled Gaussian rounds (the RDP accountant's answer)."""
    from dp_accounting import dp_event
    if noise_multiplier <= 0:
        return math.inf
    acc = _accountant()
    event = dp_event.GaussianDpEvent(noise_multiplier)
    if sampling_rate < 1:
        event = dp_event.PoissonSampledDpEvent(sampling_rate, event)
    acc.compose(event, rounds)  # type: ignore[attr-defined]
    return float(acc.get_epsilon(delta))  # type: ignore[attr-defined]


def calibrate(epsilon: float, delta: float, rounds: int, sampling_rate: float, clip: float) -> CentralDp:
    """The smallest noise multiplier (to 0.1 %) whose epsilon after ``rounds`` rounds is <= ``epsilon``."""
    if not (epsilon > 0 and 0 < delta < 1 and rounds >= 1 and 0 < sampling_rate <= 1 and clip > 0):
        raise InvalidInput("DP needs epsilon > 0, 0 < delta < 1, rounds >= 1, 0 < sampling rate <= 1, clip > 0; got "
                           f"epsilon {epsilon:g}, delta {delta:g}, rounds {rounds}, sampling rate {sampling_rate:g}, "
                           f"clip {clip:g}")
    if math.isinf(epsilon):
        return CentralDp(epsilon, delta, 0.0, rounds, sampling_rate, clip)
    lo, hi = 0.0, 1.0
    while epsilon_spent(hi, delta, rounds, sampling_rate) > epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e6:
            raise InvalidInput(f"epsilon {epsilon} is out of reach at delta {delta} over {rounds} rounds")
    while hi - lo > 1e-3 * hi:
        mid = (lo + hi) / 2
        if epsilon_spent(mid, delta, rounds, sampling_rate) > epsilon:
            lo = mid
        else:
            hi = mid
    return CentralDp(epsilon, delta, hi, rounds, sampling_rate, clip)


def gaussian_noise(dim: int, std: float, draws: Draws | None = None) -> npt.NDArray[np.float64]:
    """N(0, std^2) per coordinate from OS entropy (``draws`` only for tests)."""
    return (draws or Draws.secure()).normal(dim) * std


__all__ = ["CentralDp", "calibrate", "epsilon_spent", "gaussian_noise"]
