"""The VampPrior option of the library VAE (Tomczak & Welling, 2018): its density against an
explicit log-mean-exp over its components computed with scipy from the encoder's weights in
NumPy, its samples' moments, its pseudo-inputs' initialisation from data, training and
reloading; and the default VAE's parameters unchanged by the option."""

import hashlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
from _numpy_reference import np_mlp

import lvm
from lvm.models.vae import VAE, VAEConfig, VampPrior, init_pseudo_inputs
from lvm.train import TrainConfig, load_model, train


def _np_encode(model: VAE, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    loc, raw = np.split(np_mlp(model.encoder, x), 2, axis=-1)
    return loc, np.logaddexp(0.0, raw)  # softplus


def _leaf_checksum(model) -> str:
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(model):
        digest.update(np.asarray(leaf).tobytes())
    return digest.hexdigest()


def test_the_default_vae_keeps_its_parameters_and_initialisation():
    """Checksums of every leaf, computed with main's code before the VampPrior option (a0d4c5b):
    the default VAE and the mixture-prior VAE are built from the same key splits, to the byte."""
    default = VAE(VAEConfig(), key=jax.random.key(0))
    assert default.prior_params is None and len(jax.tree.leaves(default)) == 12
    assert (
        _leaf_checksum(default)
        == "3762862d6eb232a4bff6468af540ab03262df2888a96556d57394295a7928977"
    )
    mixture = VAE(VAEConfig(prior="mixture"), key=jax.random.key(0))
    assert (
        _leaf_checksum(mixture)
        == "5dc6624cbb290f865310f22050e342db59c5a34d4ec2d86c079e65e0037369ca"
    )
    # The VampPrior adds one leaf, its pseudo-inputs, and leaves the networks as they were.
    vamp = VAE(VAEConfig(prior="vamp"), key=jax.random.key(0))
    assert _leaf_checksum(eqx.tree_at(lambda m: m.prior_params, vamp, None)) == _leaf_checksum(
        default
    )
    assert vamp.prior_params.raw.shape == (500, 784)


def _small_vamp(likelihood: str = "bernoulli") -> VAE:
    config = VAEConfig(
        data_dim=6,
        latent_dim=3,
        hidden_sizes=(8,),
        prior="vamp",
        num_pseudo_inputs=4,
        likelihood=likelihood,
    )
    model = VAE(config, key=jax.random.key(0))
    # Pseudo-inputs spread over [0, 1], two pixels outside it (clipped).
    raw = jax.random.uniform(jax.random.key(3), (4, 6), minval=-0.2, maxval=1.2)
    return eqx.tree_at(lambda m: m.prior_params.raw, model, raw)


def test_vamp_prior_log_prob_is_the_log_mean_exp_of_the_encodings_at_the_pseudo_inputs():
    model = _small_vamp()
    raw = np.asarray(model.prior_params.raw, np.float64)
    assert (raw < 0).any() and (raw > 1).any()
    u = np.clip(raw, 0.0, 1.0)  # the hardtanh of Bernoulli pseudo-inputs
    np.testing.assert_array_equal(model.prior_params.pseudo_inputs, u.astype(np.float32))
    loc, scale = _np_encode(model, u)  # (K, d) each
    zs = 1.5 * np.random.default_rng(1).normal(size=(9, 3))
    # log p(z) = logsumexp_k [sum_j log N(z_j; loc_kj, scale_kj)] - log K
    expected = [
        scipy.special.logsumexp(scipy.stats.norm.logpdf(z, loc, scale).sum(1)) - np.log(4)
        for z in zs
    ]
    ours = jax.vmap(model.prior().log_prob)(jnp.asarray(zs, jnp.float32))
    np.testing.assert_allclose(ours, expected, rtol=1e-5)
    # The joint adds the prior to the likelihood.
    x = jnp.asarray([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    z = jnp.asarray(zs[0], jnp.float32)
    np.testing.assert_allclose(
        model.log_joint(x, z), expected[0] + model.log_likelihood(x, z), rtol=1e-5
    )
    # A Gaussian likelihood's pseudo-inputs are real-valued: no clipping.
    gaussian = _small_vamp("gaussian")
    np.testing.assert_array_equal(gaussian.prior_params.pseudo_inputs, gaussian.prior_params.raw)


def test_vamp_prior_samples_have_the_mixtures_moments():
    model = _small_vamp()
    loc, scale = _np_encode(model, np.clip(np.asarray(model.prior_params.raw, np.float64), 0, 1))
    n = 20_000
    draws = np.asarray(lvm.sample_n(jax.random.key(2), model.prior(), n), np.float64)
    # Uniform weights 1/K: mean and variance of the mixture, within 4 standard errors.
    mean = loc.mean(0)
    var = (scale**2 + loc**2).mean(0) - mean**2
    np.testing.assert_array_less(np.abs(draws.mean(0) - mean), 4 * np.sqrt(var / n))
    fourth = (3 * scale**4 + 6 * scale**2 * loc**2 + loc**4).mean(0)  # raw E[z^4] bounds m4
    np.testing.assert_array_less(np.abs(draws.var(0) - var), 4 * np.sqrt(fourth / n))


def test_pseudo_inputs_initialised_from_data_and_bad_input_refused():
    model = _small_vamp()
    images = (np.random.default_rng(0).random((4, 6)) < 0.5).astype(np.float32)
    init = init_pseudo_inputs(model, images)
    np.testing.assert_array_equal(init.prior_params.pseudo_inputs, images)
    # Nothing else changed.
    assert _leaf_checksum(eqx.tree_at(lambda m: m.prior_params, init, None)) == _leaf_checksum(
        eqx.tree_at(lambda m: m.prior_params, model, None)
    )
    with pytest.raises(ValueError, match="shape \\(4, 6\\)"):
        init_pseudo_inputs(model, images[:3])
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        init_pseudo_inputs(model, images + 0.5)
    standard = VAE(VAEConfig(data_dim=6, latent_dim=3, hidden_sizes=(8,)), key=jax.random.key(0))
    with pytest.raises(ValueError, match="prior='vamp'"):
        init_pseudo_inputs(standard, images)
    with pytest.raises(ValueError, match="prior must be one of"):
        VAEConfig(prior="vampprior")
    with pytest.raises(ValueError, match=">= 1"):
        VAEConfig(prior="vamp", num_pseudo_inputs=0)
    with pytest.raises(TypeError, match="num_pseudo_inputs"):
        VAEConfig(prior="vamp", num_pseudo_inputs=2.5)
    # No closed-form KL to a mixture: the analytic-KL ELBO refuses, the sampled ELBO works.
    x = jnp.asarray(images[0])
    with pytest.raises(TypeError, match="closed form"):
        lvm.ELBOAnalyticKL(1)(jax.random.key(0), model.log_joint, model.encode(x), x)


def test_vamp_vae_trains_its_pseudo_inputs_and_reloads_without_a_template(tmp_path):
    """The bound improves, the pseudo-inputs move (the prior's gradient reaches them), and the
    library loads the checkpoint from its header alone (VAEConfig records the prior)."""
    config = VAEConfig(
        data_dim=16, latent_dim=2, hidden_sizes=(16,), prior="vamp", num_pseudo_inputs=5
    )
    rng = np.random.default_rng(0)
    prototypes = rng.random((2, 16)) < 0.5
    flips = rng.random((200, 16)) < 0.1
    images = (prototypes[rng.integers(0, 2, 200)] ^ flips).astype(np.float32)
    model = init_pseudo_inputs(VAE(config, key=jax.random.key(0)), images[:5])
    train_config = TrainConfig(
        objective=lvm.ELBO(1), num_epochs=4, batch_size=20, learning_rate=1e-2, eval_every=0
    )
    result = train(model, images, train_config, out_dir=tmp_path, progress=False)
    bounds = [h["train_bound"] for h in result.history]
    # From about -16 log 2 = -11.1 nats (random decoder) towards the 10 % flip noise's
    # entropy, 16 H(0.1) = 5.2 nats: a gain of several nats, far beyond minibatch noise.
    assert bounds[-1] > bounds[0] + 2.0, bounds
    moved = np.abs(np.asarray(result.model.prior_params.raw) - images[:5]).max()
    assert moved > 1e-3
    loaded = load_model(tmp_path / "checkpoint.eqx")
    assert loaded.config == config
    assert _leaf_checksum(loaded) == _leaf_checksum(result.model)
    assert isinstance(loaded.prior_params, VampPrior)
