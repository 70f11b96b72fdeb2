import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

import lvm
from lvm.testing import mean_se


def _random_tril(key, d):
    off_key, diag_key = jax.random.split(key)
    a = jax.random.normal(off_key, (d, d))
    return jnp.tril(a, -1) + jnp.diag(jnp.exp(0.3 * jax.random.normal(diag_key, (d,))))


def test_multivariate_normal_matches_scipy():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    loc, tril = jax.random.normal(k1, (3,)), _random_tril(k2, 3)
    q = lvm.MultivariateNormal(loc, tril)
    z = jax.random.normal(k3, (5, 3))
    ref = stats.multivariate_normal(np.asarray(loc), np.asarray(tril @ tril.T))
    np.testing.assert_allclose(jax.vmap(q.log_prob)(z), ref.logpdf(np.asarray(z)), rtol=1e-5)
    assert float(q.entropy()) == pytest.approx(ref.entropy(), rel=1e-5)


def test_diagonal_normal_matches_scipy_and_full_form():
    loc, scale = jnp.array([0.5, -1.0]), jnp.array([0.3, 2.0])
    q = lvm.DiagonalNormal(loc, scale)
    z = jnp.array([0.1, 0.2])
    want = stats.norm(np.asarray(loc), np.asarray(scale)).logpdf(np.asarray(z)).sum()
    assert float(q.log_prob(z)) == pytest.approx(want, rel=1e-6)
    full = lvm.MultivariateNormal(loc, q.scale_tril)
    assert float(full.log_prob(z)) == pytest.approx(want, rel=1e-6)
    assert float(q.entropy()) == pytest.approx(float(full.entropy()), rel=1e-6)


def test_sample_moments(key):
    q = lvm.MultivariateNormal(jnp.array([1.0, -2.0]), jnp.array([[1.0, 0.0], [0.5, 0.4]]))
    n = 40_000
    z = lvm.sample_n(key, q, n)
    # Standard error of a mean is sd / sqrt(n); 5 se per coordinate.
    se = jnp.sqrt(jnp.diag(q.covariance) / n)
    assert jnp.all(jnp.abs(z.mean(0) - q.loc) < 5 * se)
    # For Gaussian draws Var(sample cov_ij) = (S_ii S_jj + S_ij^2) / n (Isserlis); 5 se per entry.
    cov = np.asarray(q.covariance, np.float64)
    cov_se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.all(np.abs(np.cov(np.asarray(z, np.float64).T) - cov) < 5 * cov_se)


def test_multivariate_normal_ignores_the_upper_triangle():
    """sample, log_prob and covariance all read only the lower triangle of scale_tril."""
    lower = _random_tril(jax.random.key(4), 3)
    full = lower + jnp.triu(jnp.ones((3, 3)), 1)
    q, q_full = (
        lvm.MultivariateNormal(jnp.zeros(3), lower),
        lvm.MultivariateNormal(jnp.zeros(3), full),
    )
    key = jax.random.key(5)
    np.testing.assert_array_equal(q_full.sample(key), q.sample(key))
    np.testing.assert_array_equal(q_full.covariance, q.covariance)
    z = q.sample(key)
    np.testing.assert_allclose(q_full.log_prob(z), q.log_prob(z), rtol=1e-6)


def test_kl_closed_form_matches_monte_carlo_and_diag_path():
    k1, k2 = jax.random.split(jax.random.key(1))
    q = lvm.MultivariateNormal(jnp.array([0.3, -0.2]), _random_tril(k1, 2))
    p = lvm.MultivariateNormal(jnp.array([-0.5, 0.4]), _random_tril(k2, 2))
    z = lvm.sample_n(jax.random.key(2), q, 200_000)
    log_ratio = jax.vmap(q.log_prob)(z) - jax.vmap(p.log_prob)(z)
    mean, se = mean_se(log_ratio)
    assert abs(float(lvm.kl_divergence(q, p)) - mean) < 4 * se
    qd, pd = (
        lvm.DiagonalNormal(q.loc, jnp.array([0.5, 2.0])),
        lvm.DiagonalNormal(p.loc, jnp.ones(2)),
    )
    as_full = lvm.kl_divergence(
        lvm.MultivariateNormal(qd.loc, qd.scale_tril), lvm.MultivariateNormal(pd.loc, pd.scale_tril)
    )
    assert float(lvm.kl_divergence(qd, pd)) == pytest.approx(float(as_full), rel=1e-5)


