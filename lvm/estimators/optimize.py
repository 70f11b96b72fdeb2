r"""The best proposal of a family for ONE datapoint: :math:`q^* = \arg\max_{q} \mathcal L[q]` by stochastic gradient ascent.

.. math:: \lambda_{t+1} = \lambda_t + \mathrm{optimizer}\big(\nabla_\lambda\,
          \widehat{\mathcal L}(\mathrm{key}_t;\ q_{c(\lambda_t)})\big),
          \qquad \mathrm{key}_t = \mathrm{fold\_in}(\mathrm{key}, t),\quad t = 0, \dots, T-1,

with :math:`\widehat{\mathcal L}` = ``objective`` (any bound with the estimator signature,
e.g. ``lvm.ELBO(k)`` or ``lvm.IWAE(k)``), T = ``num_steps``, :math:`\lambda` the unconstrained
parameters of the proposal and c the map back to the proposal. :math:`\mathcal L[q^*]` is the
bound of the best q of the family for this x, with no amortization: Cremer, Li & Duvenaud
(2018) split the gap :math:`\log p(x) - \mathcal L[q_\phi(\cdot|x)]` of an encoder into
:math:`\log p(x) - \mathcal L[q^*]` (the family) and :math:`\mathcal L[q^*] - \mathcal L[q_\phi]`
(the amortization). It is also the inference of a model that has no encoder.

**The unconstrained parameters** :math:`\lambda` (the constraint map c, applied anywhere in
the proposal's pytree, e.g. to a flow's base):

* :class:`lvm.DiagonalNormal`: (loc, log scale), c: scale = exp(log scale);
* :class:`lvm.MultivariateNormal`: loc and L with its diagonal stored as :math:`\log L_{ii}`,
  c: :math:`L = \mathrm{tril}_{-1}(\lambda_L) + \mathrm{diag}(e^{\mathrm{diag}\,\lambda_L})`
  (a column of ``q0``'s L whose diagonal entry is negative is negated first: the same
  covariance :math:`LL^\top`, a positive diagonal);
* any other array leaf as it is: a flow's bijections are already unconstrained (flowjax's
  positive scales are ``paramax`` parameterizations of real arrays), and a user's module must
  hold unconstrained arrays too.

Every floating-point array is optimized except those inside a ``paramax.NonTrainable``;
integer and boolean arrays (masks, permutations) are kept as they are. So a conditional
flow's features h (:class:`lvm.flows.Flow`'s ``condition``) are optimized with its weights,
as free inputs, unless given as ``paramax.non_trainable(h)``.
"""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import paramax
from jaxtyping import Array, Float

from lvm._checks import check_positive_int
from lvm.distributions import DiagonalNormal, MultivariateNormal
from lvm.types import Datum, Distribution, Key, LogJoint, Objective


class OptimizeInfo(NamedTuple):
    """``objective``: the estimate at step t (parameters before update t, key ``fold_in(key, t)``)."""

    objective: Float[Array, " num_steps"]


class _LogScaleNormal(eqx.Module):
    loc: Array
    log_scale: Array

    def constrain(self) -> DiagonalNormal:
        return DiagonalNormal(self.loc, jnp.exp(self.log_scale))


class _LogDiagonalTrilNormal(eqx.Module):
    loc: Array
    raw_tril: Array  # strictly lower part: L; diagonal: log L_ii; upper part unused

    def constrain(self) -> MultivariateNormal:
        tril = jnp.tril(self.raw_tril, -1) + jnp.diag(jnp.exp(jnp.diag(self.raw_tril)))
        return MultivariateNormal(self.loc, tril)


def _unconstrain(q):
    def leaf(node):
        if isinstance(node, DiagonalNormal):
            return _LogScaleNormal(node.loc, jnp.log(node.scale))
        if isinstance(node, MultivariateNormal):
            # Flip the columns whose diagonal entry is negative: the same L L^T, a positive diagonal.
            tril = jnp.tril(node.scale_tril)
            tril = tril * jnp.where(jnp.diag(tril) < 0, -1.0, 1.0).astype(tril.dtype)[None, :]
            raw = jnp.tril(tril, -1) + jnp.diag(jnp.log(jnp.diag(tril)))
            return _LogDiagonalTrilNormal(node.loc, raw)
        return node

    return jax.tree.map(
        leaf, q, is_leaf=lambda n: isinstance(n, DiagonalNormal | MultivariateNormal)
    )


def _constrain(u):
    def leaf(node):
        return (
            node.constrain() if isinstance(node, _LogScaleNormal | _LogDiagonalTrilNormal) else node
        )

    return jax.tree.map(
        leaf, u, is_leaf=lambda n: isinstance(n, _LogScaleNormal | _LogDiagonalTrilNormal)
    )


def _partition(tree):
    return eqx.partition(
        tree, eqx.is_inexact_array, is_leaf=lambda n: isinstance(n, paramax.NonTrainable)
    )


def optimize_proposal(
    key: Key,
    log_joint: LogJoint,
    q0: Distribution,
    x: Datum,
    *,
    objective: Objective,
    num_steps: int,
    optimizer: optax.GradientTransformation,
) -> tuple[Distribution, OptimizeInfo]:
    r"""Maximize ``objective(key_t, log_joint, q, x)`` over q in the family of ``q0``, from ``q0``, for ONE ``x``.

    Args:
        key: PRNG key; step t evaluates the objective with ``fold_in(key, t)``.
        log_joint: ``log_joint(x, z) = log p(x, z)`` (an :class:`lvm.Joint` where the
            objective needs one, e.g. ``lvm.ELBOAnalyticKL``).
        q0: the starting proposal, any pytree proposal: :class:`lvm.DiagonalNormal`,
            :class:`lvm.MultivariateNormal`, a :class:`lvm.flows.Flow`, a user's module.
        x: one datapoint.
        objective: the bound to maximize, e.g. ``lvm.ELBO(8, gradient="stl")`` (whose
            gradient vanishes at q = p(z|x), so the iterates settle there) or ``lvm.IWAE(k)``.
        num_steps: T >= 1 gradient steps, one ``lax.scan``.
        optimizer: an ``optax`` transformation, e.g. ``optax.adam(1e-2)``; it sees the
            unconstrained parameters (module docstring).

    Returns:
        ``(q_star, info)``: q* of the same type and structure as ``q0``, and an
        :class:`OptimizeInfo` with the objective's estimate at each step, shape ``(T,)``.
        Evaluate :math:`\mathcal L[q^*]` with a fresh key (the trace is noisy, and biased
        upward at the end by having been optimized on).

    Pure and traceable: jit it once, and ``jax.vmap`` it over datapoints (and over a
    stacked ``q0``; a flow, whose pytree holds functions, through ``eqx.filter_vmap`` and
    ``eqx.filter_jit``).
    """
    num_steps = check_positive_int(num_steps, "num_steps")
    if not callable(objective):
        raise TypeError(
            f"objective must be callable as objective(key, log_joint, q, x), got {objective!r}"
        )
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(f"optimizer must be an optax GradientTransformation, got {optimizer!r}")
    params, static = _partition(_unconstrain(q0))

    def loss(p, step_key):
        return -objective(step_key, log_joint, _constrain(eqx.combine(p, static)), x)

    def step(carry, t):
        p, opt_state = carry
        neg_bound, grads = jax.value_and_grad(loss)(p, jax.random.fold_in(key, t))
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), -neg_bound

    (params, _), trace = jax.lax.scan(step, (params, optimizer.init(params)), jnp.arange(num_steps))
    return _constrain(eqx.combine(params, static)), OptimizeInfo(trace)
