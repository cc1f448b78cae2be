"""Integer noise for distributed differential privacy, from a cryptographic byte stream (pure numpy).

Two infinitely divisible distributions, so that several parties each add a share and the *sum* carries the
whole noise, while no party (and no coalition short of all of them) knows it:

* **Skellam** Sk(mu, mu) = Poisson(mu) - Poisson(mu), variance 2 mu.  Closed under summation:
  Sk(mu_1, mu_1) + Sk(mu_2, mu_2) = Sk(mu_1 + mu_2, mu_1 + mu_2).  SecAgg clients each add Sk(mu / t, mu / t),
  so any t survivors carry Sk(mu, mu) (mpcnet/fl/distributed_dp.py).
* **Discrete Laplace** DLap(a): P(k) proportional to exp(-a |k|).  A geometric variable is a negative binomial
  NB(1, p) and NB(r1, p) + NB(r2, p) = NB(r1 + r2, p), so with p = exp(-a) the sum over N parties of
  NB(1/N, p) - NB'(1/N, p) is Geom - Geom' = DLap(a) exactly.  Compute nodes each add one such share to their
  additive share of a released statistic (the Laplace mechanism of MPC jobs).  Exact as distributions; as
  sampled here (Gamma from floating-point normals capped near 8.65 sigma), the tails beyond about 60 / a are
  cut, an event of probability below e^-58.

Samplers: Poisson by inversion below lambda = 10 and by Hoermann's PTRS transformed rejection above (the
algorithm numpy uses, vectorised here); NB(r, p) as Poisson(Gamma(r, p / (1 - p))).  Every uniform comes from
:class:`mpcnet.fl.sampling.Draws` (an AES-CTR stream or OS entropy), never numpy's or ``random``'s PRNG.
Floating point enters through the uniforms (53 bits) and log-gamma.  The acceptance test subtracts terms of
size ~ lambda log lambda, so its error grows with lambda: ~1e-9 at 2^20, ~2e-4 at 2^36 in log-probability.
lambda is refused above 2^36; callers stay far below (the MPC grid keeps DLap scales under ~2^18, distributed
DP halves its scale until the local Skellam parameter is under 2^32).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from mpcnet.fl.sampling import Draws

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
MAX_LAMBDA = 2.0**36
_SMALL = 10.0
_LOG_FACT = np.array([math.lgamma(k + 1.0) for k in range(256)])


def log_factorial(k: FloatArray) -> FloatArray:
    """log(k!) for non-negative integer-valued floats: a table below 256, Stirling's series above (error < 1e-14)."""
    k = np.asarray(k, dtype=np.float64)
    out = np.empty_like(k)
    small = k < 256
    out[small] = _LOG_FACT[k[small].astype(np.int64)]
    x = k[~small] + 1.0
    inv = 1.0 / x
    out[~small] = ((x - 0.5) * np.log(x) - x + 0.5 * math.log(2 * math.pi)
                   + inv * (1 / 12 - inv * inv * (1 / 360 - inv * inv * (1 / 1260 - inv * inv / 1680))))
    return out


def poisson(lam: FloatArray | float, draws: Draws, size: int | None = None) -> IntArray:
    """Poisson(lam) per element (``lam`` an array, or a scalar with ``size``)."""
    lam_arr = np.asarray(lam, dtype=np.float64)
    if lam_arr.ndim == 0:
        lam_arr = np.full(1 if size is None else size, float(lam_arr))
    lam_arr = lam_arr.ravel()
    if np.any(~np.isfinite(lam_arr)) or np.any(lam_arr < 0) or np.any(lam_arr > MAX_LAMBDA):
        raise ValueError(f"Poisson rates must be finite and in [0, 2^36], got max {float(np.max(lam_arr)):g}")
    out = np.zeros(lam_arr.size, dtype=np.int64)
    small = np.flatnonzero((lam_arr > 0) & (lam_arr < _SMALL))
    if small.size:
        out[small] = _poisson_inversion(lam_arr[small], draws)
    big = np.flatnonzero(lam_arr >= _SMALL)
    if big.size:
        out[big] = _poisson_ptrs(lam_arr[big], draws)
    return out


