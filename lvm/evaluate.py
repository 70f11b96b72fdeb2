r"""Evaluating a trained VAE the way papers do: test log p(x), test ELBO, active units.

The log-likelihood is estimated by importance sampling with the encoder as proposal
(Burda et al., 2016, Sec. 5: k = 5,000),

.. math:: \log \hat p_k(x) = \log \frac1k \sum_{i=1}^k \frac{p(x, z_i)}{q(z_i \mid x)},
          \qquad z_i \sim q(z \mid x),

streamed over chunks of particles (:func:`lvm.importance_sampling` with ``chunk_size``),
so memory does not grow with k. Datapoint i always draws with ``fold_in(key, i)``: the
numbers do not depend on the batch size or the number of devices. Batches of datapoints
are vmapped, split over the devices of a 1-D mesh, and visited one at a time with
``lax.map``.
"""

import math
from typing import NamedTuple

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, Float

from lvm._checks import check_data, check_finite_tree, check_positive_int
from lvm.estimators import ELBO, IWAE
from lvm.estimators.objectives import Objective, model_bound
from lvm.sharding import check_batch_size, constrain_batch, make_mesh, replicate
from lvm.types import Key

_DIVERGED = ": it cannot be evaluated (was it saved from a diverged training run?)"


def _pad_batches(x: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(num_batches, batch_size, D) data, zero-padded, and the matching global indices."""
    n = x.shape[0]
    num_batches = -(-n // batch_size)
    padded = np.zeros((num_batches * batch_size, x.shape[1]), x.dtype)
    padded[:n] = x
    index = np.arange(num_batches * batch_size, dtype=np.int32)
    return padded.reshape(num_batches, batch_size, -1), index.reshape(num_batches, batch_size)


@eqx.filter_jit
def _bounds(objective, mesh, model, key, batches, index):
    def one_batch(inputs):
        xb, ib = inputs
        xb, ib = constrain_batch(xb, mesh), constrain_batch(ib, mesh)
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(ib)
        return jax.vmap(lambda k, x: model_bound(objective, k, model, x))(keys, xb)

    return jax.lax.map(one_batch, (batches, index))


def bound(
    key: Key,
    model: eqx.Module,
    x: Float[Array, "n dim"] | np.ndarray,
    objective: Objective,
    *,
    batch_size: int = 100,
    mesh: Mesh | None = None,
) -> np.ndarray:
    """Each datapoint's bound under ``objective`` (e.g. ``ELBO(1)``: the test ELBO), shape (N,).

    ``objective`` must be hashable (the frozen objective dataclasses are): it is a
    compile-time constant, so a new objective compiles once and is then cached.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    mesh = make_mesh() if mesh is None else mesh
    check_batch_size(batch_size, mesh)
    check_finite_tree(model, "model", _DIVERGED)
    x = check_data(x, data_dim=model.config.data_dim, unit_interval=True)
    batches, index = _pad_batches(x.astype(np.float32), batch_size)
    out = _bounds(objective, mesh, replicate(model, mesh), key, batches, index)
    return np.asarray(out).reshape(-1)[: x.shape[0]]


def log_px(
    key: Key,
    model: eqx.Module,
    x: Float[Array, "n dim"] | np.ndarray,
    *,
    num_samples: int = 5000,
    chunk_size: int | None = 100,
    batch_size: int = 100,
    mesh: Mesh | None = None,
) -> np.ndarray:
    r"""Importance-sampled :math:`\log \hat p_k(x_i)` for each datapoint, shape (N,).

    Proposal q(z|x_i) from the encoder; ``chunk_size`` particles at a time (memory
    independent of ``num_samples``); ``chunk_size=None`` evaluates all k at once.
    """
    return bound(key, model, x, IWAE(num_samples, chunk_size), batch_size=batch_size, mesh=mesh)


@eqx.filter_jit
def _posterior_means(model, x):
    return jax.vmap(lambda xi: model.encode(xi).loc)(x)


def active_units(
    model: eqx.Module,
    x: Float[Array, "n dim"] | np.ndarray,
    *,
    threshold: float = 0.01,
    batch_size: int = 1000,
) -> tuple[int, np.ndarray]:
    r"""Burda et al.'s active units: :math:`A_u = \mathrm{Cov}_x\big(\mathbb E_{q(z|x)}[z_u]\big) > 0.01`.

    Returns the count and the per-unit variances :math:`A_u` (shape ``(latent_dim,)``).
    """
    check_finite_tree(model, "model", _DIVERGED)
    x = check_data(x, data_dim=model.config.data_dim, unit_interval=True).astype(np.float32)
    means = np.concatenate(
        [
            np.asarray(_posterior_means(model, x[i : i + batch_size]))
            for i in range(0, len(x), batch_size)
        ]
    )
    variances = means.astype(np.float64).var(axis=0)
    return int(np.sum(variances > threshold)), variances


class EvalResult(NamedTuple):
    """Means over the evaluated images (nats per image), with the standard error of log p(x)."""

    log_px: float
    log_px_sem: float
    elbo: float
    active_units: int
    num_samples: int
    num_images: int


def evaluate(
    key: Key,
    model: eqx.Module,
    x: Float[Array, "n dim"] | np.ndarray,
    *,
    num_samples: int = 5000,
    chunk_size: int | None = 100,
    batch_size: int = 100,
    mesh: Mesh | None = None,
) -> EvalResult:
    """Test log p(x) (k = ``num_samples``), the single-sample test ELBO and the active units."""
    lp_key, elbo_key = jax.random.split(key)
    lp = log_px(
        lp_key,
        model,
        x,
        num_samples=num_samples,
        chunk_size=chunk_size,
        batch_size=batch_size,
        mesh=mesh,
    )
    elbos = bound(elbo_key, model, x, ELBO(1), batch_size=batch_size, mesh=mesh)
    units, _ = active_units(model, x)
    return EvalResult(
        log_px=float(np.mean(lp)),
        log_px_sem=float(np.std(lp, ddof=1) / math.sqrt(len(lp))) if len(lp) > 1 else float("nan"),
        elbo=float(np.mean(elbos)),
        active_units=units,
        num_samples=num_samples,
        num_images=len(lp),
    )
