"""The binary-latent VAE (``lvm.BernoulliVAE``): its densities against scipy, its IS log p(x)
against exact enumeration over all 2^d latent values, training with every discrete gradient
option, and a checkpoint round trip."""

import itertools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

import lvm
from lvm import BernoulliVAE, BernoulliVAEConfig
from lvm.evaluate import bound
from lvm.train import TrainConfig, load_model, train

TINY = BernoulliVAEConfig(data_dim=6, latent_dim=3, hidden_sizes=(5,))


def _binary(key, shape) -> jax.Array:
    return jax.random.bernoulli(key, 0.5, shape).astype(jnp.float32)


def _with_prior(model: BernoulliVAE, key) -> BernoulliVAE:
    """The model with prior logits away from 0, so that the prior term is tested too."""
    logits = jax.random.normal(key, model.prior_logits.shape)
    return eqx.tree_at(lambda m: m.prior_logits, model, logits)


def test_log_joint_against_scipy_bernoulli_sums():
    model = _with_prior(BernoulliVAE(TINY, key=jax.random.key(0)), jax.random.key(1))
    x, z = _binary(jax.random.key(2), (6,)), _binary(jax.random.key(3), (3,))
    prior_p = scipy.special.expit(np.asarray(model.prior_logits, np.float64))
    pixel_p = scipy.special.expit(np.asarray(model.decode(z), np.float64))
    expected_prior = scipy.stats.bernoulli.logpmf(np.asarray(z), prior_p).sum()
    expected_lik = scipy.stats.bernoulli.logpmf(np.asarray(x), pixel_p).sum()
    np.testing.assert_allclose(model.prior().log_prob(z), expected_prior, rtol=1e-5)
    np.testing.assert_allclose(model.log_likelihood(x, z), expected_lik, rtol=1e-5)
    np.testing.assert_allclose(model.log_joint(x, z), expected_prior + expected_lik, rtol=1e-5)
    # The uniform prior: d log(1/2) whatever z.
    uniform = BernoulliVAE(
        BernoulliVAEConfig(data_dim=6, latent_dim=3, hidden_sizes=(5,), prior="uniform"),
        key=jax.random.key(0),
    )
    np.testing.assert_allclose(uniform.prior().log_prob(z), 3 * math.log(0.5), rtol=1e-6)


def test_encode_log_prob_against_scipy_and_the_baseline_wrapper():
    config = BernoulliVAEConfig(data_dim=6, latent_dim=3, hidden_sizes=(5,), baseline_hidden=4)
    model = BernoulliVAE(config, key=jax.random.key(0))
    x, z = _binary(jax.random.key(2), (6,)), _binary(jax.random.key(3), (3,))
    q = model.encode(x)
    assert isinstance(q, lvm.WithBaseline) and q.baseline.shape == () == q.log_scale.shape
    p = scipy.special.expit(np.asarray(model.encoder(x), np.float64))
    expected = scipy.stats.bernoulli.logpmf(np.asarray(z), p).sum()
    np.testing.assert_allclose(q.log_prob(z), expected, rtol=1e-5)
    # The baseline is data_dim times the network's output (nats per pixel).
    np.testing.assert_allclose(q.baseline, 6 * model.baseline_net(x)[0], rtol=1e-6)
    # Without a baseline network, a plain Bernoulli with the same logits.
    plain = BernoulliVAE(TINY, key=jax.random.key(0)).encode(x)
    assert isinstance(plain, lvm.Bernoulli) and plain.logits.shape == (3,)
    draw = q.sample(jax.random.key(4))
    assert draw.shape == (3,) and set(np.unique(draw)) <= {0.0, 1.0}


def test_bad_configs_and_inputs_are_refused_by_name():
    with pytest.raises(ValueError, match="prior"):
        BernoulliVAEConfig(prior="gaussian")
    with pytest.raises(ValueError, match="activation"):
        BernoulliVAEConfig(activation="sin")
    with pytest.raises(TypeError, match="baseline_hidden"):
        BernoulliVAEConfig(baseline_hidden=2.5)
    with pytest.raises(ValueError, match="layer sizes"):
        BernoulliVAEConfig(latent_dim=0)
    model = BernoulliVAE(TINY, key=jax.random.key(0))
    with pytest.raises(ValueError, match="x must have shape"):
        model.encode(jnp.zeros(5))
    with pytest.raises(ValueError, match="z must have shape"):
        model.log_likelihood(jnp.zeros(6), jnp.zeros(4))
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        model.validate_data(np.full((2, 6), 2.0, np.float32))


def _exact_log_px(model: BernoulliVAE, x) -> jax.Array:
    """log p(x) = logsumexp over all 2^d binary z of log p(x, z)."""
    d = model.config.latent_dim
    states = jnp.asarray(list(itertools.product((0.0, 1.0), repeat=d)), jnp.float32)
    return jax.scipy.special.logsumexp(jax.vmap(lambda z: model.log_joint(x, z))(states))


@eqx.filter_jit
def _is_and_exact(model: BernoulliVAE, xs, key, k: int):
    """Per image: the IS estimate of log p(x) with q(z|x) (``lvm.importance_sampling``), its
    k log-weights (the same draws, ``lvm.log_weights``), and the exact log p(x)."""

    def one(i, x):
        q, key_i = model.encode(x), jax.random.fold_in(key, i)
        estimate = lvm.importance_sampling(key_i, model.log_joint, q, x, num_samples=k)
        log_w = lvm.log_weights(key_i, model.log_joint, q, x, num_samples=k)
        return estimate, log_w, _exact_log_px(model, x)

    return jax.vmap(one)(jnp.arange(len(xs)), xs)


