"""The two-stochastic-layer VAE (Burda et al., 2016): its joint density and its posterior against
scipy with the networks run in NumPy, its samplers, training, IS against AIS, and checkpoints."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from _numpy_reference import np_mlp

import lvm
from lvm.evaluate import bound, evaluate, log_px
from lvm.models.vae2 import TwoLayerVAE, TwoLayerVAEConfig
from lvm.testing import mean_se
from lvm.train import CheckpointError, TrainConfig, load_model, train

CONFIG = TwoLayerVAEConfig(data_dim=12, latent_dims=(4, 2), hidden_sizes=((16,), (8, 8)))


def _np_gaussian(head, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    loc, raw = np.split(np_mlp(head.mlp, h), 2, axis=-1)
    return loc, np.logaddexp(0.0, raw)  # softplus scales


def _binary(n: int) -> np.ndarray:
    """Two prototype images with 10 % of their pixels flipped."""
    rng = np.random.default_rng(0)
    prototypes = rng.random((2, CONFIG.data_dim)) < 0.5
    flips = rng.random((n, CONFIG.data_dim)) < 0.1
    return (prototypes[rng.integers(0, 2, n)] ^ flips).astype(np.float32)


def _bytes(tree) -> list[bytes]:
    return [np.asarray(leaf).tobytes() for leaf in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


def test_default_is_burda_et_al_two_layer_architecture():
    model = TwoLayerVAE(key=jax.random.key(0))
    shapes = lambda mlp: [layer.weight.shape for layer in mlp.layers]  # noqa: E731
    assert shapes(model.encoder1.mlp) == [(200, 784), (200, 200), (200, 200)]  # 100 locs, scales
    assert shapes(model.encoder2.mlp) == [(100, 100), (100, 100), (100, 100)]  # 50 + 50
    assert shapes(model.decoder2.mlp) == [(100, 50), (100, 100), (200, 100)]  # 100 + 100
    assert shapes(model.decoder1) == [(200, 100), (200, 200), (784, 200)]
    assert model.config.latent_dim == 150
    x = jnp.zeros(784)
    assert model.encode(x).sample(jax.random.key(1)).shape == (150,)


def test_log_joint_against_scipy():
    model = TwoLayerVAE(CONFIG, key=jax.random.key(0))
    x = _binary(3)
    zs = 1.3 * np.random.default_rng(1).normal(size=(3, 6))
    for xi, z in zip(x.astype(np.float64), zs, strict=True):
        z1, z2 = z[:4], z[4:]
        loc, scale = _np_gaussian(model.decoder2, z2)
        probs = scipy.special.expit(np_mlp(model.decoder1, z1))
        expected = (
            scipy.stats.norm.logpdf(z2).sum()
            + scipy.stats.norm.logpdf(z1, loc, scale).sum()
            + scipy.stats.bernoulli.logpmf(xi, probs).sum()
        )
        z32 = jnp.asarray(z, jnp.float32)
        np.testing.assert_allclose(model.log_joint(jnp.asarray(xi), z32), expected, rtol=1e-5)
        np.testing.assert_allclose(
            model.prior().log_prob(z32), expected - scipy.stats.bernoulli.logpmf(xi, probs).sum(),
            rtol=1e-5,
        )  # fmt: skip


def test_encode_log_prob_against_scipy_and_its_sampler():
    model = TwoLayerVAE(CONFIG, key=jax.random.key(0))
    x = _binary(1)[0]
    q = model.encode(jnp.asarray(x))
    loc1, scale1 = _np_gaussian(model.encoder1, x.astype(np.float64))
    for z in 1.3 * np.random.default_rng(2).normal(size=(3, 6)):
        loc2, scale2 = _np_gaussian(model.encoder2, z[:4])
        expected = (
            scipy.stats.norm.logpdf(z[:4], loc1, scale1).sum()
            + scipy.stats.norm.logpdf(z[4:], loc2, scale2).sum()
        )
        np.testing.assert_allclose(q.log_prob(jnp.asarray(z, jnp.float32)), expected, rtol=1e-5)
    # sample_and_log_prob: the z of sample(key) and log_prob of it.
    z, log_q = q.sample_and_log_prob(jax.random.key(3))
    np.testing.assert_array_equal(z, q.sample(jax.random.key(3)))
    np.testing.assert_allclose(log_q, q.log_prob(z), rtol=1e-6)
    # z1 ~ q(z1 | x): its moments, within 4 standard errors; z2 | z1 is the conditional:
    # its standardized residuals (z2 - mu(z1)) / sigma(z1) are N(0, 1).
    n = 20_000
    draws = np.asarray(lvm.sample_n(jax.random.key(4), q, n), np.float64)
    z1, z2 = draws[:, :4], draws[:, 4:]
    np.testing.assert_array_less(np.abs(z1.mean(0) - loc1), 4 * scale1 / np.sqrt(n))
    loc2, scale2 = _np_gaussian(model.encoder2, z1)
    residual = (z2 - loc2) / scale2
    np.testing.assert_array_less(np.abs(residual.mean(0)), 4 / np.sqrt(n))
    np.testing.assert_array_less(np.abs(residual.var(0) - 1.0), 4 * np.sqrt(2 / n))
    # loc: the plug-in mean (mean of z1, then the mean of z2 at z1's mean), what active units read.
    np.testing.assert_allclose(
        q.loc, np.concatenate([loc1, _np_gaussian(model.encoder2, loc1)[0]]), rtol=1e-5
    )
    # The prior's sampler: z2 ~ N(0, I).
    prior_draws = np.asarray(lvm.sample_n(jax.random.key(5), model.prior(), n), np.float64)
    np.testing.assert_array_less(np.abs(prior_draws[:, 4:].mean(0)), 4 / np.sqrt(n))


def test_trains_reloads_and_is_agrees_with_ais(tmp_path):
    images = _binary(240)
    images, validation = images[:200], images[200:]
    config = TrainConfig(
        objective=lvm.IWAE(2), num_epochs=4, batch_size=20, learning_rate=1e-2, eval_every=1
    )
    model = TwoLayerVAE(CONFIG, key=jax.random.key(0))
    result = train(model, images, config, validation_x=validation, out_dir=tmp_path, progress=False)
    start = bound(jax.random.key(5), model, validation, lvm.IWAE(2)).mean()
    bounds = [h["validation_bound"] for h in result.history]
    # From about -12 log 2 = -8.3 nats (random decoder) towards the flip noise's entropy,
    # 12 H(0.1) = 3.9 nats: a gain of nats, far beyond the noise of 40 images' bounds.
    assert bounds[-1] > start + 1.0, (start, bounds)

    # A model that is not the library's VAE reloads into a template of the same structure.
    checkpoint = tmp_path / "checkpoint.eqx"
    with pytest.raises(CheckpointError, match="like="):
        load_model(checkpoint)
    loaded = load_model(checkpoint, like=TwoLayerVAE(CONFIG, key=jax.random.key(99)))
    assert _bytes(loaded) == _bytes(result.model)

    # IS and AIS estimate the same log p(x): their paired difference is within its noise.
    summary = evaluate(
        jax.random.key(1), loaded, validation, lvm.IWAE(1000, chunk_size=100), progress=False
    )
    assert summary.active_units is not None and 0 <= summary.active_units <= 6
    iwae = log_px(
        jax.random.key(2), loaded, validation, lvm.IWAE(1000, chunk_size=100), progress=False
    )
    ais = log_px(jax.random.key(3), loaded, validation, lvm.AIS(100), progress=False)
    diff, se = mean_se(ais - iwae)
    assert abs(diff) < 4 * se + 0.05, (diff, se)  # + both estimators' O(1/k), O(1/T) bias
    assert summary.elbo < summary.log_px + 4 * se


def test_bad_configs_and_inputs_raise():
    with pytest.raises(ValueError, match="two entries"):
        TwoLayerVAEConfig(latent_dims=(10, 5, 2))
    with pytest.raises(ValueError, match=">= 1"):
        TwoLayerVAEConfig(latent_dims=(10, 0))
    with pytest.raises(TypeError):
        TwoLayerVAEConfig(hidden_sizes=((200.0,), (100,)))
    with pytest.raises(ValueError, match="activation"):
        TwoLayerVAEConfig(activation="gelu")
    model = TwoLayerVAE(CONFIG, key=jax.random.key(0))
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        model.validate_data(_binary(3) + 1.0)
    with pytest.raises(ValueError, match="shape"):
        model.validate_data(np.zeros((3, 5), np.float32))
    x = jnp.asarray(_binary(1)[0])
    with pytest.raises(TypeError, match="closed form"):
        lvm.ELBOAnalyticKL(1)(jax.random.key(0), model.log_joint, model.encode(x), x)
