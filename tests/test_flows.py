"""Normalizing-flow proposals (lvm.flows) against quadrature, their base distribution, the linear-Gaussian
model's exact log p(x) and posterior, and the rule that an estimator never inverts a flow to score its own draw."""

import math

import equinox as eqx
import flowjax.bijections
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _posterior_testbed import D_DATA, D_LATENT, closed_form, make_testbed

import lvm
from lvm.estimators import iwae_dreg
from lvm.flows import ConditionalIAF, Flow, iaf


@pytest.fixture(scope="module")
def model_and_x():
    return make_testbed()


@pytest.fixture(scope="module")
def model(model_and_x):
    return model_and_x[0]


@pytest.fixture(scope="module")
def x(model_and_x):
    return model_and_x[1]


@pytest.fixture(scope="module")
def exact_log_px(model, x):
    return closed_form(model, x)["log_px"]


def _base(d=D_LATENT):
    return lvm.DiagonalNormal(jnp.linspace(-0.5, 0.5, d), jnp.linspace(0.8, 1.2, d))


def _random_iaf(d=D_LATENT, base=None, key=0):
    """A 3-layer IAF away from the identity (flowjax's random init of every layer)."""
    base = _base(d) if base is None else base
    return iaf(jax.random.key(key), base, flow_layers=3, nn_width=8, identity_init=False)


def _random_conditional(d=D_LATENT, cond_dim=D_DATA, key=3):
    return ConditionalIAF(
        jax.random.key(key), latent_dim=d, cond_dim=cond_dim, nn_width=8, identity_init=False
    )


def _leaves(tree):
    return jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))


def _grid_integral(log_prob, half_width=8.0, num=121):
    g = np.linspace(-half_width, half_width, num)
    zz = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    lp = np.asarray(jax.jit(jax.vmap(log_prob))(jnp.asarray(zz, jnp.float32)), np.float64)
    return np.trapezoid(np.trapezoid(np.exp(lp).reshape(num, num), g, axis=1), g)


def test_flow_density_integrates_to_one():
    # Trapezoid rule on [-8, 8]^2, step 2/15. For a smooth density whose tails beyond 8 hold
    # < 1e-9 of the mass it converges faster than any power of the step (with 81 to 241
    # points per axis the integrals differ by < 1e-7, the float32 floor), so 1e-5 is a
    # safe bound; a wrong log-determinant (its sign, a missing layer) moves the integral by O(1).
    unconditional = _random_iaf()
    conditional = _random_conditional()(jnp.array([0.3, -1.0, 2.0, 0.0, 0.5]))
    for flow in (unconditional, conditional):
        assert abs(_grid_integral(flow.log_prob) - 1.0) < 1e-5
        # and the flow is not its base (so the check is not of a Gaussian alone)
        z = jnp.array([0.7, -0.4])
        assert abs(float(flow.log_prob(z) - flow.base.log_prob(z))) > 1e-2


@pytest.mark.parametrize("conditional", [False, True])
def test_sample_and_log_prob_is_sample_then_log_prob(conditional):
    # d = 4, so that the inverse (one autoregressive step per coordinate) is really sequential.
    d, key = 4, jax.random.key(4)
    flow = _random_conditional(d, 3)(jnp.arange(3.0) / 3) if conditional else _random_iaf(d)

    @eqx.filter_jit
    def draws(flow, keys):
        zs, log_qs = jax.vmap(flow.sample_and_log_prob)(keys)
        return zs, log_qs, jax.vmap(flow.sample)(keys), jax.vmap(flow.log_prob)(zs)

    zs, log_qs, zs_sampled, log_qs_scored = draws(flow, jax.random.split(key, 64))
    np.testing.assert_array_equal(zs, zs_sampled)
    np.testing.assert_allclose(log_qs, log_qs_scored, rtol=1e-5, atol=1e-5)
    z, log_q = lvm.sample_and_log_prob(key, flow)
    np.testing.assert_array_equal(z, flow.sample(key))
    np.testing.assert_allclose(log_q, flow.log_prob(z), rtol=1e-5, atol=1e-5)


def test_identity_init_equals_base():
    base = _base(4)
    flow = iaf(jax.random.key(6), base, flow_layers=3, nn_width=8)  # odd: the order is restored
    key = jax.random.key(7)
    zs = lvm.sample_n(key, flow, 32)
    np.testing.assert_allclose(zs, lvm.sample_n(key, base, 32), atol=1e-6)
    np.testing.assert_allclose(
        jax.vmap(flow.log_prob)(zs), jax.vmap(base.log_prob)(zs), rtol=1e-6, atol=1e-5
    )
    conditional = ConditionalIAF(jax.random.key(8), latent_dim=4, cond_dim=3, nn_width=8)
    h = jnp.array([1.0, -2.0, 0.5])
    q = conditional(h)
    np.testing.assert_allclose(
        jax.vmap(q.log_prob)(zs), jax.vmap(conditional.base(h).log_prob)(zs), rtol=1e-6, atol=1e-5
    )


