"""Reliability of training: a NaN or Inf loss or gradient stops a run (or is skipped) and never
reaches a checkpoint; bad data and diverged models are refused; a run killed with SIGKILL, even
inside a checkpoint write, resumes to the same bytes as an uninterrupted run."""

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import _train_worker as worker
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _train_worker import POISON, SMALL, poisoned_elbo

import lvm
from lvm.evaluate import active_units, bound, evaluate
from lvm.models.vae import VAE
from lvm.train import (
    NonFiniteError,
    RunLockedError,
    TrainConfig,
    load_checkpoint,
    make_train_step,
    read_metadata,
    run_keys,
    save_checkpoint,
    train_vae,
)


@pytest.fixture(scope="module")
def images():
    return worker.images()


def _config(num_epochs: int = 1, **overrides) -> TrainConfig:
    return worker.config(num_epochs, **overrides)


def _train(config, x, **kwargs):
    return train_vae(config, x, model_config=worker.SMALL, **kwargs)


def _bytes(tree) -> list[bytes]:
    return [np.asarray(leaf).tobytes() for leaf in jax.tree.leaves(tree)]


def _metrics(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def _all_finite(tree) -> bool:
    return all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(tree))


# ----------------------------------------------------------------- non-finite losses and gradients


def test_a_resumed_run_that_meets_an_infinite_gradient_raises_and_keeps_its_checkpoint(
    images, tmp_path
):
    config = _config(num_epochs=1)
    _train(config, images, out_dir=tmp_path, progress=False)
    checkpoint, metrics = tmp_path / "checkpoint.eqx", tmp_path / "metrics.jsonl"
    saved, logged = checkpoint.read_bytes(), metrics.read_text()

    bad = images.copy()
    bad[123, 0] = POISON
    # The step of epoch 2 that holds image 123, from the shuffle make_train_epoch documents.
    perm_key = jax.random.split(jax.random.fold_in(run_keys(0).train, 2))[0]
    order = np.asarray(jax.random.permutation(perm_key, len(images)))
    step = int(np.flatnonzero(order == 123)[0]) // config.batch_size + 1
    longer = dataclasses.replace(config, num_epochs=3)
    with pytest.raises(NonFiniteError, match=rf"loss and gradient at epoch 2, step {step} of 4"):
        _train(longer, bad, out_dir=tmp_path, resume=True, progress=False)
    assert checkpoint.read_bytes() == saved  # byte-identical
    assert metrics.read_text() == logged
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".lock",
        "checkpoint.eqx",
        "config.json",
        "metrics.jsonl",
    ]
    # The kept checkpoint resumes, on clean data, to the bytes of an uninterrupted run.
    resumed = _train(longer, images, out_dir=tmp_path, resume=True, progress=False)
    uninterrupted = _train(longer, images, progress=False)
    assert _bytes(resumed.state) == _bytes(uninterrupted.state)


def test_the_error_names_the_causes_and_the_kept_checkpoint(images, tmp_path):
    bad = images.copy()
    bad[:, 0] = POISON  # every minibatch: the first step of the first epoch
    with pytest.raises(NonFiniteError) as err:
        _train(_config(), bad, out_dir=tmp_path, progress=False)
    message = str(err.value)
    assert "epoch 1, step 1 of 4 (global step 1)" in message
    assert "learning rate" in message and "data" in message and "nonfinite='skip'" in message
    assert f"no checkpoint was written to {tmp_path}" in message
    assert not (tmp_path / "checkpoint.eqx").exists() and _metrics(tmp_path) == []


def test_the_skip_policy_trains_through_nonfinite_minibatches(images, tmp_path):
    x = images.copy()
    x[7, 0] = POISON  # in exactly one minibatch of every epoch
    config = _config(num_epochs=4, nonfinite="skip", max_consecutive_skips=10)
    result = _train(config, x, out_dir=tmp_path, progress=False)
    lines = _metrics(tmp_path)
    assert [r["skipped_updates"] for r in lines] == [1, 1, 1, 1]
    assert int(result.state.step) == 16 and _all_finite(result.state)
    assert all(np.isfinite(r["train_bound"]) and np.isfinite(r["grad_norm"]) for r in lines)
    # It learns: on these easy images 12 updates raise the bound by tens of nats, where the
    # mean over 300 images of an epoch's three updates varies by about one nat.
    assert lines[-1]["train_bound"] > lines[0]["train_bound"] + 10.0
    assert json.loads((tmp_path / "config.json").read_text())["config"]["nonfinite"] == "skip"
    header, _ = read_metadata(tmp_path / "checkpoint.eqx")
    assert header["config"]["nonfinite"] == "skip" and header["epoch"] == 4