def test_categorical_matches_scipy():
    logits = jnp.array([0.1, 2.0, -1.0])
    c = lvm.Categorical(logits)
    p = np.exp(np.asarray(logits, np.float64))
    p /= p.sum()
    assert float(c.log_prob(jnp.array(1))) == pytest.approx(np.log(p[1]), rel=1e-6)
    assert float(c.entropy()) == pytest.approx(stats.entropy(p), rel=1e-6)
    counts = np.bincount(np.asarray(lvm.sample_n(jax.random.key(0), c, 30_000)), minlength=3)
    se = np.sqrt(p * (1 - p) / 30_000)
    assert np.all(np.abs(counts / 30_000 - p) < 5 * se)


def test_shapes_are_checked_when_built_outside_the_test_hook():
    """Outside pytest (no jaxtyping hook, no rank-promotion error) a mismatched shape must
    still raise at construction, not broadcast into a wrong number: run a fresh interpreter."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import jax.numpy as jnp
        import lvm
        cases = {
            "diag": lambda: lvm.DiagonalNormal(jnp.zeros(3), 2 * jnp.ones(1)),
            "loc": lambda: lvm.DiagonalNormal(jnp.zeros((2, 3)), jnp.ones((2, 3))),
            "tril": lambda: lvm.MultivariateNormal(jnp.zeros(3), jnp.eye(2)),
            "logits": lambda: lvm.Categorical(jnp.zeros((2, 2))),
            "z": lambda: lvm.DiagonalNormal(jnp.zeros(3), jnp.ones(3)).log_prob(jnp.zeros(1)),
            "bernoulli": lambda: lvm.Bernoulli(jnp.zeros((2, 2))),
            "bits": lambda: lvm.Bernoulli(jnp.zeros(3)).log_prob(jnp.zeros(2)),
            "category": lambda: lvm.Categorical(jnp.zeros(3)).log_prob(jnp.array([0, 1])),
            "relaxed": lambda: lvm.RelaxedBernoulli(jnp.zeros(3), 1.0).log_prob(jnp.zeros(2)),
            "baseline": lambda: lvm.WithBaseline(lvm.Bernoulli(jnp.zeros(3)), jnp.zeros(3)),
        }
        for name, build in cases.items():
            try:
                build()
                print(name, "no error")
            except ValueError as err:
                print(name, "ValueError", err)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert lines["diag"].startswith("ValueError scale must have shape (3,), got (1,)"), out
    assert lines["loc"].startswith("ValueError loc must be a vector"), out
    assert lines["tril"].startswith("ValueError scale_tril must have shape (3, 3)"), out
    assert lines["logits"].startswith("ValueError logits must be a vector"), out
    assert lines["z"].startswith("ValueError z must have shape (3,)"), out
    assert lines["bernoulli"].startswith("ValueError logits must be a vector"), out
    assert lines["bits"].startswith("ValueError z must have shape (3,)"), out
    assert lines["category"].startswith("ValueError z must have shape ()"), out
    assert lines["relaxed"].startswith("ValueError y must have shape (3,)"), out
    assert lines["baseline"].startswith("ValueError baseline must have shape ()"), out


# ---------------------------------------------------------------- discrete latents and relaxations


def test_bernoulli_matches_scipy():
    logits = jnp.array([0.3, -2.0, 4.0, 0.0])
    b = lvm.Bernoulli(logits)
    p = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
    z = jnp.array([1.0, 0.0, 0.0, 1.0])
    want = stats.bernoulli(p).logpmf(np.asarray(z)).sum()
    assert float(b.log_prob(z)) == pytest.approx(want, rel=1e-6)
    assert float(b.entropy()) == pytest.approx(stats.bernoulli(p).entropy().sum(), rel=1e-6)
    np.testing.assert_allclose(b.probs, p, rtol=1e-6)
    n = 20_000
    draws = np.asarray(lvm.sample_n(jax.random.key(3), b, n))
    assert draws.dtype == np.float32 and set(np.unique(draws)) <= {0.0, 1.0}
    assert np.all(np.abs(draws.mean(0) - p) < 5 * np.sqrt(p * (1 - p) / n) + 1e-12)


def test_categorical_log_prob_matches_scipy_softmax_and_jax_sampler():
    logits = jnp.array([0.5, -1.0, 2.0, 0.0])
    c = lvm.Categorical(logits)
    log_p = np.log(special.softmax(np.asarray(logits, np.float64)))
    np.testing.assert_allclose(jax.vmap(c.log_prob)(jnp.arange(4)), log_p, rtol=1e-6)
    np.testing.assert_allclose(c.probs, np.exp(log_p), rtol=1e-6)
    # Gumbel-max by hand draws what jax.random.categorical draws, key by key.
    keys = jax.random.split(jax.random.key(7), 500)
    np.testing.assert_array_equal(
        jax.vmap(c.sample)(keys), jax.vmap(lambda k: jax.random.categorical(k, logits))(keys)
    )


@pytest.mark.parametrize(
    ("logit", "temperature"), [(0.0, 1.0), (1.0, 1.5), (-2.0, 2.0), (0.3, 0.8)]
)
def test_relaxed_bernoulli_density_integrates_to_one_and_matches_its_sampler(logit, temperature):
    """Quadrature in the logit t of y = sigmoid(t), where the integrand p(y) y (1 - y) is smooth
    and decays exponentially (float32 y saturates at 1 beyond t = 17: these settings put less
    than 2e-5 of their mass beyond t = 14, the upper limit)."""
    q = lvm.RelaxedBernoulli(jnp.array([logit]), temperature)

    def integral(upper):
        t = np.linspace(-80.0, upper, 40_001)
        y = jax.nn.sigmoid(jnp.asarray(t, jnp.float32))
        density = jnp.exp(jax.vmap(lambda v: q.log_prob(v[None]))(y)) * y * (1.0 - y)
        return integrate.trapezoid(np.asarray(density, np.float64), t)

    assert integral(14.0) == pytest.approx(1.0, abs=1e-4)
    # P(y < 0.3) by quadrature of the density against the sampler's frequency.
    mass = integral(special.logit(0.3))
    n = 20_000
    y = np.asarray(lvm.sample_n(jax.random.key(1), q, n))[:, 0]
    assert abs(np.mean(y < 0.3) - mass) < 5 * np.sqrt(mass * (1 - mass) / n)


def test_relaxed_bernoulli_is_coupled_to_the_bernoulli_sample():
    logits = jnp.array([0.3, -2.0, 4.0, 0.0, -0.1])
    keys = jax.random.split(jax.random.key(2), 1000)
    z, y = jax.vmap(lvm.Bernoulli(logits).relaxed(0.5).sample_coupled)(keys)
    np.testing.assert_array_equal(z, jax.vmap(lvm.Bernoulli(logits).sample)(keys))
    np.testing.assert_array_equal(z, (y > 0.5).astype(z.dtype))
    # y -> z as the temperature falls
    _, cold = jax.vmap(lvm.RelaxedBernoulli(logits, 0.01).sample_coupled)(keys)
    assert np.mean(np.abs(np.asarray(cold) - np.asarray(z)) < 1e-3) > 0.95


def test_relaxed_categorical_density():
    """K = 2 is the binary Concrete of the logit difference; K = 3 integrates to 1 over the
    simplex, and E[y_1 y_2] by quadrature of the density matches the sampler's mean."""
    two = lvm.RelaxedCategorical(jnp.array([0.9, -0.4]), 0.6)
    binary = lvm.RelaxedBernoulli(jnp.array([1.3]), 0.6)
    for y1 in (0.05, 0.3, 0.5, 0.8, 0.97):
        assert float(two.log_prob(jnp.array([y1, 1.0 - y1]))) == pytest.approx(
            float(binary.log_prob(jnp.array([y1]))), abs=1e-4
        )
    # On the simplex through y = softmax(t_1, t_2, 0), whose Jacobian is y_1 y_2 y_3: the
    # integrand is smooth and decays exponentially, so a trapezoid grid is accurate.
    q = lvm.RelaxedCategorical(jnp.array([0.5, -0.5, 0.2]), 0.7)
    t = np.linspace(-30.0, 30.0, 601)
    t1, t2 = np.meshgrid(t, t, indexing="ij")
    grid = jnp.asarray(np.stack([t1.ravel(), t2.ravel(), np.zeros(t1.size)], 1), jnp.float32)
    y = jax.nn.softmax(grid, axis=-1)
    mass = np.asarray(jnp.exp(jax.vmap(q.log_prob)(y)) * jnp.prod(y, -1), np.float64)
    y = np.asarray(y, np.float64)

    def integral(values):
        return integrate.trapezoid(integrate.trapezoid(values.reshape(t1.shape), t, axis=1), t)

    assert integral(mass) == pytest.approx(1.0, abs=1e-4)
    moment = integral(mass * y[:, 0] * y[:, 1])
    n = 20_000
    draws = np.asarray(lvm.sample_n(jax.random.key(4), q, n), np.float64)
    prod = draws[:, 0] * draws[:, 1]
    assert abs(prod.mean() - moment) < 4 * prod.std() / np.sqrt(n)


