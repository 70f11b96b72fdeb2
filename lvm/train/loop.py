"""The training loop: one config, one call, resumable.

``train_vae(config, train_x)`` trains a :class:`~lvm.models.vae.VAE` with Adam for
``config.num_epochs`` epochs, each a single compiled ``lax.scan`` over shuffled minibatches.
Randomness: ``key(seed)`` is split once into ``init_key, train_key, eval_key``; epoch e
(1-based) uses ``fold_in(train_key, e)``, and the validation bound always uses ``eval_key``.
So a run resumed from the checkpoint of epoch e replays exactly the epochs e+1, ... of
the uninterrupted run and ends at the same parameters.

With ``out_dir`` the loop writes ``checkpoint.eqx`` (atomically, every ``checkpoint_every``
epochs and at the end), ``metrics.jsonl`` (one line per epoch) and ``config.json``.
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

from lvm._checks import check_data, check_positive_int
from lvm.estimators import ELBO
from lvm.estimators.objectives import Objective, objective_from_dict, objective_to_dict
from lvm.evaluate import bound
from lvm.models.vae import VAE, VAEConfig
from lvm.sharding import make_mesh, replicate
from lvm.train.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from lvm.train.optim import make_optimizer
from lvm.train.step import TrainState, make_train_epoch

CHECKPOINT = "checkpoint.eqx"
METRICS = "metrics.jsonl"
#: Fields that may change when a run is resumed (to extend it or checkpoint more often).
RESUMABLE_FIELDS = ("num_epochs", "checkpoint_every", "eval_every")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Defaults: the IWAE paper's model and optimizer.

    ``schedule="iwae"`` with ``num_epochs=3280`` is the paper's full budget. ``eval_objective``
    (default: the training objective) gives the validation bound every ``eval_every`` epochs
    (0: never).
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

    def __post_init__(self):
        check_positive_int(self.num_epochs, "num_epochs")
        check_positive_int(self.batch_size, "batch_size")
        check_positive_int(self.checkpoint_every, "checkpoint_every")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0, got {self.eval_every}")
        if self.schedule not in ("constant", "iwae"):
            raise ValueError(f"schedule must be 'constant' or 'iwae', got {self.schedule!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; objectives as ``{"type": ..., ...}``."""
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


def _keys(seed: int):
    init_key, train_key, eval_key = jax.random.split(jax.random.key(seed), 3)
    return init_key, train_key, eval_key


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
        config.objective, optimizer, batch_size=config.batch_size, mesh=mesh
    )
    return init, epoch, schedule


def _incompatibilities(saved: dict, current: dict) -> list[str]:
    return [
        f"{name}: checkpoint {saved.get(name)!r} != now {current[name]!r}"
        for name in current
        if name not in RESUMABLE_FIELDS and saved.get(name) != current[name]
    ]


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
    problems = _incompatibilities(saved["config"], metadata["config"])
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
    """Train a VAE on ``train_x`` (N, D) float {0, 1} images; see the module docstring.

    Returns the final model, the final :class:`TrainState` and the per-epoch history
    (``epoch``, ``step``, ``train_bound``: mean over the epoch's minibatches, ``grad_norm``: its mean,
    ``validation_bound`` or None, ``epoch_seconds``, ``learning_rate``). With
    ``resume=True`` and a checkpoint in ``out_dir``, training continues from it;
    a checkpoint of another config or a corrupt one raises :class:`CheckpointError`.
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
    init, epoch_fn, schedule = _setup(config, steps_per_epoch, mesh)
    init_key, train_key, eval_key = _keys(config.seed)
    state = init(VAE(config.model, key=init_key))
    metadata = {"config": config.to_dict(), "num_train": int(train_x.shape[0])}

    out = Path(out_dir) if out_dir is not None else None
    start, history = 0, []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(metadata, indent=2))
        if resume and (out / CHECKPOINT).exists():
            state, start, history = _restore(out, state, metadata)
        _write_jsonl(out / METRICS, history)

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
        state, info = epoch_fn(jax.random.fold_in(train_key, epoch), state, data)
        # The one host sync of the epoch.
        train_bound, grad_norm = map(
            float, jax.device_get((jnp.mean(info.bound), jnp.mean(info.grad_norm)))
        )
        record = {
            "epoch": epoch,
            "step": epoch * steps_per_epoch,
            "train_bound": train_bound,
            "grad_norm": grad_norm,
            "validation_bound": None,
            "epoch_seconds": time.perf_counter() - tic,
            "learning_rate": lr,
        }
        if validation_x is not None and config.eval_every and epoch % config.eval_every == 0:
            record["validation_bound"] = float(
                np.mean(bound(eval_key, state.params, validation_x, eval_objective, mesh=mesh))
            )
        history.append(record)
        bar.set_postfix(
            bound=f"{train_bound:.2f}",
            **(
                {"val": f"{record['validation_bound']:.2f}"}
                if record["validation_bound"] is not None
                else {}
            ),
        )
        if out is not None:
            with open(out / METRICS, "a") as f:
                f.write(json.dumps(record) + "\n")
            if epoch % config.checkpoint_every == 0 or epoch == config.num_epochs:
                save_checkpoint(out / CHECKPOINT, state, metadata={**metadata, "epoch": epoch})
    return TrainResult(state.params, state, history)


def load_model(path: str | os.PathLike) -> VAE:
    """The trained model stored in a checkpoint (its architecture read from the header)."""
    header, _ = read_metadata(path)
    config = TrainConfig.from_dict(header["config"])
    init, _, _ = _setup(config, 1, make_mesh(jax.devices()[:1]))
    like = init(VAE(config.model, key=jax.random.key(0)))
    state, _ = load_checkpoint(path, like)
    return state.params
