r"""Exact expectations of the ELBO and IWAE bounds under a finite-support proposal, by enumeration.

For k iid draws :math:`z_{1..k} \sim q` over a support of S values and a bound
:math:`F(z_{1..k})`, :math:`\mathbb E[F] = \sum_{(s_1..s_k)} \prod_i q(s_i)\,F(s_1..s_k)`:
a finite sum, differentiable by autodiff, so ``jax.grad`` of it is the exact gradient of
the expected bound, with respect to the model's and the proposal's parameters alike.

* ``method="tuples"``: the brute-force sum over all :math:`S^k` tuples.
* ``method="counts"``: both bounds are symmetric in the particles, so the sum runs over
  the :math:`\binom{k+S-1}{S-1}` count vectors n, weighted by the multinomial probability
  :math:`\frac{k!}{\prod_s n_s!}\prod_s q(s)^{n_s}`, with
  :math:`\mathcal L_k(n) = \log\frac1k\sum_s n_s\,w_s` and :math:`\mathrm{ELBO}_k(n) =
  \frac1k\sum_s n_s\,\ell_s`; feasible for k in the hundreds when S is small.

Written from the definitions with ``jax.nn.logsumexp``; it uses none of the estimators'
code, so that it can check them. The latent values of a :class:`lvm.Categorical` are
0..K-1, those of a :class:`lvm.Bernoulli` over d bits the :math:`2^d` binary vectors.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from lvm.distributions import Bernoulli, Categorical, WithBaseline
from lvm.types import Datum, Distribution, LogJoint, Scalar

BOUNDS = ("elbo", "iwae")
METHODS = ("tuples", "counts")


def support(proposal: Distribution) -> jax.Array:
    """Every latent value of ``proposal``, stacked on a leading axis of size S."""
    dist = proposal.distribution if isinstance(proposal, WithBaseline) else proposal
    if isinstance(dist, Categorical):
        return jnp.arange(dist.logits.shape[0])
    if isinstance(dist, Bernoulli):
        d = dist.logits.shape[0]
        bits = np.array(list(itertools.product((0, 1), repeat=d)))
        return jnp.asarray(bits, dist.logits.dtype)
    raise TypeError(f"no finite support known for {type(dist).__name__}")


def count_vectors(num_samples: int, support_size: int) -> np.ndarray:
    """All (M, S) vectors of non-negative integers summing to ``num_samples`` (stars and bars)."""
    rows = []
    for bars in itertools.combinations(range(num_samples + support_size - 1), support_size - 1):
        edges = (-1, *bars, num_samples + support_size - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(support_size)])
    return np.array(rows, np.int64)


def _on_support(log_joint, proposal, x):
    zs = support(proposal)
    log_q = jax.vmap(proposal.log_prob)(zs)
    log_w = jax.vmap(lambda z: log_joint(x, z))(zs) - log_q
    return log_q, log_w


def expected_bound(
    log_joint: LogJoint,
    proposal: Distribution,
    x: Datum,
    *,
    bound: str,
    num_samples: int,
    method: str = "counts",
) -> Scalar:
    r""":math:`\mathbb E_{z_{1..k} \sim q}[F]` exactly, F the k-sample ``"elbo"`` or ``"iwae"`` bound."""
    if bound not in BOUNDS or method not in METHODS:
        raise ValueError(f"bound must be in {BOUNDS} and method in {METHODS}")
    log_q, log_w = _on_support(log_joint, proposal, x)
    k, size = num_samples, log_q.shape[0]
    if method == "tuples":
        index = np.array(list(itertools.product(range(size), repeat=k)), np.int64)  # (S^k, k)
        log_prob = jnp.sum(log_q[index], axis=1)
        w = log_w[index]
        values = jnp.mean(w, 1) if bound == "elbo" else jax.nn.logsumexp(w, 1) - math.log(k)
        return jnp.sum(jnp.exp(log_prob) * values)
    counts = count_vectors(k, size)
    log_coef = math.lgamma(k + 1) - np.sum([[math.lgamma(n + 1) for n in row] for row in counts], 1)
    n = jnp.asarray(counts, log_q.dtype)
    # n_s log q_s with the convention 0 * log 0 = 0.
    log_prob = jnp.asarray(log_coef, log_q.dtype) + jnp.sum(
        jnp.where(n > 0, n * log_q[None, :], 0.0), 1
    )
    if bound == "elbo":
        values = n @ log_w / k
    else:
        log_n = jnp.where(n > 0, jnp.log(jnp.maximum(n, 1.0)), -jnp.inf)
        values = jax.nn.logsumexp(log_w[None, :] + log_n, axis=1) - math.log(k)
    return jnp.sum(jnp.exp(log_prob) * values)


def expected_model_bound(model, xs, *, bound: str, num_samples: int, method: str = "counts"):
    r"""The mean over the datapoints ``xs`` of :func:`expected_bound` under ``model.encode(x)``.

    ``jax.grad`` (or ``equinox.filter_grad``) of it w.r.t. ``model`` is the exact gradient of
    the expected bound, the reference for the estimators' mean.
    """

    def one(x):
        return expected_bound(
            model.log_joint, model.encode(x), x, bound=bound, num_samples=num_samples, method=method
        )

    return jnp.mean(jax.vmap(one)(xs))
