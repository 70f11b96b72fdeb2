r"""Importance log-weights :math:`\log w_i = \log p(x, z_i) - \log q(z_i)`, :math:`z_i \sim q`."""

import jax
from jaxtyping import Array, Float

from lvm._checks import check_finite, check_positive_int
from lvm._math import particle_keys
from lvm.types import Datum, Distribution, Key, LogJoint, Scalar


def log_weight(key: Key, log_joint: LogJoint, proposal: Distribution, x: Datum) -> Scalar:
    r"""One particle: draw :math:`z \sim q` with ``key`` and return :math:`\log p(x,z) - \log q(z)`.

    With a reparameterized ``proposal`` (the Gaussians) the result is
    differentiable w.r.t. both the model and the proposal parameters.
    """
    z = proposal.sample(key)
    return log_joint(x, z) - proposal.log_prob(z)


def log_weights(
    key: Key, log_joint: LogJoint, proposal: Distribution, x: Datum, *, num_samples: int
) -> Float[Array, " k"]:
    """The k log-weights of one datapoint, particle i drawn with ``fold_in(key, i)`` (= ``split(key, k)[i]``)."""
    num_samples = check_positive_int(num_samples)
    x = check_finite(x)
    keys = particle_keys(key, num_samples)
    return jax.vmap(lambda k: log_weight(k, log_joint, proposal, x))(keys)