def _poisson_inversion(lam: FloatArray, draws: Draws) -> IntArray:
    # walk the CDF: P(k) = P(k-1) lam / k; lam < 10, so a few dozen steps cover all but ~1e-16 of the mass
    u = draws.uniform(lam.size)
    k = np.zeros(lam.size, dtype=np.int64)
    p = np.exp(-lam)
    cdf = p.copy()
    todo = u >= cdf
    step = 0
    while np.any(todo) and step < 200:
        step += 1
        p = np.where(todo, p * lam / step, p)
        k = np.where(todo, step, k)
        cdf = np.where(todo, cdf + p, cdf)
        todo = todo & (u >= cdf)
    return k


def _poisson_ptrs(lam: FloatArray, draws: Draws) -> IntArray:
    # W. Hoermann, "The transformed rejection method for generating Poisson random variables" (1993)
    slam, loglam = np.sqrt(lam), np.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    log_inv_alpha = np.log(1.1239 + 1.1328 / (b - 3.4))
    vr = 0.9277 - 3.6224 / (b - 2)
    out = np.empty(lam.size, dtype=np.int64)
    todo = np.arange(lam.size)
    while todo.size:  # each try is accepted with probability > 0.88
        u = draws.uniform(todo.size) - 0.5
        v = draws.open_uniform(todo.size)
        us = 0.5 - np.abs(u)
        at, bt, lt = a[todo], b[todo], lam[todo]
        k = np.floor((2 * at / us + bt) * u + lt + 0.43)
        quick = (us >= 0.07) & (v <= vr[todo])
        valid = (k >= 0) & ~((us < 0.013) & (v > us))
        kk = np.where(valid, k, 0.0)
        slow = valid & (np.log(v) + log_inv_alpha[todo] - np.log(at / (us * us) + bt)
                        <= -lt + kk * loglam[todo] - log_factorial(kk))
        ok = quick | slow
        out[todo[ok]] = k[ok].astype(np.int64)
        todo = todo[~ok]
    return out


def skellam(mu: float, size: int, draws: Draws | None = None) -> IntArray:
    """Sk(mu, mu) = Poisson(mu) - Poisson(mu) per element: variance 2 mu.  OS entropy unless ``draws``."""
    if not (mu >= 0 and math.isfinite(mu)):
        raise ValueError(f"Skellam parameter must be finite and >= 0, got {mu}")
    d = draws or Draws.secure()
    return poisson(mu, d, size) - poisson(mu, d, size)


def negative_binomial(r: float, p: float, size: int, draws: Draws) -> IntArray:
    """NB(r, p): failures before the r-th success, success probability 1 - p, as Poisson(Gamma(r, p / (1 - p)))."""
    if not (r > 0 and 0 < p < 1):
        raise ValueError(f"negative binomial needs r > 0 and 0 < p < 1, got r={r}, p={p}")
    scale = p / (1 - p)
    lam = draws.gamma(r, size) * scale
    return poisson(np.minimum(lam, MAX_LAMBDA), draws)


def discrete_laplace_refusal(a: float) -> str | None:
    """Why DLap(a) cannot be sampled here, or None: the compiler asks before a release is charged, the sampler
    again before it draws."""
    if not (a > 0 and math.isfinite(a)):
        return f"discrete Laplace needs a finite a > 0, got a={a}"
    if 1 / a > MAX_LAMBDA / 64:
        return f"its scale 1/a = {1 / a:g} grid units is above {MAX_LAMBDA / 64:g}, too large for exact sampling"
    if math.exp(-a) == 0.0:
        return f"a = {a:g} is so large that e^-a underflows: the noise would be zero"
    return None


def discrete_laplace_share(a: float, n_parties: int, size: int, draws: Draws | None = None) -> IntArray:
    """One party's share of DLap(a) noise: NB(1/N, e^-a) - NB(1/N, e^-a); N parties' shares sum to DLap(a)."""
    if n_parties < 1:
        raise ValueError(f"discrete Laplace needs at least one party, got N={n_parties}")
    if (why := discrete_laplace_refusal(a)) is not None:
        raise ValueError(why)
    d = draws or Draws.secure()
    p = math.exp(-a)
    r = 1.0 / n_parties
    return negative_binomial(r, p, size, d) - negative_binomial(r, p, size, d)


def discrete_laplace_variance(a: float) -> float:
    """Var DLap(a) = 2 e^-a / (1 - e^-a)^2."""
    return 2 * math.exp(-a) / (-math.expm1(-a)) ** 2


__all__ = ["MAX_LAMBDA", "discrete_laplace_refusal", "discrete_laplace_share",
           "discrete_laplace_variance", "log_factorial",
           "negative_binomial", "poisson", "skellam"]
