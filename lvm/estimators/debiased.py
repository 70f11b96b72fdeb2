r"""Estimates of log p(x) with less bias than the IWAE bound, or none: the jackknife and SUMO.

The IWAE estimate :math:`\log \hat p_k(x)` is biased low by about :math:`\chi^2/(2k)`
(:mod:`lvm.estimators.importance`). Two ways to remove that bias, for ONE datapoint:

* :func:`jackknife_iwae`, jackknife variational inference (Nowozin, 2018): the order-m
  jackknife of the IWAE estimates over leave-out subsets of the same k weights. Its bias
  is :math:`O(k^{-(m+1)})`; it is not a bound.
* :func:`sumo`, the Stochastically Unbiased Marginalization Objective (Luo et al., 2020): a
  Russian-roulette sum of IWAE increments with a random number of terms, unbiased for
  log p(x) term by term, with a finite expected number of samples but a heavy tail.

Neither calls the model more than the IWAE estimate of the same (expected) size does.
"""

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from lvm._checks import check_enough_samples, check_finite, check_positive_int
from lvm._math import leave_one_out_log_sum_exp, merge_log_sum_exp, particle_log_mean_exp
from lvm.estimators.weights import log_weight, log_weights
from lvm.types import Datum, Distribution, Key, LogJoint, Scalar

# ---------------------------------------------------------------- the jackknife


def jackknife_coefficients(num_samples: int, order: int) -> list[float]:
    r"""The weights :math:`c(k, m, j)` of the order-m generalized jackknife, j = 0..m.

    .. math:: c(k, m, j) = (-1)^j \frac{(k-j)^m}{(m-j)!\, j!}

    (the generalized jackknife of Schucany, Gray & Owen, 1971, as Nowozin, 2018, uses it).
    They sum to 1 and cancel the
    terms :math:`k^{-1}, \dots, k^{-m}` of any estimate whose bias has the expansion
    :math:`\sum_{p \ge 1} a_p k^{-p}`: :math:`\sum_j c_j f(k - j) = f(\infty) + O(k^{-(m+1)})`.
    """
    k, m = num_samples, order
    return [
        (-1) ** j * (k - j) ** m / (math.factorial(m - j) * math.factorial(j)) for j in range(m + 1)
    ]


def jackknife_log_mean_exp(log_w: Float[Array, " k"], *, order: int = 1) -> Scalar:
    r"""The order-m jackknife of :math:`\log \frac1k \sum_i e^{\ell_i}` over leave-out subsets of ``log_w``.

    .. math:: \hat L^{J}_{k,m} = \sum_{j=0}^{m} c(k, m, j)\, \bar L_{k-j}, \qquad
              \bar L_{k-j} = \binom{k}{j}^{-1} \sum_{|S| = k-j} \log \frac{1}{k-j} \sum_{i \in S} e^{\ell_i},

    with :math:`c(k, m, j)` from :func:`jackknife_coefficients`: :math:`\bar L_{k-j}` averages
    the log-mean-exp over every subset S of k - j of the k values. Computed without the
    large coefficients ever meeting large numbers: with :math:`a_i = k e^{\ell_i}/\sum_l e^{\ell_l} - 1`
    (``expm1``, exact for near-equal weights) and :math:`A_T = \sum_{i \in T} a_i` over the j
    left-out values T,

    .. math:: \bar L_{k-j} = \bar L_k + \binom{k}{j}^{-1} \sum_{|T| = j}
              \log\Big(1 - \frac{A_T}{k - j}\Big), \qquad
              \hat L^{J}_{k,m} = \bar L_k + \sum_{j=1}^{m} c(k,m,j)\, \overline{\log(1 - A_T/(k-j))},

    using ``log1p`` while :math:`A_T/(k-j) < 1/2` and otherwise the log-sum-exp of the values
    left in (:func:`lvm._math.leave_one_out_log_sum_exp`, no subtraction there), so one
    dominant weight costs no precision. Time :math:`O(k^m)`, memory O(k).

    Args:
        log_w: k >= order + 1 log-weights (or any values whose log-mean-exp is wanted).
        order: m >= 1.

    Returns:
        A scalar; ``-inf`` if every value is ``-inf``.
    """
    order = check_positive_int(order, "order")
    k = log_w.shape[0]
    check_enough_samples(
        k, order + 1, f"the order-{order} jackknife leaves out up to {order} values"
    )
    lse = jax.nn.logsumexp(log_w)
    finite = jnp.isfinite(lse)
    safe_lse = jnp.where(finite, lse, 0.0)
    # a_i = k w_i / sum(w) - 1 = expm1(l_i - log-mean-exp): exactly 0 for equal weights.
    a = jnp.expm1(log_w - safe_lse + math.log(k))
    coefficients = jackknife_coefficients(k, order)
    correction = sum(
        c_j * _mean_log_left_in(log_w - safe_lse, a, j, k)
        for j, c_j in enumerate(coefficients)
        if j
    )
    return jnp.where(finite, lse - math.log(k) + correction, lse)