def test_relaxed_categorical_is_coupled_to_the_categorical_sample():
    logits = jnp.array([0.5, -1.0, 2.0, 0.0])
    keys = jax.random.split(jax.random.key(5), 1000)
    z, y = jax.vmap(lvm.Categorical(logits).relaxed(0.3).sample_coupled)(keys)
    np.testing.assert_array_equal(z, jax.vmap(lvm.Categorical(logits).sample)(keys))
    np.testing.assert_array_equal(z, jnp.argmax(y, -1))
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-6)


def test_discrete_kl_matches_scipy_and_unknown_pairs_raise():
    lq, lp = jnp.array([0.2, -1.0, 1.5]), jnp.array([0.0, 0.5, -0.3])
    pq, pp = (
        special.softmax(np.asarray(lq, np.float64)),
        special.softmax(np.asarray(lp, np.float64)),
    )
    got = lvm.kl_divergence(lvm.Categorical(lq), lvm.Categorical(lp))
    assert float(got) == pytest.approx(stats.entropy(pq, pp), rel=1e-5)
    bq, bp = special.expit(np.asarray(lq, np.float64)), special.expit(np.asarray(lp, np.float64))
    want = sum(stats.entropy([a, 1 - a], [b, 1 - b]) for a, b in zip(bq, bp, strict=True))
    assert float(lvm.kl_divergence(lvm.Bernoulli(lq), lvm.Bernoulli(lp))) == pytest.approx(
        want, rel=1e-5
    )
    wrapped = lvm.WithBaseline(lvm.Categorical(lq), jnp.array(0.0))
    assert float(lvm.kl_divergence(wrapped, lvm.Categorical(lp))) == pytest.approx(float(got))
    with pytest.raises(TypeError, match="no closed form"):
        lvm.kl_divergence(lvm.Categorical(lq), lvm.DiagonalNormal(lq, jnp.ones(3)))
    with pytest.raises(TypeError, match="no closed form"):
        lvm.kl_divergence(lvm.Bernoulli(lq), lvm.Categorical(lp))
    with pytest.raises(ValueError, match="logits of p"):
        lvm.kl_divergence(lvm.Categorical(lq), lvm.Categorical(lp[:2]))


def test_discrete_settings_are_checked_when_built():
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            lvm.RelaxedCategorical(jnp.zeros(3), bad)
