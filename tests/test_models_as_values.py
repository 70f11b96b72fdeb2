"""Models as values (issue 18): a model written here, not in lvm, trains through ``lvm.train.train``
on real-valued data, is killed and resumed byte-exactly, reloads with ``like=``, and is
evaluated by IS and AIS; the library VAE's Gaussian likelihood, mixture prior and convolutional
option are checked against scipy, scikit-learn, moments and quadrature."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.special
import scipy.stats

import lvm
from lvm.evaluate import active_units, evaluate, log_px
from lvm.models.vae import VAE, VAEConfig
from lvm.testing import mean_se
from lvm.train import CheckpointError, TrainConfig, load_model, read_metadata, run_keys, train


class TinyVAE(eqx.Module):
    """A user's model: stock eqx.nn.MLP networks, a Gaussian decoder, a learned prior location."""

    encoder: eqx.nn.MLP
    decoder: eqx.nn.MLP
    prior_loc: jax.Array

    def __init__(self, key, data_dim: int = 2, latent_dim: int = 1):
        k1, k2 = jax.random.split(key)
        self.encoder = eqx.nn.MLP(data_dim, 2 * latent_dim, 16, 1, key=k1)
        self.decoder = eqx.nn.MLP(latent_dim, 2 * data_dim, 16, 1, key=k2)
        self.prior_loc = jnp.zeros(latent_dim)

    def encode(self, x):
        loc, raw = jnp.split(self.encoder(x), 2)
        return lvm.DiagonalNormal(loc, jax.nn.softplus(raw) + 1e-3)

    def log_likelihood(self, x, z):
        loc, raw = jnp.split(self.decoder(z), 2)
        return lvm.DiagonalNormal(loc, jax.nn.softplus(raw) + 1e-2).log_prob(x)

    @property
    def log_joint(self):
        prior = lvm.DiagonalNormal(self.prior_loc, jnp.ones_like(self.prior_loc))
        return lvm.Joint(prior, self.log_likelihood)


def real_data(n: int = 200) -> np.ndarray:
    """Two standardized-scale clusters in 2-D (real values, negative ones too)."""
    rng = np.random.default_rng(0)
    centres = np.array([[-1.0, -0.5], [1.0, 0.8]])
    return (centres[rng.integers(0, 2, n)] + 0.3 * rng.normal(size=(n, 2))).astype(np.float32)


def tiny_config(num_epochs: int) -> TrainConfig:
    return TrainConfig(
        objective=lvm.IWAE(4),
        num_epochs=num_epochs,
        batch_size=20,
        learning_rate=3e-3,
        checkpoint_every=1,
        eval_every=1,
    )


def _bytes(tree) -> list[bytes]:
    return [np.asarray(leaf).tobytes() for leaf in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


def worker(out_dir: str) -> None:
    """Run in a subprocess by the kill test: trains until killed, a checkpoint every epoch."""
    train(
        TinyVAE(run_keys(0).init),
        real_data(),
        tiny_config(100_000),
        validation_x=real_data(50),
        out_dir=out_dir,
        progress=False,
    )


@contextlib.contextmanager
def _process(out_dir: Path):
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), str(Path(__file__).parents[1])]),
    )
    code = f"import test_models_as_values as t; t.worker({str(out_dir)!r})"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_a_users_model_trains_is_killed_resumes_reloads_and_evaluates(tmp_path):
    x, val = real_data(), real_data(50)
    checkpoint = tmp_path / "checkpoint.eqx"
    with _process(tmp_path) as proc:
        deadline = time.monotonic() + 300
        while not checkpoint.exists():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL
    epoch = read_metadata(checkpoint)[0]["epoch"]
    assert read_metadata(checkpoint)[0]["model"] == {
        "type": "user",
        "class": "test_models_as_values:TinyVAE",
    }
    end = epoch + 2
    resumed = train(
        TinyVAE(run_keys(0).init), x, tiny_config(end), validation_x=val, out_dir=tmp_path,
        resume=True, progress=False,
    )  # fmt: skip
    alone = train(TinyVAE(run_keys(0).init), x, tiny_config(end), validation_x=val, progress=False)
    assert _bytes(resumed.state) == _bytes(alone.state)
    assert alone.history[-1]["validation_bound"] > alone.history[0]["validation_bound"] - 1.0

    # Loading needs a template for a model that is not the library's; any key will do.
    with pytest.raises(CheckpointError, match="pass it as like="):
        load_model(checkpoint)
    loaded = load_model(checkpoint, like=TinyVAE(jax.random.key(99)))
    assert _bytes(loaded) == _bytes(alone.model)
    with pytest.raises(CheckpointError, match="does not match"):
        load_model(checkpoint, like=TinyVAE(jax.random.key(0), latent_dim=2))

    # Evaluated like any model: IS and AIS on real values, active units from q's mean.
    result = evaluate(jax.random.key(1), loaded, val, lvm.IWAE(500, chunk_size=100), progress=False)
    ais = log_px(jax.random.key(2), loaded, val, lvm.AIS(50), progress=False)
    assert result.active_units in (0, 1) and result.estimator.startswith("IWAE(num_samples=500")
    # AIS and IS estimate the same log p(x): their paired difference is within its noise.
    iwae = log_px(jax.random.key(1), loaded, val, lvm.IWAE(500, chunk_size=100), progress=False)
    diff, se = mean_se(ais - iwae)
    assert abs(diff) < 4 * se + 0.05, (diff, se)  # + both estimators' O(1/k), O(1/T) bias


