r"""Evaluating a trained VAE the way papers do: test log p(x), test ELBO, active units.

The log-likelihood is estimated by importance sampling with the encoder as proposal
(Burda et al., 2016, Sec. 5: k = 5,000),

.. math:: \log \hat p_k(x) = \log \frac1k \sum_{i=1}^k \frac{p(x, z_i)}{q(z_i \mid x)},
          \qquad z_i \sim q(z \mid x),

streamed over chunks of particles (:func:`lvm.importance_sampling` with ``chunk_size``),
so memory does not grow with k. ``method="ais"`` estimates it instead by annealed
importance sampling from q(z|x) to p(z|x) with HMC transitions (:func:`lvm.ais`; Wu et
al., 2017), a tighter lower bound at a higher cost. Datapoint i always draws with
``fold_in(key, i)``: the numbers do not depend on the batch size or the number of
devices. Batches of datapoints are vmapped, split over the devices of a 1-D mesh, and
visited one at a time from Python, with a progress bar where asked for.
"""

import math
from typing import NamedTuple

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, Float
from tqdm.auto import tqdm

from lvm._checks import check_data, check_finite_tree, check_positive_int
from lvm.estimators import AIS, ELBO, IWAE
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
def _batch_bounds(objective, mesh, model, key, xb, ib):
    xb, ib = constrain_batch(xb, mesh), constrain_batch(ib, mesh)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(ib)
    return jax.vmap(lambda k, x: model_bound(objective, k, model, x))(keys, xb)


