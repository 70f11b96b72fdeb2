"""Evaluation: streaming equals unchunked, batching does not change the numbers, active units."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lvm
from lvm.evaluate import active_units, bound, evaluate, log_px
from lvm.models.vae import VAE, VAEConfig

CONFIG = VAEConfig(data_dim=20, latent_dim=3, hidden_sizes=(10,))


@pytest.fixture(scope="module")
def model():
    return VAE(CONFIG, key=jax.random.key(0))


@pytest.fixture(scope="module")
def x():
    return (np.random.default_rng(0).random((30, 20)) < 0.3).astype(np.float32)


def test_streaming_log_px_equals_unchunked(model, x):
    key = jax.random.key(1)
    streamed = log_px(key, model, x, lvm.IWAE(60, chunk_size=7), batch_size=10)
    at_once = log_px(key, model, x, lvm.IWAE(60), batch_size=10)
    np.testing.assert_allclose(streamed, at_once, rtol=1e-5)
    # and it is the library's estimator, datapoint i drawing with fold_in(key, i)
    i = 17
    direct = lvm.importance_sampling(
        jax.random.fold_in(key, i),
        model.log_joint,
        model.encode(jnp.asarray(x[i])),
        jnp.asarray(x[i]),
        num_samples=60,
    )
    np.testing.assert_allclose(at_once[i], direct, rtol=1e-5)


def test_batch_size_does_not_change_the_numbers(model, x):
    key = jax.random.key(2)
    a = bound(key, model, x, lvm.ELBO(2), batch_size=30)
    b = bound(key, model, x, lvm.ELBO(2), batch_size=8)  # 30 = 3 * 8 + 6: the last batch is padded
    assert a.shape == (30,)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_log_px_is_above_the_elbo_and_evaluate_agrees(model, x):
    key = jax.random.key(3)
    result = evaluate(key, model, x, lvm.IWAE(200, chunk_size=50), batch_size=10)
    assert result.num_images == 30 and result.estimator.startswith("IWAE(num_samples=200,")
    assert result.log_px > result.elbo  # L_200 above L_1 by far more than the noise here
    assert 0.0 < result.log_px_sem < 5.0
    lp = log_px(jax.random.split(key)[0], model, x, lvm.IWAE(200, chunk_size=50), batch_size=10)
    np.testing.assert_allclose(result.log_px, lp.mean(), rtol=1e-6)


def test_active_units_counts_units_whose_posterior_mean_varies(model, x):
    # Loc outputs of the encoder: unit 0 amplified (surely active), units 1 and 2 zeroed (constant).
    last = model.encoder.layers[-1]
    scale = jnp.ones((last.out_features,)).at[0].set(30.0).at[1:3].set(0.0)
    model = eqx.tree_at(
        lambda m: (m.encoder.layers[-1].weight, m.encoder.layers[-1].bias),
        model,
        (last.weight * scale[:, None], last.bias * scale),
    )
    count, variances = active_units(model, x, batch_size=7)
    means = np.stack([np.asarray(model.encode(jnp.asarray(xi)).loc) for xi in x])
    np.testing.assert_allclose(variances, means.var(axis=0), rtol=1e-4, atol=1e-10)
    assert variances[0] > 0.01 and variances[1] == 0.0 and variances[2] == 0.0
    assert count == 1


def test_bad_inputs_raise(model, x):
    with pytest.raises(ValueError, match=r"shape \(N, 20\)"):
        log_px(jax.random.key(0), model, x[:, :19], lvm.IWAE(2))
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        bound(jax.random.key(0), model, bad, lvm.ELBO(1))


def test_ais_log_px_is_the_library_estimator_per_datapoint(model, x):
    """AIS(T): datapoint i is lvm.ais with fold_in(key, i) and q(z|x_i), whatever the batch."""
    key = jax.random.key(4)
    values = log_px(key, model, x, lvm.AIS(20), batch_size=10, progress=False)
    rebatched = log_px(key, model, x, lvm.AIS(20), batch_size=7, progress=False)
    np.testing.assert_allclose(rebatched, values, rtol=1e-5)
    i = 17
    xi = jnp.asarray(x[i])
    direct = jax.jit(lambda k: lvm.ais(k, model.log_joint, model.encode(xi), xi, num_steps=20))(
        jax.random.fold_in(key, i)
    )
    np.testing.assert_allclose(values[i], direct, rtol=1e-5)
    # AIS from q(z|x) improves on the single-sample bound by far more than the noise.
    elbos = bound(jax.random.key(5), model, x, lvm.ELBO(1))
    assert values.mean() > elbos.mean()


def test_evaluate_reports_the_estimator(model, x):
    result = evaluate(jax.random.key(6), model, x[:10], lvm.AIS(5), batch_size=10, progress=False)
    assert result.estimator.startswith("AIS(num_steps=5")
    assert result.num_images == 10 and np.isfinite(result.log_px)
