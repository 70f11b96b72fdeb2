import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

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