def test_under_the_skip_policy_the_schedule_follows_the_global_step(images):
    """Skipped updates do not advance Adam's moments (its count is the applied updates), but
    the learning-rate schedule counts every step, so the "iwae" stages end at the epochs
    they name whatever was skipped (optax.apply_if_finite around the whole of Adam would
    have kept the schedule back by the number of skips)."""
    x = images.copy()
    x[7, 0] = POISON  # in exactly one minibatch of every epoch: 4 steps per epoch, 1 skipped
    config = _config(num_epochs=4, nonfinite="skip", schedule="iwae")
    result = _train(config, x, progress=False)
    guarded, schedule_state = result.state.opt_state
    adam_state = guarded.inner_state
    assert int(result.state.step) == 16 and int(guarded.total_notfinite) == 4
    assert int(schedule_state.count) == 16  # the global step: what the schedule reads
    assert int(adam_state.count) == 12  # the applied updates: Adam's bias correction
    # The rate of epoch e is that of the stage of its first global step (stage 1 from epoch 2).
    assert [r["learning_rate"] for r in result.history] == pytest.approx(
        [config.learning_rate * 10 ** (-s / 7) for s in (0, 1, 1, 1)], rel=1e-6
    )
    # An optimizer of the user's, without a guard, is wrapped whole: its own rule.
    init, step = make_train_step(poisoned_elbo, optax.adam(1e-3), max_consecutive_skips=2)
    state = init(VAE(SMALL, key=jax.random.key(0)))
    assert isinstance(state.opt_state, optax.ApplyIfFiniteState)


def test_a_skipped_update_changes_nothing_and_the_limit_is_applied(images):
    init, step = make_train_step(poisoned_elbo, optax.adam(1e-3), max_consecutive_skips=2)
    step = eqx.filter_jit(step)
    state = init(VAE(SMALL, key=jax.random.key(0)))
    good = jnp.asarray(images[:10])
    bad = good.at[3, 0].set(POISON)

    skipped, info = step(jax.random.key(1), state, bad)
    assert not bool(info.finite) and bool(info.skipped) and int(skipped.step) == 1
    assert _bytes(skipped.params) == _bytes(state.params)
    assert _bytes(skipped.opt_state.inner_state) == _bytes(state.opt_state.inner_state)
    applied, info = step(jax.random.key(2), skipped, good)
    assert bool(info.finite) and not bool(info.skipped)
    assert _bytes(applied.params) != _bytes(state.params)

    flags = []
    for i in range(3):  # optax.apply_if_finite applies the 3rd non-finite update in a row
        applied, info = step(jax.random.key(3 + i), applied, bad)
        flags.append((bool(info.finite), bool(info.skipped)))
    assert flags == [(False, True), (False, True), (False, False)]
    assert not _all_finite(applied.params)


def test_the_skip_policy_gives_up_after_max_consecutive_skips(images, tmp_path):
    bad = images.copy()
    bad[:, 0] = POISON  # every update is non-finite: epochs 1 and 2 skip all 4
    config = _config(num_epochs=4, nonfinite="skip", max_consecutive_skips=10)
    with pytest.raises(
        NonFiniteError,
        match=r"after max_consecutive_skips=10 skipped updates in a row at epoch 3, step 3 of 4",
    ):
        _train(config, bad, out_dir=tmp_path, progress=False)
    lines = _metrics(tmp_path)
    assert [(r["skipped_updates"], r["train_bound"]) for r in lines] == [(4, None), (4, None)]
    assert read_metadata(tmp_path / "checkpoint.eqx")[0]["epoch"] == 2
    kept = lvm.train.load_model(tmp_path / "checkpoint.eqx")  # nothing was ever applied
    assert _bytes(kept) == _bytes(VAE(SMALL, key=run_keys(0).init))


