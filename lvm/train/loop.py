"""The training loop: a model the caller built, a config of settings, one call, resumable.

``train(model, train_x, config)`` trains any amortized model (:class:`lvm.types.AmortizedModel`:
``log_joint`` and ``encode``) on a data set ``(N, ...)`` with the config's objective, Adam
(or an optax optimizer passed in) for ``config.num_epochs`` epochs, each a single compiled
``lax.scan`` over shuffled minibatches. :func:`train_vae` is the IWAE paper's MNIST
convenience on top: it builds the library's :class:`~lvm.models.vae.VAE` and calls
:func:`train`.

Randomness (:func:`run_keys`): ``key(seed)`` is split once into the named keys ``init``
(the caller's, to build the model: :func:`train_vae` uses it), ``train``, ``validation`` and
``test``; epoch e (1-based) uses ``fold_in(train, e)``, the validation bound always uses
``validation``, and ``test`` is left to the caller's test-set evaluation. So a run resumed
from the checkpoint of epoch e replays exactly the epochs e+1, ... of the uninterrupted run
and ends at the same parameters.

With ``out_dir`` the loop owns that folder for its lifetime (an advisory ``fcntl`` lock on
``out_dir/.lock``, released by the kernel when the process ends, however it ends: a second
run on the same folder fails at once with :class:`RunLockedError`, naming the owner's PID)
and writes ``checkpoint.eqx`` (atomically, every ``checkpoint_every`` epochs and at the end),
``metrics.jsonl`` (one line per epoch) and ``config.json``. With several processes
(:func:`lvm.sharding.initialize_distributed`), process 0 takes the lock and writes every
file; every process reads the same checkpoint when resuming.

Non-finite values. After each epoch the loop looks at every step's flag
(:attr:`~lvm.train.step.StepInfo.finite`). With ``nonfinite="raise"`` (the default) the
first step whose loss or gradient holds NaN or Inf stops training with
:class:`NonFiniteError`, naming the epoch and the step; nothing of that epoch is written,
so the last checkpoint stays as it was and ``resume=True`` continues from it. With
``nonfinite="skip"``, :func:`optax.apply_if_finite` drops such updates (up to
``max_consecutive_skips`` in a row, then the error) and ``metrics.jsonl`` counts them per
epoch (``skipped_updates``); the learning-rate schedule still follows the global step
(:func:`~lvm.train.optim.make_optimizer`). A checkpoint is never written with a NaN or Inf
in it.
"""

import dataclasses
import fcntl
import functools
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from tqdm.auto import tqdm

from lvm.amortized import check_dataset, check_model
from lvm.evaluate import bound
from lvm.models.vae import VAE, VAEConfig
from lvm.sharding import host_value, make_mesh, replicate
from lvm.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_metadata,
    remove_stale_temporaries,
    save_checkpoint,
)
from lvm.train.config import (
    RESUMABLE_FIELDS,
    SpecError,
    TrainConfig,
    model_to_dict,
    normalized_config,
    normalized_model,
)
from lvm.train.optim import make_optimizer
from lvm.train.step import StepInfo, TrainState, make_train_epoch
from lvm.types import Key

CHECKPOINT = "checkpoint.eqx"
METRICS = "metrics.jsonl"
LOCK = ".lock"


class TrainResult(NamedTuple):
    """The trained model, the final :class:`TrainState` and one history record per epoch."""

    model: Any
    state: TrainState
    history: list[dict[str, Any]]


class NonFiniteError(FloatingPointError):
    """Training met a NaN or Inf loss or gradient; the message names the epoch and the step."""


class RunLockedError(RuntimeError):
    """Another live process is training into the same ``out_dir``."""


class RunKeys(NamedTuple):
    """The branches of a run's key tree, one per consumer of randomness."""

    init: Key
    train: Key
    validation: Key
    test: Key


