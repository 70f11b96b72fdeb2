"""The jackknife and SUMO against brute-force loops and the exact linear-Gaussian log p(x)."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

import lvm
from lvm.estimators import (
    jackknife_coefficients,
    jackknife_log_mean_exp,
    sumo_num_terms,
    sumo_survival,
)
from lvm.testing import log_log_slope, mean_se, mean_with_control_variates, scaled_posterior_moment

D_LATENT, D_DATA = 2, 5
#: q = N(mu, S2 * Sigma) around the exact posterior N(mu, Sigma): the weights w/p(x) are
#: bounded (by S2^(d/2)), and their moments are closed forms
#: (lvm.testing.scaled_posterior_moment).
S2 = 2.0


@pytest.fixture(scope="module")
def model():
    return lvm.LinearGaussian.random(
        jax.random.key(0), latent_dim=D_LATENT, data_dim=D_DATA, noise_std=0.6
    )


@pytest.fixture(scope="module")
def x(model):
    return model.sample(jax.random.key(1))[1]


@pytest.fixture(scope="module")
def proposal(model, x):
    post = model.posterior(x)
    return lvm.MultivariateNormal(post.loc, math.sqrt(S2) * post.scale_tril)


# ---------------------------------------------------------------- the jackknife


def _naive_jackknife(log_w: np.ndarray, order: int) -> float:
    """The definition, by enumeration: sum_j c_j * mean over subsets of size k-j of log-mean-exp."""
    k = len(log_w)
    total = 0.0
    for j in range(order + 1):
        c_j = (-1) ** j * (k - j) ** order / (math.factorial(order - j) * math.factorial(j))
        subsets = itertools.combinations(range(k), k - j)
        total += c_j * np.mean([logsumexp(log_w[list(s)]) - math.log(k - j) for s in subsets])
    return total


@pytest.mark.parametrize("order", [1, 2, 3])
def test_jackknife_coefficients_cancel_a_polynomial_bias(order):
    """sum_j c_j f(k - j) = b_0 for f(n) = b_0 + b_1/n + ... + b_m/n^m (the jackknife's purpose)."""
    b = np.array([0.7, -2.0, 3.0, -1.5])[: order + 1]
    for k in (order + 1, 10, 1000):
        c = jackknife_coefficients(k, order)
        f = [sum(b_p / (k - j) ** p for p, b_p in enumerate(b)) for j in range(order + 1)]
        # Float64 round-off of sums of terms as large as sum_j |c_j| (1.7e8 at k = 1000, m = 3).
        tol = 1e-14 * np.sum(np.abs(c))
        assert abs(sum(c) - 1.0) < tol
        assert abs(np.dot(c, f) - b[0]) < tol * np.max(np.abs(f))


#: Log-weights of every kind, k = 7: spread out, one weight holding all the mass, equal
#: (the jackknife must return their log-mean-exp exactly), and one zero weight.
LOG_WEIGHTS = np.array(
    [
        np.random.default_rng(0).normal(size=7) * 2.0 - 30.0,
        [0.0, -50.0, -60.0, -55.0, -70.0, -40.0, -45.0],
        np.full(7, -3.0),
        [-1.0, -np.inf, -2.0, -0.5, -1.5, -0.2, -4.0],
    ]
)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_jackknife_equals_its_naive_definition(order):
    want = np.array([_naive_jackknife(log_w, order) for log_w in LOG_WEIGHTS])
    with jax.enable_x64(True):
        jack = jax.jit(jax.vmap(lambda log_w: jackknife_log_mean_exp(log_w, order=order)))
        np.testing.assert_allclose(jack(jnp.asarray(LOG_WEIGHTS)), want, rtol=1e-12, atol=1e-12)
    jack = jax.jit(jax.vmap(lambda log_w: jackknife_log_mean_exp(log_w, order=order)))
    got32 = jack(jnp.asarray(LOG_WEIGHTS, jnp.float32))
    # float32: the coefficients reach (k-1)^3/2 = 108 and multiply terms with relative
    # round-off ~1e-7; 2e-5 relative is the measured worst case (one dominant weight) x 4.
    np.testing.assert_allclose(got32, want, rtol=2e-5, atol=2e-5)
    assert want[2] == pytest.approx(-3.0, abs=1e-12)  # equal weights: their log-mean-exp


def test_jackknife_iwae_draws_the_iwae_weights(model, x, proposal):
    """jackknife_iwae(key) is the naive jackknife of the k weights lvm.log_weights(key) draws."""
    key = jax.random.key(3)
    log_w = np.asarray(lvm.log_weights(key, model.log_joint, proposal, x, num_samples=7), float)
    for order, chunk_size in [(1, 3), (2, None)]:  # 7 = 2 chunks of 3 + a remainder of 1
        got = jax.jit(
            lambda k, order=order, chunk_size=chunk_size: lvm.jackknife_iwae(
                k, model.log_joint, proposal, x, num_samples=7, order=order, chunk_size=chunk_size
            )
        )(key)
        np.testing.assert_allclose(float(got), _naive_jackknife(log_w, order), rtol=1e-5)


def test_jackknife_bias_falls_faster_than_iwae(model, x, proposal):
    r"""Slope of log|bias| on log k: about -1 for IWAE, <= -1.7 for the order-1 jackknife.

    q = N(mu, 2 Sigma), d = 2: chi^2 = mu_2 = 1/3 and mu_3 = 0, so the delta method predicts
    biases -mu_2/(2k) (IWAE) and +(3/4) mu_2^2 / (k(k-1)) (jackknife, an overcorrection), and
    k = 16..64 is well inside the asymptotic regime (k >> chi^2). The jackknife's bias
    (2e-5 at k = 64) is far below the Monte-Carlo spread of one estimate (0.05), so the
    mean is taken with four control variates of exactly known mean, computed from the
    same weights: u = p-hat/p - 1 (mean 0), u^2 (mean chi^2/k), u^3 (mean mu_3/k^2 = 0)
    and the mean of (w_i/p)^2 (mean 1 + chi^2).
    """
    m2 = scaled_posterior_moment(S2, D_LATENT)
    chi2 = m2 - 1.0
    exact = float(model.log_marginal(x))
    ks, reps = np.array([16, 32, 64]), 10_000
    bias = {"iwae": [], "jackknife": []}
    se = {"iwae": [], "jackknife": []}

    def both(key, k):
        log_w = lvm.log_weights(key, model.log_joint, proposal, x, num_samples=k)
        return log_w, lvm.log_mean_exp(log_w), jackknife_log_mean_exp(log_w, order=1)

    for i, k in enumerate(ks):
        keys = jax.random.split(jax.random.key(100 + i), reps)
        log_w, iwae, jack = jax.jit(jax.vmap(lambda key, k=int(k): both(key, k)))(keys)
        r = np.exp(np.asarray(log_w, np.float64) - exact)
        u = r.mean(1) - 1.0
        controls = np.stack([u, u**2 - chi2 / k, u**3, (r**2).mean(1) - m2])
        for name, values in (("iwae", iwae), ("jackknife", jack)):
            b, s = mean_with_control_variates(np.asarray(values, np.float64) - exact, controls)
            bias[name].append(b)
            se[name].append(s)
    bias = {n: np.array(v) for n, v in bias.items()}
    se = {n: np.array(v) for n, v in se.items()}
    # Every bias resolved beyond its error bars: IWAE low, the jackknife high (mu_3 = 0).
    assert np.all(bias["iwae"] < -4 * se["iwae"])
    assert np.all(bias["jackknife"] > 4 * se["jackknife"])
    assert np.all(np.abs(bias["jackknife"]) < np.abs(bias["iwae"]) / 10)
    slope_iwae, slope_iwae_se = log_log_slope(ks, bias["iwae"], se["iwae"])
    slope_jack, slope_jack_se = log_log_slope(ks, bias["jackknife"], se["jackknife"])
    assert slope_jack + 3 * slope_jack_se <= -1.7, (slope_jack, slope_jack_se)
    # IWAE: the k^-2 term moves the local slope from -1 by 2 |mu_3/3 - 3 mu_2^2/4| / (mu_2 k)
    # = 0.03 at k = 16 (delta method), so -1 +- 0.05 plus 3 s.e.
    assert abs(slope_iwae + 1.0) < 0.05 + 3 * slope_iwae_se, (slope_iwae, slope_iwae_se)


# ---------------------------------------------------------------- SUMO


#: P(K >= j) as Luo et al. (2020) choose it, written out here independently of lvm.
def _survival(j: int) -> float:
    return 1.0 / j if j < 80 else 0.9 ** (j - 80) / 80


def test_sumo_equals_its_naive_definition(model, x, proposal):
    """IWAE_m + sum_{j<=K} (IWAE_{m+j} - IWAE_{m+j-1}) / P(K >= j), on the weights drawn."""
    m, keys = 3, jax.random.split(jax.random.key(5), 8)
    particle_keys, level_keys = jax.vmap(jax.random.split, out_axes=1)(keys)
    num_terms = np.asarray(jax.vmap(sumo_num_terms)(level_keys))
    # Particle i is fold_in(particle_key, i) whatever the length: the first m + K of a longer draw.
    all_log_w = jax.vmap(
        lambda k: lvm.log_weights(
            k, model.log_joint, proposal, x, num_samples=m + int(num_terms.max())
        )
    )(particle_keys)
    got = jax.jit(
        jax.vmap(lambda k: lvm.sumo(k, model.log_joint, proposal, x, num_samples=m, chunk_size=2))
    )(keys)
    for log_w, num, value in zip(np.asarray(all_log_w, np.float64), num_terms, got, strict=True):
        iwae = [logsumexp(log_w[:n]) - math.log(n) for n in range(1, m + num + 1)]
        want = iwae[m - 1] + sum(
            (iwae[m + j - 1] - iwae[m + j - 2]) / _survival(j) for j in range(1, num + 1)
        )
        # float32: the running log-sum-exp (|.| ~ 6) carries ~1e-6 of round-off into each
        # increment, which the weights 1/P(K >= j) <= K multiply.
        np.testing.assert_allclose(float(value), want, rtol=1e-5, atol=1e-6 * num)
    assert num_terms.max() > 1  # some draws go beyond the one term every draw has


def test_sumo_is_unbiased_where_iwae_of_the_same_cost_is_not(model, x, proposal):
    """Mean of 10,000 SUMO estimates (m = 1) within 4 s.e. of log p(x); IWAE with k = 6 is low."""
    exact = float(model.log_marginal(x))
    reps = 10_000
    keys = jax.random.split(jax.random.key(7), reps)
    values = jax.jit(
        jax.vmap(lambda key: lvm.sumo(key, model.log_joint, proposal, x, num_samples=1))
    )(keys)
    mean, se = mean_se(values)
    assert abs(mean - exact) < 4 * se, (mean, exact, se)
    # The same expected cost, 1 + 5.08 weights, spent on IWAE: biased low by ~chi^2/12 = 0.028.
    iwae = jax.jit(
        jax.vmap(
            lambda key: lvm.importance_sampling(key, model.log_joint, proposal, x, num_samples=6)
        )
    )(keys)
    iwae_mean, iwae_se = mean_se(iwae)
    assert iwae_mean - exact < -4 * iwae_se


def test_sumo_number_of_terms_follows_its_distribution():
    """P(K >= j) matches 1/j (j < 80) and 0.9^(j-80)/80 within 4 binomial s.e.; E[K] = H_79 + 1/8."""
    n = 100_000
    draws = np.asarray(jax.jit(jax.vmap(sumo_num_terms))(jax.random.split(jax.random.key(0), n)))
    assert draws.min() >= 1
    for j in (2, 3, 10, 40, 79, 80, 90, 100):
        p = _survival(j)
        assert abs(np.mean(draws >= j) - p) < 4 * math.sqrt(p * (1 - p) / n), j
        assert float(sumo_survival(j)) == pytest.approx(p, rel=1e-6)
    expected = sum(1.0 / j for j in range(1, 80)) + (1.0 / 80) / (1.0 - 0.9)
    assert lvm.estimators.debiased.SUMO_EXPECTED_EXTRA_SAMPLES == pytest.approx(expected)
    mean, se = mean_se(draws)
    assert abs(mean - expected) < 4 * se


def test_sumo_streams_with_a_state_of_scalars(model, x, proposal):
    """The loop over the K extra weights carries scalars only: memory does not depend on K."""
    jaxpr = jax.make_jaxpr(lambda key: lvm.sumo(key, model.log_joint, proposal, x, num_samples=4))(
        jax.random.key(0)
    )
    loops = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "while"]
    assert loops
    for loop in loops:
        assert all(v.aval.shape == () for v in loop.outvars), [v.aval for v in loop.outvars]


class TestBadInput:
    def test_jackknife(self, model, x, proposal):
        key = jax.random.key(0)
        with pytest.raises(ValueError, match="num_samples must be >= 3"):
            lvm.jackknife_iwae(key, model.log_joint, proposal, x, num_samples=2, order=2)
        with pytest.raises(ValueError, match="order"):
            lvm.jackknife_iwae(key, model.log_joint, proposal, x, num_samples=5, order=0)
        with pytest.raises(TypeError, match="order"):
            lvm.jackknife_iwae(key, model.log_joint, proposal, x, num_samples=5, order=1.0)
        with pytest.raises(ValueError, match="NaN or Inf"):
            lvm.jackknife_iwae(key, model.log_joint, proposal, x.at[0].set(jnp.nan), num_samples=5)

    def test_sumo(self, model, x, proposal):
        key = jax.random.key(0)
        with pytest.raises(ValueError, match="num_samples"):
            lvm.sumo(key, model.log_joint, proposal, x, num_samples=0)
        with pytest.raises(ValueError, match="NaN or Inf"):
            lvm.sumo(key, model.log_joint, proposal, x.at[0].set(jnp.inf), num_samples=2)
