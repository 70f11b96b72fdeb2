r"""The joint density of a latent variable model, with both of its factors in reach.

.. math:: \log p(x, z) = \log p(z) + \log p(x \mid z)

Every estimator reads a model through one callable, ``log_joint(x, z)``. Most only call
it; a few need its factors: the analytic-KL ELBO needs the prior p(z), and annealing
from the prior needs the likelihood alone. :class:`Joint` is that callable with the
factors attached, so one signature, ``(key, log_joint, proposal, x)``, serves every
estimator and every training objective. Each model's ``log_joint`` is a :class:`Joint`;
a plain function ``log_joint(x, z)`` still works wherever the factors are not needed.
"""

from collections.abc import Callable

import equinox as eqx

from lvm.types import Datum, Distribution, Latent, LogLikelihood, Scalar


class Joint(eqx.Module):
    r""":math:`\log p(x, z) = \log p(z) + \log p(x \mid z)` for ONE x and ONE z.

    Args:
        prior: p(z), anything with ``sample(key)`` and ``log_prob(z)``.
        log_likelihood: ``log_likelihood(x, z) = log p(x | z)``.
    """

    prior: Distribution
    log_likelihood: LogLikelihood

    def __call__(self, x: Datum, z: Latent) -> Scalar:
        return self.prior.log_prob(z) + self.log_likelihood(x, z)


def require_joint(log_joint: Callable, who: str) -> Joint:
    """Return ``log_joint`` if it is a :class:`Joint`, else raise a ``TypeError`` naming ``who``."""
    if not isinstance(log_joint, Joint):
        raise TypeError(
            f"{who} needs the prior and the likelihood separately: pass log_joint as an "
            "lvm.Joint(prior, log_likelihood) (every lvm model's `log_joint` is one), "
            f"got {type(log_joint).__name__}"
        )
    return log_joint
