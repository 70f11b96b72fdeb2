"""Training a VAE: objectives as values, the optax step, one scanned epoch, checkpoints, the loop."""

from lvm.train.objectives import (
    ELBOAnalyticKL,
    Objective,
    model_bound,
    objective_from_dict,
    objective_to_dict,
)
from lvm.train.step import StepInfo, TrainState, batch_bound, make_train_epoch, make_train_step

__all__ = [
    "ELBOAnalyticKL",
    "Objective",
    "StepInfo",
    "TrainState",
    "batch_bound",
    "make_train_epoch",
    "make_train_step",
    "model_bound",
    "objective_from_dict",
    "objective_to_dict",
]
