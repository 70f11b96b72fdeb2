r"""k-means++ seeding and Lloyd's k-means: the initialisation of EM.

k-means++ (Arthur & Vassilvitskii, 2007) draws the first centre with probability
proportional to the sample weight :math:`w_n`, and every next one with probability

.. math:: P(c = x_n) \propto w_n \, \min_j \lVert x_n - c_j \rVert^2,

so centres spread over the data. Lloyd's iterations then alternate hard
assignments :math:`z_n = \arg\min_k \lVert x_n - c_k \rVert^2` and weighted means.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from lvm.types import Key


def squared_distances(x: Float[Array, "N D"], centres: Float[Array, "K D"]) -> Float[Array, "N K"]:
    r""":math:`\lVert x_n - c_k \rVert^2` for all pairs, as one matrix product (clipped at 0)."""
    x2 = jnp.sum(x**2, -1)[:, None]
    c2 = jnp.sum(centres**2, -1)[None, :]
    return jnp.maximum(x2 - 2.0 * x @ centres.T + c2, 0.0)


def _log_or_uniform(p: Float[Array, " N"]) -> Float[Array, " N"]:
    """log p, or a uniform distribution if p is all zero (e.g. every point already a centre)."""
    positive = jnp.sum(p) > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, p, 1.0)), 0.0)


def kmeans_plusplus(
    key: Key,
    x: Float[Array, "N D"],
    num_clusters: int,
    *,
    sample_weight: Float[Array, " N"] | None = None,
    num_local_trials: int | None = 1,
) -> Float[Array, "K D"]:
    r"""k-means++ seeding: ``num_clusters`` centres chosen among the rows of x.

    ``num_local_trials`` L: each new centre is the best of L candidates drawn from the
    :math:`D^2` distribution, the one that leaves the smallest
    :math:`\sum_n w_n \min_j \lVert x_n - c_j \rVert^2` ("greedy" k-means++, as
    scikit-learn's ``kmeans_plusplus``); ``None`` is scikit-learn's choice
    :math:`L = 2 + \lfloor \log K \rfloor`, and 1 is plain k-means++.
    """
    n, d = x.shape
    w = jnp.ones(n, x.dtype) if sample_weight is None else sample_weight
    trials = 2 + int(np.log(num_clusters)) if num_local_trials is None else num_local_trials
    if trials < 1:
        raise ValueError(f"num_local_trials must be >= 1 or None, got {num_local_trials}")
    keys = jax.random.split(key, num_clusters)
    first = jax.random.categorical(keys[0], _log_or_uniform(w))
    centres = jnp.zeros((num_clusters, d), x.dtype).at[0].set(x[first])
    min_d2 = jnp.sum((x - x[first][None, :]) ** 2, -1)

    def add_centre(j, carry):
        centres, min_d2 = carry
        logits = _log_or_uniform(w * min_d2)
        if trials == 1:
            idx = jax.random.categorical(keys[j], logits)
            new_d2 = jnp.minimum(min_d2, jnp.sum((x - x[idx][None, :]) ** 2, -1))
        else:
            cand = jax.random.categorical(keys[j], logits, shape=(trials,))
            d2 = jnp.minimum(min_d2[None, :], squared_distances(x[cand], x))  # (L, N)
            best = jnp.argmin(d2 @ w)
            idx, new_d2 = cand[best], d2[best]
        return centres.at[j].set(x[idx]), new_d2

    centres, _ = jax.lax.fori_loop(1, num_clusters, add_centre, (centres, min_d2))
    return centres


def kmeans_objective(
    x: Float[Array, "N D"],
    centres: Float[Array, "K D"],
    *,
    sample_weight: Float[Array, " N"] | None = None,
) -> Float[Array, ""]:
    r"""The k-means objective :math:`\sum_n w_n \min_k \lVert x_n - c_k \rVert^2` (scikit-learn's inertia)."""
    d2 = jnp.min(squared_distances(x, centres), -1)
    return jnp.sum(d2) if sample_weight is None else sample_weight @ d2


def kmeans(
    key: Key,
    x: Float[Array, "N D"],
    num_clusters: int,
    *,
    num_iters: int | Int[Array, ""] = 10,
    tol: float | Float[Array, ""] = 0.0,
    sample_weight: Float[Array, " N"] | None = None,
    num_local_trials: int | None = 1,
) -> tuple[Float[Array, "K D"], Int[Array, " N"]]:
    r"""Lloyd's algorithm from k-means++ seeds (``num_local_trials``: :func:`kmeans_plusplus`); returns (centres, labels).

    At most ``num_iters`` iterations (assign every point to its nearest centre, move every
    centre to the weighted mean of its points). It stops earlier when no assignment
    changes (a fixed point: further iterations would change nothing, so the result is that
    of exactly ``num_iters`` iterations), or, as scikit-learn's ``KMeans(tol=...)``, when the
    centres moved by :math:`\sum_k \lVert c_k^{t} - c_k^{t-1} \rVert^2 \le`
    ``tol`` times the mean (weighted) variance of the features (``tol=0``: only the first
    rule). No iteration increases :func:`kmeans_objective`. A cluster that loses all its
    points keeps its previous centre. The returned labels are the nearest centres to the
    returned centres.
    """
    w = jnp.ones(x.shape[0], x.dtype) if sample_weight is None else sample_weight
    centres = kmeans_plusplus(
        key, x, num_clusters, sample_weight=w, num_local_trials=num_local_trials
    )
    mean = w @ x / jnp.sum(w)
    threshold = tol * jnp.mean(w @ (x - mean[None, :]) ** 2 / jnp.sum(w))

    def cond(carry):
        i, _, _, moving = carry
        return (i < num_iters) & moving

    def body(carry):
        i, centres, labels, _ = carry
        onehot = jax.nn.one_hot(labels, num_clusters, dtype=x.dtype) * w[:, None]
        count = jnp.sum(onehot, 0)
        sums = onehot.T @ x
        safe = jnp.where(count > 0, count, 1.0)[:, None]
        new = jnp.where(count[:, None] > 0, sums / safe, centres)
        new_labels = jnp.argmin(squared_distances(x, new), -1)
        shift = jnp.sum((new - centres) ** 2)
        moving = jnp.any(new_labels != labels) & (shift > threshold)
        return i + 1, new, new_labels, moving

    labels = jnp.argmin(squared_distances(x, centres), -1)
    init = (jnp.asarray(0), centres, labels, jnp.asarray(True))
    _, centres, labels, _ = jax.lax.while_loop(cond, body, init)
    return centres, labels