def test_the_command_line_exits_non_zero_on_a_huge_learning_rate(images, tmp_path, monkeypatch):
    import lvm.train.__main__ as cli
    from lvm.data.mnist import BinarizedMNIST

    monkeypatch.setattr(
        cli,
        "load_binarized_mnist",
        lambda **kw: BinarizedMNIST(images[:200], images[200:300], images[300:350]),
    )
    args = ["--latent-dim", "2", "--hidden-sizes", "8", "--epochs", "3", "--checkpoint-every", "1"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*args, "--learning-rate", "50", "--out-dir", str(tmp_path)])
    # A message (not 0 or None) as the code: Python prints it and exits with status 1.
    assert isinstance(exit_info.value.code, str)
    assert "NonFiniteError: training diverged" in exit_info.value.code
    assert "learning_rate=50" in exit_info.value.code
    assert not (tmp_path / "eval.json").exists()
    if (tmp_path / "checkpoint.eqx").exists():  # an epoch before the divergence
        assert _all_finite(lvm.train.load_model(tmp_path / "checkpoint.eqx"))


def test_no_checkpoint_is_written_with_a_nan(tmp_path):
    init, _ = make_train_step(lvm.ELBO(1), optax.adam(1e-3))
    state = init(VAE(SMALL, key=jax.random.key(0)))
    path = tmp_path / "checkpoint.eqx"
    save_checkpoint(path, state, metadata={"epoch": 1})
    good = path.read_bytes()
    broken = eqx.tree_at(
        lambda s: s.params.decoder.layers[0].bias, state, replace_fn=lambda b: b.at[2].set(jnp.nan)
    )
    with pytest.raises(ValueError, match=r"refusing to write .*decoder\.layers\[0\]\.bias.*NaN"):
        save_checkpoint(path, broken, metadata={"epoch": 2})
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_evaluation_refuses_a_model_with_nonfinite_parameters(images):
    model = VAE(SMALL, key=jax.random.key(0))
    broken = eqx.tree_at(
        lambda m: m.encoder.layers[0].weight, model, replace_fn=lambda w: w.at[0, 0].set(jnp.inf)
    )
    x = images[:20]
    for call in (
        lambda: bound(jax.random.key(0), broken, x, lvm.ELBO(1)),
        lambda: evaluate(jax.random.key(0), broken, x, lvm.IWAE(4)),
        lambda: active_units(broken, x),
    ):
        with pytest.raises(
            ValueError, match=r"model\.encoder\.layers\[0\]\.weight.*NaN or Inf.*diverged"
        ):
            call()


def test_data_outside_the_unit_interval_is_refused(images, tmp_path):
    model = VAE(SMALL, key=jax.random.key(0))
    for bad in (images[:200] * 1e30, images[:200] - 0.5, images[:200] * 2.0):
        with pytest.raises(ValueError, match=r"train_x has values outside \[0, 1\]"):
            _train(_config(), bad, out_dir=tmp_path, progress=False)
        with pytest.raises(ValueError, match=r"outside \[0, 1\].*Bernoulli"):
            bound(jax.random.key(0), model, bad, lvm.ELBO(1))
    with pytest.raises(ValueError, match=r"validation_x has values outside \[0, 1\]"):
        _train(_config(), images, validation_x=images[:10] + 1.0, progress=False)
    assert not (tmp_path / "config.json").exists()


# ----------------------------------------------------------------- kill -9 and resume


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory) -> Path:
    """A persistent compilation cache for the workers: the second one skips most compiling."""
    return tmp_path_factory.mktemp("jax-cache")


