r"""Importance sampling of log p(x); the same number is the IWAE bound (Burda et al., 2016).

.. math:: \log \hat p_k(x) = \log \frac1k \sum_{i=1}^k \frac{p(x, z_i)}{q(z_i)},
          \qquad z_i \overset{iid}{\sim} q .

:math:`\hat p_k(x)` is unbiased for p(x); its log is biased low by Jensen,
:math:`\mathbb E[\log \hat p_k] = \mathcal L_k \le \log p(x)`, with
:math:`\mathcal L_1 \le \mathcal L_k \le \mathcal L_{k+1} \to \log p(x)`. For large k
the delta method gives a bias of about :math:`-\mathrm{Var}(w) / (2k\,p(x)^2)`.
"""

from lvm._checks import check_finite
from lvm._math import particle_log_mean_exp
from lvm.estimators.weights import log_weight
from lvm.types import Datum, Distribution, Key, LogJoint, Scalar


def importance_sampling(
    key: Key,
    log_joint: LogJoint,
    proposal: Distribution,
    x: Datum,
    *,
    num_samples: int,
    chunk_size: int | None = None,
) -> Scalar:
    r"""The log of the k-sample importance-sampling average, :math:`\log \hat p_k(x)`.

    Args:
        key: PRNG key; particle i uses ``split(key, num_samples)[i]``.
        log_joint: ``log_joint(x, z) = log p(x, z)`` for one x and one z.
        proposal: q(z) (for a VAE, the encoder's q(z|x) for this x).
        x: one datapoint.
        num_samples: k >= 1.
        chunk_size: if set, stream over chunks of this many particles with a
            running log-sum-exp: memory independent of k, same value.

    Returns:
        A scalar, the estimate of log p(x) (= the IWAE bound in expectation).
    """
    x = check_finite(x)
    return particle_log_mean_exp(
        lambda k: log_weight(k, log_joint, proposal, x),
        key,
        num_samples=num_samples,
        chunk_size=chunk_size,
    )


#: The IWAE bound :math:`\mathcal L_k` is the importance-sampling estimate with q = q(z|x).
iwae_bound = importance_sampling
