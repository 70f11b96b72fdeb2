"""The training loop: one config, one call, resumable.

``train_vae(config, train_x)`` trains a :class:`~lvm.models.vae.VAE` with Adam for
``config.num_epochs`` epochs, each a single compiled ``lax.scan`` over shuffled minibatches.
Randomness (:func:`run_keys`): ``key(seed)`` is split once into the named keys ``init``,
``train``, ``validation`` and ``test``; epoch e (1-based) uses ``fold_in(train, e)``, the
validation bound always uses ``validation``, and ``test`` is left to the caller's test-set
evaluation (the command line's). So a run resumed from the checkpoint of epoch e replays
exactly the epochs e+1, ... of the uninterrupted run and ends at the same parameters.

With ``out_dir`` the loop writes ``checkpoint.eqx`` (atomically, every ``checkpoint_every``
epochs and at the end), ``metrics.jsonl`` (one line per epoch) and ``config.json``.

Non-finite values. After each epoch the loop looks at every step's flag
(:attr:`~lvm.train.step.StepInfo.finite`). With ``nonfinite="raise"`` (the default) the
first step whose loss or gradient holds NaN or Inf stops training with
:class:`NonFiniteError`, naming the epoch and the step; nothing of that epoch is written,
so the last checkpoint stays as it was and ``resume=True`` continues from it. With
``nonfinite="skip"``, :func:`optax.apply_if_finite` drops such updates (up to
``max_consecutive_skips`` in a row, then the error) and ``metrics.jsonl`` counts them per
epoch (``skipped_updates``). A checkpoint is never written with a NaN or Inf in it.
"""

import dataclasses
import functools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from tqdm.auto import tqdm

from lvm._checks import check_choice, check_data, check_positive_int
from lvm.estimators import ELBO
from lvm.estimators.objectives import Objective, objective_from_dict, objective_to_dict
from lvm.evaluate import bound
from lvm.models.vae import VAE, VAEConfig
from lvm.sharding import make_mesh, replicate
from lvm.train.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from lvm.train.optim import make_optimizer
from lvm.train.step import StepInfo, TrainState, make_train_epoch
from lvm.types import Key