def run_keys(seed: int) -> RunKeys:
    """``key(seed)`` split once into the named keys of a run.

    ``init`` draws the initial parameters, ``fold_in(train, e)`` is epoch e's noise,
    ``validation`` the validation bound's, and ``test`` is for the caller's test-set
    evaluation, so that no evaluation reuses training noise. (With jax's threefry,
    ``split(key, n)[i] == fold_in(key, i)``: every key here is split off the root once and
    nothing else is derived from the root.)
    """
    return RunKeys(*jax.random.split(jax.random.key(seed), 4))


def _setup(config: TrainConfig, steps_per_epoch: int, mesh: Mesh, optimizer):
    """``init``, the jitted ``epoch`` and the schedule; shared by runs differing only in
    seed or length, so that a process training several such runs compiles once."""
    irrelevant = dict.fromkeys(RESUMABLE_FIELDS, 1) | {"seed": 0}
    return _setup_cached(
        dataclasses.replace(config, **irrelevant), steps_per_epoch, mesh, optimizer
    )


@functools.lru_cache(maxsize=16)
def _setup_cached(config: TrainConfig, steps_per_epoch: int, mesh: Mesh, optimizer):
    skips = config.max_consecutive_skips if config.nonfinite == "skip" else None
    schedule = None
    if optimizer is None:
        optimizer, schedule = make_optimizer(
            learning_rate=config.learning_rate,
            schedule=config.schedule,
            steps_per_epoch=steps_per_epoch,
            b1=config.b1,
            b2=config.b2,
            eps=config.eps,
            max_consecutive_skips=skips,
        )
    init, epoch = make_train_epoch(
        config.objective,
        optimizer,
        batch_size=config.batch_size,
        mesh=mesh,
        max_consecutive_skips=skips,
    )
    return init, epoch, schedule


def _check_epoch(info: StepInfo, *, epoch: int, config: TrainConfig, last_checkpoint: str) -> None:
    """Raise :class:`NonFiniteError` at the first step that applied a non-finite update."""
    bad = ~info.finite & ~info.skipped
    if not bad.any():
        return
    j = int(np.argmax(bad))
    steps = len(bad)
    values = {"loss": info.loss[j], "gradient": info.grad_norm[j]}
    parts = [name for name, value in values.items() if not np.isfinite(value)]
    what = f"a non-finite {' and '.join(parts) or 'gradient entry'}"
    if config.nonfinite == "skip" and "gradient" in parts:
        what += (
            f" after max_consecutive_skips={config.max_consecutive_skips} skipped updates in a row"
        )
    advice = (
        " TrainConfig(nonfinite='skip') (--nonfinite skip) skips such updates instead."
        if config.nonfinite == "raise"
        else ""
    )
    raise NonFiniteError(
        f"training diverged: {what} at epoch {epoch}, step {j + 1} of {steps} (global step "
        f"{(epoch - 1) * steps + j + 1}): loss {info.loss[j]}, gradient norm "
        f"{info.grad_norm[j]}. Likely causes: a learning rate too large "
        f"(learning_rate={config.learning_rate:g}), or data the model cannot score "
        "(extreme or wrongly scaled values). Nothing of this epoch was written; "
        f"{last_checkpoint}.{advice}"
    )


def _kept_checkpoint(out: Path | None, epoch: int) -> str:
    """What a run that stops now leaves behind, for the error message."""
    if out is None:
        return "there is no checkpoint"
    if not epoch:
        return f"no checkpoint was written to {out}"
    return f"{out / CHECKPOINT} is unchanged (epoch {epoch}); resume=True continues from it"


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{path}, line {number}, is not JSON ({err})") from err
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            raise CheckpointError(f"{path}, line {number}, is not an epoch record")
        records.append(record)
    return records


