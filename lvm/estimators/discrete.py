r"""Gradients for discrete latents: score function (REINFORCE, NVIL), VIMCO, Concrete relaxation.

A categorical or binary z is not a differentiable function of q's parameters
:math:`\phi`, so the pathwise gradient of the previous estimators does not exist. Each
function here returns the value of a plain bound (:func:`lvm.elbo` or :func:`lvm.iwae_bound`
for the same key, the same numbers) and, as its gradient, one estimator of the gradient
of that bound's expectation. Every term added for the gradient has the form
:math:`t - \mathrm{sg}(t)` (sg: ``stop_gradient``), which is 0 in value.

**Score function** (REINFORCE; Williams, 1992). For
:math:`\mathbb E_{z_{1..k} \sim q_\phi}[F(z_{1..k}, \phi)]`,

.. math:: \nabla_\phi \mathbb E[F] = \mathbb E\Big[\sum_i (F - b_i)\,\nabla_\phi \log q_\phi(z_i)
          + \nabla_\phi F\Big]

for any baseline :math:`b_i` that does not depend on :math:`z_i`. The surrogate adds
:math:`\sum_i \mathrm{sg}(A_i)\,(\log q(z_i) - \mathrm{sg}\log q(z_i))` with
:math:`A_i = F - b_i` (the advantage). For the ELBO,
:math:`F = \frac1k\sum_i \ell_i` with :math:`\ell_i = \log p(x, z_i) - \log q(z_i)`; the
cross terms :math:`\ell_j \nabla\log q(z_i)`, :math:`j \ne i`, and :math:`\nabla_\phi F
= -\frac1k\sum_i\nabla\log q(z_i)` have expectation 0 and are dropped, which leaves the
estimator :math:`\frac1k\sum_i(\ell_i - b_i)\nabla\log q(z_i)` (Mnih & Gregor, 2014, eq. 5).
For the IWAE bound :math:`F = \hat{\mathcal L}_k = \log\frac1k\sum_j e^{\ell_j}`, whose direct
term :math:`-\sum_i \tilde w_i \nabla\log q(z_i)` is kept (its expectation is not 0).

Baselines, each a rule that needs no state between steps:

* ``"none"``: :math:`b_i = 0`.
* ``"leave_one_out"`` (ELBO, k >= 2): :math:`b_i = \frac{1}{k-1}\sum_{j\ne i}\ell_j`, the other
  particles of the same datapoint (Salimans & Knowles, 2014; Kool et al., 2019).
* ``"learned"``: :math:`b_i = b(x)`, the ``baseline`` of a :class:`lvm.WithBaseline`
  proposal, computed by the model (a learned constant c, an input-dependent network
  :math:`C_\psi(x)`, or their sum: NVIL's baselines). Its training signal, the squared
  error :math:`\frac1k\sum_i(\mathrm{sg}(F_i) - b)^2` (with :math:`F_i` the signal of particle
  i), is folded into the surrogate with value 0, so that one gradient of the returned value
  trains the model, q and b together. With plain SGD at learning rate :math:`\eta` this is
  the exponential running average :math:`b \leftarrow (1-\eta)\,b + \eta\,\bar F` of NVIL's
  constant baseline; with another optimizer, its stochastic-approximation counterpart.

Variance normalization (``normalize=True``; NVIL, Mnih & Gregor, 2014, Sec. 3.3): the advantage
is divided by :math:`\max(1, \sigma)`, :math:`\sigma = e^{s}` with :math:`s` the ``log_scale``
of a :class:`lvm.WithBaseline` proposal (a learned scalar of the model, standing for NVIL's
running estimate of the centred signal's standard deviation). :math:`s` is trained by
the Gaussian negative log-likelihood of the centred signal,
:math:`\frac1k\sum_i \tfrac12 A_i^2 e^{-2s} + s`, minimised at :math:`e^{2s} = \mathbb E[A^2]`,
folded in with value 0 like the baseline's. The encoder's gradient is then the unbiased
one divided by :math:`\max(1, \sigma)`: an adaptive step size, not a change of direction.

**VIMCO** (Mnih & Rezende, 2016) for the IWAE bound: particle i's baseline is the bound with
:math:`\ell_i` replaced by the mean of the others (their geometric mean weight),

.. math:: A_i = \hat{\mathcal L}_k - \log\frac1k\Big(\sum_{j\ne i} e^{\ell_j}
          + e^{\frac{1}{k-1}\sum_{j\ne i}\ell_j}\Big),

which does not depend on :math:`z_i`, so the estimator stays unbiased, and makes the
advantages of the k particles as small as their differences.

**Concrete / Gumbel-softmax** (Maddison, Mnih & Teh, 2017; Jang, Gu & Poole, 2017): the
particles' noise also gives relaxed latents :math:`y_i = \mathrm{relax}_\tau(\phi, u_i)`
(:meth:`lvm.Categorical.relaxed`, :meth:`lvm.Bernoulli.relaxed`) whose hard versions are
the :math:`z_i`, and the gradient is the pathwise gradient of the same bound computed at
:math:`y_i`: :math:`\tilde\ell_i = \log p(x, y_i) - \log q(y_i)`, with the model and q taken at
the relaxed point by their continuous extension (a model of binary latents takes y as it
takes z; a categorical one is used in one-hot linear form,
:math:`\sum_c y_c\,(\log p(x, c) - \log q(c))`, which costs K evaluations of the model per
particle). The model's parameters are trained at the relaxed latents too. This gradient is
**biased** for any :math:`\tau > 0`: :math:`\mathbb E[y] \ne` the probabilities of q, and a
nonlinear model sees inputs it never sees at z. The bias vanishes as
:math:`\tau \to 0`, where the variance grows (the relaxation's derivative concentrates
near the decision boundaries). With ``straight_through=True`` the model is evaluated at
the hard latent, :math:`y + \mathrm{sg}(\mathrm{onehot}(z) - y)`, and the derivative taken
through y (Bengio et al., 2013; Jang et al., 2017): for a one-hot linear model that
changes only the direct and the model's terms, which are then those at z.

The discrete z themselves are those of the plain estimators (particle i from
``fold_in(key, i)``); the proposal must be an equinox Module (all ``lvm`` distributions
are), so that its parameters can be stopped where a term must not train it.
"""