def test_importance_sampled_log_px_against_exact_enumeration():
    config = BernoulliVAEConfig(data_dim=10, latent_dim=8, hidden_sizes=(12,))
    model = _with_prior(BernoulliVAE(config, key=jax.random.key(5)), jax.random.key(6))
    xs = _binary(jax.random.key(7), (4, 10))
    k = 4096
    estimates, log_w, exact = _is_and_exact(model, xs, jax.random.key(8), k)
    np.testing.assert_allclose(estimates, jax.vmap(lvm.log_mean_exp)(log_w), rtol=1e-6)
    for i in range(len(xs)):
        # The estimate's standard error by the delta method, from its own k weights:
        # se(log p_hat) = sd(w) / (sqrt(k) mean(w)). The bias of the log of the mean, about
        # -se^2 / 2, is far below it here.
        lw = np.asarray(log_w[i], np.float64)
        w = np.exp(lw - lw.max())
        se = w.std(ddof=1) / (math.sqrt(k) * w.mean())
        assert 0 < se < 0.1, se
        assert abs(float(estimates[i]) - float(exact[i])) < 4 * se, (estimates[i], exact[i], se)


#: Every gradient option a binary-latent model trains with.
OPTIONS = {
    "reinforce": (lvm.ELBO(1, gradient="reinforce"), None),
    "leave_one_out": (lvm.ELBO(2, gradient="reinforce", baseline="leave_one_out"), None),
    "nvil": (lvm.ELBO(1, gradient="reinforce", baseline="learned", normalize=True), 8),
    "iwae_reinforce": (lvm.IWAE(3, gradient="reinforce"), None),
    "vimco": (lvm.IWAE(3, gradient="vimco"), None),
    "concrete": (lvm.ELBO(1, gradient="concrete", temperature=2 / 3), None),
    "iwae_concrete": (lvm.IWAE(3, gradient="concrete", temperature=0.5), None),
}


@pytest.fixture(scope="module")
def tiny_data():
    """64 binary 16-pixel images from two prototypes, each pixel flipped with probability 0.1."""
    prototypes = np.array([[1.0] * 8 + [0.0] * 8, [0.0, 1.0] * 8], np.float32)
    rng = np.random.default_rng(0)
    images = prototypes[rng.integers(0, 2, 64)]
    flips = rng.random(images.shape) < 0.1
    return np.where(flips, 1.0 - images, images).astype(np.float32)


@pytest.mark.parametrize("option", list(OPTIONS))
def test_trains_with_every_discrete_gradient_and_its_bound_improves(option, tiny_data):
    objective, baseline_hidden = OPTIONS[option]
    config = BernoulliVAEConfig(
        data_dim=16, latent_dim=4, hidden_sizes=(16,), baseline_hidden=baseline_hidden
    )
    model = BernoulliVAE(config, key=jax.random.key(0))
    key = jax.random.key(1)
    before = np.asarray(bound(key, model, tiny_data, lvm.ELBO(1)), np.float64)
    run = TrainConfig(objective=objective, num_epochs=10, batch_size=16, learning_rate=1e-2)
    result = train(model, tiny_data, run, progress=False)
    after = np.asarray(bound(key, result.model, tiny_data, lvm.ELBO(1)), np.float64)
    assert all(math.isfinite(e["train_bound"]) for e in result.history)
    assert all(eqx.is_array(a) and bool(jnp.all(jnp.isfinite(a))) for a in _arrays(result.model))
    # The ELBO of the same images with the same key: the paired gain must be more than
    # 4 standard errors of the paired difference (the start is ~11 nats/image for 16
    # pixels; the trained model reaches ~5-6).
    gain = after - before
    assert gain.mean() > 4 * gain.std(ddof=1) / math.sqrt(len(gain)), gain.mean()


def _arrays(model):
    return jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))


@pytest.mark.parametrize("baseline_hidden", [None, 4])
def test_load_model_round_trip(tmp_path, baseline_hidden, tiny_data):
    config = BernoulliVAEConfig(
        data_dim=16, latent_dim=4, hidden_sizes=(8,), baseline_hidden=baseline_hidden
    )
    objective = (
        lvm.ELBO(1, gradient="reinforce", baseline="learned", normalize=True)
        if baseline_hidden
        else lvm.IWAE(3, gradient="vimco")
    )
    run = TrainConfig(objective=objective, num_epochs=1, batch_size=16, checkpoint_every=1)
    result = train(BernoulliVAE(config, key=jax.random.key(0)), tiny_data, run, out_dir=tmp_path)
    loaded = load_model(
        tmp_path / "checkpoint.eqx", like=BernoulliVAE(config, key=jax.random.key(9))
    )
    assert loaded.config == config
    for a, b in zip(_arrays(loaded), _arrays(result.model), strict=True):
        np.testing.assert_array_equal(a, b)
    x = jnp.asarray(tiny_data[0])
    z = loaded.encode(x).sample(jax.random.key(0))
    assert loaded.log_joint(x, z) == result.model.log_joint(x, z)