@contextlib.contextmanager
def _worker(out_dir: Path, mode: str, cache: Path):
    """The worker process; killed on the way out, whatever happens in the test."""
    repo = Path(__file__).resolve().parents[1]  # this checkout's lvm, not an installed one
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
        JAX_COMPILATION_CACHE_DIR=str(cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    )
    proc = subprocess.Popen(
        [sys.executable, str(Path(worker.__file__)), str(out_dir), mode],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL  # killed, not finished


def _resume_and_compare(out_dir: Path, num_epochs: int) -> None:
    """Resume the killed run to ``num_epochs``: the same bytes and metrics as one uninterrupted run."""
    config = worker.config(num_epochs)
    resumed = _train(config, worker.images(), out_dir=out_dir, resume=True, progress=False)
    uninterrupted = _train(config, worker.images(), progress=False)
    assert _bytes(resumed.state) == _bytes(uninterrupted.state)
    strip = lambda r: {k: v for k, v in r.items() if k != "epoch_seconds"}  # noqa: E731
    assert [strip(r) for r in _metrics(out_dir)] == [strip(r) for r in uninterrupted.history]


def test_a_run_killed_after_its_first_checkpoint_resumes_to_the_same_bytes(tmp_path, compile_cache):
    checkpoint = tmp_path / "checkpoint.eqx"
    with _worker(tmp_path, "run", compile_cache) as proc:
        deadline = time.monotonic() + 300
        while not checkpoint.exists():  # poll the file, kill the moment it appears
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.005)
        _kill(proc)
    epoch = read_metadata(checkpoint)[0]["epoch"]  # where the kill landed: 1, or a little later
    assert 1 <= epoch < worker.FOREVER
    # The killed run's lock file is still there, naming it; the kernel released its lock,
    # so it does not block the resume.
    assert f"PID {proc.pid} " in (tmp_path / ".lock").read_text()
    _resume_and_compare(tmp_path, epoch + 2)


def test_a_kill_between_writing_and_renaming_a_checkpoint_keeps_the_old_one(
    tmp_path, compile_cache
):
    checkpoint = tmp_path / "checkpoint.eqx"
    with _worker(tmp_path, "pause-before-rename", compile_cache) as proc:
        line = proc.stdout.readline()  # blocks until the worker pauses (or dies: then "")
        assert line.startswith("PAUSED"), proc.communicate()[1][-3000:]
        tmp = Path(line.split(maxsplit=1)[1].strip())
        before = checkpoint.read_bytes()
        assert tmp.stat().st_size > 0 and read_metadata(tmp)[0]["epoch"] == 2  # fully written
        assert [r["epoch"] for r in _metrics(tmp_path)] == [1, 2]  # epoch 2 logged, not saved
        _kill(proc)
    assert checkpoint.read_bytes() == before
    assert read_metadata(checkpoint)[0]["epoch"] == 1
    assert tmp.exists()  # what the kill left behind ...
    _resume_and_compare(tmp_path, 3)
    assert not tmp.exists()  # ... is removed by the next run in the folder (its process is dead)


def test_a_second_run_on_a_busy_folder_fails_and_the_first_is_untouched(
    tmp_path, compile_cache, images, monkeypatch
):
    """One run owns an out_dir at a time: a second one, started while the first is between
    epochs, fails at once naming the folder and the owner's PID (from a process, and from the
    command line), and the first ends byte-identical to a run alone."""
    first_dir = tmp_path / "run"
    with _worker(first_dir, "pause-after-first", compile_cache) as first:
        line = first.stdout.readline()
        assert line.startswith("CHECKPOINTED"), first.communicate()[1][-3000:]
        pid = int(line.split()[1])
        with _worker(first_dir, "run", compile_cache) as second:
            _, err = second.communicate(timeout=300)
        assert second.returncode != 0
        assert f"{first_dir} is in use by another training run (PID {pid} on " in err
        with pytest.raises(RunLockedError, match=f"PID {pid} "):
            _train(worker.config(2), images, out_dir=first_dir, resume=True, progress=False)

        import lvm.train.__main__ as cli
        from lvm.data.mnist import BinarizedMNIST

        monkeypatch.setattr(
            cli, "load_binarized_mnist", lambda **kw: BinarizedMNIST(images, images, images)
        )
        with pytest.raises(SystemExit, match=f"RunLockedError: {first_dir} is in use"):
            cli.main(["--epochs", "1", "--out-dir", str(first_dir), "--eval-num-samples", "0"])

        first.stdin.write("go on\n")
        first.stdin.flush()
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err[-3000:]
    alone = _train(worker.config(worker.PAUSED_RUN_EPOCHS), images, progress=False)
    state, header = load_checkpoint(first_dir / "checkpoint.eqx", alone.state)
    assert header["epoch"] == worker.PAUSED_RUN_EPOCHS
    assert _bytes(state) == _bytes(alone.state)
    assert [r["epoch"] for r in _metrics(first_dir)] == [1, 2, 3]
