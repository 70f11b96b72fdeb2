import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import lvm


@pytest.fixture
def model():
    return lvm.LinearGaussian.random(jax.random.key(0), latent_dim=3, data_dim=6, noise_std=0.7)


def test_log_marginal_matches_scipy(model):
    _, x = jax.vmap(model.sample)(jax.random.split(jax.random.key(1), 4))
    w, b, s = (np.asarray(a, np.float64) for a in (model.weight, model.bias, model.noise_std))
    ref = stats.multivariate_normal(b, w @ w.T + s**2 * np.eye(6)).logpdf(np.asarray(x))
    np.testing.assert_allclose(jax.vmap(model.log_marginal)(x), ref, rtol=1e-5)


def test_posterior_is_bayes_rule(model):
    """Bayes by brute force: log p(z|x) = log p(x,z) - log p(x) at any z."""
    _, x = model.sample(jax.random.key(2))
    post = model.posterior(x)
    z = jax.random.normal(jax.random.key(3), (5, 3))
    lhs = jax.vmap(post.log_prob)(z)
    rhs = jax.vmap(lambda zi: model.log_joint(x, zi))(z) - model.log_marginal(x)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-4, atol=1e-4)


def test_sample_moments_match_marginal(model):
    _, x = jax.vmap(model.sample)(jax.random.split(jax.random.key(4), 50_000))
    cov = model.weight @ model.weight.T + model.noise_std**2 * jnp.eye(6)
    se = jnp.sqrt(jnp.diag(cov) / 50_000)
    assert jnp.all(jnp.abs(x.mean(0) - model.bias) < 5 * se)
    np.testing.assert_allclose(np.cov(np.asarray(x).T), cov, atol=0.05)


def test_bad_shapes_raise(model):
    with pytest.raises(ValueError, match="x must have shape"):
        model.log_marginal(jnp.zeros(5))
    with pytest.raises(ValueError, match="z must have shape"):
        model.log_joint(jnp.zeros(6), jnp.zeros(2))
    with pytest.raises(ValueError, match="bias"):
        lvm.LinearGaussian(jnp.zeros((6, 3)), jnp.zeros(5), 1.0)


def test_non_finite_data_raises(model):
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.log_marginal(jnp.full(6, jnp.nan))