import math

import jax
import jax.numpy as jnp

from lvm._checks import check_positive_int
from lvm._math import leave_one_out_log_sum_exp, log_mean_exp, particle_keys
from lvm.distributions import WithBaseline
from lvm.estimators.gradients import stop_gradient_proposal
from lvm.types import Datum, Distribution, Key, LogJoint, Scalar

sg = jax.lax.stop_gradient

#: The baselines of the score-function estimator (``baseline=`` of ELBO / IWAE).
BASELINES = ("none", "leave_one_out", "learned")


def _zero(t):
    """``t - sg(t)``: 0 in value, the gradient of ``t``."""
    return t - sg(t)


def _score_particles(key, log_joint, proposal, x, num_samples, *, stop_q_in_weight):
    """``(ell, log_q)``: the k log-weights, z_i from ``fold_in(key, i)`` with no path gradient,
    and :math:`\\log q(z_i)` with q's parameters live. ``stop_q_in_weight`` stops q's
    parameters inside the log-weights (their direct term), keeping their value."""
    stopped = stop_gradient_proposal(proposal)
    q_in_weight = stopped if stop_q_in_weight else proposal

    def one(k):
        z = sg(proposal.sample(k))
        return log_joint(x, z) - q_in_weight.log_prob(z), proposal.log_prob(z)

    return jax.vmap(one)(particle_keys(key, num_samples))


def _score_term(advantage, log_q, weight: float = 1.0) -> Scalar:
    r""":math:`w\sum_i \mathrm{sg}(A_i)\,(\log q(z_i) - \mathrm{sg}\log q(z_i))`: 0 in value."""
    return weight * jnp.sum(sg(advantage) * _zero(log_q))


def _need(proposal, attribute: str, who: str):
    """The proposal's learned ``baseline`` or ``log_scale``; ``TypeError`` if it carries none."""
    value = getattr(proposal, attribute, None) if isinstance(proposal, WithBaseline) else None
    if value is None:
        raise TypeError(
            f"{who} needs the proposal to carry a learned {attribute}: have the model's "
            "encode(x) return lvm.WithBaseline(q, baseline=b(x), log_scale=s); got "
            f"{type(proposal).__name__} without one"
        )
    return value


