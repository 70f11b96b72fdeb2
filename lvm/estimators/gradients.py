r"""Lower-variance gradients of the same bounds: "sticking the landing" and doubly reparameterized.

With a reparameterized proposal, :math:`z = g_\phi(\epsilon)`, the log-weight
:math:`\log w = \log p_\theta(x, z) - \log q_\phi(z)` depends on the proposal's parameters
:math:`\phi` twice: through the sample z (the path) and through the density
:math:`\log q_\phi` (the score). The score's expectation is zero,
:math:`\mathbb E_q[\nabla_\phi \log q_\phi(z)] = 0`, so dropping it keeps the estimator
unbiased where the weights enter linearly, and removes noise that does not vanish even at
q = p(z|x):

* **STL**, sticking the landing (Roeder et al., 2017): :math:`\log w` with :math:`\phi`
  stopped inside :math:`\log q_\phi(z)` and z kept pathwise. Unbiased for the ELBO
  :math:`\frac1k\sum_i \log w_i`; at q = p(z|x) every log-weight is the constant log p(x),
  so the encoder's gradient is exactly zero per sample. For the IWAE bound it is
  **biased** (Tucker et al., 2019, Sec. 3): the normalised weights multiply the dropped
  score terms, and their expectation is no longer zero.
* **DReG**, doubly reparameterized gradients for the IWAE bound (Tucker et al., 2019, eq. 7):
  the score terms rewritten by a second reparameterization, which for the encoder gives

  .. math:: \nabla_\phi \mathcal L_k \approx \sum_{i=1}^{k} \tilde w_i^{\,2}\,
            \frac{\partial \log w_i}{\partial z_i} \frac{\partial z_i}{\partial \phi},
            \qquad \tilde w_i = \frac{w_i}{\sum_j w_j},

  unbiased, while the decoder keeps the usual :math:`\sum_i \tilde w_i \nabla_\theta \log w_i`.

The values returned are those of the plain estimators; only their gradients differ. The
proposal must be a pytree holding its parameters as arrays (every ``lvm`` distribution is
an equinox Module), so that its parameters can be stopped generically.

**Flows.** Both estimators need :math:`\log q_{\mathrm{sg}(\phi)}(z)` as a function of the
sample z, with the parameters stopped but z differentiable, i.e. ``stopped.log_prob(z)``. For a
:class:`lvm.flows.Flow` that is its inverse pass, :math:`z_0 = T^{-1}(z)`, differentiated
w.r.t. z; the forward pass that drew z gives :math:`\log q(z)` only as a function of
:math:`z_0` and :math:`\phi`, which is not this gradient. So on a flow STL and DReG cost one
inverse per particle on top of the forward draw: for an inverse autoregressive flow on a
d-dimensional z, d sequential evaluations of each layer's network (a coupling flow's inverse
costs what its forward does). DReG takes its normalised weights from the forward pass
(:func:`lvm.sample_and_log_prob`), so it inverts once per particle, as STL does. The
reparameterized estimators (:func:`lvm.iwae_bound`, :func:`lvm.elbo`) never invert.
"""

import equinox as eqx
import jax
import jax.numpy as jnp

from lvm._checks import check_finite, check_has_arrays, check_positive_int
from lvm._math import log_mean_exp, particle_keys, particle_log_mean_exp
from lvm.distributions import sample_n_and_log_prob
from lvm.types import Datum, Distribution, Key, LogJoint, Scalar


def stop_gradient_proposal(proposal: Distribution) -> Distribution:
    """``proposal`` with ``jax.lax.stop_gradient`` on every array leaf: same density, no gradient to its parameters."""
    check_has_arrays(proposal, "proposal", "stopping the gradient through q's parameters")
    return jax.tree.map(lambda a: jax.lax.stop_gradient(a) if eqx.is_array(a) else a, proposal)


def _stl_particle(log_joint, proposal, stopped, x):
    def particle(key):
        z = proposal.sample(key)  # pathwise in q's parameters
        return log_joint(x, z) - stopped.log_prob(z)

    return particle


