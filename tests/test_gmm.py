import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _sklearn_reference import sklearn_copy
from scipy import stats
from scipy.special import logsumexp

import lvm

K, D = 3, 2


COV_TYPES = ["full", "tied", "diag", "spherical"]


def _eye_like(diag):
    """The D x D identity with diag's leading axes (explicit ranks: rank promotion raises)."""
    return jnp.eye(D).reshape((1,) * (diag.ndim - 1) + (D, D))


def _mixture(covariance_type, seed=0):
    """A random mixture; every draw has its own key (logits, means, off-diagonal, scales)."""
    logit_key, mean_key, lower_key, scale_key = jax.random.split(jax.random.key(seed), 4)
    logits = jax.random.normal(logit_key, (K,))
    means = 3.0 * jax.random.normal(mean_key, (K, D))
    shape = {"full": (K, D), "tied": (D,), "diag": (K, D), "spherical": (K,)}[covariance_type]
    scale = jnp.exp(0.3 * jax.random.normal(scale_key, shape))
    if covariance_type in ("full", "tied"):
        lower = 0.5 * jax.random.normal(lower_key, (*shape, D))
        scale = jnp.tril(lower, -1) + scale[..., None] * _eye_like(scale)
    return lvm.GaussianMixture(logits, means, scale, covariance_type)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_log_marginal_matches_scipy_and_sklearn(covariance_type):
    gmm = _mixture(covariance_type)
    x = 4.0 * jax.random.normal(jax.random.key(5), (20, D))
    got = np.asarray(jax.vmap(gmm.log_marginal)(x))
    covs = np.asarray(gmm.covariances, np.float64)
    log_pi = np.asarray(jax.nn.log_softmax(gmm.logits), np.float64)
    comps = np.stack(
        [
            stats.multivariate_normal(np.asarray(gmm.means[k]), covs[k]).logpdf(np.asarray(x))
            for k in range(K)
        ],
        axis=1,
    )
    # float32 against float64: log-densities of up to ~30 nats through a 2 x 2 triangular
    # solve; 1e-5 relative is 80 float32 eps.
    np.testing.assert_allclose(got, logsumexp(comps + log_pi, axis=1), rtol=1e-5)
    sk = sklearn_copy(gmm)
    np.testing.assert_allclose(got, sk.score_samples(np.asarray(x, np.float64)), rtol=1e-5)
    np.testing.assert_allclose(
        jax.vmap(gmm.responsibilities)(x), sk.predict_proba(np.asarray(x, np.float64)), atol=1e-5
    )


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_joint_and_posterior_are_consistent(covariance_type):
    gmm = _mixture(covariance_type)
    x = jnp.array([0.5, -1.0])
    joint = jax.vmap(lambda z: gmm.log_joint(x, z))(jnp.arange(K))
    np.testing.assert_allclose(jax.nn.logsumexp(joint), gmm.log_marginal(x), rtol=1e-6)
    np.testing.assert_allclose(joint - gmm.log_marginal(x), gmm.log_responsibilities(x), atol=1e-5)
    assert float(gmm.responsibilities(x).sum()) == pytest.approx(1.0, abs=1e-6)


def test_sampling_matches_parameters():
    gmm = _mixture("full")
    n = 60_000
    z, x = jax.vmap(gmm.sample)(jax.random.split(jax.random.key(7), n))
    p = np.asarray(jax.nn.softmax(gmm.logits))
    freq = np.bincount(np.asarray(z), minlength=K) / n
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / n))
    for k in range(K):
        xk = np.asarray(x[z == k])
        se = np.sqrt(np.diag(np.asarray(gmm.covariances[k])) / len(xk))
        assert np.all(np.abs(xk.mean(0) - np.asarray(gmm.means[k])) < 5 * se)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_negative_cholesky_diagonal_is_stored_canonically(covariance_type):
    # Sigma = L L^T is unchanged when a column of L flips sign (and sigma^2 when sigma does):
    # the mixture stores the factor with a non-negative diagonal and the same covariances.
    gmm = _mixture(covariance_type)
    if covariance_type in ("full", "tied"):
        flip = jnp.array([-1.0, 1.0]).reshape((1,) * (gmm.scale.ndim - 1) + (D,))
        flipped = gmm.scale * flip  # column 0 of every factor negated
        tril = np.broadcast_to(np.asarray(flipped, np.float64), (K, D, D))
        covs = tril @ np.swapaxes(tril, -1, -2)
    else:
        flipped = -gmm.scale
        var = np.asarray(flipped, np.float64) ** 2
        covs = (var[:, None] * np.ones(D) if var.ndim == 1 else var)[:, :, None] * np.eye(D)
    signed = lvm.GaussianMixture(gmm.logits, gmm.means, flipped, covariance_type)
    np.testing.assert_array_equal(signed.scale, gmm.scale)  # stored canonically
    x = 4.0 * jax.random.normal(jax.random.key(5), (20, D))
    comps = [
        stats.multivariate_normal(np.asarray(gmm.means[k]), covs[k]).logpdf(np.asarray(x))
        for k in range(K)
    ]
    log_pi = np.asarray(jax.nn.log_softmax(gmm.logits), np.float64)
    expected = logsumexp(np.stack(comps, 1) + log_pi, axis=1)
    np.testing.assert_allclose(jax.vmap(signed.log_marginal)(x), expected, rtol=1e-5)


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="covariance_type"):
        lvm.GaussianMixture(jnp.zeros(2), jnp.zeros((2, 3)), jnp.ones(2), "banana")
    with pytest.raises(ValueError, match="scale"):
        lvm.GaussianMixture(jnp.zeros(2), jnp.zeros((2, 3)), jnp.ones((2, 3)), "full")
    with pytest.raises(ValueError, match="logits"):
        lvm.GaussianMixture(jnp.zeros(3), jnp.zeros((2, 3)), jnp.ones(2), "spherical")
    gmm = _mixture("diag")
    with pytest.raises(ValueError, match="x must have shape"):
        gmm.log_marginal(jnp.zeros(D + 1))
    with pytest.raises(ValueError, match="NaN or Inf"):
        gmm.log_marginal(jnp.array([0.0, jnp.inf]))
