"""Training: no retracing, the bound improves, resume is exact, checkpoints fail loudly, bad data is refused."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lvm
from lvm.evaluate import bound
from lvm.models.vae import VAE, VAEConfig
from lvm.testing import mean_se
from lvm.train import (
    CheckpointError,
    TrainConfig,
    iwae_schedule,
    load_checkpoint,
    load_model,
    make_train_epoch,
    make_train_step,
    run_keys,
    save_checkpoint,
    train_vae,
)

SMALL = VAEConfig(data_dim=784, latent_dim=4, hidden_sizes=(16,))


def _prototype_images(n: int, seed: int = 0) -> np.ndarray:
    """n binary 784-pixel images: 5 random prototypes, each pixel flipped with probability 0.05."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((5, 784)) < 0.2
    images = prototypes[rng.integers(0, 5, n)] ^ (rng.random((n, 784)) < 0.05)
    return images.astype(np.float32)


@pytest.fixture(scope="module")
def images():
    return _prototype_images(1000)


def _config(**kwargs) -> TrainConfig:
    defaults = dict(objective=lvm.IWAE(2), num_epochs=2, checkpoint_every=1, eval_every=0)
    return TrainConfig(**(defaults | kwargs))


def _train(config, x, *, model_config=SMALL, **kwargs):
    """The library's VAE of architecture ``model_config`` (default SMALL), trained."""
    return train_vae(config, x, model_config=model_config, **kwargs)


def test_repeated_steps_do_not_retrace(images):
    traces = []

    def counting_elbo(key, log_joint, proposal, x):
        traces.append(1)  # runs only while tracing
        return lvm.elbo(key, log_joint, proposal, x)

    init, step = make_train_step(counting_elbo, optax.adam(1e-3))
    step = eqx.filter_jit(step)
    state = init(VAE(SMALL, key=jax.random.key(0)))
    batch = jnp.asarray(images[:20])
    for i in range(4):
        state, info = step(jax.random.fold_in(jax.random.key(1), i), state, batch)
    assert len(traces) == 1 and int(state.step) == 4 and np.isfinite(float(info.loss))

    traces.clear()
    init, epoch = make_train_epoch(counting_elbo, optax.adam(1e-3), batch_size=50)
    state = init(VAE(SMALL, key=jax.random.key(0)))
    for e in range(3):
        state, infos = epoch(jax.random.key(e), state, jnp.asarray(images[:200]))
    assert len(traces) == 1 and infos.bound.shape == (4,) and int(state.step) == 12


