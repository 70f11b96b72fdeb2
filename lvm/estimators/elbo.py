r"""The evidence lower bound and its two decompositions.

.. math:: \mathrm{ELBO}(q) = \mathbb E_{q(z)}\big[\log p(x,z) - \log q(z)\big]
          = \underbrace{\mathbb E_q[\log p(x,z)]}_{\text{expected log joint}} + \underbrace{H(q)}_{\text{entropy}}
          = \log p(x) - \mathrm{KL}\big(q(z) \,\|\, p(z \mid x)\big)

and, when the prior and q are both Gaussian,
:math:`\mathrm{ELBO} = \mathbb E_q[\log p(x \mid z)] - \mathrm{KL}(q \,\|\, p(z))` with the KL in closed form
(Kingma & Welling, 2014).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from lvm._checks import check_finite, check_positive_int
from lvm.distributions import kl_divergence, sample_n
from lvm.estimators.weights import log_weights
from lvm.joint import Joint, require_joint
from lvm.types import Datum, Distribution, Key, LogJoint, Scalar


def elbo(
    key: Key, log_joint: LogJoint, proposal: Distribution, x: Datum, *, num_samples: int = 1
) -> Scalar:
    r"""Monte-Carlo ELBO: :math:`\frac1k \sum_i \log p(x, z_i) - \log q(z_i)`, :math:`z_i \sim q`."""
    return jnp.mean(log_weights(key, log_joint, proposal, x, num_samples=num_samples))


class ELBOTerms(NamedTuple):
    """ELBO = expected_log_joint + entropy."""

    elbo: Scalar
    expected_log_joint: Scalar
    entropy: Scalar


def elbo_decomposition(
    key: Key, log_joint: LogJoint, proposal: Distribution, x: Datum, *, num_samples: int = 1
) -> ELBOTerms:
    r""":math:`\mathbb E_q[\log p(x,z)]` by Monte Carlo and :math:`H(q)`, analytic when q has ``entropy()``.

    Without an analytic entropy, :math:`H(q) \approx -\frac1k\sum_i \log q(z_i)` on the same samples,
    and the sum equals :func:`elbo` for the same key.
    """
    num_samples = check_positive_int(num_samples)
    x = check_finite(x)
    z = sample_n(key, proposal, num_samples)
    expected_log_joint = jnp.mean(jax.vmap(lambda zi: log_joint(x, zi))(z))
    if hasattr(proposal, "entropy"):
        entropy = proposal.entropy()
    else:
        entropy = -jnp.mean(jax.vmap(proposal.log_prob)(z))
    return ELBOTerms(expected_log_joint + entropy, expected_log_joint, entropy)


def elbo_analytic_kl(
    key: Key, log_joint: Joint, proposal: Distribution, x: Datum, *, num_samples: int = 1
) -> Scalar:
    r""":math:`\frac1k\sum_i \log p(x \mid z_i) - \mathrm{KL}(q \,\|\, p(z))` with the KL in closed form.

    Same expectation as :func:`elbo`, lower variance. ``log_joint`` must be a
    :class:`lvm.Joint` (every model's ``log_joint`` is), whose Gaussian ``prior`` and the
    Gaussian ``proposal`` give the KL.
    """
    joint = require_joint(log_joint, "elbo_analytic_kl")
    num_samples = check_positive_int(num_samples)
    x = check_finite(x)
    z = sample_n(key, proposal, num_samples)
    expected_log_lik = jnp.mean(jax.vmap(lambda zi: joint.log_likelihood(x, zi))(z))
    try:
        kl = kl_divergence(proposal, joint.prior)
    except TypeError as err:
        raise TypeError(
            f"elbo_analytic_kl (ELBOAnalyticKL) needs KL(q || p(z)) in closed form: {err}. "
            "Use lvm.ELBO, which samples the whole log-weight, for this prior or proposal"
        ) from err
    return expected_log_lik - kl
