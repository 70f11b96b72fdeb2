r"""The same mixture learned by gradient ascent on the mean log-marginal, as a VAE is.

The objective is the (weighted) mean exact log-likelihood

.. math:: \ell(\theta) = \frac{1}{\sum_n w_n}\sum_n w_n \log \sum_k \pi_k\,\mathcal N(x_n; \mu_k, L_k L_k^\top),

maximised with an optax optimizer over unconstrained parameters :math:`\theta`:
logits for :math:`\pi = \mathrm{softmax}(\text{logits})`, the means, and Cholesky
factors (full: one per component; tied: one) whose strictly lower part is free and whose
diagonal is :math:`\exp(\cdot)` of a free vector (log standard deviations for diag /
spherical).
The training loss is :math:`-\ell`. Unlike EM there is no closed-form step and no
covariance floor: the optimizer follows :math:`\nabla_\theta\ell` alone.

:func:`make_gradient_step` gives the pure ``(init, step)`` pair (jit ``step`` once);
:func:`fit_gradient` runs it in a ``lax.scan`` in standardised coordinates, compiled once
per data shape and ``num_steps`` (the default optimizer is built inside the compiled
function from a traced learning rate, so a new rate or new data reuse it).
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Float, Int

from lvm._checks import check_positive_int
from lvm.fit import _standardize as stdz
from lvm.fit._data import check_mixture_data
from lvm.fit.selection import mean_log_likelihood
from lvm.models.gmm import GaussianMixture
from lvm.types import Scalar


class Unconstrained(NamedTuple):
    """Free parameters: logits (K,), means (K, D), raw scale (K, D, D) / (D, D) / (K, D) / (K,)."""

    logits: Float[Array, " K"]
    means: Float[Array, "K D"]
    raw_scale: Float[Array, "K ..."]


class GradientState(NamedTuple):
    params: Unconstrained
    opt_state: optax.OptState
    step: Int[Array, ""]


class GradientInfo(NamedTuple):
    """Diagnostics of one step: the loss -ell before the update, ell itself, the gradient norm."""

    loss: Scalar
    log_likelihood: Scalar
    grad_norm: Scalar


def _with_diagonal(lower, diag):
    """The strictly lower triangle of ``lower`` with ``diag`` on the diagonal."""
    d = diag.shape[-1]
    eye = jnp.eye(d, dtype=diag.dtype).reshape((1,) * (diag.ndim - 1) + (d, d))
    return jnp.tril(lower, -1) + diag[..., None] * eye


def unconstrain(params: GaussianMixture) -> Unconstrained:
    """Map a mixture to free parameters (log of the Cholesky diagonal / of the scales).

    The mixture's scale is canonical (non-negative Cholesky diagonal, see
    :mod:`lvm.models.gmm`), so the logarithm is defined for every valid mixture.
    """
    if params.covariance_type in ("full", "tied"):
        diag = jnp.diagonal(params.scale, axis1=-2, axis2=-1)
        raw = _with_diagonal(params.scale, jnp.log(diag))
    else:
        raw = jnp.log(params.scale)
    return Unconstrained(params.log_mixture_weights, params.means, raw)


def constrain(raw: Unconstrained, covariance_type: str) -> GaussianMixture:
    """Inverse of :func:`unconstrain`: a valid mixture for any real-valued ``raw``."""
    if covariance_type in ("full", "tied"):
        diag = jnp.exp(jnp.diagonal(raw.raw_scale, axis1=-2, axis2=-1))
        scale = _with_diagonal(raw.raw_scale, diag)
    else:
        scale = jnp.exp(raw.raw_scale)
    return GaussianMixture(raw.logits, raw.means, scale, covariance_type)


def make_gradient_step(
    optimizer: optax.GradientTransformation, *, covariance_type: str
) -> tuple[Callable, Callable]:
    """Pure ``init(params) -> state`` and ``step(state, x, weight) -> (state, info)``.

    ``step`` takes one optimizer step on ``loss = -mean_log_likelihood`` (full batch
    or whatever batch it is given); jit it once.
    """

    def loss_fn(raw, x, weight):
        ll = mean_log_likelihood(constrain(raw, covariance_type), x, sample_weight=weight)
        return -ll, ll

    def init(params: GaussianMixture) -> GradientState:
        raw = unconstrain(params)
        return GradientState(raw, optimizer.init(raw), jnp.asarray(0))

    def step(state: GradientState, x, weight) -> tuple[GradientState, GradientInfo]:
        (loss, ll), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, x, weight)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        raw = optax.apply_updates(state.params, updates)
        info = GradientInfo(loss, ll, optax.tree.norm(grads))
        return GradientState(raw, opt_state, state.step + 1), info

    return init, step


def fit_gradient(
    params: GaussianMixture,
    x: Float[ArrayLike, "N D"],
    *,
    num_steps: int = 2000,
    learning_rate: float = 0.05,
    optimizer: optax.GradientTransformation | None = None,
    sample_weight: Float[ArrayLike, " N"] | None = None,
) -> tuple[GaussianMixture, Float[Array, " num_steps"]]:
    """Full-batch gradient ascent from ``params``; returns the mixture and the log-likelihood trace.

    Default optimizer: Adam with a cosine-decayed learning rate
    (``learning_rate`` -> 1% of it over ``num_steps``), built inside the compiled
    function, so calls that differ only in data values or ``learning_rate`` compile
    once. A given ``optimizer`` is a static argument: pass the same object to reuse
    its compilation. The steps run in centred, unit-variance coordinates (an affine
    change of variables, see :mod:`lvm.fit._standardize`), which makes one learning
    rate suit every dimension; the trace is in nats per point of the original data.
    """
    num_steps = check_positive_int(num_steps, "num_steps")
    x, w = check_mixture_data(
        x, sample_weight, num_components=params.num_components, data_dim=params.data_dim
    )
    return _fit_gradient_jit(params, x, w, learning_rate, optimizer, num_steps)


def _default_optimizer(learning_rate, num_steps: int) -> optax.GradientTransformation:
    return optax.adam(optax.cosine_decay_schedule(learning_rate, num_steps, alpha=0.01))


def _fit_gradient_impl(params, x, weight, learning_rate, optimizer, num_steps):
    weight = jnp.ones(x.shape[0], x.dtype) if weight is None else weight  # data split over devices
    if optimizer is None:
        optimizer = _default_optimizer(learning_rate, num_steps)
    a = stdz.data_affine(x, weight, params.covariance_type)
    xs = a.apply(x)
    init, step = make_gradient_step(optimizer, covariance_type=params.covariance_type)

    def body(state, _):
        state, info = step(state, xs, weight)
        return state, info.log_likelihood

    state, trace = jax.lax.scan(body, init(stdz.to_standard(params, a)), length=num_steps)
    fitted = stdz.from_standard(constrain(state.params, params.covariance_type), a)
    return fitted, trace - a.log_det


_fit_gradient_jit = jax.jit(_fit_gradient_impl, static_argnames=("optimizer", "num_steps"))
