"""The VAE model with the library's estimators: identities, bounds, gradients, input checks."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import lvm
from lvm import ELBOAnalyticKL, model_bound
from lvm.models.vae import VAE, VAEConfig
from lvm.testing import mean_se

TINY = VAEConfig(data_dim=12, latent_dim=3, hidden_sizes=(8,))


@pytest.fixture(scope="module")
def model():
    return VAE(TINY, key=jax.random.key(0))


@pytest.fixture(scope="module")
def data():
    return (jax.random.uniform(jax.random.key(1), (40, TINY.data_dim)) < 0.3).astype(jnp.float32)


def test_default_is_the_iwae_paper_architecture():
    m = VAE(key=jax.random.key(0))
    enc = [(layer.in_features, layer.out_features) for layer in m.encoder.layers]
    dec = [(layer.in_features, layer.out_features) for layer in m.decoder.layers]
    assert enc == [(784, 200), (200, 200), (200, 100)]
    assert dec == [(50, 200), (200, 200), (200, 784)]
    assert m.config.activation == "tanh"


def test_shapes_and_distributions(model, data):
    x = data[0]
    q = model.encode(x)
    assert isinstance(q, lvm.DiagonalNormal) and q.loc.shape == (3,) and bool(jnp.all(q.scale > 0))
    z, x_sample = model.sample(jax.random.key(2))
    assert z.shape == (3,) and x_sample.shape == (12,)
    assert set(np.unique(np.asarray(x_sample))) <= {0.0, 1.0}
    np.testing.assert_array_equal(model.prior().loc, np.zeros(3))


def test_log_likelihood_is_a_product_of_bernoullis(model, data):
    z = jax.random.normal(jax.random.key(3), (3,))
    x = data[0]
    p = np.asarray(jax.nn.sigmoid(model.decode(z)), np.float64)
    expected = scipy.stats.bernoulli.logpmf(np.asarray(x), p).sum()
    np.testing.assert_allclose(model.log_likelihood(x, z), expected, rtol=1e-5)
    prior = scipy.stats.norm.logpdf(np.asarray(z)).sum()
    np.testing.assert_allclose(model.log_joint(x, z), expected + prior, rtol=1e-5)


def test_exp_scale_option():
    m = VAE(
        VAEConfig(data_dim=4, latent_dim=2, hidden_sizes=(3,), scale="exp"), key=jax.random.key(0)
    )
    x = jnp.ones(4)
    raw = m.encoder(x)[2:]
    np.testing.assert_allclose(m.encode(x).scale, np.exp(raw), rtol=1e-6)


@eqx.filter_jit
def _bounds(objective, model, keys, data):
    return jax.vmap(lambda kk, x: model_bound(kk, model, x, objective))(keys, data)


def test_iwae_with_one_sample_is_the_elbo(model, data):
    keys = jax.random.split(jax.random.key(10), data.shape[0])
    iwae = _bounds(lvm.IWAE(1), model, keys, data)
    elbo = _bounds(lvm.ELBO(1), model, keys, data)
    np.testing.assert_allclose(iwae, elbo, rtol=1e-6)


def test_iwae_bound_is_above_the_elbo_on_the_same_particles(model, data):
    keys = jax.random.split(jax.random.key(4), data.shape[0])
    iwae = _bounds(lvm.IWAE(5), model, keys, data)
    elbo = _bounds(lvm.ELBO(5), model, keys, data)
    # log-mean-exp >= mean on the same log-weights (Jensen), datapoint by datapoint.
    assert bool(jnp.all(iwae >= elbo - 1e-4))
    assert float(jnp.mean(iwae - elbo)) > 0.0


def test_iwae_bound_is_non_decreasing_in_k(model, data):
    """E[L_1] <= E[L_5] <= E[L_50] (Burda et al., 2016, Theorem 1), for ``lvm.iwae_bound``
    itself. Its particle i is drawn with ``fold_in(key, i)``, so with one key L_1, L_5 and L_50
    share their first particles: the differences within a replicate are paired. The increase
    is strict here, q(z|x) of this untrained model being far from p(z|x): seed 0 gives
    +0.31 and +0.27 nats (19 and 17 standard errors), so require more than 3 standard errors;
    a k-sample ELBO in place of L_k would not increase at all."""
    reps, x, ks = 200, data[:10], (1, 5, 50)

    @jax.jit
    def bounds(model, keys):
        def per_x(kk, xi):
            q = model.encode(xi)
            return jnp.stack(
                [lvm.iwae_bound(kk, model.log_joint, q, xi, num_samples=k) for k in ks]
            )

        return jax.vmap(lambda kk: jax.vmap(per_x)(jax.random.split(kk, 10), x))(keys)

    per_rep = jnp.mean(bounds(model, jax.random.split(jax.random.key(1), reps)), axis=1)
    for lo, hi in ((0, 1), (1, 2)):
        diff = per_rep[:, hi] - per_rep[:, lo]
        mean, se = mean_se(diff)
        assert mean > 3.0 * se, (ks[lo], ks[hi], mean, se)


def test_analytic_kl_elbo_matches_the_monte_carlo_elbo(model, data):
    """Same expectation, E_q[log p(x|z)] - KL(q||p) = E_q[log p(x,z) - log q(z)]: compare within 4 SE."""
    x = data[0]
    k = 20_000
    mc = eqx.filter_jit(
        lambda m: lvm.log_weights(jax.random.key(5), m.log_joint, m.encode(x), x, num_samples=k)
    )(model)
    analytic = eqx.filter_jit(model_bound)(jax.random.key(6), model, x, ELBOAnalyticKL(k))
    mean, se = mean_se(mc)
    assert abs(mean - float(analytic)) < 4.0 * se + 1e-3


def test_reparameterized_gradient_matches_finite_differences():
    """With the key fixed, the bound is a smooth function of all parameters: its pathwise
    gradient must equal a central difference along a random direction (float64)."""
    with jax.enable_x64(True):
        m = VAE(VAEConfig(data_dim=6, latent_dim=2, hidden_sizes=(5,)), key=jax.random.key(0))
        m = jax.tree.map(lambda a: a.astype(jnp.float64), m)
        x = jnp.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
        for objective in (lvm.ELBO(3), lvm.IWAE(4), ELBOAnalyticKL(2)):

            @jax.jit
            @jax.value_and_grad
            def f(model, objective=objective):
                return model_bound(jax.random.key(7), model, x, objective)

            _, grad = f(m)
            leaves, treedef = jax.tree.flatten(m)
            dirs = [
                jax.random.normal(jax.random.fold_in(jax.random.key(8), i), a.shape, a.dtype)
                for i, a in enumerate(leaves)
            ]
            v = jax.tree.unflatten(treedef, dirs)
            h = 1e-5
            plus = jax.tree.map(lambda a, d: a + 1e-5 * d, m, v)
            minus = jax.tree.map(lambda a, d: a - 1e-5 * d, m, v)
            fd = (f(plus)[0] - f(minus)[0]) / (2 * h)
            directional = sum(
                jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grad), dirs, strict=True)
            )
            np.testing.assert_allclose(directional, fd, rtol=1e-6)
            assert abs(float(directional)) > 1e-3


def test_wrong_shapes_raise_clearly(model):
    with pytest.raises(ValueError, match=r"x must have shape \(12,\)"):
        model.encode(jnp.zeros(13))
    with pytest.raises(ValueError, match=r"z must have shape \(3,\)"):
        model.decode(jnp.zeros(4))


def test_nan_input_raises(model):
    x = jnp.zeros(12).at[3].set(jnp.nan)
    with pytest.raises(ValueError, match="NaN"):
        model_bound(jax.random.key(0), model, x, lvm.IWAE(3))


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="activation"):
        VAEConfig(activation="sigmoidal")
    with pytest.raises(ValueError, match="scale"):
        VAEConfig(scale="square")
    with pytest.raises(ValueError, match=">= 1"):
        VAEConfig(hidden_sizes=(0,))
