"""Distributed differential privacy for FedAvg: every client adds its share of Skellam noise before masking.

Trust model: the coordinator is not trusted.  It only ever sees masked vectors and their sum, and that sum
already carries the noise -- there is no un-noised aggregate anywhere (contrast central DP, mpcnet/fl/privacy.py,
where the server adds the noise after SecAgg and so sees the clean sum).  Clients are trusted to add their noise
share: c clients colluding with the coordinator can subtract theirs, and against them only (t - c)/t of the
noise protects the rest.

Per round, each participating client k (Agarwal, Kairouz and Liu, "The Skellam Mechanism for Differentially
Private Federated Learning", NeurIPS 2021):

1. takes its update u_k = w_k d_k, already clipped to L2 norm C (w_k: 1, or min(n_k / cap, 1) for a public cap);
2. scales it by gamma = S / C, so its norm is at most S (the *scaled clip*, 2^14 by default);
3. rounds each coordinate randomly to a neighbouring integer (unbiased), and re-draws the rounding until the
   rounded vector's squared norm is at most
   D2^2 = min(S^2 + d/4 + sqrt(2 ln(1/beta)) (S + sqrt(d)/2), (S + sqrt(d))^2), beta = exp(-1/2)
   -- a hard bound, so the integer vector's sensitivities are L2 = D2 and L1 = min(D2^2, sqrt(d) D2);
4. adds Sk(mu / t, mu / t) per coordinate, t = the fewest clients whose inputs a completed round can hold
   (SecAgg's threshold), and sends the result masked, as integers mod 2^bits (SecAgg's RING encoding).

The Skellam family is closed under summation, so a round whose sum holds s >= t clients' inputs carries
Sk(s mu / t, s mu / t), at least the Sk(mu, mu) the accountant was promised.  mu is the smallest value for which
dp-accounting's RDP accountant, composing R rounds of the paper's multi-dimensional Skellam bound
(mpcnet/dp/accounting.py; the formula google-research/federated's distributed_dp accounting also uses), gives
epsilon(delta) <= the target.  A round that completes with fewer than t contributors (possible with SecAgg+'s
sparse graph, not with the complete graph) carried less noise: its receipt says so and the shortfall in epsilon
is recorded in the ledger.

The privacy unit is one client.  Neighbouring runs differ by one client's update replaced with zeros (the
client still takes part and still adds its noise share -- "zero-out" adjacency, as in Kairouz et al. 2021), so
the sensitivity is one client's norm bound.  No amplification by sampling is claimed: the server knows who took
part.  The server divides the noisy sum by gamma and by the fixed, public number of clients sampled per round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mpcnet.dp.accounting import skellam_epsilon
from mpcnet.dp.noise import MAX_LAMBDA, skellam
from mpcnet.errors import InvalidInput, is_whole
from mpcnet.fl.sampling import Draws

DEFAULT_SCALED_CLIP = 2.0**14
DEFAULT_BETA = math.exp(-0.5)
IntVector = npt.NDArray[np.int64]


@dataclass(frozen=True)
class DistributedDp:
    """What a distributed-DP FedAvg run promises and how each client realises it."""
    epsilon: float
    delta: float
    rounds: int
    clip: float  # C, real units
    dim: int  # d
    scale: float  # gamma = S / C
    l2: float  # L2 sensitivity of one client's integer vector
    l1: float  # L1 sensitivity
    mu: float  # the aggregate noise is at least Sk(mu, mu) per coordinate
    min_contributors: int  # t: the local noise is Sk(mu / t, mu / t)
    bits: int = 32
    beta: float = DEFAULT_BETA
    # the most clients a round may sum: the scale keeps that many noisy vectors inside Z_(2^bits) (0: unknown)
    max_clients: int = 0

    @property
    def local_mu(self) -> float:
        return self.mu / self.min_contributors

    @property
    def noise_std(self) -> float:
        """Per-coordinate standard deviation of the aggregate noise (t contributors), in real update units."""
        return math.sqrt(2 * self.mu) / self.scale

    @property
    def noise_multiplier(self) -> float:
        """The aggregate noise's std relative to the clip: comparable with central DP's z."""
        return self.noise_std / self.clip

    def realised_epsilon(self, contributors: list[int]) -> float:
        """epsilon at delta for rounds that had these numbers of noise contributors (the accountant's answer)."""
        return skellam_epsilon([self.local_mu * max(s, 1) for s in contributors], self.l1, self.l2, self.delta)

    def encode(self, update: npt.NDArray[np.float64], draws: Draws | None = None) -> IntVector:
        """Client side: scale, conditionally round, add this client's Skellam share.  Randomness: OS entropy
        (``draws`` only for tests)."""
        d = draws or Draws.secure()
        if update.shape != (self.dim,):
            raise InvalidInput(f"update has shape {update.shape}, the calibration is for ({self.dim},)")
        norm = float(np.linalg.norm(update))
        x = update * self.scale if norm <= self.clip else update * (self.scale * self.clip / norm)
        rounded = conditional_round(x, self.l2 ** 2, d)
        return rounded + skellam(self.local_mu, self.dim, d)

    def decode(self, total: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Server side: the noisy sum of the integer vectors, back in update units."""
        return total / self.scale


def rounding_bound(scaled_clip: float, dim: int, beta: float = DEFAULT_BETA) -> float:
    """Squared L2 norm bound D2^2 that conditional randomized rounding enforces (see the module docstring)."""
    return min(scaled_clip**2 + dim / 4 + math.sqrt(2 * math.log(1 / beta)) * (scaled_clip + math.sqrt(dim) / 2),
               (scaled_clip + math.sqrt(dim)) ** 2)


def conditional_round(x: npt.NDArray[np.float64], max_sq_norm: float, draws: Draws,
                      max_tries: int = 200) -> IntVector:
    """Unbiased randomized rounding to integers, re-drawn until ||result||^2 <= max_sq_norm.  Each try passes with
    probability >= 1 - beta (~0.39 at beta = e^-1/2), so 200 tries fail with probability < 1e-40."""
    floor = np.floor(x)
    frac = x - floor
    for _ in range(max_tries):
        r = (floor + (draws.uniform(x.size) < frac)).astype(np.int64)
        if float(np.dot(r.astype(np.float64), r.astype(np.float64))) <= max_sq_norm:
            return r
    raise InvalidInput("conditional rounding did not meet its norm bound (is the update clipped?)")


def calibrate_distributed(epsilon: float, delta: float, rounds: int, clip: float, dim: int,
                          min_contributors: int, max_clients: int, bits: int = 32,
                          scaled_clip: float = DEFAULT_SCALED_CLIP) -> DistributedDp:
    """The smallest aggregate Skellam parameter mu (to 0.1 %) for (epsilon, delta) after ``rounds`` rounds, with
    a scale gamma that keeps every sum of ``max_clients`` noisy vectors inside Z_(2^bits) with a wide margin."""
    for name, value in (("rounds", rounds), ("dim", dim), ("min_contributors", min_contributors),
                        ("max_clients", max_clients)):
        if not is_whole(value):
            raise InvalidInput(f"{name} must be a whole number, got {value!r}")
    if not (0 < epsilon < math.inf and 0 < delta < 1 and rounds >= 1 and 0 < clip < math.inf and dim >= 1):
        raise InvalidInput("distributed DP needs a finite epsilon > 0, 0 < delta < 1, rounds >= 1, a finite clip > 0 "
                           f"and dim >= 1; got epsilon {epsilon:g}, delta {delta:g}, rounds {rounds}, clip {clip:g}, "
                           f"dim {dim}")
    if not 1 <= scaled_clip < 2**62:  # NaN fails too; the clip in ring units: below 1 every update rounds to 0
        raise InvalidInput(f"scaled_clip {scaled_clip!r}: the clip in ring units, in [1, 2^62)")
    if not 1 <= min_contributors <= max_clients:
        raise InvalidInput(f"min_contributors must be in [1, {max_clients}]")
    s = scaled_clip
    while True:
        l2sq = rounding_bound(s, dim)
        l2 = math.sqrt(l2sq)
        l1 = min(l2sq, math.sqrt(dim) * l2)

        def eps_at(mu: float) -> float:
            return skellam_epsilon([mu] * rounds, l1, l2, delta)

        lo, hi = 0.0, l2sq
        while eps_at(hi) > epsilon:
            lo, hi = hi, hi * 4
            if hi > 1e30:
                raise InvalidInput(f"epsilon {epsilon} is out of reach at delta {delta} over {rounds} rounds")
        while hi - lo > 1e-3 * hi:
            mid = (lo + hi) / 2
            if eps_at(mid) > epsilon:
                lo = mid
            else:
                hi = mid
        mu = hi
        # head-room: a client's rounded coordinate is at most D2 in size, so every coordinate of the sum is within
        # max_clients * D2 + 12 noise std of 0
        spread = max_clients * l2 + 12 * math.sqrt(2 * mu * max_clients / min_contributors)
        if mu / min_contributors <= MAX_LAMBDA / 16 and spread < 2.0 ** (bits - 1):
            return DistributedDp(epsilon, delta, rounds, clip, dim, s / clip, l2, l1, mu, min_contributors, bits,
                                 max_clients=max_clients)
        if s < 64:
            raise InvalidInput(f"{bits}-bit SecAgg has no room for {max_clients} clients at epsilon {epsilon}: "
                               "raise bits or lower the client count")
        s /= 2


__all__ = ["DistributedDp", "calibrate_distributed", "conditional_round", "rounding_bound"]
