"""``lvm.testing``: the closed forms against quadrature and each other, the Monte-Carlo summaries
against synthetic draws whose answer is known."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import lvm
from lvm import testing

# ---------------------------------------------------------------- closed forms


def test_second_moment_matches_scaled_posterior_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 3))
    cov = a @ a.T + 0.5 * np.eye(3)
    loc = rng.normal(size=3)
    for scale_sq in (0.7, 1.0, 2.0, 5.0):
        log_m2 = testing.log_second_moment_gaussian(loc, cov, loc, scale_sq * cov)
        expected = testing.scaled_posterior_relative_variance(scale_sq, 3)
        np.testing.assert_allclose(math.expm1(log_m2), expected, rtol=1e-9, atol=1e-12)


def test_second_moment_matches_numerical_integration():
    """1-D, shifted means and different variances: closed form vs scipy quadrature."""
    p_loc, p_sd, q_loc, q_sd = 0.4, 0.6, -0.3, 1.1
    value, _ = integrate.quad(
        lambda z: stats.norm.pdf(z, p_loc, p_sd) ** 2 / stats.norm.pdf(z, q_loc, q_sd), -20, 20
    )
    log_m2 = testing.log_second_moment_gaussian([p_loc], [[p_sd**2]], [q_loc], [[q_sd**2]])
    np.testing.assert_allclose(math.exp(log_m2), value, rtol=1e-8)


def test_second_moment_diverges_for_too_narrow_proposal():
    """q = N(mu, s^2 Sigma) with s^2 <= 1/2: infinite weight variance."""
    assert testing.log_second_moment_gaussian([0.0], [[1.0]], [0.0], [[0.5]]) == math.inf
    assert testing.scaled_posterior_relative_variance(0.5, 2) == math.inf


def test_third_moment_matches_numerical_integration():
    """E_q[(p/q)^3] = int p^3 / q^2 (the jackknife's mu_3): closed form vs scipy quadrature."""
    p_loc, p_sd, q_loc, q_sd = 0.4, 0.6, -0.3, 1.1
    value, _ = integrate.quad(
        lambda z: stats.norm.pdf(z, p_loc, p_sd) ** 3 / stats.norm.pdf(z, q_loc, q_sd) ** 2, -20, 20
    )
    log_m3 = testing.log_moment_gaussian([p_loc], [[p_sd**2]], [q_loc], [[q_sd**2]], 3)
    np.testing.assert_allclose(math.exp(log_m3), value, rtol=1e-8)
    # 3 P_p - 2 P_q not positive definite: the third moment diverges.
    assert testing.log_moment_gaussian([0.0], [[1.0]], [0.0], [[0.6]], 3) == math.inf


def test_regression_control_variates_keep_the_mean_and_shrink_the_error():
    """y = 2 + c + noise with E[c] = 0: the controlled mean is 2 within 4 of its (smaller) s.e."""
    rng = np.random.default_rng(2)
    c = rng.normal(size=(2, 20_000))
    y = 2.0 + 3.0 * c[0] - c[1] + 0.1 * rng.normal(size=20_000)
    mean, se = testing.mean_with_control_variates(y, c)
    plain_mean, plain_se = testing.mean_se(y)
    assert abs(mean - 2.0) < 4 * se
    assert se < 0.05 * plain_se


def test_control_variate_bias_is_unbiased_and_sharper():
    """p-hat log-normal with E[p-hat] = p = 1: E[log p-hat] = -s^2/2 exactly."""
    rng = np.random.default_rng(1)
    s = 0.1
    log_p_hat = rng.normal(-(s**2) / 2, s, size=(4, 20_000))
    bias, se = testing.log_bias_control_variate(log_p_hat, 0.0)
    plain, plain_se = testing.mean_se(log_p_hat)
    assert np.all(np.abs(bias - (-(s**2) / 2)) < 3 * se)
    assert np.all(se < 0.2 * plain_se)


@pytest.mark.parametrize("order", [2, 3])
def test_scaled_posterior_moment_matches_the_general_closed_form(order):
    """The factorised M_n for q = N(mu, s^2 Sigma) equals log_moment_gaussian's general formula."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(2, 2))
    cov = a @ a.T + 0.3 * np.eye(2)
    loc = rng.normal(size=2)
    for scale_sq in (0.8, 1.0, 2.0, 4.0):
        general = testing.log_moment_gaussian(loc, cov, loc, scale_sq * cov, order)
        np.testing.assert_allclose(
            math.log(testing.scaled_posterior_moment(scale_sq, 2, order)),
            general,
            rtol=1e-9,
            atol=1e-12,
        )
    # (n - 1)/n = 2/3 for n = 3: a narrower q makes the moment diverge.
    assert testing.scaled_posterior_moment(0.6, 2, 3) == math.inf


def test_relative_moments_of_lvm_gaussians_by_quadrature():
    """mu_2 and mu_3 of r = p/q for two lvm Gaussians (1-D; parameters exact in float32) against scipy quadrature."""
    p = lvm.DiagonalNormal(jnp.array([0.25]), jnp.array([0.75]))
    q = lvm.MultivariateNormal(jnp.array([-0.25]), jnp.array([[1.25]]))

    def central(n):
        def integrand(z):
            r = stats.norm.pdf(z, 0.25, 0.75) / stats.norm.pdf(z, -0.25, 1.25)
            return (r - 1.0) ** n * stats.norm.pdf(z, -0.25, 1.25)

        return integrate.quad(integrand, -30, 30)[0]

    mu2, mu3 = testing.relative_moments_gaussian(p, q)
    np.testing.assert_allclose([mu2, mu3], [central(2), central(3)], rtol=1e-7)
    assert testing.relative_variance_gaussian(p, q) == pytest.approx(mu2, rel=1e-12)


# ---------------------------------------------------------------- Monte-Carlo summaries


def test_mean_se_and_var_se_of_normal_draws():
    """Normal draws, sd 2: mean 1 and variance 4 within 4 of their own s.e.; the s.e. match
    sigma/sqrt(n) and sqrt(2 sigma^4/n) (the normal's mu_4 = 3 sigma^4) to 5%."""
    n = 40_000
    y = np.random.default_rng(4).normal(1.0, 2.0, size=(3, n))
    mean, se = testing.mean_se(y)
    var, vse = testing.var_se(y)
    assert np.all(np.abs(mean - 1.0) < 4 * se)
    assert np.all(np.abs(var - 4.0) < 4 * vse)
    np.testing.assert_allclose(se, 2.0 / math.sqrt(n), rtol=0.05)
    np.testing.assert_allclose(vse, math.sqrt(2 * 16.0 / n), rtol=0.05)
    rms, rse = testing.rms_se(y - 1.0)
    assert np.all(np.abs(rms - 2.0) < 4 * rse)


def test_log_log_slope_recovers_a_power_law():
    """|b_k| = 3 k^-1.5 exactly: the slope is -1.5 to round-off; with 1% noise of known s.e.,
    within 4 of its standard error, which matches the spread over repetitions."""
    ks = np.array([4.0, 8.0, 16.0, 32.0, 64.0])
    exact = -3.0 * ks**-1.5
    slope, slope_se = testing.log_log_slope(ks, exact, 0.01 * np.abs(exact))
    assert slope == pytest.approx(-1.5, abs=1e-12)
    rng = np.random.default_rng(5)
    slopes = []
    for _ in range(400):
        noisy = exact * (1.0 + 0.01 * rng.normal(size=ks.size))
        slopes.append(testing.log_log_slope(ks, noisy, 0.01 * np.abs(exact))[0])
    slopes = np.array(slopes)
    assert abs(slopes.mean() + 1.5) < 4 * slope_se / math.sqrt(len(slopes))
    # The standard deviation of 400 slopes is within 4 of its own s.e. (about sd/sqrt(2*400)).
    assert abs(slopes.std(ddof=1) - slope_se) < 4 * slope_se / math.sqrt(2 * len(slopes))
