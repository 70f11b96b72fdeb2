import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _sklearn_reference import sklearn_copy
from scipy import stats
from scipy.special import logsumexp

import lvm

K, D = 3, 2


def _mixture(covariance_type, seed=0):
    key = jax.random.key(seed)
    k1, k2, k3 = jax.random.split(key, 3)
    logits = jax.random.normal(k1, (K,))
    means = 3.0 * jax.random.normal(k2, (K, D))
    if covariance_type == "full":
        a = 0.5 * jax.random.normal(k3, (K, D, D))
        scale = (
            jnp.tril(a, -1)
            + jnp.exp(0.3 * jax.random.normal(k3, (K, D)))[..., None] * jnp.eye(D)[None]
        )
    elif covariance_type == "diag":
        scale = jnp.exp(0.3 * jax.random.normal(k3, (K, D)))
    else:
        scale = jnp.exp(0.3 * jax.random.normal(k3, (K,)))
    return lvm.GaussianMixture(logits, means, scale, covariance_type)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
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
    np.testing.assert_allclose(got, logsumexp(comps + log_pi, axis=1), rtol=1e-5)
    sk = sklearn_copy(gmm)
    np.testing.assert_allclose(got, sk.score_samples(np.asarray(x, np.float64)), rtol=1e-5)
    np.testing.assert_allclose(
        jax.vmap(gmm.responsibilities)(x), sk.predict_proba(np.asarray(x, np.float64)), atol=1e-5
    )


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
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


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="covariance_type"):
        lvm.GaussianMixture(jnp.zeros(2), jnp.zeros((2, 3)), jnp.ones(2), "tied")
    with pytest.raises(ValueError, match="scale"):
        lvm.GaussianMixture(jnp.zeros(2), jnp.zeros((2, 3)), jnp.ones((2, 3)), "full")
    with pytest.raises(ValueError, match="logits"):
        lvm.GaussianMixture(jnp.zeros(3), jnp.zeros((2, 3)), jnp.ones(2), "spherical")
    gmm = _mixture("diag")
    with pytest.raises(ValueError, match="x must have shape"):
        gmm.log_marginal(jnp.zeros(D + 1))
    with pytest.raises(ValueError, match="NaN or Inf"):
        gmm.log_marginal(jnp.array([0.0, jnp.inf]))
