"""lvm.optimize_proposal on the linear-Gaussian model, whose posterior N(m, Sigma) and log p(x) are closed forms.

From a poor start, the optimum of each family is known:
* a full Gaussian or a flow contains p(z|x): the ELBO reaches log p(x) (KL -> 0);
* a diagonal Gaussian reaches the best mean-field ELBO, mean m and precisions diag(Sigma^-1):
  log p(x) - KL = log p(x) - (sum_i log Lambda_ii - log det Lambda) / 2, Lambda = Sigma^-1.
Both are computed with numpy/scipy, independently of the library (tests/_posterior_testbed.py). The reached bound is
estimated with n fresh ELBO samples; tolerances are 4 Monte-Carlo standard errors of that mean.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import paramax
import pytest
from _posterior_testbed import D_LATENT, closed_form, make_testbed

import lvm
from lvm.flows import ConditionalIAF, iaf

NUM_EVAL = 40_000
# log w is float32: at q = p(z|x) every log-weight is log p(x) (about -6) up to ~1e-6 relative
# round-off, which the s.e. of a constant does not capture; this floor covers it.
FLOAT32_FLOOR = 1e-4


@pytest.fixture(scope="module")
def model_and_x():
    return make_testbed()


@pytest.fixture(scope="module")
def model(model_and_x):
    return model_and_x[0]


@pytest.fixture(scope="module")
def x(model_and_x):
    return model_and_x[1]


@pytest.fixture(scope="module", name="closed_form")
def closed_form_fixture(model, x):
    return closed_form(model, x)


def _poor_start(family):
    base = lvm.DiagonalNormal(jnp.full(D_LATENT, 3.0), jnp.full(D_LATENT, 0.2))
    if family == "diagonal":
        return base
    if family == "full":
        return lvm.MultivariateNormal(base.loc, jnp.diag(base.scale))
    return iaf(
        jax.random.key(3), base, flow_layers=2, nn_width=16
    )  # identity layers: the poor Gaussian


def _elbo_estimate(model, q, x):
    """Mean of NUM_EVAL fresh log-weights and its standard error."""
    log_w = np.asarray(
        lvm.log_weights(jax.random.key(99), model.log_joint, q, x, num_samples=NUM_EVAL), np.float64
    )
    return log_w.mean(), log_w.std() / math.sqrt(log_w.size)


def _optimize(model, q0, x, objective, num_steps=1000, learning_rate=3e-2):
    run = eqx.filter_jit(
        lambda q0, x: lvm.optimize_proposal(
            jax.random.key(4),
            model.log_joint,
            q0,
            x,
            objective=objective,
            num_steps=num_steps,
            optimizer=optax.adam(optax.cosine_decay_schedule(learning_rate, num_steps)),
        )
    )
    return run(q0, x)


def _exact_elbo(q, closed_form):
    """log p(x) - KL(q || N(m, Lambda^-1)) for a Gaussian q, in numpy."""
    loc = np.asarray(q.loc, np.float64)
    tril = np.tril(np.asarray(q.scale_tril, np.float64))
    cov_q, lam = tril @ tril.T, closed_form["precision"]
    diff = loc - closed_form["mean"]
    kl = 0.5 * (
        np.trace(lam @ cov_q)
        + diff @ lam @ diff
        - D_LATENT
        - np.linalg.slogdet(lam)[1]
        - np.linalg.slogdet(cov_q)[1]
    )
    return closed_form["log_px"] - kl


@pytest.mark.parametrize(
    "family, objective, num_steps, learning_rate",
    [
        ("full", lvm.ELBO(8, gradient="stl"), 1000, 3e-2),
        # From the poor start the IWAE weights are degenerate for a while (one particle takes
        # them all): DReG needs more steps to reach the posterior (1,000 steps left 0.02-0.1 nats).
        ("full", lvm.IWAE(5, gradient="dreg"), 2000, 5e-2),
        ("flow", lvm.ELBO(8, gradient="stl"), 2000, 3e-2),
    ],
    ids=["full-elbo-stl", "full-iwae-dreg", "flow-elbo-stl"],
)
def test_family_containing_the_posterior_reaches_log_px(
    model, x, closed_form, family, objective, num_steps, learning_rate
):
    # STL and DReG gradients vanish at q = p(z|x), so the iterates settle on it. Near q = p(z|x)
    # the s.e. of the n-sample ELBO is about sqrt(2 KL / n), so 4 s.e. asks KL < 32 / n = 8e-4
    # nats. (The IAF's tanh networks only approximate the linear conditional mean of a Gaussian
    # posterior: it reaches KL ~ 2-4e-4 in 2,000 steps.)
    q0 = _poor_start(family)
    start, _ = _elbo_estimate(model, q0, x)
    assert closed_form["log_px"] - start > 10.0  # a poor start indeed
    q_star, info = _optimize(model, q0, x, objective, num_steps, learning_rate)
    assert info.objective.shape == (num_steps,)
    elbo, se = _elbo_estimate(model, q_star, x)
    assert abs(elbo - closed_form["log_px"]) < 4 * se + FLOAT32_FLOOR, (elbo, se)
    assert type(q_star) is type(q0)
    if family == "full":
        assert (
            abs(_exact_elbo(q_star, closed_form) - closed_form["log_px"]) < 4 * se + FLOAT32_FLOOR
        )


def test_diagonal_reaches_the_best_mean_field_elbo(model, x, closed_form):
    target = closed_form["mean_field_elbo"]
    q_star, _ = _optimize(model, _poor_start("diagonal"), x, lvm.ELBO(8, gradient="stl"))
    elbo, se = _elbo_estimate(model, q_star, x)
    assert abs(elbo - target) < 4 * se, (elbo, se, target)
    # The mean-field gap is far outside that tolerance, so a full-covariance answer would fail.
    assert closed_form["log_px"] - target > 20 * se
    # The exact ELBO of q* (closed form) cannot exceed the optimum, and is as close to it.
    exact = _exact_elbo(lvm.MultivariateNormal(q_star.loc, jnp.diag(q_star.scale)), closed_form)
    assert exact <= target + FLOAT32_FLOOR
    assert target - exact < 4 * se


@pytest.mark.parametrize("family", ["diagonal", "full"])
def test_one_step_is_sgd_on_the_unconstrained_parameters(model, x, family):
    # One SGD step of size lr on (loc, log scale) (diagonal) or (loc, strictly-lower L, log L_ii)
    # (full), from the gradient of the objective w.r.t. the proposal's own parameters by the
    # chain rule: d/d log s = s d/ds. And the trace's entry is the objective at step 0's key.
    objective, key, lr = lvm.ELBO(4), jax.random.key(5), 0.1
    q0 = _poor_start(family)
    if family == "full":  # a correlated, non-diagonal start
        q0 = lvm.MultivariateNormal(q0.loc, jnp.array([[0.5, 0.0], [0.3, 0.4]]))
    q1, info = lvm.optimize_proposal(
        key, model.log_joint, q0, x, objective=objective, num_steps=1, optimizer=optax.sgd(lr)
    )
    step_key = jax.random.fold_in(key, 0)
    value, grad = jax.value_and_grad(lambda q: objective(step_key, model.log_joint, q, x))(q0)
    np.testing.assert_allclose(info.objective, [value], rtol=1e-6)
    np.testing.assert_allclose(q1.loc, q0.loc + lr * grad.loc, rtol=1e-5, atol=1e-6)
    if family == "diagonal":
        expected = q0.scale * jnp.exp(lr * q0.scale * grad.scale)
        np.testing.assert_allclose(q1.scale, expected, rtol=1e-5)
    else:
        tril0, g = np.asarray(q0.scale_tril), np.asarray(grad.scale_tril)
        diag = np.diag(tril0) * np.exp(lr * np.diag(tril0) * np.diag(g))
        expected = np.tril(tril0 + lr * g, -1) + np.diag(diag)
        np.testing.assert_allclose(q1.scale_tril, expected, rtol=1e-5, atol=1e-6)


def test_negative_diagonal_start_keeps_its_covariance(model, x):
    # L with a negative L_11: the optimizer works on the column-flipped factor, the same L L^T.
    q0 = lvm.MultivariateNormal(jnp.zeros(D_LATENT), jnp.array([[-0.5, 0.0], [0.3, 0.4]]))
    q, _ = lvm.optimize_proposal(
        jax.random.key(0),
        model.log_joint,
        q0,
        x,
        objective=lvm.ELBO(1),
        num_steps=1,
        optimizer=optax.sgd(0.0),
    )
    np.testing.assert_allclose(q.covariance, q0.covariance, rtol=1e-6)
    assert bool(jnp.all(jnp.diag(q.scale_tril) > 0))


def test_scale_stays_positive_where_a_step_on_the_scale_would_not(model, x):
    # Too wide a start: the ELBO's gradient w.r.t. the scale is strongly negative, and an SGD
    # step of 0.3 on the scale itself would make it negative; on the log-scale it cannot.
    q0 = lvm.DiagonalNormal(jnp.zeros(D_LATENT), jnp.full(D_LATENT, 3.0))
    objective, key, lr = lvm.ELBO(4), jax.random.key(6), 0.3
    grad = jax.grad(lambda q: objective(jax.random.fold_in(key, 0), model.log_joint, q, x))(q0)
    assert bool(jnp.any(q0.scale + lr * grad.scale < 0))
    q, info = lvm.optimize_proposal(
        key, model.log_joint, q0, x, objective=objective, num_steps=1, optimizer=optax.sgd(lr)
    )
    assert bool(jnp.all(q.scale > 0)) and bool(jnp.all(jnp.isfinite(info.objective)))


def test_vmaps_over_datapoints_and_stacked_starts(model, x):
    xs = jax.vmap(lambda k: model.sample(k)[1])(jax.random.split(jax.random.key(7), 3))
    q0s = jax.vmap(lambda s: lvm.DiagonalNormal(jnp.full(D_LATENT, s), jnp.full(D_LATENT, 0.5)))(
        jnp.array([-1.0, 0.0, 2.0])
    )
    settings = dict(objective=lvm.ELBO(2), num_steps=30, optimizer=optax.adam(0.05))

    def one(q0, xi):
        return lvm.optimize_proposal(jax.random.key(8), model.log_joint, q0, xi, **settings)

    q_batch, info_batch = jax.jit(jax.vmap(one))(q0s, xs)
    assert info_batch.objective.shape == (3, 30)
    for i in range(3):
        q_i, info_i = one(jax.tree.map(lambda a, i=i: a[i], q0s), xs[i])
        np.testing.assert_allclose(q_batch.loc[i], q_i.loc, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(q_batch.scale[i], q_i.scale, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(info_batch.objective[i], info_i.objective, rtol=1e-5, atol=1e-5)
    # A flow holds functions in its pytree: equinox's filter transformations batch it, here
    # three flows (built batched) over three datapoints.
    flow0s = eqx.filter_vmap(lambda q: iaf(jax.random.key(9), q, nn_width=8))(q0s)
    flows, info = eqx.filter_jit(eqx.filter_vmap(one))(flow0s, xs)
    assert info.objective.shape == (3, 30)
    assert flows.base.loc.shape == (3, D_LATENT)
    assert bool(jnp.all(jnp.isfinite(info.objective)))


def test_non_trainable_arrays_stay_fixed(model, x):
    # A conditional flow's features h: optimized as free inputs by default, kept with paramax.
    conditional = ConditionalIAF(jax.random.key(10), latent_dim=D_LATENT, cond_dim=3, nn_width=8)
    h = jnp.array([0.5, -1.0, 2.0])
    settings = dict(objective=lvm.ELBO(2), num_steps=3, optimizer=optax.adam(0.1))
    free = conditional(h)
    fixed = eqx.tree_at(lambda q: q.condition, free, paramax.non_trainable(h))

    def run(q0):
        return lvm.optimize_proposal(jax.random.key(11), model.log_joint, q0, x, **settings)[0]

    q_free, q_fixed = eqx.filter_jit(run)(free), eqx.filter_jit(run)(fixed)
    assert float(jnp.max(jnp.abs(q_free.condition - h))) > 1e-2
    np.testing.assert_array_equal(paramax.unwrap(q_fixed).condition, h)
    assert float(jnp.max(jnp.abs(q_fixed.base.loc - free.base.loc))) > 1e-2  # the rest moved


def test_bad_settings_raise(model, x):
    q0 = _poor_start("diagonal")
    good = dict(objective=lvm.ELBO(1), num_steps=2, optimizer=optax.sgd(0.1))
    with pytest.raises(ValueError, match="num_steps"):
        lvm.optimize_proposal(jax.random.key(0), model.log_joint, q0, x, **{**good, "num_steps": 0})
    # (the runtime type checker of the tests may raise first; both messages name the argument)
    with pytest.raises(TypeError, match="optimizer"):
        lvm.optimize_proposal(
            jax.random.key(0), model.log_joint, q0, x, **{**good, "optimizer": "adam"}
        )
    with pytest.raises(TypeError, match="objective"):
        lvm.optimize_proposal(
            jax.random.key(0), model.log_joint, q0, x, **{**good, "objective": "elbo"}
        )