def _mean_log_left_in(log_wn, a, num_left_out: int, k: int) -> Scalar:
    r"""Mean over subsets T of ``num_left_out`` indices of :math:`\log(1 - A_T/(k - |T|))`.

    ``log_wn`` are the log-weights normalised to sum to one. Ordered tuples of distinct
    indices are enumerated depth first (each subset |T|! times, which leaves the mean
    unchanged): a leave-one-out pass over what is left, under ``lax.map`` for every
    index taken out at the levels above.
    """
    j = num_left_out
    log_scale = math.log(k / (k - j))

    def recurse(log_left, left_in, removed, depth):
        if depth == 1:
            loo = leave_one_out_log_sum_exp(log_left)  # log of the mass left in without i
            frac = (removed + a) / (k - j)
            small = frac < 0.5
            value = jnp.where(small, jnp.log1p(-jnp.where(small, frac, 0.0)), loo + log_scale)
        else:

            def without(i):
                return recurse(
                    log_left.at[i].set(-jnp.inf),
                    left_in.at[i].set(False),
                    removed + a[i],
                    depth - 1,
                )

            value = jax.lax.map(without, jnp.arange(k))
        return jnp.sum(jnp.where(left_in, value, 0.0)) / (k - (j - depth))

    return recurse(log_wn, jnp.ones(k, bool), jnp.zeros((), a.dtype), j)


def jackknife_iwae(
    key: Key,
    log_joint: LogJoint,
    proposal: Distribution,
    x: Datum,
    *,
    num_samples: int,
    order: int = 1,
    chunk_size: int | None = None,
) -> Scalar:
    r"""Jackknife variational inference (Nowozin, 2018): the order-m jackknife of the IWAE estimate.

    .. math:: \hat L^{J}_{k,m} = \sum_{j=0}^{m} c(k, m, j)\, \bar L_{k-j}, \qquad
              c(k,m,j) = (-1)^j \frac{(k-j)^m}{(m-j)!\,j!},

    where :math:`\bar L_{k-j}` is the IWAE estimate :math:`\log \frac{1}{k-j}\sum_{i \in S} w_i`
    averaged over every subset S of k - j of the same k weights
    :math:`w_i = p(x, z_i)/q(z_i)`, :math:`z_i \sim q` (``proposal``), so that no model
    evaluation is added to the k of the IWAE estimate. Because
    :math:`\mathbb E[\log \hat p_n] - \log p(x) = \sum_{p \ge 1} a_p n^{-p}` (delta method;
    :math:`a_1 = -\chi^2/2`), the combination cancels the first m terms and its bias is
    :math:`O(k^{-(m+1)})`; for m = 1 it is
    :math:`(\tfrac34 \mu_2^2 - \tfrac13 \mu_3)/(k(k-1)) + O(k^{-3})` with
    :math:`\mu_n = \mathbb E_q[(w/p(x) - 1)^n]`. The expansion holds only for k well above
    :math:`\chi^2 = \mu_2`; below, the correction can overshoot (a positive bias).

    **Not a bound**: its expectation can lie above log p(x), so it is an estimate to report,
    not an objective to maximise.

    Args:
        key: particle i is drawn with ``fold_in(key, i)``, as in :func:`lvm.importance_sampling`
            (the same key gives the same k weights).
        log_joint, proposal, x: as for :func:`lvm.importance_sampling`.
        num_samples: k >= order + 1.
        order: m >= 1; time O(k^m) on the k log-weights (m = 1: O(k)).
        chunk_size: evaluate the model on this many particles at a time; the k
            log-weights themselves are held (k scalars).

    Returns:
        A scalar, the estimate of log p(x).
    """
    order = check_positive_int(order, "order")
    num_samples = check_positive_int(num_samples)
    check_enough_samples(
        num_samples, order + 1, f"the order-{order} jackknife leaves out up to {order} values"
    )
    log_w = log_weights(key, log_joint, proposal, x, num_samples=num_samples, chunk_size=chunk_size)
    return jackknife_log_mean_exp(log_w, order=order)


