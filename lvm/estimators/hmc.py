r"""Hamiltonian Monte Carlo (Neal, 2011): one leapfrog trajectory and a Metropolis test.

For a target :math:`\pi(z) \propto e^{\log \pi(z)}`, momentum :math:`p \sim \mathcal N(0, I)`
and the Hamiltonian :math:`H(z, p) = -\log \pi(z) + \tfrac12 \lVert p \rVert^2`, one step runs
L leapfrog steps of size :math:`\epsilon`,

.. math:: p \leftarrow p + \tfrac\epsilon2 \nabla \log\pi(z), \quad
          z \leftarrow z + \epsilon p, \quad
          p \leftarrow p + \tfrac\epsilon2 \nabla \log\pi(z) \qquad (\times L),

and accepts the end point with probability :math:`\min(1, e^{H(z, p) - H(z', p')})`. The
integrator is reversible and volume-preserving, so the step leaves :math:`\pi` invariant for
any :math:`\epsilon > 0` and :math:`L \ge 1`. A trajectory that diverges (NaN or Inf energy)
is rejected.

The kernel is blackjax's shape, ``init`` then ``step(key, state, ...) -> (HMCState, HMCInfo)``,
with one difference: it takes the *value-and-gradient* function of the target, with the
contract of ``jax.value_and_grad(log_density, has_aux=True)``, and keeps the auxiliary output
of the last evaluation in the state. Annealed importance sampling keeps the two terms of its
tempered density there, so that moving to the next temperature costs no extra gradient.
:func:`value_and_grad` wraps a plain log-density.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from lvm.types import Key, Scalar

#: ``value_and_grad_fn(z) -> ((log_density, aux), grad)``, as ``jax.value_and_grad(f, has_aux=True)``.
ValueAndGrad = Callable[[Float[Array, " d"]], tuple[tuple[Scalar, Any], Float[Array, " d"]]]


class HMCState(NamedTuple):
    """The chain's position and the target evaluated there (value, gradient, auxiliary output)."""

    position: Float[Array, " d"]
    log_density: Scalar
    grad: Float[Array, " d"]
    aux: Any


class HMCInfo(NamedTuple):
    """Diagnostics of one step: the Metropolis acceptance probability and the outcome."""

    acceptance_rate: Scalar
    is_accepted: Bool[Array, ""]
    energy_change: Scalar


def value_and_grad(log_density: Callable[[Float[Array, " d"]], Scalar]) -> ValueAndGrad:
    """The kernel's value-and-gradient function of a plain log-density (no auxiliary output)."""
    return jax.value_and_grad(lambda z: (log_density(z), None), has_aux=True)


def init(position: Float[Array, " d"], value_and_grad_fn: ValueAndGrad) -> HMCState:
    """Evaluate the target at ``position``."""
    (log_density, aux), grad = value_and_grad_fn(position)
    return HMCState(position, log_density, grad, aux)


def leapfrog(
    state: HMCState,
    momentum: Float[Array, " d"],
    value_and_grad_fn: ValueAndGrad,
    *,
    step_size: Scalar | float,
    num_leapfrog_steps: int,
) -> tuple[HMCState, Float[Array, " d"]]:
    """``num_leapfrog_steps`` velocity-Verlet steps: one gradient evaluation each."""

    def one_step(carry, _):
        state, p = carry
        p = p + 0.5 * step_size * state.grad
        z = state.position + step_size * p
        (log_density, aux), grad = value_and_grad_fn(z)
        p = p + 0.5 * step_size * grad
        return (HMCState(z, log_density, grad, aux), p), None

    (state, momentum), _ = jax.lax.scan(
        one_step, (state, momentum), None, length=num_leapfrog_steps
    )
    return state, momentum


def step(
    key: Key,
    state: HMCState,
    value_and_grad_fn: ValueAndGrad,
    *,
    step_size: Scalar | float,
    num_leapfrog_steps: int,
) -> tuple[HMCState, HMCInfo]:
    """One HMC transition leaving the target of ``value_and_grad_fn`` invariant.

    ``state`` must hold that target's value and gradient at ``state.position`` (from
    :func:`init`, a previous ``step``, or built by the caller from cached terms).
    """
    momentum_key, accept_key = jax.random.split(key)
    momentum = jax.random.normal(momentum_key, state.position.shape, state.position.dtype)
    proposal, end_momentum = leapfrog(
        state,
        momentum,
        value_and_grad_fn,
        step_size=step_size,
        num_leapfrog_steps=num_leapfrog_steps,
    )
    energy = -state.log_density + 0.5 * jnp.sum(momentum**2)
    proposal_energy = -proposal.log_density + 0.5 * jnp.sum(end_momentum**2)
    energy_change = proposal_energy - energy
    # A divergent trajectory (NaN/Inf energy) has acceptance probability 0.
    log_accept = jnp.where(jnp.isfinite(energy_change), jnp.minimum(0.0, -energy_change), -jnp.inf)
    is_accepted = jnp.log(jax.random.uniform(accept_key, dtype=log_accept.dtype)) < log_accept
    new_state = jax.tree.map(lambda new, old: jnp.where(is_accepted, new, old), proposal, state)
    return new_state, HMCInfo(jnp.exp(log_accept), is_accepted, energy_change)