def _centre(signal, proposal, baseline: str, normalize: bool):
    r"""``(advantage, training)``: the signal minus its baseline (divided by max(1, sigma) with
    ``normalize``), and the value-0 terms that train a learned baseline and scale."""
    k = signal.shape[0]
    training = jnp.zeros((), signal.dtype)
    if baseline == "none":
        centred = signal
    elif baseline == "leave_one_out":
        centred = signal - (jnp.sum(signal) - signal) / (k - 1)
    else:
        b = _need(proposal, "baseline", "baseline='learned'")
        centred = signal - b
        training = training + _zero(-0.5 * jnp.mean((sg(signal) - b) ** 2))
    if normalize:
        s = _need(proposal, "log_scale", "normalize=True")
        c2 = sg(centred) ** 2
        training = training + _zero(-jnp.mean(0.5 * c2 * jnp.exp(-2.0 * s) + s))
        centred = centred / jnp.maximum(1.0, jnp.exp(sg(s)))
    return centred, training


def _check_settings(num_samples, baseline, normalize, *, minimum=1, who=""):
    num_samples = check_positive_int(num_samples)
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be a bool, got {normalize!r}")
    if baseline == "leave_one_out":
        minimum = max(minimum, 2)
    if num_samples < minimum:
        raise ValueError(f"{who} needs num_samples >= {minimum}, got {num_samples}")
    return num_samples


def elbo_reinforce(
    key: Key,
    log_joint: LogJoint,
    proposal: Distribution,
    x: Datum,
    *,
    num_samples: int = 1,
    baseline: str = "none",
    normalize: bool = False,
) -> Scalar:
    r"""The k-sample ELBO with the score-function gradient (REINFORCE; NVIL with a learned baseline).

    Value :math:`\frac1k\sum_i \ell_i` (:func:`lvm.elbo`, same key). Gradient: the model's
    :math:`\frac1k\sum_i\nabla_\theta\log p(x, z_i)`; q's
    :math:`\frac1k\sum_i A_i\,\nabla_\phi\log q(z_i)`, :math:`A_i = (\ell_i - b_i)/\max(1,\sigma)`
    (:math:`\sigma = 1` without ``normalize``); a learned baseline's and scale's from their
    training signals. ``baseline``: ``"none"``, ``"leave_one_out"`` (k >= 2) or ``"learned"``
    (the proposal is a :class:`lvm.WithBaseline`); see :mod:`lvm.estimators.discrete`.
    Unbiased for :math:`\nabla\,\mathrm{ELBO}` (divided by :math:`\max(1,\sigma)` for q).
    """
    num_samples = _check_settings(num_samples, baseline, normalize, who="baseline='leave_one_out'")
    ell, log_q = _score_particles(key, log_joint, proposal, x, num_samples, stop_q_in_weight=True)
    advantage, training = _centre(ell, proposal, baseline, normalize)
    return jnp.mean(ell) + _score_term(advantage, log_q, 1.0 / num_samples) + training


def iwae_reinforce(
    key: Key,
    log_joint: LogJoint,
    proposal: Distribution,
    x: Datum,
    *,
    num_samples: int,
    baseline: str = "none",
    normalize: bool = False,
) -> Scalar:
    r"""The IWAE bound with the score-function gradient: every particle's signal is the bound itself.

    Value :math:`\hat{\mathcal L}_k = \log\frac1k\sum_i e^{\ell_i}` (:func:`lvm.iwae_bound`, same
    key). Gradient :math:`\sum_i \tilde w_i \nabla\ell_i + \sum_i A\,\nabla_\phi\log q(z_i)`
    with :math:`A = (\hat{\mathcal L}_k - b)/\max(1,\sigma)`; ``baseline`` ``"none"`` or
    ``"learned"``. Unbiased for :math:`\nabla\mathcal L_k`, but the signal of each particle
    includes the others' noise: :func:`iwae_vimco` removes it.
    """
    num_samples = _check_settings(num_samples, baseline, normalize)
    if baseline == "leave_one_out":
        raise ValueError("the leave-one-out baseline of the IWAE bound is VIMCO: use iwae_vimco")
    ell, log_q = _score_particles(key, log_joint, proposal, x, num_samples, stop_q_in_weight=False)
    bound = log_mean_exp(ell)
    advantage, training = _centre(jnp.full_like(ell, bound), proposal, baseline, normalize)
    return bound + _score_term(advantage, log_q) + training


