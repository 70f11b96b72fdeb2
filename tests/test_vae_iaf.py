"""The VAE with an IAF posterior (``VAEConfig(posterior="iaf")``): the default VAE unchanged, the
flow q against its Gaussian base, its own density and quadrature, training and reloading."""

import hashlib
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lvm
from lvm.flows import ConditionalIAF, Flow
from lvm.models.vae import _MLP, VAE, VAEConfig
from lvm.train import TrainConfig, load_model, train

#: sha256 over (path, shape, dtype, bytes) of every array leaf of ``VAE(VAEConfig(), key=key(0))``,
#: computed with the code before the ``posterior`` option existed (commit a0d4c5b, CPU).
DEFAULT_VAE_SHA256 = "db9316ebda2b1a1387768ad2e07a2176a28b3439cd86fe68217093b89b4747ae"

TINY_IAF = VAEConfig(data_dim=6, latent_dim=2, hidden_sizes=(8,), posterior="iaf", flow_width=8)


def _array_leaves(tree):
    return jax.tree_util.tree_flatten_with_path(eqx.filter(tree, eqx.is_array))[0]


def _sha256(tree) -> str:
    digest = hashlib.sha256()
    for path, leaf in _array_leaves(tree):
        a = np.asarray(leaf)
        digest.update(f"{jax.tree_util.keystr(path)} {a.shape} {a.dtype}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def _away_from_identity(model: VAE, key: int = 5) -> VAE:
    """The model with its IAF layers re-drawn by flowjax's random init (not the identity)."""
    c = model.config
    posterior = ConditionalIAF(
        jax.random.key(key),
        latent_dim=c.latent_dim,
        cond_dim=c.hidden_sizes[-1],
        flow_layers=c.num_flow_layers,
        nn_width=c.flow_width,
        identity_init=False,
    )
    posterior = eqx.tree_at(lambda p: p.head, posterior, model.encoder.posterior.head)
    return eqx.tree_at(lambda m: m.encoder.posterior, model, posterior)


def _x(config: VAEConfig, key: int = 1):
    return jax.random.bernoulli(jax.random.key(key), 0.3, (config.data_dim,)).astype(jnp.float32)


def test_the_default_vae_is_unchanged():
    key = jax.random.key(0)
    model = VAE(VAEConfig(), key=key)
    assert _sha256(model) == DEFAULT_VAE_SHA256
    # The same, rebuilt by hand the way the code before the option did it.
    enc_key, dec_key = jax.random.split(key)
    before = (
        _MLP((784, 200, 200, 100), "tanh", key=enc_key),
        _MLP((50, 200, 200, 784), "tanh", key=dec_key),
    )
    ours = (model.encoder, model.decoder)
    assert jax.tree.structure(ours) == jax.tree.structure(before)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(before), strict=True):
        np.testing.assert_array_equal(a, b)
    assert model.prior_params is None
    assert isinstance(model.encode(jnp.zeros(784)), lvm.DiagonalNormal)


def test_the_iaf_vae_shares_the_decoder_and_starts_as_its_gaussian_base():
    key = jax.random.key(0)
    gaussian = VAE(VAEConfig(), key=key)
    model = VAE(VAEConfig(posterior="iaf"), key=key)
    for a, b in zip(jax.tree.leaves(model.decoder), jax.tree.leaves(gaussian.decoder), strict=True):
        np.testing.assert_array_equal(a, b)
    x = _x(model.config)
    q = model.encode(x)
    assert isinstance(q, Flow) and isinstance(q.base, lvm.DiagonalNormal)
    keys = jax.random.split(jax.random.key(2), 16)
    zs, log_qs = jax.vmap(q.sample_and_log_prob)(keys)
    z0s, log_q0s = jax.vmap(lambda k: lvm.sample_and_log_prob(k, q.base))(keys)
    np.testing.assert_allclose(zs, z0s, atol=1e-6)
    np.testing.assert_allclose(log_qs, log_q0s, rtol=1e-6, atol=1e-4)
    # The base is the Gaussian encoder's architecture: features 784-200-200, head 200-100.
    head = model.encoder.posterior.head
    assert (head.in_features, head.out_features) == (200, 100)
    sizes = [(la.in_features, la.out_features) for la in model.encoder.features.layers]
    assert sizes == [(784, 200), (200, 200)]


def test_sample_and_log_prob_is_log_prob_of_the_same_sample():
    model = _away_from_identity(VAE(TINY_IAF, key=jax.random.key(0)))
    q = model.encode(_x(TINY_IAF))
    keys = jax.random.split(jax.random.key(3), 64)
    zs, log_qs = jax.vmap(q.sample_and_log_prob)(keys)
    np.testing.assert_array_equal(zs, jax.vmap(q.sample)(keys))
    np.testing.assert_allclose(log_qs, jax.vmap(q.log_prob)(zs), rtol=1e-5, atol=1e-5)
    # and the flow is not its base, so the check is not of a Gaussian alone
    assert float(jnp.max(jnp.abs(log_qs - jax.vmap(q.base.log_prob)(zs)))) > 1e-2


