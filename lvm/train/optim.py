r"""Adam and the learning-rate schedule of the IWAE paper (Burda et al., 2016, Sec. 5).

The paper trains for :math:`\sum_{i=0}^{7} 3^i = 3280` epochs, stage i lasting :math:`3^i`
epochs at learning rate :math:`10^{-3} \cdot 10^{-i/7}`, with Adam
:math:`\beta_1 = 0.9, \beta_2 = 0.999, \epsilon = 10^{-4}`.
"""

import jax.numpy as jnp
import numpy as np
import optax

NUM_STAGES = 8
#: Epochs of the paper's full schedule.
IWAE_EPOCHS = sum(3**i for i in range(NUM_STAGES))


def iwae_schedule(learning_rate: float, steps_per_epoch: int) -> optax.Schedule:
    r""":math:`\eta_t = \eta \cdot 10^{-i(t)/7}`, :math:`i(t)` the stage of step t; the last stage's rate after."""
    ends = np.cumsum([3**i for i in range(NUM_STAGES)])[:-1] * steps_per_epoch
    boundaries = jnp.asarray(ends, jnp.int32)

    def schedule(step):
        stage = jnp.searchsorted(boundaries, step, side="right")
        return learning_rate * 10.0 ** (-stage / 7.0)

    return schedule


def make_optimizer(
    *,
    learning_rate: float,
    schedule: str,
    steps_per_epoch: int,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-4,
    max_consecutive_skips: int | None = None,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Adam with a ``"constant"`` or ``"iwae"`` learning rate; returns the optimizer and its schedule.

    With ``max_consecutive_skips`` (the ``nonfinite="skip"`` policy), updates whose gradient
    holds NaN or Inf are dropped by :func:`optax.apply_if_finite` around Adam's moment
    estimates only, and the learning rate is applied outside it:
    ``chain(apply_if_finite(scale_by_adam), scale_by_learning_rate(schedule))``. So Adam's
    moments and bias correction count the applied updates, while the schedule counts every
    step (the global step), and the ``"iwae"`` stages end at the same epochs whatever was
    skipped.
    """
    if schedule == "constant":
        lr = optax.constant_schedule(learning_rate)
    elif schedule == "iwae":
        lr = iwae_schedule(learning_rate, steps_per_epoch)
    else:
        raise ValueError(f"schedule must be 'constant' or 'iwae', got {schedule!r}")
    if max_consecutive_skips is None:
        return optax.adam(lr, b1=b1, b2=b2, eps=eps), lr
    guarded = optax.apply_if_finite(
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps), max_consecutive_skips
    )
    return optax.chain(guarded, optax.scale_by_learning_rate(lr)), lr