def test_a_user_model_with_another_optimizer_trains_and_records_it(tmp_path):
    result = train(
        TinyVAE(jax.random.key(0)),
        real_data(),
        tiny_config(2),
        out_dir=tmp_path,
        optimizer=optax.sgd(1e-3, momentum=0.9),
        progress=False,
    )
    assert read_metadata(tmp_path / "checkpoint.eqx")[0]["optimizer"] == "custom"
    assert [r["learning_rate"] for r in result.history] == [None, None]
    # The optimizer state is SGD's: a resume with Adam is refused as incompatible.
    with pytest.raises(CheckpointError, match="optimizer"):
        train(
            TinyVAE(jax.random.key(0)), real_data(), tiny_config(3), out_dir=tmp_path, resume=True
        )


def test_models_that_are_not_amortized_models_are_refused_clearly():
    with pytest.raises(TypeError, match="encode"):
        train(lvm.LinearGaussian.random(jax.random.key(0), latent_dim=1, data_dim=2), real_data())
    with pytest.raises(TypeError, match="config"):  # beartype under pytest, ours outside
        train(TinyVAE(jax.random.key(0)), real_data(), {"num_epochs": 1})
    with pytest.raises(TypeError, match="model"):
        TrainConfig(model=VAEConfig())  # settings only: the model is a value passed to train


# ----------------------------------------------------------------------- the library VAE's options


def test_gaussian_likelihood_against_scipy_and_its_floor():
    config = VAEConfig(
        data_dim=5, latent_dim=2, hidden_sizes=(8,), likelihood="gaussian", min_scale=0.05
    )
    model = VAE(config, key=jax.random.key(0))
    # Push the decoder's raw scales very negative: the floor keeps sigma at min_scale.
    model = eqx.tree_at(
        lambda m: m.decoder.layers[-1].bias, model, model.decoder.layers[-1].bias.at[5:].set(-40.0)
    )
    x = np.array([0.3, -1.2, 2.5, 0.0, -0.7], np.float32)
    z = jnp.array([0.4, -0.9])
    loc, raw = np.split(np.asarray(model.decode(z), np.float64), 2)
    scale = 0.05 + np.logaddexp(0.0, raw)
    reference = scipy.stats.norm.logpdf(x, loc, scale).sum()
    np.testing.assert_allclose(model.log_likelihood(jnp.asarray(x), z), reference, rtol=1e-5)
    np.testing.assert_allclose(model.observation(z).scale, 0.05, rtol=1e-6)
    assert np.all(np.asarray(model.observation(z).scale) >= 0.05)
    # Real-valued data is accepted; the Bernoulli VAE still refuses it.
    assert model.validate_data(x[None] - 5.0) is not None
    with pytest.raises(ValueError, match="outside \\[0, 1\\].*likelihood='gaussian'"):
        VAE(
            VAEConfig(data_dim=5, latent_dim=2, hidden_sizes=(8,)), key=jax.random.key(0)
        ).validate_data(x[None])


