"""EM's starting point: k-means centres, hard assignments, one M-step (scikit-learn's
``init_params="kmeans"``).

Each point goes to its nearest centre (greedy k-means++ seeds refined by Lloyd's
iterations, :mod:`lvm.fit.kmeans`); the mixture is the weighted maximum-likelihood fit
to those hard assignments (:func:`lvm.fit._expfam.m_step`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from lvm._checks import check_choice, check_non_negative, check_positive_int
from lvm.fit import _expfam as ef
from lvm.fit import _standardize as stdz
from lvm.fit._data import check_finite_result, check_mixture_data
from lvm.fit.kmeans import kmeans as lloyd
from lvm.models.gmm import COVARIANCE_TYPES, GaussianMixture
from lvm.types import Key

KMEANS_TOL = 1e-4
"""Lloyd's iterations stop when the centres move by less than this times the data's mean
variance (scikit-learn's ``KMeans`` default tolerance), or when no assignment changes."""


def kmeans_setting(kmeans_iters, kmeans_local_trials) -> tuple[int, int | None]:
    """The checked, hashable (iterations, local trials) of the k-means start."""
    if isinstance(kmeans_iters, bool) or not isinstance(kmeans_iters, int | np.integer):
        raise TypeError(f"kmeans_iters must be a Python int >= 0, got {kmeans_iters!r}")
    if kmeans_iters < 0:
        raise ValueError(f"kmeans_iters must be >= 0, got {kmeans_iters}")
    iters = int(kmeans_iters)
    if kmeans_local_trials is not None:
        kmeans_local_trials = check_positive_int(kmeans_local_trials, "kmeans_local_trials")
    return iters, kmeans_local_trials


def initial(key, phi, weight, reg, scale, num_components, covariance_type, kmeans, layout):
    """The initial mixture in standardised coordinates, from prepared features (see ``_expfam.prepare``).

    ``kmeans`` is (Lloyd iterations, k-means++ local trials), static. k-means runs in the
    data's own units (the standardised features times ``scale``, the affine's per-dimension
    scale, over its largest entry): k-means is invariant to a shift and a common scale but
    not to rescaling one dimension, and scikit-learn clusters the data as given.
    """
    xs = phi[:, : reg.shape[0]]  # the standardised data are the first D features
    iters, trials = kmeans
    _, labels = lloyd(
        key,
        xs * (scale / jnp.max(scale))[None, :],
        num_components,
        num_iters=iters,
        tol=KMEANS_TOL,
        sample_weight=weight,
        num_local_trials=trials,
    )
    resp = jax.nn.one_hot(labels, num_components, dtype=xs.dtype)
    sums = ef.given_sums(resp, phi, weight, covariance_type, layout)
    return ef.m_step(sums, jnp.sum(weight), reg, covariance_type)


def initialize(
    key: Key,
    x: Float[ArrayLike, "N D"],
    *,
    num_components: int,
    covariance_type: str = "full",
    reg_covar: float = 1e-6,
    sample_weight: Float[ArrayLike, " N"] | None = None,
    kmeans_iters: int = 300,
    kmeans_local_trials: int | None = None,
) -> GaussianMixture:
    """The initial mixture :func:`lvm.fit.fit_em` starts a restart from (k-means -> hard M-step).

    Greedy k-means++ seeds (``kmeans_local_trials`` candidates per centre, ``None``:
    scikit-learn's 2 + floor(log K)), then at most ``kmeans_iters`` Lloyd iterations
    (stopping at a fixed point or on scikit-learn's centre-shift tolerance
    ``KMEANS_TOL``), in the data's own units; then the weighted M-step of the hard clusters.

    ``split(key, num_restarts)[r]`` passed here gives restart r's starting point. Raises
    ``ValueError`` if a hard cluster's covariance is not positive definite even with the
    floor ``reg_covar`` (in float32, a cluster of fewer than D + 1 points needs a floor
    above about 1e-7 times the data's variance).
    """
    k = check_positive_int(num_components, "num_components")
    check_choice(covariance_type, COVARIANCE_TYPES, "covariance_type")
    check_non_negative(reg_covar, "reg_covar")
    x, w = check_mixture_data(x, sample_weight, num_components=k)
    layout = ef.row_layout(x)
    start = kmeans_setting(kmeans_iters, kmeans_local_trials)
    p0 = _initialize_jit(key, x, w, reg_covar, k, covariance_type, start, layout)
    message = (
        f"the initial mixture is not finite: a hard cluster's covariance plus reg_covar={reg_covar:g} "
        "is not positive definite (fewer than D + 1 distinct points in it); increase reg_covar, "
        "use fewer components, or fit in float64"
    )
    return check_finite_result(p0, message)


@functools.partial(jax.jit, static_argnums=(4, 5, 6, 7))
def _initialize_jit(key, x, weight, reg_covar, num_components, covariance_type, kmeans, layout):
    weight = jnp.ones(x.shape[0], x.dtype) if weight is None else weight
    a, phi, weight, reg = ef.prepare(x, weight, reg_covar, covariance_type, layout)
    p0 = initial(key, phi, weight, reg, a.scale, num_components, covariance_type, kmeans, layout)
    return stdz.from_standard(p0, a)
