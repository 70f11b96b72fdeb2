"""Training a VAE: the optax step, one scanned epoch, checkpoints, the resumable loop (:func:`train_vae`)."""

from lvm.train.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from lvm.train.loop import (
    NonFiniteError,
    RunKeys,
    TrainConfig,
    TrainResult,
    load_model,
    run_keys,
    train_vae,
)
from lvm.train.optim import IWAE_EPOCHS, iwae_schedule, make_optimizer
from lvm.train.step import StepInfo, TrainState, batch_bound, make_train_epoch, make_train_step

__all__ = [
    "IWAE_EPOCHS",
    "CheckpointError",
    "NonFiniteError",
    "RunKeys",
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
    "read_metadata",
    "run_keys",
    "save_checkpoint",
    "train_vae",
]
