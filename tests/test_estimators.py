"""Estimators against the linear-Gaussian model, where log p(x) and p(z|x) are exact."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import lvm
from lvm.testing import (
    log_bias_control_variate,
    mean_se,
    scaled_posterior_relative_variance,
    var_se,
)

D_LATENT, D_DATA = 2, 5


@pytest.fixture(scope="module")
def model():
    return lvm.LinearGaussian.random(
        jax.random.key(0), latent_dim=D_LATENT, data_dim=D_DATA, noise_std=0.6
    )


@pytest.fixture(scope="module")
def x(model):
    return model.sample(jax.random.key(1))[1]


def _inflated(post, s):
    """q = N(posterior mean, s^2 * posterior covariance)."""
    return lvm.MultivariateNormal(post.loc, s * post.scale_tril)


def test_exact_posterior_proposal_has_zero_variance(model, x):
    post = model.posterior(x)
    exact = model.log_marginal(x)
    for seed in range(5):
        est = lvm.importance_sampling(jax.random.key(seed), model.log_joint, post, x, num_samples=1)
        np.testing.assert_allclose(est, exact, atol=1e-4)
    log_w = lvm.log_weights(jax.random.key(9), model.log_joint, post, x, num_samples=64)
    assert float(jnp.std(log_w)) < 1e-4
    assert float(lvm.effective_sample_size(log_w)) == pytest.approx(64.0, rel=1e-3)


def test_elbo_at_exact_posterior_equals_log_marginal(model, x):
    post = model.posterior(x)
    exact = model.log_marginal(x)
    np.testing.assert_allclose(
        lvm.elbo(jax.random.key(2), model.log_joint, post, x, num_samples=8), exact, atol=1e-4
    )
    # The analytic entropy term against scipy's Gaussian entropy.
    terms = lvm.elbo_decomposition(jax.random.key(2), model.log_joint, post, x, num_samples=8)
    reference = stats.multivariate_normal(np.asarray(post.loc), np.asarray(post.covariance))
    assert float(terms.entropy) == pytest.approx(reference.entropy(), rel=1e-5)


def _expected_log_joint(model, x, q) -> float:
    r"""E_q[log p(z) + log p(x|z)] in closed form (float64) for q = N(m, S):
    -(d/2) log 2 pi - (|m|^2 + tr S)/2 - (D/2) log(2 pi sigma^2) - (|x - W m - b|^2 + tr(W S W^T))/(2 sigma^2).
    """
    w, b, s2 = (np.asarray(a, np.float64) for a in (model.weight, model.bias, model.noise_std**2))
    m, cov = np.asarray(q.loc, np.float64), np.asarray(q.covariance, np.float64)
    d, big_d = w.shape[1], w.shape[0]
    log_prior = -0.5 * d * math.log(2 * math.pi) - 0.5 * (m @ m + np.trace(cov))
    resid = np.asarray(x, np.float64) - w @ m - b
    log_lik = -0.5 * big_d * math.log(2 * math.pi * s2) - (
        resid @ resid + np.trace(w @ cov @ w.T)
    ) / (2 * s2)
    return log_prior + log_lik


def test_elbo_identity_for_arbitrary_gaussian_q(model, x):
    """ELBO(q) = log p(x) - KL(q || p(z|x)), with the KL in closed form."""
    post = model.posterior(x)
    exact = model.log_marginal(x)
    q = lvm.MultivariateNormal(
        post.loc + jnp.array([0.3, -0.2]), jnp.array([[0.3, 0.0], [0.1, 0.2]])
    )
    target = exact - lvm.kl_divergence(q, post)
    k = 20_000
    log_w = lvm.log_weights(jax.random.key(3), model.log_joint, q, x, num_samples=k)
    est = lvm.elbo(jax.random.key(3), model.log_joint, q, x, num_samples=k)
    _, se = mean_se(log_w)
    assert abs(float(est - target)) < 4 * se
    assert float(est) < float(exact)
    # The decomposition's two terms, each against an independent closed form.
    terms = lvm.elbo_decomposition(jax.random.key(3), model.log_joint, q, x, num_samples=k)
    lj = jax.vmap(lambda z: model.log_joint(x, z))(lvm.sample_n(jax.random.key(3), q, k))
    _, lj_se = mean_se(lj)
    assert abs(float(terms.expected_log_joint) - _expected_log_joint(model, x, q)) < 4 * lj_se
    entropy = stats.multivariate_normal(np.asarray(q.loc), np.asarray(q.covariance)).entropy()
    assert float(terms.entropy) == pytest.approx(entropy, rel=1e-5)
    assert abs(float(terms.elbo - target)) < 4 * lj_se
    akl = lvm.elbo_analytic_kl(jax.random.key(3), model.log_joint, q, x, num_samples=k)
    ll = jax.vmap(lambda z: model.log_likelihood(x, z))(lvm.sample_n(jax.random.key(3), q, k))
    assert abs(float(akl - target)) < 4 * mean_se(ll)[1]


def test_iwae_with_one_sample_equals_elbo(model, x):
    q = _inflated(model.posterior(x), 1.7)
    for seed in range(3):
        key = jax.random.key(seed)
        np.testing.assert_allclose(
            lvm.iwae_bound(key, model.log_joint, q, x, num_samples=1),
            lvm.elbo(key, model.log_joint, q, x, num_samples=1),
            rtol=1e-6,
        )


def test_importance_weights_are_unbiased_for_p_of_x(model, x):
    """E_q[w] = p(x): the mean of w / p(x) is 1 within 4 standard errors (exact Var from closed form)."""
    s, n = 1.5, 200_000
    q = _inflated(model.posterior(x), s)
    log_w = lvm.log_weights(jax.random.key(4), model.log_joint, q, x, num_samples=n)
    ratio = np.exp(np.asarray(log_w - model.log_marginal(x), np.float64))
    variance = scaled_posterior_relative_variance(s**2, D_LATENT)
    assert abs(ratio.mean() - 1.0) < 4 * np.sqrt(variance / n)  # the exact s.e.
    var, se = var_se(ratio)  # the sample variance's s.e., sqrt((m_4 - var^2) / n)
    assert abs(var - variance) < 4 * se


def _log_px_estimates(model, x, q, k, reps, seed):
    keys = jax.random.split(jax.random.key(seed), reps)
    est = jax.jit(
        jax.vmap(lambda key: lvm.importance_sampling(key, model.log_joint, q, x, num_samples=k))
    )
    return np.asarray(est(keys), np.float64)


def test_log_of_average_is_biased_low_and_matches_delta_method(model, x):
    r"""E[log \hat p_k] - log p(x) < 0, shrinks with k, and at large k equals -Var(w)/(2k p(x)^2)."""
    s, reps = 2.0, 20_000
    q = _inflated(model.posterior(x), s)
    exact = float(model.log_marginal(x))
    variance = scaled_posterior_relative_variance(s**2, D_LATENT)
    biases, ses = [], []
    for i, k in enumerate([1, 5, 50]):
        mean, se = mean_se(_log_px_estimates(model, x, q, k, reps, seed=10 + i))
        biases.append(mean - exact)
        ses.append(se)
    for b, se in zip(biases, ses, strict=True):
        assert b < -3 * se  # biased low
    for i in range(2):
        assert biases[i] < biases[i + 1] - 3 * np.hypot(ses[i], ses[i + 1])  # shrinking
    delta = -variance / (2 * 50)
    assert abs(biases[-1] - delta) < 3 * ses[-1], (biases[-1], delta, ses[-1])


def test_iwae_bound_increases_with_k_towards_log_px(model, x):
    q = lvm.MultivariateNormal(model.posterior(x).loc + 0.4, 1.3 * model.posterior(x).scale_tril)
    exact = float(model.log_marginal(x))
    reps = 4000
    means, ses = [], []
    for i, k in enumerate([1, 4, 16, 256]):
        mean, se = mean_se(_log_px_estimates(model, x, q, k, reps, seed=20 + i))
        means.append(mean)
        ses.append(se)
    for i in range(3):
        assert means[i] < means[i + 1] + 3 * np.hypot(ses[i], ses[i + 1])
    assert means[-1] < exact + 3 * ses[-1]
    assert abs(means[-1] - exact) < abs(means[0] - exact) / 10


# Chunk sizes below k (1000), three with a remainder: a chunk size >= k is the unchunked path.
@pytest.mark.parametrize("chunk_size", [1, 64, 300, 999])
def test_streaming_importance_sampling_equals_unchunked(model, x, chunk_size):
    q = _inflated(model.posterior(x), 1.5)
    key = jax.random.key(5)
    full = lvm.importance_sampling(key, model.log_joint, q, x, num_samples=1000)
    log_w = np.asarray(lvm.log_weights(key, model.log_joint, q, x, num_samples=1000), np.float64)
    np.testing.assert_allclose(full, logsumexp(log_w) - math.log(1000), rtol=1e-6)
    chunked = lvm.importance_sampling(
        key, model.log_joint, q, x, num_samples=1000, chunk_size=chunk_size
    )
    np.testing.assert_allclose(chunked, full, rtol=1e-6)
    naive = lvm.naive_monte_carlo(key, model.log_likelihood, model.prior(), x, num_samples=1000)
    naive_chunked = lvm.naive_monte_carlo(
        key, model.log_likelihood, model.prior(), x, num_samples=1000, chunk_size=chunk_size
    )
    np.testing.assert_allclose(naive_chunked, naive, rtol=1e-6)


def test_naive_mc_equals_importance_sampling_with_the_prior(model, x):
    key = jax.random.key(6)
    naive = lvm.naive_monte_carlo(key, model.log_likelihood, model.prior(), x, num_samples=500)
    is_prior = lvm.importance_sampling(key, model.log_joint, model.prior(), x, num_samples=500)
    np.testing.assert_allclose(naive, is_prior, rtol=1e-5)


def test_reparameterized_gradient_matches_closed_form(model, x):
    """d ELBO / d mu_q = -Sigma_post^{-1} (mu_q - mu_post): pathwise MC vs the closed form."""
    post = model.posterior(x)
    tril = jnp.array([[0.3, 0.0], [0.1, 0.2]])
    mu = post.loc + jnp.array([0.5, -0.3])
    k = 50_000

    def mc(loc):
        q = lvm.MultivariateNormal(loc, tril)
        return lvm.elbo(jax.random.key(7), model.log_joint, q, x, num_samples=k)

    def closed(loc):
        return model.log_marginal(x) - lvm.kl_divergence(lvm.MultivariateNormal(loc, tril), post)

    precision = jnp.linalg.inv(post.covariance)
    # grad_mc - grad_exact = -P L mean(eps): its sd per coordinate is sqrt(diag(P L L^T P) / k).
    se = jnp.sqrt(jnp.diag(precision @ tril @ tril.T @ precision) / k)
    assert jnp.all(jnp.abs(jax.grad(mc)(mu) - jax.grad(closed)(mu)) < 5 * se)
    np.testing.assert_allclose(jax.grad(closed)(mu), -precision @ (mu - post.loc), rtol=1e-3)


ESTIMATORS = {
    "naive_mc": lambda key, m, q, x: lvm.naive_monte_carlo(
        key, m.log_likelihood, m.prior(), x, num_samples=7
    ),
    "importance": lambda key, m, q, x: lvm.importance_sampling(
        key, m.log_joint, q, x, num_samples=7
    ),
    "streaming": lambda key, m, q, x: lvm.importance_sampling(
        key, m.log_joint, q, x, num_samples=7, chunk_size=3
    ),
    "elbo": lambda key, m, q, x: lvm.elbo(key, m.log_joint, q, x, num_samples=7),
    "elbo_decomposition": lambda key, m, q, x: (
        lvm.elbo_decomposition(key, m.log_joint, q, x, num_samples=7).elbo
    ),
    "elbo_analytic_kl": lambda key, m, q, x: lvm.elbo_analytic_kl(
        key, m.log_joint, q, x, num_samples=7
    ),
    "ELBO": lambda key, m, q, x: lvm.ELBO(7)(key, m.log_joint, q, x),
    "IWAE": lambda key, m, q, x: lvm.IWAE(7, chunk_size=2)(key, m.log_joint, q, x),
    "ELBO_stl": lambda key, m, q, x: lvm.ELBO(7, gradient="stl")(key, m.log_joint, q, x),
    "IWAE_dreg": lambda key, m, q, x: lvm.IWAE(7, gradient="dreg")(key, m.log_joint, q, x),
    "jackknife": lambda key, m, q, x: lvm.jackknife_iwae(
        key, m.log_joint, q, x, num_samples=7, order=2
    ),
    "sumo": lambda key, m, q, x: lvm.sumo(key, m.log_joint, q, x, num_samples=3),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_jit_and_vmap_match_python_loop(model, name):
    fn = ESTIMATORS[name]
    _, xs = jax.vmap(model.sample)(jax.random.split(jax.random.key(8), 6))
    keys = jax.random.split(jax.random.key(9), 6)

    def one(key, xi):
        return fn(key, model, _inflated(model.posterior(xi), 1.2), xi)

    loop = np.array([float(one(k, xi)) for k, xi in zip(keys, xs, strict=True)])
    batched = jax.jit(jax.vmap(one))(keys, xs)
    assert batched.shape == (6,)
    assert np.all(np.isfinite(loop))
    np.testing.assert_allclose(batched, loop, rtol=1e-5)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_traced_x_compiles_no_host_callback(model, x, name):
    """Validation stays at the boundary: with x traced, no estimator puts a callback (the
    mechanism of ``equinox.error_if`` and ``jax.debug``) in its program."""
    q = _inflated(model.posterior(x), 1.2)
    jaxpr = jax.make_jaxpr(lambda xi: ESTIMATORS[name](jax.random.key(0), model, q, xi))(x)
    assert "callback" not in str(jaxpr)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_gmm_discrete_latent_plugs_into_every_sample_based_estimator(name):
    if name in ("elbo_analytic_kl", "naive_mc", "elbo_decomposition"):
        # Closed-form KL needs Gaussians; naive MC ignores q; an analytic entropy beside a
        # Monte-Carlo E_q[log p(x,z)] is exact only in expectation.
        pytest.skip("not exact for a single draw with q = p(z|x)")
    gmm = lvm.GaussianMixture(
        jnp.array([0.2, -0.1, 0.0]),
        jnp.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 2.0]]),
        jnp.array([1.0, 0.5, 0.8]),
        "spherical",
    )
    x = jnp.array([2.5, 0.5])
    est = ESTIMATORS[name](jax.random.key(0), gmm, gmm.posterior(x), x)
    # With the exact posterior as proposal every sample-based estimate is exact.
    np.testing.assert_allclose(est, gmm.log_marginal(x), rtol=1e-5)


def test_gmm_importance_sampling_with_prior_matches_the_exact_bias_expansion():
    r"""E[log p-hat_k] - log p(x) = -mu_2/(2k) + (mu_3/3 - 3 mu_2^2/4)/k^2 + O(k^-3), with the
    moments mu_n = E_p(z)[(p(z|x)/p(z) - 1)^n] exact sums over the 3 components.

    At k = 400 the bias (-2.4e-3) is below the spread of the plain mean (s.e. 1.5e-3), so the
    control variate u = p-hat/p - 1 (mean exactly 0) is subtracted: s.e. ~8e-5.
    """
    gmm = lvm.GaussianMixture(
        jnp.zeros(3), jnp.array([[0.0], [4.0], [-4.0]]), jnp.ones((3, 1)), "diag"
    )
    x = jnp.array([1.0])
    prior = np.asarray(gmm.prior().probs, np.float64)
    r = np.asarray(gmm.posterior(x).probs, np.float64) / prior
    mu2, mu3 = np.sum(prior * (r - 1) ** 2), np.sum(prior * (r - 1) ** 3)
    k, reps = 400, 2000
    keys = jax.random.split(jax.random.key(1), reps)
    est = jax.vmap(
        lambda kk: lvm.importance_sampling(kk, gmm.log_joint, gmm.prior(), x, num_samples=k)
    )(keys)
    bias, se = log_bias_control_variate(est, float(gmm.log_marginal(x)))
    predicted = -mu2 / (2 * k) + (mu3 / 3 - 3 * mu2**2 / 4) / k**2
    assert bias < -10 * se  # resolved
    assert abs(bias - predicted) < 4 * se, (bias, predicted, se)


class TestBadInput:
    def test_k_below_one(self, model, x):
        q = model.posterior(x)
        for fn in (lvm.importance_sampling, lvm.elbo, lvm.log_weights):
            with pytest.raises(ValueError, match="num_samples"):
                fn(jax.random.key(0), model.log_joint, q, x, num_samples=0)
        with pytest.raises(ValueError, match="num_samples"):
            lvm.IWAE(0)
        with pytest.raises(ValueError, match="chunk_size"):
            lvm.IWAE(10, chunk_size=0)
        with pytest.raises(TypeError, match="num_samples"):
            lvm.ELBO(1.5)

    def test_mismatched_shapes(self, model, x):
        q = model.posterior(x)
        with pytest.raises(ValueError, match="x must have shape"):
            lvm.importance_sampling(jax.random.key(0), model.log_joint, q, x[:3], num_samples=4)
        wrong_q = lvm.DiagonalNormal(jnp.zeros(D_LATENT + 1), jnp.ones(D_LATENT + 1))
        with pytest.raises(ValueError, match="z must have shape"):
            lvm.elbo(jax.random.key(0), model.log_joint, wrong_q, x, num_samples=4)

    def test_non_finite_data_eager(self, model, x):
        q = model.posterior(x)
        bad = x.at[2].set(jnp.nan)
        with pytest.raises(ValueError, match="NaN or Inf"):
            lvm.importance_sampling(jax.random.key(0), model.log_joint, q, bad, num_samples=4)
        with pytest.raises(ValueError, match="NaN or Inf"):
            lvm.elbo(jax.random.key(0), model.log_joint, q, x.at[0].set(jnp.inf), num_samples=4)

    def test_non_finite_data_under_jit_is_not_checked(self, model, x):
        """Inside jit the kernel is pure: a NaN datapoint gives a NaN estimate, no error."""
        q = model.posterior(x)
        est = jax.jit(
            lambda xi: lvm.importance_sampling(
                jax.random.key(0), model.log_joint, q, xi, num_samples=4
            )
        )
        assert np.isfinite(float(est(x)))
        assert np.isnan(float(est(x.at[1].set(jnp.nan))))

    def test_jaxtyping_shapes_are_checked(self):
        with pytest.raises(Exception, match="scale|shape|dimension"):
            lvm.DiagonalNormal(jnp.zeros(3), jnp.ones(2))