def test_the_step_ascends_the_mean_bound(images):
    """With sgd(lr), one step moves the parameters by +lr * grad of the batch's mean bound,
    computed here directly (lvm.elbo per datapoint, datapoint b with split(key, B)[b]), and
    reports loss = -bound: a sign, key or averaging slip in the step fails it."""
    lr, key, batch = 1e-2, jax.random.key(3), jnp.asarray(images[:10])
    model = VAE(SMALL, key=jax.random.key(0))
    init, step = make_train_step(lvm.ELBO(1), optax.sgd(lr))
    state, info = eqx.filter_jit(step)(key, init(model), batch)

    def mean_bound(m):
        keys = jax.random.split(key, batch.shape[0])
        bounds = jax.vmap(lambda k, x: lvm.elbo(k, m.log_joint, m.encode(x), x))(keys, batch)
        return jnp.mean(bounds)

    want, grads = eqx.filter_value_and_grad(mean_bound)(model)
    np.testing.assert_allclose([info.bound, info.loss], [want, -want], rtol=1e-6)
    np.testing.assert_allclose(info.grad_norm, optax.tree.norm(grads), rtol=1e-5)
    moved = eqx.apply_updates(model, jax.tree.map(lambda g: lr * g, grads))
    for got, expected in zip(
        jax.tree.leaves(eqx.filter(state.params, eqx.is_inexact_array)),
        jax.tree.leaves(eqx.filter(moved, eqx.is_inexact_array)),
        strict=True,
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_two_epochs_on_1000_images_improve_the_bound(images):
    key = jax.random.key(5)
    before = bound(
        key, VAE(SMALL, key=jax.random.split(jax.random.key(0), 3)[0]), images, lvm.ELBO(1)
    )
    result = _train(_config(objective=lvm.ELBO(1), learning_rate=3e-3), images, progress=False)
    after = bound(key, result.model, images, lvm.ELBO(1))
    gain, sem = mean_se(after - before)
    assert gain > 10 * sem + 10.0  # tens of nats on this easy data
    assert result.history[1]["train_bound"] > result.history[0]["train_bound"]


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(images, tmp_path):
    x, val = images[:400], images[400:600]
    full = _train(
        _config(num_epochs=4, eval_every=1),
        x,
        validation_x=val,
        out_dir=tmp_path / "a",
        progress=False,
    )
    _train(
        _config(num_epochs=2, eval_every=1),
        x,
        validation_x=val,
        out_dir=tmp_path / "b",
        progress=False,
    )
    # A crash after epoch 3's log line but before its checkpoint: resume must drop that line.
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 3, "train_bound": 0.0}) + "\n")
    resumed = _train(
        _config(num_epochs=4, eval_every=1),
        x,
        validation_x=val,
        out_dir=tmp_path / "b",
        resume=True,
        progress=False,
    )
    for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    lines = [
        json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4]
    drop = ("epoch_seconds",)
    strip = lambda r: {k: v for k, v in r.items() if k not in drop}  # noqa: E731
    assert [strip(r) for r in lines] == [strip(r) for r in full.history]
    # Asking for the epochs already done returns at once, with the whole history.
    again = _train(
        _config(num_epochs=4, eval_every=1),
        x,
        validation_x=val,
        out_dir=tmp_path / "b",
        resume=True,
        progress=False,
    )
    assert [strip(r) for r in again.history] == [strip(r) for r in full.history]
    with pytest.raises(CheckpointError, match="past num_epochs=3"):
        _train(_config(num_epochs=3), x, out_dir=tmp_path / "b", resume=True, progress=False)
    loaded = load_model(tmp_path / "b" / "checkpoint.eqx")
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(full.model), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_corrupt_and_incompatible_checkpoints_raise_clearly(images, tmp_path):
    x = images[:200]
    _train(_config(num_epochs=1), x, out_dir=tmp_path, progress=False)
    path = tmp_path / "checkpoint.eqx"
    good = path.read_bytes()

    other = VAEConfig(latent_dim=3, hidden_sizes=(16,))
    with pytest.raises(CheckpointError, match="incompatible.*latent_dim"):
        _train(
            _config(num_epochs=2),
            x,
            model_config=other,
            out_dir=tmp_path,
            resume=True,
            progress=False,
        )
    with pytest.raises(CheckpointError, match="num_train"):
        _train(_config(num_epochs=2), images[:300], out_dir=tmp_path, resume=True, progress=False)

    path.write_bytes(good[: len(good) - 100])
    with pytest.raises(CheckpointError, match="corrupt.*truncated"):
        _train(_config(num_epochs=2), x, out_dir=tmp_path, resume=True, progress=False)
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(CheckpointError, match="checksum"):
        load_model(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not an lvm checkpoint"):
        load_model(path)

    # The header can be right and the arrays still not fit the expected structure.
    state = make_train_step(lvm.ELBO(1), optax.adam(1e-3))[0](VAE(SMALL, key=jax.random.key(0)))
    save_checkpoint(path, state, metadata={"epoch": 1})
    like = make_train_step(lvm.ELBO(1), optax.adam(1e-3))[0](
        VAE(VAEConfig(latent_dim=4, hidden_sizes=(17,)), key=jax.random.key(0))
    )
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(path, like)


def test_bad_training_data_is_refused(images):
    bad = images[:200].copy()
    bad[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _train(_config(), bad, progress=False)
    with pytest.raises(ValueError, match=r"shape \(N, 784\)"):
        _train(_config(), images[:200, :783], progress=False)
    with pytest.raises(ValueError, match="at least batch_size"):
        _train(_config(), images[:50], progress=False)
    with pytest.raises(ValueError, match="out_dir"):
        _train(_config(), images[:200], resume=True, progress=False)

    init, step = make_train_step(lvm.ELBO(1), optax.adam(1e-3))
    state = init(VAE(SMALL, key=jax.random.key(0)))
    step = eqx.filter_jit(step)
    with pytest.raises(ValueError, match="x must have shape"):
        step(jax.random.key(0), state, jnp.zeros((4, 783)))
    # Inside the jitted step nothing checks x (train_vae checks the data set first):
    # the step reports the non-finite loss.
    _, info = step(jax.random.key(0), state, jnp.asarray(bad[:4]))
    assert not bool(info.finite)


def test_iwae_schedule():
    schedule = iwae_schedule(1e-3, steps_per_epoch=2)
    # Stage i lasts 3**i epochs (2 steps each): stage ends at epochs 1, 4, 13, ... 3280.
    for step, stage in [
        (0, 0),
        (1, 0),
        (2, 1),
        (7, 1),
        (8, 2),
        (25, 2),
        (26, 3),
        (2 * 3280 + 5, 7),
    ]:
        np.testing.assert_allclose(schedule(step), 1e-3 * 10 ** (-stage / 7), rtol=1e-6)
    assert lvm.train.IWAE_EPOCHS == 3280


def test_config_round_trips_through_json():
    config = TrainConfig(
        objective=lvm.IWAE(5, chunk_size=2),
        eval_objective=lvm.ELBOAnalyticKL(3),
        schedule="iwae",
        nonfinite="skip",
        max_consecutive_skips=3,
    )
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="cosine")
    with pytest.raises(ValueError, match="nonfinite must be one of"):
        TrainConfig(nonfinite="ignore")
    with pytest.raises(ValueError, match="max_consecutive_skips must be >= 1"):
        TrainConfig(max_consecutive_skips=0)


def _key_bytes(key) -> bytes:
    return np.asarray(jax.random.key_data(key)).tobytes()


def test_every_consumer_of_randomness_has_its_own_key():
    """With jax's threefry ``fold_in(key, i) == split(key, n)[i]``, so a key folded with i and
    a key split off as the i-th are the same draw. Training (init, epochs, their permutation
    and step keys), validation and the test-set evaluation must never share one."""
    keys, root = run_keys(0), jax.random.key(0)
    # The identity behind the old bug: the command line evaluated with fold_in(root, 1).
    assert _key_bytes(jax.random.fold_in(root, 1)) == _key_bytes(keys.train)
    epochs = [jax.random.fold_in(keys.train, e) for e in range(1, 101)]
    training = [keys.init, keys.train, *epochs, *(k for e in epochs for k in jax.random.split(e))]
    evaluation = [keys.validation, keys.test, *jax.random.split(keys.test)]
    every = [root, *training, *evaluation]
    assert len({_key_bytes(k) for k in every}) == len(every)


def test_command_line_trains_resumes_and_evaluates(images, tmp_path, monkeypatch):
    import lvm.train.__main__ as cli
    from lvm.data.mnist import BinarizedMNIST

    monkeypatch.setattr(
        cli,
        "load_binarized_mnist",
        lambda **kw: BinarizedMNIST(images[:200], images[200:300], images[300:350]),
    )
    evaluate, eval_keys = cli.evaluate, []
    monkeypatch.setattr(
        cli, "evaluate", lambda key, *a, **kw: eval_keys.append(key) or evaluate(key, *a, **kw)
    )
    args = ["--objective", "iwae", "--num-samples", "2", "--latent-dim", "2", "--hidden-sizes", "8"]
    args += ["--eval-num-samples", "20", "--out-dir", str(tmp_path)]
    first = cli.main([*args, "--epochs", "1"])
    second = cli.main([*args, "--epochs", "2", "--resume"])
    assert first["final"]["epoch"] == 1 and second["final"]["epoch"] == 2
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["num_images"] == 50 and saved["log_px"] >= saved["elbo"]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    # The test set is evaluated with the run's own test key, not a training key.
    assert [_key_bytes(k) for k in eval_keys] == [_key_bytes(run_keys(0).test)] * 2


def test_command_line_evaluates_by_ais(images, tmp_path, monkeypatch):
    import lvm.train.__main__ as cli
    from lvm.data.mnist import BinarizedMNIST

    monkeypatch.setattr(
        cli,
        "load_binarized_mnist",
        lambda **kw: BinarizedMNIST(images[:100], images[100:120], images[120:140]),
    )
    args = ["--latent-dim", "2", "--hidden-sizes", "8", "--epochs", "1", "--out-dir", str(tmp_path)]
    summary = cli.main([*args, "--eval-method", "ais", "--ais-steps", "5"])
    assert summary["test"]["estimator"].startswith("AIS(num_steps=5,")
    assert summary["test"]["num_images"] == 20
    # The number is AIS(5) on the saved model, the test split and the run's test key.
    direct = lvm.evaluate.evaluate(
        run_keys(0).test,
        load_model(tmp_path / "checkpoint.eqx"),
        images[120:140],
        lvm.AIS(5),
        progress=False,
    )
    assert summary["test"]["log_px"] == pytest.approx(direct.log_px, rel=1e-6)
