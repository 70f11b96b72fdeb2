"""BIC, AIC, log-likelihood and responsibilities against scikit-learn with the same parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _sklearn_reference import sklearn_copy

import lvm
from lvm.fit.selection import (
    aic,
    bic,
    mean_log_likelihood,
    num_parameters,
    predict,
    responsibilities,
)


def _mixture(covariance_type, k=3, d=2):
    """A random mixture; every draw has its own key (logits, means, off-diagonal, scales)."""
    logit_key, mean_key, lower_key, scale_key = jax.random.split(jax.random.key(11), 4)
    logits = jax.random.normal(logit_key, (k,))
    means = 3.0 * jax.random.normal(mean_key, (k, d))
    shape = {"full": (k, d), "tied": (d,), "diag": (k, d), "spherical": (k,)}[covariance_type]
    scale = jnp.exp(0.3 * jax.random.normal(scale_key, shape))
    if covariance_type in ("full", "tied"):
        lower = 0.4 * jax.random.normal(lower_key, (*shape, d))
        eye = jnp.eye(d).reshape((1,) * (len(shape) - 1) + (d, d))
        scale = jnp.tril(lower, -1) + scale[..., None] * eye
    return lvm.GaussianMixture(logits, means, scale, covariance_type)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_selection_matches_sklearn(covariance_type):
    gmm = _mixture(covariance_type)
    sk = sklearn_copy(gmm)
    x = np.asarray(jax.vmap(gmm.sample)(jax.random.split(jax.random.key(2), 200))[1])
    x64 = x.astype(np.float64)
    assert num_parameters(gmm) == sk._n_parameters()
    # float32 against scikit-learn's float64 on the same points: 1e-5 relative = 80 eps.
    np.testing.assert_allclose(mean_log_likelihood(gmm, x), sk.score(x64), rtol=1e-5)
    np.testing.assert_allclose(bic(gmm, x), sk.bic(x64), rtol=1e-5)
    np.testing.assert_allclose(aic(gmm, x), sk.aic(x64), rtol=1e-5)
    resp = responsibilities(gmm, x)
    np.testing.assert_allclose(resp, sk.predict_proba(x64), atol=1e-5)
    np.testing.assert_allclose(resp.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(predict(gmm, x), sk.predict(x64))


def test_weighted_log_likelihood_is_a_weighted_mean():
    gmm = _mixture("full")
    x = np.random.default_rng(0).normal(size=(10, 2)).astype(np.float32)
    w = np.arange(10, dtype=np.float32)
    per_point = np.asarray(jax.vmap(gmm.log_marginal)(jnp.asarray(x)))
    np.testing.assert_allclose(
        mean_log_likelihood(gmm, x, sample_weight=w), (w * per_point).sum() / w.sum(), rtol=1e-6
    )


def test_selection_rejects_wrong_dimension_and_nan():
    gmm = _mixture("diag")
    with pytest.raises((ValueError, TypeError)):
        bic(gmm, np.zeros((5, 3), np.float32))
    bad = np.zeros((5, 2), np.float32)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mean_log_likelihood(gmm, bad)