# ---------------------------------------------------------------- SUMO

#: From this term on, P(K >= j) decays geometrically instead of as 1/j.
SUMO_TAIL_START = 80
#: The per-term factor of that geometric decay.
SUMO_TAIL_DECAY = 0.9
#: :math:`\mathbb E[K] = \sum_{j \ge 1} P(K \ge j) = H_{79} + 1/(80 \cdot 0.1)`: the expected
#: number of samples SUMO draws beyond ``num_samples``.
SUMO_EXPECTED_EXTRA_SAMPLES = sum(1.0 / j for j in range(1, SUMO_TAIL_START)) + 1.0 / (
    SUMO_TAIL_START * (1.0 - SUMO_TAIL_DECAY)
)


def sumo_survival(j: Int[Array, "..."] | int) -> Float[Array, "..."]:
    r""":math:`P(K \ge j)` of SUMO's number of terms K (Luo et al., 2020): 1/j below j = 80, then geometric.

    .. math:: P(K \ge j) = \begin{cases} 1/j, & 1 \le j < 80 \\
              0.9^{\,j - 80} / 80, & j \ge 80 \end{cases}

    The 1/j part is the choice of Luo et al.; alone it would make :math:`\mathbb E[K]`
    infinite, and the geometric tail from j = 80 makes it
    :data:`SUMO_EXPECTED_EXTRA_SAMPLES` :math:`= H_{79} + 1/8 \approx 5.08`.
    """
    j = jnp.asarray(j, jnp.float32)
    start = SUMO_TAIL_START
    tail = SUMO_TAIL_DECAY ** (jnp.maximum(j, start) - start) / start
    return jnp.where(j < start, 1.0 / jnp.maximum(j, 1.0), tail)


def _continues(level_key: Key, j) -> Array:
    r"""The roulette: with K >= j, draw whether K >= j + 1, which has probability P(K>=j+1)/P(K>=j).

    One uniform per term (key ``fold_in(level_key, j)``): no cap on K, so no term of the
    series is ever out of reach (a cap at any K_max would bias the mean by about
    :math:`-\chi^2/(2 K_{\max})`).
    """
    u = jax.random.uniform(jax.random.fold_in(level_key, j))
    return u < sumo_survival(j + 1) / sumo_survival(j)


def sumo_num_terms(level_key: Key) -> Int[Array, ""]:
    r"""The number of terms K >= 1 that :func:`sumo` draws with ``level_key`` (its key's ``split(key)[1]``).

    :math:`P(K \ge j)` is :func:`sumo_survival`; the same roulette as inside :func:`sumo`, without the model.
    """

    def body(j):
        return j + 1

    return jax.lax.while_loop(lambda j: _continues(level_key, j), body, jnp.ones((), jnp.int32))


