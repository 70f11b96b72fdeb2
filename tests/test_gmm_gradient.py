"""Gradient ascent on the exact log-marginal reaches the EM optimum."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lvm
from lvm.data.old_faithful import load_old_faithful
from lvm.fit import fit_em_from, gradient, initialize
from lvm.fit.gradient import constrain, fit_gradient, make_gradient_step, unconstrain


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_gradient_fit_reaches_em_optimum_on_old_faithful(covariance_type):
    x = load_old_faithful(np.float32)
    p0 = initialize(jax.random.key(0), x, num_components=2, covariance_type=covariance_type)
    em = fit_em_from(p0, x, tol=1e-7, max_iter=500)
    params, trace = fit_gradient(p0, x, num_steps=1500)
    assert trace.shape == (1500,)
    direct = jnp.mean(jax.vmap(params.log_marginal)(jnp.asarray(x)))
    # Adam stops after a fixed number of steps: within 1e-3 nats/point of the optimum. Near
    # it the log-likelihood drops by ~(N_k / 2N) (d_mu / sigma)^2, so 1e-3 nats allows a mean
    # error of sigma * sqrt(2e-3 / 0.36) ~ 0.075 sigma; with the clusters' eruption-time
    # sigma ~ 0.25 to 0.45 min, that is 0.02 to 0.03 min.
    assert abs(float(direct) - float(em.log_likelihood)) < 1e-3
    assert abs(float(trace[-1]) - float(direct)) < 1e-3
    np.testing.assert_allclose(
        np.sort(params.means[:, 0]), np.sort(em.params.means[:, 0]), atol=0.02
    )


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_unconstrain_round_trip(covariance_type):
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    p = initialize(jax.random.key(1), x, num_components=3, covariance_type=covariance_type)
    back = constrain(unconstrain(p), covariance_type)
    # exp(log(s)) in float32: a few eps relative (1e-5 = 80 eps).
    np.testing.assert_allclose(back.scale, p.scale, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        back.log_mixture_weights, p.log_mixture_weights, rtol=1e-5, atol=1e-6
    )


def test_unconstrain_keeps_covariances_of_a_negative_cholesky_diagonal():
    # A valid full-covariance mixture whose factors have negative diagonal entries: the free
    # parameters must describe the same covariances (log of a negative number would be NaN).
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    p = initialize(jax.random.key(1), x, num_components=3)
    flip = jnp.array([-1.0, 1.0, -1.0])[None, None, :]
    signed = lvm.GaussianMixture(p.logits, p.means, p.scale * flip)
    raw = unconstrain(signed)
    assert np.all(np.isfinite(np.asarray(raw.raw_scale)))
    np.testing.assert_allclose(constrain(raw, "full").covariances, p.covariances, rtol=1e-5)


def test_fit_gradient_compiles_once_for_new_data_and_learning_rate():
    x = load_old_faithful(np.float32)
    p0 = initialize(jax.random.key(0), x, num_components=2)
    fit_gradient(p0, x, num_steps=5, learning_rate=0.05)
    size = gradient._fit_gradient_jit._cache_size()
    shifted = x + np.float32(0.5)
    fit_gradient(p0, shifted, num_steps=5, learning_rate=0.01)
    assert gradient._fit_gradient_jit._cache_size() == size


def test_gradient_step_increases_likelihood_without_retracing():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(64, 2)), jnp.float32)
    w = jnp.ones(64)
    init, step = make_gradient_step(optax.adam(0.05), covariance_type="full")
    step = jax.jit(step)
    state = init(initialize(jax.random.key(0), x, num_components=2))
    lls = []
    for _ in range(30):
        state, info = step(state, x, w)
        lls.append(float(info.log_likelihood))
    assert step._cache_size() == 1
    assert int(state.step) == 30 and lls[-1] > lls[0]