def _is_estimate(log_w):
    """log of the mean weight and its delta-method s.e., se(log p_hat) = sd(w) / (sqrt(k) mean(w))."""
    log_w = np.asarray(log_w, np.float64)
    w = np.exp(log_w - log_w.max())
    return np.log(w.mean()) + log_w.max(), w.std() / (math.sqrt(w.size) * w.mean())


def test_flow_q_is_agrees_with_gaussian_q_is_and_quadrature():
    # The proposal changes the variance of the estimate, not its target. A 2-D latent, so that
    # log p(x) = log of the integral of p(x, z) over z is exact by the trapezoid rule on
    # [-8, 8]^2 (201 points per axis; the prior's mass beyond 8 is < 1e-14 and p(x|z) is smooth).
    model = _away_from_identity(VAE(TINY_IAF, key=jax.random.key(0)))
    grid = np.linspace(-8.0, 8.0, 201)
    zz = jnp.asarray(np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2))
    for i in range(3):
        x = _x(TINY_IAF, key=10 + i)
        log_joint = np.asarray(jax.vmap(model.log_joint, (None, 0))(x, zz), np.float64)
        shift = log_joint.max()
        p = np.exp(log_joint - shift).reshape(201, 201)
        exact = np.log(np.trapezoid(np.trapezoid(p, grid, axis=1), grid)) + shift
        flow = model.encode(x)
        estimates = {}
        for name, q in (("gaussian", flow.base), ("flow", flow)):
            log_w = lvm.log_weights(
                jax.random.key(20 + i), model.log_joint, q, x, num_samples=20_000
            )
            m, se = estimates[name] = _is_estimate(log_w)
            # 4 s.e. (the bias of log p_hat, about -se^2/2, is far below se here)
            assert abs(m - exact) < 4 * se, (i, name, m, se, exact)
        (m_g, se_g), (m_f, se_f) = estimates["gaussian"], estimates["flow"]
        assert abs(m_g - m_f) < 4 * math.hypot(se_g, se_f)


def test_the_iaf_vae_trains_and_reloads(tmp_path):
    config = VAEConfig(data_dim=12, latent_dim=3, hidden_sizes=(8,), posterior="iaf", flow_width=8)
    data = (np.random.default_rng(0).random((60, 12)) < 0.3).astype(np.float32)
    result = train(
        VAE(config, key=jax.random.key(0)),
        data,
        TrainConfig(objective=lvm.ELBO(1), num_epochs=3, batch_size=20, eval_every=0),
        out_dir=tmp_path,
        progress=False,
    )
    bounds = [row["train_bound"] for row in result.history]
    assert all(np.isfinite(bounds)) and bounds[-1] > bounds[0]
    loaded = load_model(tmp_path / "checkpoint.eqx")  # rebuilt from the header: no like=
    assert loaded.config == config
    for a, b in zip(_array_leaves(loaded), _array_leaves(result.model), strict=True):
        assert a[0] == b[0]
        np.testing.assert_array_equal(a[1], b[1])
    # the flow moved away from the identity in training
    x = jnp.asarray(data[0])
    z = jnp.array([0.3, -0.2, 0.5])
    q = loaded.encode(x)
    assert abs(float(q.log_prob(z) - q.base.log_prob(z))) > 1e-4


def test_bad_posterior_options_raise():
    with pytest.raises(ValueError, match="posterior"):
        VAEConfig(posterior="flow")
    with pytest.raises(ValueError, match="scale"):
        VAEConfig(posterior="iaf", scale="exp")
    with pytest.raises(ValueError, match="architecture"):
        VAEConfig(posterior="iaf", architecture="conv")
    with pytest.raises(ValueError, match="sizes"):
        VAEConfig(posterior="iaf", num_flow_layers=0)
    with pytest.raises(TypeError, match="flow_width"):
        VAEConfig(posterior="iaf", flow_width=2.5)


def test_a_checkpoint_from_before_the_posterior_option_resumes():
    # A run's header written before VAEConfig had the posterior fields lacks them: it must match
    # a run that leaves them at their defaults (the shared MNIST runs), and no other.
    from lvm.train.config import model_to_dict, normalized_model

    now = model_to_dict(VAE(VAEConfig(latent_dim=3, hidden_sizes=(8,)), key=jax.random.key(0)))
    before = {"type": "VAE", "config": dict(now["config"])}
    for name in ("posterior", "num_flow_layers", "flow_width"):
        del before["config"][name]
    assert before != now and normalized_model(before) == normalized_model(now)
    iaf = model_to_dict(VAE(_config(now, posterior="iaf"), key=jax.random.key(0)))
    assert normalized_model(before) != normalized_model(iaf)
    user = {"type": "user", "class": "m:M"}
    assert normalized_model(user) == user


def _config(record, **changes) -> VAEConfig:
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in record["config"].items()}
    return VAEConfig(**{**fields, **changes})
