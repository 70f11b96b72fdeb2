r"""Evaluating a trained amortized model the way papers do: test log p(x), test ELBO, active units.

Works for any model with ``log_joint`` and ``encode`` (:class:`lvm.types.AmortizedModel`)
and any data its likelihood accepts (datapoints of any shape; the model's own
``validate_data`` says what it can score). The log-likelihood is estimated by an estimator
passed as a value; the default is importance sampling with the encoder as proposal
(Burda et al., 2016, Sec. 5: k = 5,000),

.. math:: \log \hat p_k(x) = \log \frac1k \sum_{i=1}^k \frac{p(x, z_i)}{q(z_i \mid x)},
          \qquad z_i \sim q(z \mid x),

``IWAE(5000, chunk_size=100)``, streamed over chunks of particles so memory does not grow
with k; ``AIS(1000)`` anneals from q(z|x) to p(z|x) with HMC transitions instead
(:func:`lvm.ais`; Wu et al., 2017), a tighter lower bound at a higher cost. Datapoint i
always draws with ``fold_in(key, i)``: the numbers do not depend on the batch size or the
number of devices. Batches of datapoints are vmapped, split over the devices of a 1-D mesh,
and visited one at a time from Python, with a progress bar where asked for.
"""

import math
from typing import NamedTuple

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, Float
from tqdm.auto import tqdm

from lvm._checks import check_finite_tree, check_positive_int
from lvm.amortized import check_dataset, check_model, model_bound
from lvm.estimators import ELBO, IWAE
from lvm.sharding import (
    check_batch_size,
    constrain_batch,
    host_value,
    make_mesh,
    replicate,
    replicated,
)
from lvm.types import Key, Objective

#: The default estimator of log p(x): IS with k = 5,000 from q(z|x), 100 particles at a time.
DEFAULT_ESTIMATOR = IWAE(5000, chunk_size=100)

_DIVERGED = ": it cannot be evaluated (was it saved from a diverged training run?)"