def vimco_advantages(log_w) -> jax.Array:
    r"""VIMCO's per-particle signals :math:`\hat{\mathcal L}_k - \hat{\mathcal L}_{k,-i}` (Mnih & Rezende, 2016, eq. 9).

    :math:`\hat{\mathcal L}_{k,-i}` is the bound with :math:`\ell_i` replaced by the mean of the
    other log-weights; computed from :func:`lvm._math.leave_one_out_log_sum_exp`, in O(k).
    """
    k = log_w.shape[0]
    if k < 2:
        raise ValueError(f"VIMCO needs num_samples >= 2 (a leave-one-out baseline), got {k}")
    others_mean = (jnp.sum(log_w) - log_w) / (k - 1)
    left_out = jnp.logaddexp(leave_one_out_log_sum_exp(log_w), others_mean) - math.log(k)
    return log_mean_exp(log_w) - left_out


def iwae_vimco(
    key: Key, log_joint: LogJoint, proposal: Distribution, x: Datum, *, num_samples: int
) -> Scalar:
    r"""The IWAE bound with VIMCO's gradient (Mnih & Rezende, 2016): unbiased, leave-one-out baselines.

    Value :math:`\hat{\mathcal L}_k` (:func:`lvm.iwae_bound`, same key). Gradient
    :math:`\sum_i \tilde w_i\nabla\ell_i + \sum_i A_i\,\nabla_\phi\log q(z_i)` with
    :math:`A_i` of :func:`vimco_advantages`. Needs k >= 2.
    """
    num_samples = check_positive_int(num_samples)
    if num_samples < 2:
        raise ValueError(f"VIMCO needs num_samples >= 2, got {num_samples}")
    ell, log_q = _score_particles(key, log_joint, proposal, x, num_samples, stop_q_in_weight=False)
    return log_mean_exp(ell) + _score_term(vimco_advantages(ell), log_q)


def _relaxed_particles(key, log_joint, proposal, x, num_samples, temperature, straight_through):
    """``(ell, relaxed_ell)``: the plain log-weights at the discrete z_i and the log-weights at
    the relaxed y_i from the same noise (pathwise in q's and the model's parameters)."""
    if not hasattr(proposal, "relaxed"):
        raise TypeError(
            "the Concrete estimator needs a proposal with a relaxed(temperature) method "
            f"(lvm.Categorical, lvm.Bernoulli), got {type(proposal).__name__}"
        )
    relaxed = proposal.relaxed(temperature)

    def one(k):
        z, y = relaxed.sample_coupled(k)
        z = sg(z)
        ell = log_joint(x, z) - proposal.log_prob(z)
        if straight_through:
            y = y + sg(relaxed.one_hot(z) - y)
        relaxed_ell = relaxed.extend(lambda v: log_joint(x, v) - proposal.log_prob(v), y)
        return sg(ell), relaxed_ell

    return jax.vmap(one)(particle_keys(key, num_samples))


def _check_temperature(temperature) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise TypeError(f"temperature must be a number > 0, got {temperature!r}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    return float(temperature)


def elbo_concrete(
    key: Key,
    log_joint: LogJoint,
    proposal: Distribution,
    x: Datum,
    *,
    num_samples: int = 1,
    temperature: float,
    straight_through: bool = False,
) -> Scalar:
    r"""The k-sample ELBO with the Concrete (Gumbel-softmax) relaxed gradient: **biased** for temperature > 0.

    Value :math:`\frac1k\sum_i\ell_i` (:func:`lvm.elbo`, same key); gradient
    :math:`\nabla\frac1k\sum_i\tilde\ell_i` at the relaxed latents (:mod:`lvm.estimators.discrete`).
    """
    num_samples = check_positive_int(num_samples)
    temperature = _check_temperature(temperature)
    ell, relaxed = _relaxed_particles(
        key, log_joint, proposal, x, num_samples, temperature, straight_through
    )
    return jnp.mean(ell) + _zero(jnp.mean(relaxed))


def iwae_concrete(
    key: Key,
    log_joint: LogJoint,
    proposal: Distribution,
    x: Datum,
    *,
    num_samples: int,
    temperature: float,
    straight_through: bool = False,
) -> Scalar:
    r"""The IWAE bound with the Concrete relaxed gradient: **biased** for temperature > 0.

    Value :math:`\hat{\mathcal L}_k` (:func:`lvm.iwae_bound`, same key); gradient
    :math:`\nabla\log\frac1k\sum_i e^{\tilde\ell_i}` at the relaxed latents.
    """
    num_samples = check_positive_int(num_samples)
    temperature = _check_temperature(temperature)
    ell, relaxed = _relaxed_particles(
        key, log_joint, proposal, x, num_samples, temperature, straight_through
    )
    return log_mean_exp(ell) + _zero(log_mean_exp(relaxed))