def test_flow_checks_shapes_when_built():
    bijection = _random_conditional().bijection  # d = 2, h of size 5
    with pytest.raises(ValueError, match="conditional"):
        Flow(_base(), bijection)
    with pytest.raises(ValueError, match="condition"):
        Flow(_base(), bijection, jnp.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        Flow(_base(3), bijection, jnp.zeros(D_DATA))
    with pytest.raises(ValueError, match="unconditional"):
        Flow(_base(), _random_iaf().bijection, jnp.zeros(D_DATA))
    with pytest.raises(ValueError, match="nn_activation"):
        lvm.iaf_bijection(jax.random.key(0), dim=3, nn_activation="sigmoid")
    with pytest.raises(ValueError, match="flow_layers"):
        lvm.iaf_bijection(jax.random.key(0), dim=3, flow_layers=0)
    with pytest.raises(ValueError, match="vectors"):
        iaf(jax.random.key(0), lvm.Categorical(jnp.zeros(3)))


def _is_estimate(log_w):
    """log of the mean weight and its delta-method s.e., se(log p_hat) = sd(w) / (sqrt(k) mean(w))."""
    log_w = np.asarray(log_w, np.float64)
    w = np.exp(log_w - log_w.max())
    return np.log(w.mean()) + log_w.max(), w.std() / (math.sqrt(w.size) * w.mean())


def test_flow_is_agrees_with_gaussian_is_on_exact_log_px(model, x, exact_log_px):
    # The proposal changes the variance of the estimate, not its target: both importance-sampling
    # estimates of log p(x), with their delta-method standard errors, agree with the exact value
    # and with each other. (The bias of log p_hat, about -se^2/2, is far below se here.)
    post = model.posterior(x)
    gaussian = lvm.DiagonalNormal(post.loc, 1.5 * jnp.sqrt(jnp.diag(post.covariance)))
    flow = _random_iaf(base=gaussian, key=9)
    k = 20_000
    estimates = {}
    for name, q in (("gaussian", gaussian), ("flow", flow)):
        log_w = lvm.log_weights(jax.random.key(10), model.log_joint, q, x, num_samples=k)
        estimates[name] = _is_estimate(log_w)
        m, se = estimates[name]
        assert abs(m - exact_log_px) < 4 * se, (name, m, se, exact_log_px)
    (m_g, se_g), (m_f, se_f) = estimates["gaussian"], estimates["flow"]
    assert abs(m_g - m_f) < 4 * math.hypot(se_g, se_f)
    # the two proposals really differ (else agreeing would be trivial)
    z = post.loc
    assert abs(float(flow.log_prob(z) - gaussian.log_prob(z))) > 0.05


_OBJECTIVES = [
    lvm.IWAE(5),
    lvm.ELBO(3, gradient="stl"),
    lvm.IWAE(5, gradient="stl"),
    lvm.IWAE(5, gradient="dreg"),
]


@pytest.mark.parametrize("objective", _OBJECTIVES, ids=repr)
def test_estimators_run_on_a_conditional_flow(model, objective):
    """Shape, finiteness, jit, vmap over datapoints, gradients w.r.t. the flow's parameters."""
    xs = jax.vmap(lambda k: model.sample(k)[1])(jax.random.split(jax.random.key(11), 3))
    posterior = _random_conditional()

    def loss(posterior):
        keys = jax.random.split(jax.random.key(13), xs.shape[0])
        bounds = jax.vmap(lambda k, xi: objective(k, model.log_joint, posterior(xi), xi))(keys, xs)
        return -jnp.mean(bounds), bounds

    (value, bounds), grads = eqx.filter_jit(eqx.filter_value_and_grad(loss, has_aux=True))(
        posterior
    )
    assert bounds.shape == (3,) and bool(jnp.all(jnp.isfinite(bounds)))
    leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    if not isinstance(objective, lvm.AIS):  # AIS's value is not differentiated through
        assert any(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)


def test_analytic_kl_refuses_a_flow(model, x):
    # (the tests' runtime type checker raises first; its message and ours both name the function)
    with pytest.raises(TypeError, match="kl_divergence"):
        lvm.ELBOAnalyticKL()(jax.random.key(0), model.log_joint, _random_iaf(), x)


def test_ais_starts_from_a_flow(model, x):
    # The path's log q(z) and its gradient are needed at every HMC position: AIS calls the
    # flow's log_prob (its inverse), which it may; the run is finite.
    ais = lvm.AIS(num_steps=3, num_chains=2, num_leapfrog_steps=2)
    value = eqx.filter_jit(lambda q: ais(jax.random.key(19), model.log_joint, q, x))(_random_iaf())
    assert value.shape == () and bool(jnp.isfinite(value))


class _Uninvertible(eqx.Module):
    """A flow whose log_prob (the inverse pass) raises: what must never be called to score a draw."""

    flow: Flow

    def sample(self, key):
        return self.flow.sample(key)

    def sample_and_log_prob(self, key):
        return self.flow.sample_and_log_prob(key)

    def log_prob(self, z):
        raise AssertionError("log_prob (the inverse) was called")


def test_importance_sampling_never_inverts_a_flow(model, x, monkeypatch):
    flow = _random_iaf()
    guarded = _Uninvertible(flow)
    key, lj = jax.random.key(14), model.log_joint

    def estimates(q):
        return (
            lvm.iwae_bound(key, lj, q, x, num_samples=7, chunk_size=3),
            lvm.elbo(key, lj, q, x, num_samples=4),
            lvm.elbo_decomposition(key, lj, q, x, num_samples=4).entropy,
            lvm.log_weights(key, lj, q, x, num_samples=4),
            eqx.filter_grad(lambda q: lvm.IWAE(5)(key, lj, q, x))(q),
            lvm.sample_n_and_log_prob(key, q, 3),
        )

    # Tracing is enough: a call of log_prob would raise while the estimators are traced.
    eqx.filter_eval_shape(estimates, guarded)
    # and the guarded flow's estimate is the flow's own (log q is the same number)
    np.testing.assert_allclose(
        lvm.iwae_bound(key, lj, guarded, x, num_samples=7),
        lvm.iwae_bound(key, lj, flow, x, num_samples=7),
        rtol=1e-6,
    )

    # The same with the real flow and flowjax's autoregressive inverse itself made to raise.
    def no_inverse(*args, **kwargs):
        raise AssertionError("MaskedAutoregressive inverse called")

    monkeypatch.setattr(flowjax.bijections.MaskedAutoregressive, "inverse_and_log_det", no_inverse)
    eqx.filter_eval_shape(estimates, flow)
    with pytest.raises(AssertionError, match="inverse"):
        flow.log_prob(jnp.zeros(D_LATENT))
    # STL and DReG need log q at z with q's parameters stopped: the inverse, by design.
    with pytest.raises(AssertionError, match="inverse"):
        lvm.ELBO(4, gradient="stl")(key, lj, flow, x)
    with pytest.raises(AssertionError, match="inverse"):
        iwae_dreg(key, lj, flow, x, num_samples=4)


def _flat_grad(objective, q, lj, x, key):
    grads = eqx.filter_grad(lambda q: objective(key, lj, q, x))(q)
    return jnp.concatenate(
        [g.ravel() for g in jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))]
    )