CHECKPOINT = "checkpoint.eqx"
METRICS = "metrics.jsonl"
#: Fields that may change when a run is resumed (to extend it or checkpoint more often).
RESUMABLE_FIELDS = ("num_epochs", "checkpoint_every", "eval_every")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Defaults: the IWAE paper's model and optimizer.

    ``schedule="iwae"`` with ``num_epochs=3280`` is the paper's full budget. ``eval_objective``
    (default: the training objective) gives the validation bound every ``eval_every`` epochs
    (0: never). ``objective`` may be any function of ``(key, log_joint, proposal, x)`` that
    can be imported by its name (see :func:`~lvm.estimators.objectives.objective_to_dict`).
    ``nonfinite``: ``"raise"`` stops at the first non-finite loss or gradient, ``"skip"``
    drops such updates, at most ``max_consecutive_skips`` in a row (see the module docstring).
    """

    model: VAEConfig = field(default_factory=VAEConfig)
    objective: Objective = field(default_factory=ELBO)
    num_epochs: int = 10
    batch_size: int = 100
    learning_rate: float = 1e-3
    schedule: str = "constant"
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-4
    seed: int = 0
    checkpoint_every: int = 5
    eval_every: int = 1
    eval_objective: Objective | None = None
    nonfinite: str = "raise"
    max_consecutive_skips: int = 10

    def __post_init__(self):
        check_positive_int(self.num_epochs, "num_epochs")
        check_positive_int(self.batch_size, "batch_size")
        check_positive_int(self.checkpoint_every, "checkpoint_every")
        check_positive_int(self.max_consecutive_skips, "max_consecutive_skips")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0, got {self.eval_every}")
        if self.schedule not in ("constant", "iwae"):
            raise ValueError(f"schedule must be 'constant' or 'iwae', got {self.schedule!r}")
        check_choice(self.nonfinite, ("raise", "skip"), "nonfinite")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; objectives as :func:`~lvm.estimators.objectives.objective_to_dict` writes them."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["model"] = dataclasses.asdict(self.model)
        out["model"]["hidden_sizes"] = list(self.model.hidden_sizes)
        out["objective"] = objective_to_dict(self.objective)
        if self.eval_objective is not None:
            out["eval_objective"] = objective_to_dict(self.eval_objective)
        return out

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> "TrainConfig":
        spec = dict(spec)
        spec["model"] = VAEConfig(
            **{**spec["model"], "hidden_sizes": tuple(spec["model"]["hidden_sizes"])}
        )
        spec["objective"] = objective_from_dict(spec["objective"])
        if spec.get("eval_objective") is not None:
            spec["eval_objective"] = objective_from_dict(spec["eval_objective"])
        return cls(**spec)


class TrainResult(NamedTuple):
    model: VAE
    state: TrainState
    history: list[dict[str, Any]]


class NonFiniteError(FloatingPointError):
    """Training met a NaN or Inf loss or gradient; the message names the epoch and the step."""


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


def _setup(config: TrainConfig, steps_per_epoch: int, mesh: Mesh):
    """``init``, the jitted ``epoch`` and the schedule; shared by runs differing only in
    seed or length, so that a process training several such runs compiles once."""
    irrelevant = dict.fromkeys(RESUMABLE_FIELDS, 1) | {"seed": 0}
    return _setup_cached(dataclasses.replace(config, **irrelevant), steps_per_epoch, mesh)


@functools.lru_cache(maxsize=16)
def _setup_cached(config: TrainConfig, steps_per_epoch: int, mesh: Mesh):
    optimizer, schedule = make_optimizer(
        learning_rate=config.learning_rate,
        schedule=config.schedule,
        steps_per_epoch=steps_per_epoch,
        b1=config.b1,
        b2=config.b2,
        eps=config.eps,
    )
    init, epoch = make_train_epoch(
        config.objective,
        optimizer,
        batch_size=config.batch_size,
        mesh=mesh,
        max_consecutive_skips=config.max_consecutive_skips if config.nonfinite == "skip" else None,
    )
    return init, epoch, schedule


def _incompatibilities(saved: dict, current: dict) -> list[str]:
    # Read back through TrainConfig, so that a field added since (with its default) or an
    # older spelling of an objective does not make an old run incompatible.
    saved = TrainConfig.from_dict(saved).to_dict()
    return [
        f"{name}: checkpoint {saved.get(name)!r} != now {current[name]!r}"
        for name in current
        if name not in RESUMABLE_FIELDS and saved.get(name) != current[name]
    ]


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


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _write_jsonl(path: Path, records: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    os.replace(tmp, path)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _restore(out: Path, like: TrainState, metadata: dict) -> tuple[TrainState, int, list[dict]]:
    """The checkpointed state, its epoch, and the metrics of the epochs up to it."""
    saved, _ = read_metadata(out / CHECKPOINT)
    try:
        problems = _incompatibilities(saved["config"], metadata["config"])
    except (KeyError, TypeError, ValueError, ImportError, AttributeError) as err:
        raise CheckpointError(
            f"{out / CHECKPOINT} holds a training config that cannot be read back ({err!r})"
        ) from err
    if saved.get("num_train") != metadata["num_train"]:
        problems.append(
            f"num_train: checkpoint {saved.get('num_train')} != now {metadata['num_train']}"
        )
    if problems:
        raise CheckpointError(
            f"{out / CHECKPOINT} was written by an incompatible run: " + "; ".join(problems)
        )
    if int(saved["epoch"]) > metadata["config"]["num_epochs"]:
        raise CheckpointError(
            f"{out / CHECKPOINT} is at epoch {saved['epoch']}, past num_epochs="
            f"{metadata['config']['num_epochs']}; ask for at least that many epochs"
        )
    state, saved = load_checkpoint(out / CHECKPOINT, like)
    start = int(saved["epoch"])
    # Epochs logged after the last checkpoint (a crash in between) are run again.
    return state, start, [r for r in _read_jsonl(out / METRICS) if r["epoch"] <= start]


def train_vae(
    config: TrainConfig,
    train_x,
    *,
    validation_x=None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    mesh: Mesh | None = None,
) -> TrainResult:
    """Train a VAE on ``train_x`` (N, D) images with values in [0, 1]; see the module docstring.

    Returns the final model, the final :class:`TrainState` and the per-epoch history
    (``epoch``, ``step``, ``train_bound``: mean over the epoch's applied minibatch updates,
    ``grad_norm``: its mean, ``skipped_updates``, ``validation_bound`` or None,
    ``epoch_seconds``, ``learning_rate``). With ``resume=True`` and a checkpoint in
    ``out_dir``, training continues from it; a checkpoint of another config or a corrupt one
    raises :class:`CheckpointError` (before anything in ``out_dir`` is touched). A NaN or
    Inf loss or gradient raises :class:`NonFiniteError` (``nonfinite="raise"``).
    """
    if resume and out_dir is None:
        raise ValueError("resume=True needs the out_dir that holds the checkpoint")
    mesh = make_mesh() if mesh is None else mesh
    train_x = check_data(
        train_x, data_dim=config.model.data_dim, name="train_x", unit_interval=True
    ).astype(np.float32)
    if validation_x is not None:
        validation_x = check_data(
            validation_x, data_dim=config.model.data_dim, name="validation_x", unit_interval=True
        )
    steps_per_epoch = train_x.shape[0] // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"need at least batch_size={config.batch_size} training images")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        # Only a run that writes files needs its config as JSON (a lambda trains without).
        metadata = {"config": config.to_dict(), "num_train": int(train_x.shape[0])}
    init, epoch_fn, schedule = _setup(config, steps_per_epoch, mesh)
    keys = run_keys(config.seed)
    state = init(VAE(config.model, key=keys.init))

    start, history = 0, []
    if out is not None:
        if resume and (out / CHECKPOINT).exists():
            state, start, history = _restore(out, state, metadata)
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "config.json", metadata)
        _write_jsonl(out / METRICS, history)
    last_checkpoint = _kept_checkpoint(out, start)

    state = replicate(state, mesh)
    data = replicate(jnp.asarray(train_x), mesh)
    eval_objective = config.eval_objective or config.objective
    bar = tqdm(
        range(start + 1, config.num_epochs + 1),
        initial=start,
        total=config.num_epochs,
        desc="epochs",
        disable=not progress,
    )
    for epoch in bar:
        lr = float(schedule((epoch - 1) * steps_per_epoch))
        tic = time.perf_counter()
        new_state, info = epoch_fn(jax.random.fold_in(keys.train, epoch), state, data)
        info = jax.device_get(info)  # the one host sync of the epoch: (steps,) per field
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
                    bound(keys.validation, state.params, validation_x, eval_objective, mesh=mesh)
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
        if out is not None:
            with open(out / METRICS, "a") as f:
                f.write(json.dumps(record) + "\n")
            if epoch % config.checkpoint_every == 0 or epoch == config.num_epochs:
                save_checkpoint(out / CHECKPOINT, state, metadata={**metadata, "epoch": epoch})
                last_checkpoint = _kept_checkpoint(out, epoch)
    return TrainResult(state.params, state, history)


def load_model(path: str | os.PathLike) -> VAE:
    """The trained model stored in a checkpoint (its architecture read from the header)."""
    header, _ = read_metadata(path)
    try:
        config = TrainConfig.from_dict(header["config"])
    except (KeyError, TypeError, ValueError, ImportError, AttributeError) as err:
        raise CheckpointError(
            f"{path} holds a training config that cannot be read back ({err!r})"
        ) from err
    init, _, _ = _setup(config, 1, make_mesh(jax.devices()[:1]))
    like = init(VAE(config.model, key=jax.random.key(0)))
    state, _ = load_checkpoint(path, like)
    return state.params
