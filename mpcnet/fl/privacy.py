"""Central differential privacy for FedAvg: calibration and accounting by Google's ``dp-accounting`` (RDP).

The privacy unit is one client (user-level DP).  Neighbouring runs differ by one client's data replaced with a
client whose update is zero ("zero-out" adjacency, dp-accounting's ``REPLACE_SPECIAL``; Kairouz et al. 2021, as
in distributed DP): the number of clients N is the same in both, so it may be public.  Per round, each client is
sampled independently with probability q (Poisson sampling, what the accountant amplifies; the draw comes from OS
entropy and the rounds' members are not published), its update is clipped to L2 norm C and weighted by w_k <= 1
(1, or min(n_k / cap, 1) for a public cap), so zeroing one client moves the sum of weighted updates by at most
C.  The trusted noise-adder (the coordinator, after SecAgg has summed) adds N(0, (z C)^2) per coordinate and
divides by the public constant q * N (the actual participants' count is not used, it would be sensitive).

A round too small to aggregate (one sampled client, which SecAgg cannot hide among others, or more planned
dropouts than SecAgg's threshold allows) is skipped rather than released.  Under zero-out adjacency such a round
happens with the same probability whatever the clients' data, and the run differs from the always-released
mechanism the accountant covers only when one happens, so ``small_round_delta`` adds
(1 + e^epsilon) * P(any round is too small) to delta (a total-variation argument).  A round with no client
sampled releases the noise alone, as the accounted mechanism does.

``calibrate`` finds the smallest noise multiplier z with epsilon(delta) <= the target after ``rounds`` rounds;
``epsilon_spent`` is the accountant's answer for a given z.  No formula here is hand-written.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import numpy.typing as npt

from mpcnet.errors import InvalidInput, is_whole
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
    from dp_accounting.privacy_accountant import NeighboringRelation
    return rdp.RdpAccountant(neighboring_relation=NeighboringRelation.REPLACE_SPECIAL)


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
    if not is_whole(rounds):
        raise InvalidInput(f"rounds must be a whole number, got {rounds!r}")
    if not (epsilon > 0 and 0 < delta < 1 and rounds >= 1 and 0 < sampling_rate <= 1 and 0 < clip < math.inf):
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


def epsilon_against_clients(dp: CentralDp,
                            small_rounds_delta: float = 0.0) -> dict[str, dict[str, float] | str] | None:
    """(epsilon, delta) against the run's own clients, when it counts on amplification by sampling:
    {"one_client": {"epsilon", "delta"}, "all_other_clients": {"epsilon", "delta"}}, or {"not_computed": why}
    when the installed dp-accounting does not expose its RDP curve; None when the run does not count on sampling
    (sampling rate 1, or no noise).  ``small_rounds_delta``: what skipped rounds add to the model's delta,
    (1 + e^epsilon) P(a round is too small) (:func:`small_round_delta`).

    A client sampled in a round learns the round's members (SecAgg needs them), so it knows whether the target
    was sampled.  Per round each adversary sees a "type" drawn independently of the data, then the round's output
    given that type; the Renyi divergence of the pair at order a is
    log(sum_t P(t) exp((a - 1) eps_t(a))) / (a - 1)  (the type's law is the same under both neighbours):
      * all other clients pooling what they saw: the target sampled (q), a Gaussian round; not (1 - q), nothing;
      * one client: both sampled (q^2), a Gaussian round; it alone (q (1 - q)), nothing; it not sampled (1 - q),
        the Poisson-sampled round, as for any reader of the model.
    The per-type RDP curves, the composition over rounds and the conversion to (epsilon, delta) are
    dp-accounting's; only the mixture above is written here.  A skipped round tells one client, not sampled
    itself, that the round was small, so its delta carries the same total-variation term as the model's at its own
    epsilon: (1 + e^epsilon_one) P(a round is too small); the pooled clients see the sample and the drops, which
    decide a skip, so theirs does not."""
    if dp.noise_multiplier <= 0 or dp.sampling_rate >= 1 or math.isinf(dp.epsilon):
        return None
    from dp_accounting import dp_event
    from dp_accounting.rdp import rdp_privacy_accountant
    from scipy.special import logsumexp  # (dp-accounting's dependency)

    def curve(event: object) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
        acc = _accountant()
        acc.compose(event)  # type: ignore[attr-defined]
        orders, rdp = getattr(acc, "_orders", None), getattr(acc, "_rdp", None)
        return None if orders is None or rdp is None else (np.asarray(orders, float), np.asarray(rdp, float))

    q, gaussian = dp.sampling_rate, dp_event.GaussianDpEvent(dp.noise_multiplier)
    full, sampled = curve(gaussian), curve(dp_event.PoissonSampledDpEvent(q, gaussian))
    if full is None or sampled is None:
        import dp_accounting
        return {"not_computed": f"dp-accounting {getattr(dp_accounting, '__version__', '?')} does not expose its "
                                "RDP curve (RdpAccountant._orders / _rdp)"}
    orders, g = full
    none = np.zeros_like(g)

    def epsilon(weights: list[float], curves: list[npt.NDArray[np.float64]]) -> float:
        per_round = logsumexp([np.log(w) + (orders - 1) * c for w, c in zip(weights, curves)], axis=0) / (orders - 1)
        eps, _ = rdp_privacy_accountant.compute_epsilon(orders, dp.rounds * per_round, dp.delta)
        return float(eps)

    one = epsilon([q * q, q * (1 - q), 1 - q], [g, none, sampled[1]])
    p_small = small_rounds_delta / (1 + math.exp(min(dp.epsilon, 700.0)))
    return {"one_client": {"epsilon": one, "delta": dp.delta + min(1.0, (1 + math.exp(min(one, 700.0))) * p_small)},
            "all_other_clients": {"epsilon": epsilon([q, 1 - q], [g, none]), "delta": dp.delta}}


def small_round_delta(dp: CentralDp, n_clients: int, too_small: Callable[[int, int], bool],
                      dropout: float) -> float:
    """What skipping rounds too small to aggregate adds to delta: (1 + e^epsilon) * P(some round is too small).

    ``too_small(s, d)``: whether a round of ``s`` sampled clients, ``d`` of whom drop, is skipped; for each s it
    must be monotone in d (more drops never rescue a round).  The sample size is Binomial(N, q) and each sampled
    client drops independently with probability ``dropout``; N is the run's (zero-out neighbours have the same
    N).  A union bound over the rounds.  Sample sizes of probability below 1e-300 are counted as too small
    without looking (at 1e-300 each); the rest costs a binary search per size, so N = 10^5 takes a second or two."""
    if dp.noise_multiplier <= 0 or math.isinf(dp.epsilon):
        return 0.0
    from scipy.stats import binom  # (dp-accounting's dependency)
    sizes = np.arange(n_clients + 1)
    p_size = binom.pmf(sizes, n_clients, dp.sampling_rate)
    p_small = 0.0
    for size in sizes[p_size >= 1e-300].tolist():
        if not too_small(size, size):
            continue
        lo, hi = 0, size  # the fewest drops that make a round of this size too small
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if too_small(size, mid) else (mid + 1, hi)
        p_small += float(p_size[size]) * float(binom.sf(lo - 1, size, dropout))
    left_out = int(np.count_nonzero((p_size > 0) & (p_size < 1e-300)))  # each of probability below 1e-300
    p_run = min(1.0, dp.rounds * (p_small + left_out * 1e-300))
    return min(1.0, (1 + math.exp(min(dp.epsilon, 700.0))) * p_run)


def gaussian_noise(dim: int, std: float, draws: Draws | None = None) -> npt.NDArray[np.float64]:
    """N(0, std^2) per coordinate from OS entropy (``draws`` only for tests)."""
    return (draws or Draws.secure()).normal(dim) * std


__all__ = ["CentralDp", "calibrate", "epsilon_against_clients", "epsilon_spent", "gaussian_noise", "small_round_delta"]