@contextmanager
def _run_lock(out: Path | None, owner: bool):
    """Hold an exclusive advisory lock on ``out/.lock`` (only where ``owner``); raise
    :class:`RunLockedError` at once if another process holds it."""
    if out is None or not owner:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise RunLockedError(
                f"{out} is in use by another training run ({holder}); two runs writing one "
                "folder would mix their checkpoints and metrics. Wait for it to end, or train "
                "into another out_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _incompatibilities(saved: dict, current: dict) -> list[str]:
    """What differs between a checkpoint's header and this run's metadata, field by field
    (the settings that may change on resume left out). Compares JSON; rebuilds nothing but
    the library's registered objectives."""
    problems = []
    try:
        then = normalized_config(saved.get("config"))
    except SpecError as err:
        raise CheckpointError(f"its training config cannot be read: {err}") from err
    now = normalized_config(current["config"])
    for name in now:
        if name not in RESUMABLE_FIELDS and then.get(name) != now[name]:
            problems.append(f"{name}: checkpoint {then.get(name)!r} != now {now[name]!r}")
    if normalized_model(saved.get("model")) != normalized_model(current["model"]):
        problems.append(f"model: checkpoint {saved.get('model')!r} != now {current['model']!r}")
    for name in ("num_train", "datum_shape", "optimizer"):
        if saved.get(name) != current[name]:
            problems.append(f"{name}: checkpoint {saved.get(name)!r} != now {current[name]!r}")
    return problems


def _restore(out: Path, like: TrainState, metadata: dict) -> tuple[TrainState, int, list[dict]]:
    """The checkpointed state, its epoch, and the metrics of the epochs up to it."""
    path = out / CHECKPOINT
    saved, _ = read_metadata(path)
    try:
        problems = _incompatibilities(saved, metadata)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from err
    if problems:
        raise CheckpointError(f"{path} was written by an incompatible run: " + "; ".join(problems))
    epoch = saved.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise CheckpointError(f"{path} is malformed: epoch {epoch!r}")
    if epoch > metadata["config"]["num_epochs"]:
        raise CheckpointError(
            f"{path} is at epoch {epoch}, past num_epochs="
            f"{metadata['config']['num_epochs']}; ask for at least that many epochs"
        )
    state, _ = load_checkpoint(path, like)
    # Epochs logged after the last checkpoint (a crash in between) are run again.
    return state, epoch, [r for r in _read_jsonl(out / METRICS) if r["epoch"] <= epoch]


def train(
    model: eqx.Module,
    train_x,
    config: TrainConfig | None = None,
    *,
    validation_x=None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    optimizer: optax.GradientTransformation | None = None,
    progress: bool = True,
    mesh: Mesh | None = None,
) -> TrainResult:
    """Train ``model`` on ``train_x`` (N, ...) with ``config`` (default ``TrainConfig()``).

    ``model``: any amortized model (``log_joint`` and ``encode``), its inexact array leaves
    the parameters; it is the starting point (build it with ``run_keys(seed).init`` for a
    run reproducible from its seed) and, on resume, the template the checkpoint is loaded
    into. ``optimizer``: an optax ``GradientTransformation`` instead of the config's Adam
    (its schedule, if any, is its own; with ``nonfinite="skip"`` it is wrapped whole in
    :func:`optax.apply_if_finite` unless it contains one). Returns :class:`TrainResult`: the
    final model, the final :class:`TrainState` and the per-epoch history (``epoch``,
    ``step``, ``train_bound``: mean over the epoch's applied minibatch updates,
    ``grad_norm``: its mean, ``skipped_updates``, ``validation_bound`` or None,
    ``epoch_seconds``, ``learning_rate`` or None for an optimizer passed in).

    With ``resume=True`` and a checkpoint in ``out_dir``, training continues from it; a
    checkpoint of another config, model, data size or optimizer, a malformed or a corrupt
    one raises :class:`CheckpointError` before anything in ``out_dir`` is touched. Another
    live run on ``out_dir`` raises :class:`RunLockedError`. A NaN or Inf loss or gradient
    raises :class:`NonFiniteError` (``nonfinite="raise"``).
    """
    if resume and out_dir is None:
        raise ValueError("resume=True needs the out_dir that holds the checkpoint")
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be an lvm.train.TrainConfig, got {type(config).__name__}")
    check_model(model, "train")
    mesh = make_mesh() if mesh is None else mesh
    train_x = check_dataset(model, train_x, "train_x").astype(np.float32)
    if validation_x is not None:
        validation_x = check_dataset(model, validation_x, "validation_x")
    steps_per_epoch = train_x.shape[0] // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"need at least batch_size={config.batch_size} training datapoints, got "
            f"{train_x.shape[0]}"
        )
    out = Path(out_dir) if out_dir is not None else None
    writer = jax.process_index() == 0
    if out is not None:
        # Only a run that writes files needs its config as JSON (a lambda trains without).
        metadata = {
            "config": config.to_dict(),
            "model": model_to_dict(model),
            "num_train": int(train_x.shape[0]),
            "datum_shape": list(train_x.shape[1:]),
            "optimizer": "adam" if optimizer is None else "custom",
        }
    init, epoch_fn, schedule = _setup(config, steps_per_epoch, mesh, optimizer)
    keys = run_keys(config.seed)
    state = init(model)

    with _run_lock(out, writer):
        start, history = 0, []
        if out is not None:
            if writer and out.exists():
                remove_stale_temporaries(out)
            if resume and (out / CHECKPOINT).exists():
                state, start, history = _restore(out, state, metadata)
            if writer:
                out.mkdir(parents=True, exist_ok=True)
                _write_text(out / "config.json", json.dumps(metadata, indent=2))
                _write_text(out / METRICS, "".join(json.dumps(r) + "\n" for r in history))
        last_checkpoint = _kept_checkpoint(out, start)

        state = replicate(state, mesh)
        data = replicate(jnp.asarray(train_x), mesh)
        eval_objective = config.eval_objective or config.objective
        bar = tqdm(
            range(start + 1, config.num_epochs + 1),
            initial=start,
            total=config.num_epochs,
            desc="epochs",
            disable=not progress or not writer,
        )
        for epoch in bar:
            lr = None if schedule is None else float(schedule((epoch - 1) * steps_per_epoch))
            tic = time.perf_counter()
            new_state, info = epoch_fn(jax.random.fold_in(keys.train, epoch), state, data)
            # The one host sync of the epoch: (steps,) per field.
            info = jax.tree.map(host_value, info)
            _check_epoch(info, epoch=epoch, config=config, last_checkpoint=last_checkpoint)
            state = new_state
            applied = ~info.skipped
            record = {
                "epoch": epoch,
                "step": epoch * steps_per_epoch,
                "train_bound": float(np.mean(info.bound[applied])) if applied.any() else None,
                "grad_norm": float(np.mean(info.grad_norm[applied])) if applied.any() else None,
                "skipped_updates": int(np.sum(info.skipped)),
                "validation_bound": None,
                "epoch_seconds": time.perf_counter() - tic,
                "learning_rate": lr,
            }
            if validation_x is not None and config.eval_every and epoch % config.eval_every == 0:
                record["validation_bound"] = float(
                    np.mean(
                        bound(
                            keys.validation, state.params, validation_x, eval_objective, mesh=mesh
                        )
                    )
                )
            history.append(record)
            bar.set_postfix(
                {
                    name: f"{record[key]:.2f}"
                    for name, key in (("bound", "train_bound"), ("val", "validation_bound"))
                    if record[key] is not None
                }
            )
            if out is not None and writer:
                with open(out / METRICS, "a") as f:
                    f.write(json.dumps(record) + "\n")
                if epoch % config.checkpoint_every == 0 or epoch == config.num_epochs:
                    save_checkpoint(out / CHECKPOINT, state, metadata={**metadata, "epoch": epoch})
                    last_checkpoint = _kept_checkpoint(out, epoch)
    return TrainResult(state.params, state, history)


def train_vae(
    config: TrainConfig,
    train_x,
    *,
    model_config: VAEConfig | None = None,
    validation_x=None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    mesh: Mesh | None = None,
) -> TrainResult:
    """The IWAE paper's MNIST convenience: :func:`train` on the library's :class:`VAE`
    (architecture ``model_config``, parameters drawn with ``run_keys(config.seed).init``).

    ``train_x`` (N, data_dim) with values in [0, 1] (Bernoulli pixels). Everything else as
    :func:`train`.
    """
    model = VAE(model_config or VAEConfig(), key=run_keys(config.seed).init)
    return train(
        model,
        train_x,
        config,
        validation_x=validation_x,
        out_dir=out_dir,
        resume=resume,
        progress=progress,
        mesh=mesh,
    )