def elbo_stl(
    key: Key, log_joint: LogJoint, proposal: Distribution, x: Datum, *, num_samples: int = 1
) -> Scalar:
    r"""The k-sample ELBO with the sticking-the-landing gradient (Roeder et al., 2017).

    Value :math:`\frac1k \sum_i \log p(x, z_i) - \log q(z_i)` (as :func:`lvm.elbo`); gradient
    with q's parameters stopped in :math:`\log q`: unbiased, and exactly zero for q's
    parameters at q = p(z|x).
    """
    num_samples = check_positive_int(num_samples)
    x = check_finite(x)
    particle = _stl_particle(log_joint, proposal, stop_gradient_proposal(proposal), x)
    return jnp.mean(jax.vmap(particle)(particle_keys(key, num_samples)))


def iwae_stl(
    key: Key,
    log_joint: LogJoint,
    proposal: Distribution,
    x: Datum,
    *,
    num_samples: int,
    chunk_size: int | None = None,
) -> Scalar:
    r"""The IWAE bound :math:`\log \frac1k \sum_i w_i` with STL log-weights: a **biased** gradient.

    The value is that of :func:`lvm.iwae_bound`. The gradient drops
    :math:`\sum_i \tilde w_i \nabla_\phi \log q_\phi(z_i)`, whose expectation is not zero for
    k > 1 (Tucker et al., 2019, Sec. 3), so it is not the gradient of :math:`\mathcal L_k` in
    expectation; use :func:`iwae_dreg` for an unbiased low-variance one.
    """
    x = check_finite(x)
    particle = _stl_particle(log_joint, proposal, stop_gradient_proposal(proposal), x)
    return particle_log_mean_exp(particle, key, num_samples=num_samples, chunk_size=chunk_size)


def iwae_dreg(
    key: Key, log_joint: LogJoint, proposal: Distribution, x: Datum, *, num_samples: int
) -> Scalar:
    r"""The IWAE bound with the doubly reparameterized gradient (DReG; Tucker et al., 2019, eq. 7).

    With STL log-weights :math:`\ell_i` (q's parameters stopped in :math:`\log q`) and
    :math:`\tilde w = \mathrm{softmax}(\mathrm{sg}(\ell))`, the log-weights are evaluated
    again at :math:`z'_i = \mathrm{sg}(z_i) + \tilde w_i\,(z_i - \mathrm{sg}(z_i))`, whose
    value is :math:`z_i` and whose pathwise derivative is :math:`\tilde w_i\,\partial z_i`,
    and the function returns

    .. math:: \mathrm{sg}(\mathcal L_k) + \sum_i \tilde w_i\,\big(\ell'_i - \mathrm{sg}(\ell'_i)\big),

    whose value is :math:`\mathcal L_k = \log \frac1k \sum_i w_i` exactly (the second term is
    zero) and whose gradient is :math:`\sum_i \tilde w_i \nabla_\theta \log p(x, z_i)` for
    the model and :math:`\sum_i \tilde w_i^2 \,\partial_z \ell_i\, \partial_\phi z_i` for the
    proposal. It costs a second forward pass of the model on the k particles (the first
    one's result is only used through ``stop_gradient``, so it has no backward pass;
    ``bench/estimators.py --part gradients`` measures the cost, ``bench/README.md`` has it).
    Latents that are not floating point (a categorical z) get no pathwise gradient.
    """
    num_samples = check_positive_int(num_samples)
    x = check_finite(x)
    stopped = stop_gradient_proposal(proposal)

    def log_w(z):
        return log_joint(x, z) - stopped.log_prob(z)

    # The weights are only used through stop_gradient: their log q comes from the draw itself.
    z, log_q = sample_n_and_log_prob(key, proposal, num_samples)
    ell = jax.lax.stop_gradient(jax.vmap(lambda zi: log_joint(x, zi))(z) - log_q)
    weights = jax.nn.softmax(ell)

    def scale_path(zi):
        if not jnp.issubdtype(zi.dtype, jnp.inexact):
            return zi
        w = weights.reshape((num_samples,) + (1,) * (zi.ndim - 1)).astype(zi.dtype)
        return jax.lax.stop_gradient(zi) + w * (zi - jax.lax.stop_gradient(zi))

    ell_scaled = jax.vmap(log_w)(jax.tree.map(scale_path, z))
    surrogate = jnp.sum(weights * (ell_scaled - jax.lax.stop_gradient(ell_scaled)))
    return log_mean_exp(ell) + surrogate
