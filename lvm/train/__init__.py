"""Training a VAE: objectives as values, the optax step, one scanned epoch, checkpoints, the loop."""

from lvm.objectives import (
    ELBOAnalyticKL,
    Objective,
    model_bound,
    objective_from_dict,
    objective_to_dict,
)
from lvm.train.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from lvm.train.loop import FitResult, TrainConfig, fit, load_model
from lvm.train.optim import IWAE_EPOCHS, iwae_schedule, make_optimizer
from lvm.train.step import StepInfo, TrainState, batch_bound, make_train_epoch, make_train_step

__all__ = [
    "IWAE_EPOCHS",
    "CheckpointError",
    "ELBOAnalyticKL",
    "FitResult",
    "Objective",
    "StepInfo",
    "TrainConfig",
    "TrainState",
    "batch_bound",
    "fit",
    "iwae_schedule",
    "load_checkpoint",
    "load_model",
    "make_optimizer",
    "make_train_epoch",
    "make_train_step",
    "model_bound",
    "objective_from_dict",
    "objective_to_dict",
    "read_metadata",
    "save_checkpoint",
]