def test_stl_and_dreg_gradients_vanish_at_the_posterior_for_a_flow(model, x):
    # q = p(z|x) exactly: the exact posterior Gaussian as base, identity IAF layers. Every
    # log-weight is then the constant log p(x) as a function of z, so the STL and DReG
    # gradients w.r.t. all of q's parameters (base and layers) are 0 per sample, up to float32
    # round-off; the reparameterized one keeps the score term, of order 1.
    flow = iaf(jax.random.key(15), model.posterior(x), nn_width=8, flow_layers=3)
    lj, key = model.log_joint, jax.random.key(16)
    moved = _random_iaf()

    @eqx.filter_jit
    def gradients(flow, moved):
        return (
            _flat_grad(lvm.IWAE(5), flow, lj, x, key),
            _flat_grad(lvm.ELBO(5, gradient="stl"), flow, lj, x, key),
            _flat_grad(lvm.IWAE(5, gradient="dreg"), flow, lj, x, key),
            _flat_grad(lvm.ELBO(5, gradient="stl"), moved, lj, x, key),
        )

    reparam, stl, dreg, stl_moved = gradients(flow, moved)
    assert float(jnp.max(jnp.abs(reparam))) > 0.1
    assert float(jnp.max(jnp.abs(stl))) < 1e-4
    assert float(jnp.max(jnp.abs(dreg))) < 1e-4
    # Away from the posterior they do move q.
    assert float(jnp.max(jnp.abs(stl_moved))) > 0.1


def test_stl_is_unbiased_for_the_elbo_of_a_flow(model, x):
    # E[grad STL] = E[grad reparam] = grad ELBO (the dropped score term has mean zero): the mean
    # difference of n = 4000 single-sample gradients, projected on a fixed random direction,
    # is within 4 standard errors of zero.
    flow, lj, n = _random_iaf(), model.log_joint, 4000
    keys = jax.random.split(jax.random.key(17), n)

    @eqx.filter_jit
    def per_sample(flow):
        def both(k):
            return (
                _flat_grad(lvm.ELBO(1, gradient="stl"), flow, lj, x, k),
                _flat_grad(lvm.ELBO(1), flow, lj, x, k),
            )

        return jax.vmap(both)(keys)

    g_stl, g_rep = per_sample(flow)
    direction = jax.random.normal(jax.random.key(18), g_stl.shape[1:])
    diffs = np.asarray((g_stl - g_rep) @ direction, np.float64)
    assert abs(diffs.mean()) < 4 * diffs.std() / math.sqrt(n)
    # and the two differ per sample (STL is not the same estimator)
    assert diffs.std() > 1e-3
