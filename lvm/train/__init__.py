"""Training any amortized model: the optax step, one scanned epoch, checkpoints, the resumable
loop (:func:`train`; :func:`train_vae` for the library's MNIST VAE), loading (:func:`load_model`)."""

from lvm.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model,
    read_metadata,
    save_checkpoint,
)
from lvm.train.config import TrainConfig, objective_from_dict, objective_to_dict
from lvm.train.loop import (
    NonFiniteError,
    RunKeys,
    RunLockedError,
    TrainResult,
    run_keys,
    train,
    train_vae,
)
from lvm.train.optim import IWAE_EPOCHS, iwae_schedule, make_optimizer
from lvm.train.step import StepInfo, TrainState, batch_bound, make_train_epoch, make_train_step

__all__ = [
    "IWAE_EPOCHS",
    "CheckpointError",
    "NonFiniteError",
    "RunKeys",
    "RunLockedError",
    "StepInfo",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "batch_bound",
    "iwae_schedule",
    "load_checkpoint",
    "load_model",
    "make_optimizer",
    "make_train_epoch",
    "make_train_step",
    "objective_from_dict",
    "objective_to_dict",
    "read_metadata",
    "run_keys",
    "save_checkpoint",
    "train",
    "train_vae",
]