def sumo(
    key: Key,
    log_joint: LogJoint,
    proposal: Distribution,
    x: Datum,
    *,
    num_samples: int,
    chunk_size: int | None = None,
) -> Scalar:
    r"""SUMO (Luo et al., 2020): an unbiased estimate of log p(x) by Russian roulette over IWAE estimates.

    With :math:`\mathrm{IWAE}_n = \log \frac1n \sum_{i=1}^{n} w_i` on one growing sequence of
    weights :math:`w_i = p(x, z_i)/q(z_i)`, :math:`z_i \sim q` (``proposal``), and
    :math:`\Delta_n = \mathrm{IWAE}_{n+1} - \mathrm{IWAE}_n`,

    .. math:: \mathrm{SUMO} = \mathrm{IWAE}_m + \sum_{j=1}^{K}
              \frac{\Delta_{m+j-1}}{P(K \ge j)}, \qquad K \sim p(K),

    with m = ``num_samples`` and :math:`P(K \ge j)` from :func:`sumo_survival`. Since
    :math:`\mathbb E[\mathbf 1\{K \ge j\}] = P(K \ge j)`, the expectation is
    :math:`\mathcal L_m + \sum_{n \ge m} (\mathcal L_{n+1} - \mathcal L_n) = \lim_n \mathcal L_n = \log p(x)`
    term by term: **unbiased** in that sense (but see the tails below), at an expected cost
    of m + :data:`SUMO_EXPECTED_EXTRA_SAMPLES` (:math:`\approx m + 5.08`) weights. Not a bound.

    Tails: :math:`\Delta_n \approx (w_{n+1}/p(x) - 1)/n` (delta method). Past j = 80 the
    weight :math:`1/P(K \ge j)` of term j grows by 1/0.9 per term while
    :math:`P(K = j) = 0.1\,P(K \ge j)` shrinks by 0.9, so a run that stops at K = j moves the
    estimate by about :math:`|\Delta_{m+j-1}|/P(K \ge j)` with probability
    :math:`0.1\,P(K \ge j)`: the estimates have a tail
    :math:`P(|\mathrm{SUMO} - \log p(x)| > t) \propto 1/t`, and
    :math:`\sum_j 0.1\,\mathbb E|\Delta_{m+j-1}|` diverges like :math:`\log j`. Both the
    variance and :math:`\mathbb E|\mathrm{SUMO}|` are therefore infinite: the identity above
    holds term by term, but the mean of n estimates converges more slowly than
    :math:`n^{-1/2}` and its sample standard error understates the error, the more so the
    larger :math:`\chi^2` (``experiments/estimators_log_bias.py`` shows both regimes).

    Streaming: the first m weights are reduced by :func:`lvm.particle_log_mean_exp` (``chunk_size``
    as there); then each of the K further weights is drawn, folded into a running log-sum-exp
    and dropped inside one ``lax.while_loop`` whose state is four scalars: memory does not
    depend on K, and the compiled program is the same whatever K is drawn. The loop is not
    reverse-mode differentiable (``jax.grad`` raises).

    Keys: ``particle_key, level_key = split(key)``; particle i (0-based, i < m + K) is drawn
    with ``fold_in(particle_key, i)``, so its first m weights are those of
    ``importance_sampling(particle_key, ..., num_samples=m)``; K is
    :func:`sumo_num_terms` ``(level_key)``.

    Args:
        key: PRNG key.
        log_joint, proposal, x: as for :func:`lvm.importance_sampling`.
        num_samples: m >= 1, the weights always drawn.
        chunk_size: stream the first m weights in chunks of this size.

    Returns:
        A scalar, the estimate of log p(x).
    """
    num_samples = check_positive_int(num_samples)
    x = check_finite(x)
    particle_key, level_key = jax.random.split(key)

    def particle(k):
        return log_weight(k, log_joint, proposal, x)

    iwae_m = particle_log_mean_exp(
        particle, particle_key, num_samples=num_samples, chunk_size=chunk_size
    )

    def body(state):
        j, lse, total = state  # K >= j: add term j, from weight n + 1 = num_samples + j
        n = num_samples + j - 1  # weights so far
        log_w = particle(jax.random.fold_in(particle_key, n))
        # IWAE_{n+1} - IWAE_n = log(1 + w/(sum of the n weights)) - log(1 + 1/n), both small.
        delta = jax.nn.softplus(log_w - (lse[0] + jnp.log(lse[1]))) - jnp.log1p(1.0 / n)
        total = total + delta / sumo_survival(j).astype(total.dtype)
        return j + 1, merge_log_sum_exp(lse, log_w[None]), total

    def cond(state):
        # Term j - 1 was added; go on to term j if K >= j (K >= 1 always).
        j = state[0]
        return (j == 1) | _continues(level_key, j - 1)

    # The running log-sum-exp of the weights so far (lvm._math's), from the first m.
    lse_m = (iwae_m + math.log(num_samples), jnp.ones_like(iwae_m))
    init = (jnp.ones((), jnp.int32), lse_m, jnp.zeros_like(iwae_m))
    _, _, total = jax.lax.while_loop(cond, body, init)
    return iwae_m + total
