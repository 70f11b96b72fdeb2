r"""Model selection and inference for a fitted mixture: log-likelihood, BIC, AIC, p(z|x).

With :math:`\hat\ell = \sum_n \log p(x_n)` the total log-likelihood of N points and
p the number of free parameters,

.. math:: \mathrm{BIC} = -2\hat\ell + p \log N, \qquad \mathrm{AIC} = -2\hat\ell + 2p

(Schwarz, 1978; Akaike, 1974); lower is better. A K-component mixture in D
dimensions has :math:`p = (K-1) + KD + K\,c` with c = D(D+1)/2 (full), D (diag)
or 1 (spherical) covariance parameters per component, and
:math:`p = (K-1) + KD + D(D+1)/2` for one tied covariance, as scikit-learn counts.
Everything here uses :meth:`GaussianMixture.log_marginal` and
:meth:`~GaussianMixture.log_responsibilities` (triangular solves on differences,
accurate far from the origin), vmapped over the data.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from lvm._checks import check_data
from lvm.fit._data import check_sample_weight
from lvm.models.gmm import GaussianMixture
from lvm.types import Scalar


def _data(params: GaussianMixture, x) -> Float[Array, "N D"]:
    return jnp.asarray(check_data(x, data_dim=params.data_dim), params.means.dtype)


def mean_log_likelihood(
    params: GaussianMixture,
    x: Float[ArrayLike, "N D"],
    *,
    sample_weight: Float[ArrayLike, " N"] | None = None,
) -> Scalar:
    r"""Mean log-likelihood :math:`\sum_n w_n \log p(x_n) / \sum_n w_n`, nats per point."""
    log_px = jax.vmap(params.log_marginal)(_data(params, x))
    if sample_weight is None:
        return jnp.mean(log_px)
    w = jnp.asarray(sample_weight, log_px.dtype)
    if not isinstance(w, jax.core.Tracer):
        w = check_sample_weight(w, log_px.shape[0], log_px.dtype)
    return w @ log_px / jnp.sum(w)


def num_parameters(params: GaussianMixture) -> int:
    """Free parameters p of the mixture: weights (K-1), means (KD), covariances (see above)."""
    k, d = params.num_components, params.data_dim
    covariance = {
        "full": k * d * (d + 1) // 2,
        "tied": d * (d + 1) // 2,
        "diag": k * d,
        "spherical": k,
    }[params.covariance_type]
    return (k - 1) + k * d + covariance


def bic(params: GaussianMixture, x: Float[ArrayLike, "N D"]) -> Scalar:
    r"""Bayesian information criterion :math:`-2\sum_n\log p(x_n) + p\log N` (lower is better)."""
    n = x.shape[0]
    return -2.0 * n * mean_log_likelihood(params, x) + num_parameters(params) * jnp.log(n)


def aic(params: GaussianMixture, x: Float[ArrayLike, "N D"]) -> Scalar:
    r"""Akaike information criterion :math:`-2\sum_n\log p(x_n) + 2p` (lower is better)."""
    n = x.shape[0]
    return -2.0 * n * mean_log_likelihood(params, x) + 2.0 * num_parameters(params)


def responsibilities(params: GaussianMixture, x: Float[ArrayLike, "N D"]) -> Float[Array, "N K"]:
    """Posterior p(z_n = k | x_n) for every point: the soft assignments (rows sum to 1)."""
    return jax.vmap(params.responsibilities)(_data(params, x))


def predict(params: GaussianMixture, x: Float[ArrayLike, "N D"]) -> Int[Array, " N"]:
    """Hard assignments argmax_k p(z_n = k | x_n)."""
    return jnp.argmax(jax.vmap(params.log_responsibilities)(_data(params, x)), -1)
