"""The numerical tricks, each written once: log-mean-exp (plain, streaming, leave-one-out), ESS,
and the Gaussian log-density."""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from lvm._checks import check_positive_int
from lvm.types import Key, Keys, Scalar

#: :math:`\log 2\pi`, the constant of every Gaussian density.
LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_density(squared_distance, log_det_scale, dim: int):
    r""":math:`\log \mathcal N(x; \mu, LL^\top) = -\tfrac12 \lVert u \rVert^2 - \log|\det L| - \tfrac d2 \log 2\pi`.

    ``squared_distance`` is :math:`\lVert u \rVert^2 = (x-\mu)^\top \Sigma^{-1} (x-\mu)`
    with :math:`u = L^{-1}(x - \mu)`, ``log_det_scale`` is
    :math:`\log|\det L| = \tfrac12 \log|\Sigma|`, ``dim`` is d. Each caller whitens in the
    way its covariance allows (a division, a triangular solve, Woodbury); arrays broadcast,
    e.g. one value per mixture component.
    """
    return -0.5 * squared_distance - log_det_scale - 0.5 * dim * LOG_2PI


def log_mean_exp(log_w: Float[Array, "k ..."], axis: int = 0) -> Float[Array, "..."]:
    r"""Stable :math:`\log \frac1k \sum_{i=1}^k e^{\ell_i}` along ``axis``.

    Computed as ``logsumexp(log_w, axis) - log k``; never exponentiates ``log_w``
    without first subtracting its maximum.
    """
    k = log_w.shape[axis]
    return jax.nn.logsumexp(log_w, axis=axis) - math.log(k)


def effective_sample_size(log_w: Float[Array, " k"]) -> Scalar:
    r"""Kish's effective sample size of importance weights given in log space.

    .. math:: \mathrm{ESS} = \frac{(\sum_i w_i)^2}{\sum_i w_i^2}
              = \exp\big(2\,\mathrm{lse}(\ell) - \mathrm{lse}(2\ell)\big),

    between 1 (one weight dominates) and k (all weights equal); 0 when every weight is
    zero (all log-weights -inf), where the ratio is 0/0.
    """
    lse = jax.nn.logsumexp(log_w)
    finite = jnp.isfinite(lse)
    safe = jnp.where(finite, log_w, 0.0)
    ess = jnp.exp(2.0 * jax.nn.logsumexp(safe) - jax.nn.logsumexp(2.0 * safe))
    return jnp.where(finite, ess, 0.0)


def leave_one_out_log_sum_exp(log_w: Float[Array, " k"]) -> Float[Array, " k"]:
    r""":math:`\log \sum_{j \ne i} e^{\ell_j}` for every i, in O(k), without cancellation.

    With :math:`e_j = e^{\ell_j - \max \ell}` and :math:`s = \sum_j e_j`, entry i is
    :math:`\max\ell + \log(s - e_i)`, except at the largest value, whose entry is summed
    directly over the others. Away from the maximum :math:`s - e_i \ge 1` (the maximum's own
    term stays in), so the subtraction loses at most a factor 2 of relative precision; at
    the maximum, where :math:`s - e_{\max}` could cancel to 0 when one weight holds nearly
    all the mass, no subtraction is made.
    """
    top = jnp.max(log_w)
    shift = jnp.where(jnp.isfinite(top), top, 0.0)
    scaled = jnp.exp(log_w - shift)
    is_top = jnp.arange(log_w.shape[0]) == jnp.argmax(log_w)
    others_of_top = jnp.sum(jnp.where(is_top, 0.0, scaled))
    rest = jnp.where(is_top, others_of_top, jnp.sum(scaled) - scaled)
    return shift + jnp.log(rest)


def particle_keys(key: Key, num_samples: int, start=0) -> Keys:
    r"""The keys of particles ``start, ..., start + num_samples - 1``: particle i uses ``fold_in(key, i)``.

    With jax's default (partitionable) threefry, ``fold_in(key, i)`` equals
    ``split(key, n)[i]`` for every n > i, so these are the keys ``split`` would give; a
    chunk of particles derives its own keys without the k keys being held at once.
    """
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(start + jnp.arange(num_samples))


def merge_log_sum_exp(carry, chunk):
    r"""Fold a chunk of log-values into a running log-sum-exp state ``(m, s)``.

    The state stands for :math:`m + \log s = \log \sum_i e^{\ell_i}` over the values folded
    in so far, with m their maximum (``(-inf, 0)`` for none, ``(v, 1)`` for one value v):
    every exponent is taken relative to the running maximum, so nothing overflows.
    """
    running_max, running_sum = carry
    new_max = jnp.maximum(running_max, jnp.max(chunk))
    # All -inf so far: keep the shift finite so that exp() gives 0, not NaN.
    shift = jnp.where(jnp.isfinite(new_max), new_max, 0.0)
    running_sum = running_sum * jnp.exp(running_max - shift) + jnp.sum(jnp.exp(chunk - shift))
    return new_max, running_sum


def particle_log_mean_exp(
    particle: Callable[[Key], Scalar],
    key: Key,
    *,
    num_samples: int,
    chunk_size: int | None = None,
) -> Scalar:
    r"""Log-mean-exp of ``particle(key_i)`` over ``num_samples`` particle keys.

    .. math:: \log \frac1k \sum_{i=1}^k e^{\ell(\mathrm{key}_i)},
              \quad \mathrm{key}_i = \mathrm{fold\_in}(\mathrm{key}, i)
              \ (= \mathrm{split}(\mathrm{key}, k)[i])

    With ``chunk_size=None`` all k particles are evaluated at once with ``vmap``.
    Otherwise they are evaluated ``chunk_size`` at a time inside ``lax.scan``
    with a running log-sum-exp; each chunk derives its own keys
    (:func:`particle_keys`), so peak memory is that of one chunk whatever k is, and
    the particles (and so the result, up to float round-off) are those of the
    unchunked call. The chunk body is rematerialised under ``jax.grad`` so gradient
    memory does not grow with k either.
    """
    num_samples = check_positive_int(num_samples)
    if chunk_size is None or chunk_size >= num_samples:
        return log_mean_exp(jax.vmap(particle)(particle_keys(key, num_samples)))
    chunk_size = check_positive_int(chunk_size, "chunk_size")

    num_chunks, remainder = divmod(num_samples, chunk_size)
    dtype = jnp.result_type(jax.eval_shape(particle, key).dtype)
    init = (jnp.array(-jnp.inf, dtype), jnp.array(0.0, dtype))

    @jax.checkpoint
    def body(carry, start):
        return merge_log_sum_exp(
            carry, jax.vmap(particle)(particle_keys(key, chunk_size, start))
        ), None

    carry, _ = jax.lax.scan(body, init, chunk_size * jnp.arange(num_chunks))
    if remainder:
        tail = particle_keys(key, remainder, num_chunks * chunk_size)
        carry = merge_log_sum_exp(carry, jax.vmap(particle)(tail))
    running_max, running_sum = carry
    return running_max + jnp.log(running_sum) - math.log(num_samples)
