r"""Naive Monte Carlo: sample z from the prior and average the likelihood.

.. math:: \log \hat p_k(x) = \log \frac1k \sum_{i=1}^k p(x \mid z_i), \qquad z_i \sim p(z).

Unbiased for p(x) but useless in high dimension: the prior rarely puts samples
where p(z|x) has its mass, so one weight dominates and the variance explodes.
It is importance sampling with q = p(z); written separately so that log p(z)
never has to be added and subtracted again.
"""

from lvm._checks import check_finite
from lvm._math import particle_log_mean_exp
from lvm.types import Datum, Distribution, Key, LogLikelihood, Scalar


def naive_monte_carlo(
    key: Key,
    log_likelihood: LogLikelihood,
    prior: Distribution,
    x: Datum,
    *,
    num_samples: int,
    chunk_size: int | None = None,
) -> Scalar:
    """log of the average of p(x | z_i) over k draws z_i from ``prior``; see :func:`importance_sampling`."""
    x = check_finite(x)
    return particle_log_mean_exp(
        lambda k: log_likelihood(x, prior.sample(k)),
        key,
        num_samples=num_samples,
        chunk_size=chunk_size,
    )