def test_mixture_prior_log_prob_against_scikit_learn_and_its_moments():
    from sklearn.mixture import GaussianMixture as SkMixture

    config = VAEConfig(
        data_dim=6, latent_dim=3, hidden_sizes=(8,), prior="mixture", num_prior_components=4
    )
    model = VAE(config, key=jax.random.key(0))
    params = model.prior_params
    params = eqx.tree_at(
        lambda p: (p.logits, p.log_scale),
        params,
        (jnp.array([0.5, -1.0, 0.0, 1.2]), 0.3 * jax.random.normal(jax.random.key(5), (4, 3))),
    )
    model = eqx.tree_at(lambda m: m.prior_params, model, params)
    prior = model.prior()
    weights = scipy.special.softmax(np.asarray(params.logits, np.float64))
    loc, scale = (
        np.asarray(params.loc, np.float64),
        np.exp(np.asarray(params.log_scale, np.float64)),
    )
    sk = SkMixture(4, covariance_type="diag")
    sk.weights_, sk.means_, sk.covariances_ = weights, loc, scale**2
    sk.precisions_cholesky_ = 1.0 / scale
    zs = np.random.default_rng(1).normal(size=(7, 3)) * 2.0
    ours = jax.vmap(prior.log_prob)(jnp.asarray(zs, jnp.float32))
    np.testing.assert_allclose(ours, sk.score_samples(zs), rtol=2e-5)
    # Samples: mean and variance against the mixture's, within 4 standard errors.
    n = 20_000
    draws = np.asarray(lvm.sample_n(jax.random.key(2), prior, n), np.float64)
    mean = weights @ loc
    var = weights @ (scale**2 + loc**2) - mean**2
    np.testing.assert_array_less(np.abs(draws.mean(0) - mean), 4 * np.sqrt(var / n))
    fourth = weights @ (3 * scale**4 + 6 * scale**2 * loc**2 + loc**4)  # E[z^4] per component
    # Var of the sample variance ~ (m4 - var^2)/n with the central m4 bounded by the raw one.
    np.testing.assert_array_less(np.abs(draws.var(0) - var), 4 * np.sqrt(fourth / n))
    # No closed-form KL to a mixture: the analytic-KL ELBO says so; the sampled ELBO works.
    x = jnp.zeros(6)
    with pytest.raises(TypeError, match="closed form.*lvm.ELBO"):
        lvm.ELBOAnalyticKL(1)(jax.random.key(0), model.log_joint, model.encode(x), x)
    assert np.isfinite(lvm.ELBO(1)(jax.random.key(0), model.log_joint, model.encode(x), x))
    with pytest.raises(TypeError, match="no closed form"):
        lvm.kl_divergence(model.encode(x), prior)


def test_a_one_dimensional_latent_gaussian_vae_log_px_against_quadrature():
    """log p(x) = log ∫ N(z; 0, 1) p(x | z) dz on a fine grid (float64, independent of lvm's
    estimators) against lvm.evaluate.log_px by IS (k = 5,000) within 4 of its standard errors."""
    config = VAEConfig(
        data_dim=3, latent_dim=1, hidden_sizes=(16,), likelihood="gaussian", min_scale=0.2
    )
    model = VAE(config, key=jax.random.key(3))
    x = np.array([[0.5, -0.3, 1.0], [-1.5, 0.2, 0.4], [2.0, 2.0, -1.0]], np.float32)
    grid = np.linspace(-12.0, 12.0, 48_001)
    outputs = np.asarray(
        jax.vmap(model.decode)(jnp.asarray(grid[:, None], jnp.float32)), np.float64
    )
    loc, scale = outputs[:, :3], 0.2 + np.logaddexp(0.0, outputs[:, 3:])
    estimates = log_px(jax.random.key(4), model, x, lvm.IWAE(5000, chunk_size=500), progress=False)
    for i, xi in enumerate(x.astype(np.float64)):
        log_integrand = scipy.stats.norm.logpdf(grid) + scipy.stats.norm.logpdf(xi, loc, scale).sum(
            1
        )
        exact = scipy.special.logsumexp(log_integrand) + np.log(grid[1] - grid[0])
        log_w = lvm.log_weights(
            jax.random.fold_in(jax.random.key(4), i), model.log_joint, model.encode(jnp.asarray(xi, jnp.float32)),
            jnp.asarray(xi, jnp.float32), num_samples=5000,
        )  # fmt: skip
        w = np.exp(np.asarray(log_w, np.float64) - exact)
        se = w.std() / np.sqrt(len(w)) / w.mean()  # relative s.e. of p-hat = s.e. of log p-hat
        assert abs(estimates[i] - exact) < 4 * se + 1e-4, (i, estimates[i], exact, se)


def test_the_convolutional_vae_trains_and_evaluates_on_images():
    config = VAEConfig(latent_dim=4, hidden_sizes=(32,), architecture="conv")
    model = VAE(config, key=jax.random.key(0))
    images = (np.random.default_rng(0).random((40, 784)) < 0.2).astype(np.float32)
    result = train(
        model,
        images,
        TrainConfig(objective=lvm.ELBO(1), num_epochs=2, batch_size=20, eval_every=0),
        progress=False,
    )
    assert np.isfinite(result.history[-1]["train_bound"])
    count, variances = active_units(result.model, images)
    assert variances.shape == (4,)
    with pytest.raises(ValueError, match="784"):
        VAEConfig(data_dim=100, architecture="conv")