def bound(
    key: Key,
    model: eqx.Module,
    x: Float[Array, "n dim"] | np.ndarray,
    objective: Objective,
    *,
    batch_size: int = 100,
    mesh: Mesh | None = None,
    progress: bool = False,
    desc: str | None = None,
) -> np.ndarray:
    """Each datapoint's bound under ``objective`` (e.g. ``ELBO(1)``: the test ELBO), shape (N,).

    ``objective`` must be hashable (the frozen objective dataclasses are): it is a
    compile-time constant, so a new objective compiles once and is then cached.
    ``progress`` shows a bar over the batches (``desc`` labels it).
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    mesh = make_mesh() if mesh is None else mesh
    check_batch_size(batch_size, mesh)
    check_finite_tree(model, "model", _DIVERGED)
    x = check_data(x, data_dim=model.config.data_dim, unit_interval=True)
    batches, index = _pad_batches(x.astype(np.float32), batch_size)
    model = replicate(model, mesh)
    bar = tqdm(
        zip(batches, index, strict=True),
        total=len(batches),
        desc=desc or repr(objective),
        unit="batch",
        disable=not progress,
    )
    out = [np.asarray(_batch_bounds(objective, mesh, model, key, xb, ib)) for xb, ib in bar]
    return np.concatenate(out)[: x.shape[0]]


def log_px_estimator(
    method: str = "is",
    *,
    num_samples: int = 5000,
    chunk_size: int | None = 100,
    num_steps: int = 1000,
    num_chains: int = 1,
    num_leapfrog_steps: int = 10,
) -> IWAE | AIS:
    """The estimator of log p(x) as a value: ``IWAE(num_samples, chunk_size)`` or ``AIS(...)``.

    ``"is"``: importance sampling with k = ``num_samples`` draws from q(z|x). ``"ais"``:
    AIS from q(z|x) over ``num_steps`` temperatures, ``num_chains`` chains,
    ``num_leapfrog_steps`` leapfrog steps per HMC transition.
    """
    if method == "is":
        return IWAE(num_samples, chunk_size)
    if method == "ais":
        return AIS(num_steps, num_chains, num_leapfrog_steps)
    raise ValueError(f"method must be 'is' or 'ais', got {method!r}")


def log_px(
    key: Key,
    model: eqx.Module,
    x: Float[Array, "n dim"] | np.ndarray,
    *,
    method: str = "is",
    num_samples: int = 5000,
    chunk_size: int | None = 100,
    num_steps: int = 1000,
    num_chains: int = 1,
    num_leapfrog_steps: int = 10,
    batch_size: int = 50,
    mesh: Mesh | None = None,
    progress: bool = True,
) -> np.ndarray:
    r"""Estimated :math:`\log p(x_i)` for each datapoint, shape (N,); a lower bound in expectation.

    ``method="is"`` (default): importance sampling, :math:`\log \hat p_k(x_i)`, proposal
    q(z|x_i) from the encoder, ``chunk_size`` particles at a time (memory independent of
    ``num_samples``; ``chunk_size=None`` evaluates all k at once). ``method="ais"``:
    :func:`lvm.ais` from q(z|x_i) (see :func:`log_px_estimator`), which costs
    ``num_chains * ((num_steps - 1) * num_leapfrog_steps + 1)`` gradient evaluations of
    log p(x, z) per image. ``progress`` shows a bar over the batches.

    The numbers do not depend on ``batch_size`` (datapoint i draws with ``fold_in(key, i)``),
    only the speed: a step evaluates ``batch_size * chunk_size`` particles, and 5,000 of them
    (784 logits each, 16 MB) stay in cache where 50,000 do not. On the 2-core CPU the
    defaults (50 x 100) ran at 52-60 images per second with k = 5,000, against 22 for
    100 x 500 (``bench/vae_eval.py``).
    """
    estimator = log_px_estimator(
        method,
        num_samples=num_samples,
        chunk_size=chunk_size,
        num_steps=num_steps,
        num_chains=num_chains,
        num_leapfrog_steps=num_leapfrog_steps,
    )
    return bound(
        key,
        model,
        x,
        estimator,
        batch_size=batch_size,
        mesh=mesh,
        progress=progress,
        desc=f"log p(x), {method.upper()}",
    )


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
    """Means over the evaluated images (nats per image), with the standard error of log p(x).

    ``num_samples`` is the number of particles per image: IS samples, or AIS chains.
    """

    log_px: float
    log_px_sem: float
    elbo: float
    active_units: int
    num_samples: int
    num_images: int
    #: ``"is"`` or ``"ais"``, and the estimator's settings, e.g. ``AIS(num_steps=1000, ...)``.
    method: str = "is"
    estimator: str = ""


def evaluate(
    key: Key,
    model: eqx.Module,
    x: Float[Array, "n dim"] | np.ndarray,
    *,
    method: str = "is",
    num_samples: int = 5000,
    chunk_size: int | None = 100,
    num_steps: int = 1000,
    num_chains: int = 1,
    num_leapfrog_steps: int = 10,
    batch_size: int = 50,
    mesh: Mesh | None = None,
    progress: bool = True,
) -> EvalResult:
    """Test log p(x) (:func:`log_px` by ``method``), the single-sample test ELBO and the active units."""
    lp_key, elbo_key = jax.random.split(key)
    settings = dict(
        num_samples=num_samples,
        chunk_size=chunk_size,
        num_steps=num_steps,
        num_chains=num_chains,
        num_leapfrog_steps=num_leapfrog_steps,
    )
    estimator = log_px_estimator(method, **settings)
    lp = log_px(
        lp_key,
        model,
        x,
        method=method,
        **settings,
        batch_size=batch_size,
        mesh=mesh,
        progress=progress,
    )
    elbos = bound(elbo_key, model, x, ELBO(1), batch_size=batch_size, mesh=mesh)
    units, _ = active_units(model, x)
    return EvalResult(
        log_px=float(np.mean(lp)),
        log_px_sem=float(np.std(lp, ddof=1) / math.sqrt(len(lp))) if len(lp) > 1 else float("nan"),
        elbo=float(np.mean(elbos)),
        active_units=units,
        num_samples=num_samples if method == "is" else num_chains,
        num_images=len(lp),
        method=method,
        estimator=repr(estimator),
    )
