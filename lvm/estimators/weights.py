r"""Importance log-weights :math:`\log w_i = \log p(x, z_i) - \log q(z_i)`, :math:`z_i \sim q`."""

import jax
from jaxtyping import Array, Float

from lvm._checks import check_finite, check_positive_int
from lvm._math import particle_keys
from lvm.distributions import sample_and_log_prob
from lvm.types import Datum, Distribution, Key, LogJoint, Scalar


def log_weight(key: Key, log_joint: LogJoint, proposal: Distribution, x: Datum) -> Scalar:
    r"""One particle: draw :math:`z \sim q` with ``key`` and return :math:`\log p(x,z) - \log q(z)`.

    With a reparameterized ``proposal`` (the Gaussians, a flow) the result is
    differentiable w.r.t. both the model and the proposal parameters. This is the one place
    a particle is drawn and scored: a proposal with ``sample_and_log_prob(key)`` (a
    :class:`lvm.flows.Flow`) gives z and :math:`\log q(z)` from one call, so a flow is never
    inverted to score its own sample (:func:`lvm.sample_and_log_prob`).
    """
    z, log_q = sample_and_log_prob(key, proposal)
    return log_joint(x, z) - log_q


def log_weights(
    key: Key,
    log_joint: LogJoint,
    proposal: Distribution,
    x: Datum,
    *,
    num_samples: int,
    chunk_size: int | None = None,
) -> Float[Array, " k"]:
    """The k log-weights of one datapoint, particle i drawn with ``fold_in(key, i)`` (= ``split(key, k)[i]``).

    With ``chunk_size`` the particles are evaluated ``chunk_size`` at a time (``lax.map``):
    the k log-weights are held, but the model's intermediate values only for one chunk.
    """
    num_samples = check_positive_int(num_samples)
    x = check_finite(x)
    keys = particle_keys(key, num_samples)

    def one(k):
        return log_weight(k, log_joint, proposal, x)

    if chunk_size is None or chunk_size >= num_samples:
        return jax.vmap(one)(keys)
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    return jax.lax.map(one, keys, batch_size=chunk_size)