def _pad_batches(x: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(num_batches, batch_size, ...) data, padded with copies of the first datapoint (a
    value the model can score), and the matching global indices."""
    n = x.shape[0]
    num_batches = -(-n // batch_size)
    padded = np.broadcast_to(x[:1], (num_batches * batch_size, *x.shape[1:])).copy()
    padded[:n] = x
    index = np.arange(num_batches * batch_size, dtype=np.int32)
    shape = (num_batches, batch_size, *x.shape[1:])
    return padded.reshape(shape), index.reshape(num_batches, batch_size)


@eqx.filter_jit
def _batch_bounds(objective, mesh, model, key, xb, ib):
    xb, ib = constrain_batch(xb, mesh), constrain_batch(ib, mesh)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(ib)
    values = jax.vmap(lambda k, x: model_bound(k, model, x, objective))(keys, xb)
    # Every process gets every value (one process: a no-op).
    return jax.lax.with_sharding_constraint(values, replicated(mesh))


def _prepare(model, x, mesh, who: str):
    check_model(model, who)
    check_finite_tree(model, "model", _DIVERGED)
    return check_dataset(model, x).astype(np.float32), replicate(model, mesh)


def bound(
    key: Key,
    model: eqx.Module,
    x: Float[Array, "n ..."] | np.ndarray,
    objective: Objective,
    *,
    batch_size: int = 100,
    mesh: Mesh | None = None,
    progress: bool = False,
    desc: str | None = None,
) -> np.ndarray:
    """Each datapoint's bound under ``objective`` (e.g. ``ELBO(1)``: the test ELBO), shape (N,).

    ``model``: any amortized model; ``x`` (N, ...): datapoints along the first axis.
    ``objective`` must be hashable (the frozen objective dataclasses are): it is a
    compile-time constant, so a new objective compiles once and is then cached.
    ``progress`` shows a bar over the batches (``desc`` labels it).
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    mesh = make_mesh() if mesh is None else mesh
    check_batch_size(batch_size, mesh)
    x, model = _prepare(model, x, mesh, "bound")
    batches, index = _pad_batches(x, batch_size)
    bar = tqdm(
        zip(batches, index, strict=True),
        total=len(batches),
        desc=desc or repr(objective),
        unit="batch",
        disable=not progress,
    )
    out = [host_value(_batch_bounds(objective, mesh, model, key, xb, ib)) for xb, ib in bar]
    return np.concatenate(out)[: x.shape[0]]


def log_px(
    key: Key,
    model: eqx.Module,
    x: Float[Array, "n ..."] | np.ndarray,
    estimator: Objective = DEFAULT_ESTIMATOR,
    *,
    batch_size: int = 50,
    mesh: Mesh | None = None,
    progress: bool = True,
) -> np.ndarray:
    r"""Estimated :math:`\log p(x_i)` for each datapoint, shape (N,); a lower bound in expectation.

    ``estimator``: any estimator of log p(x) as a value, called as
    ``estimator(key_i, model.log_joint, model.encode(x_i), x_i)``: ``IWAE(k, chunk_size=c)``
    (default k = 5,000, c = 100: importance sampling from q(z|x_i), c particles at a time,
    memory independent of k; ``chunk_size=None`` evaluates all k at once), or ``AIS(T)``
    (annealed importance sampling from q(z|x_i); it costs
    ``AIS.num_gradient_evaluations`` gradient evaluations of log p(x, z) per datapoint).
    ``progress`` shows a bar over the batches.

    The numbers do not depend on ``batch_size`` (datapoint i draws with ``fold_in(key, i)``),
    only the speed: a step evaluates ``batch_size * chunk_size`` particles at once, which
    should stay within the caches (``bench/vae_eval.py`` measures the trade-off).
    """
    return bound(
        key,
        model,
        x,
        estimator,
        batch_size=batch_size,
        mesh=mesh,
        progress=progress,
        desc=f"log p(x), {type(estimator).__name__}",
    )


def _has_mean(model, x) -> bool:
    q = eqx.filter_eval_shape(model.encode, x[0])
    return isinstance(getattr(q, "loc", None), jax.ShapeDtypeStruct)


@eqx.filter_jit
def _posterior_means(model, x):
    return jax.vmap(lambda xi: model.encode(xi).loc)(x)


def active_units(
    model: eqx.Module,
    x: Float[Array, "n ..."] | np.ndarray,
    *,
    threshold: float = 0.01,
    batch_size: int = 1000,
) -> tuple[int, np.ndarray]:
    r"""Burda et al.'s active units: :math:`A_u = \mathrm{Cov}_x\big(\mathbb E_{q(z|x)}[z_u]\big) > 0.01`.

    Needs a q(z|x) with a mean, ``encode(x).loc`` (the Gaussians); raises ``TypeError``
    otherwise. Returns the count and the per-unit variances :math:`A_u` (the shape of z).
    """
    check_model(model, "active_units")
    check_finite_tree(model, "model", _DIVERGED)
    x = check_dataset(model, x).astype(np.float32)
    if not _has_mean(model, x):
        raise TypeError(
            "active_units needs q(z|x) with a mean `loc` (a Gaussian encoder); "
            f"{type(model).__name__}.encode returns a distribution without one"
        )
    means = np.concatenate(
        [
            np.asarray(_posterior_means(model, x[i : i + batch_size]))
            for i in range(0, len(x), batch_size)
        ]
    )
    variances = means.astype(np.float64).var(axis=0)
    return int(np.sum(variances > threshold)), variances


class EvalResult(NamedTuple):
    """Means over the evaluated datapoints (nats per datapoint), with the standard error of log p(x).

    ``active_units`` is None where q(z|x) has no mean. ``estimator`` is the repr of the
    estimator of log p(x), e.g. ``IWAE(num_samples=5000, chunk_size=100, gradient='reparam')``.
    """

    log_px: float
    log_px_sem: float
    elbo: float
    active_units: int | None
    num_images: int
    estimator: str


def evaluate(
    key: Key,
    model: eqx.Module,
    x: Float[Array, "n ..."] | np.ndarray,
    estimator: Objective = DEFAULT_ESTIMATOR,
    *,
    batch_size: int = 50,
    mesh: Mesh | None = None,
    progress: bool = True,
) -> EvalResult:
    """Test log p(x) (:func:`log_px` with ``estimator``), the single-sample test ELBO and,
    where q(z|x) has a mean, the active units. ``split(key)`` gives the two keys."""
    lp_key, elbo_key = jax.random.split(key)
    lp = log_px(lp_key, model, x, estimator, batch_size=batch_size, mesh=mesh, progress=progress)
    elbos = bound(elbo_key, model, x, ELBO(1), batch_size=batch_size, mesh=mesh)
    x = check_dataset(model, x).astype(np.float32)
    units = active_units(model, x)[0] if _has_mean(model, x) else None
    return EvalResult(
        log_px=float(np.mean(lp)),
        log_px_sem=float(np.std(lp, ddof=1) / math.sqrt(len(lp))) if len(lp) > 1 else float("nan"),
        elbo=float(np.mean(elbos)),
        active_units=units,
        num_images=len(lp),
        estimator=repr(estimator),
    )
