r"""One optimizer step, and one epoch as a single compiled ``lax.scan`` over minibatches.

The loss of a minibatch :math:`x_{1:B}` is the negated mean bound,

.. math:: \mathrm{loss}(\theta, \phi) = -\frac1B \sum_{b=1}^B \mathcal L(x_b;\ \theta, \phi,
          \mathrm{key}_b), \qquad (\mathrm{key}_1..\mathrm{key}_B) = \mathrm{split}(\mathrm{key}, B),

with :math:`\mathcal L` the objective's bound for one datapoint (:func:`lvm.model_bound`),
vmapped over the batch; its gradient is whatever gradient the objective defines (the
pathwise one for the plain bounds). The model is any amortized model
(:class:`lvm.types.AmortizedModel`); its inexact array leaves are the parameters, and a
datapoint may have any shape.

Every step reports whether its loss and its gradient norm are finite
(:attr:`StepInfo.finite`; a NaN or Inf gradient entry makes the norm NaN or Inf), so that
the caller finds the first step of a diverging run. With ``max_consecutive_skips`` the
optimizer must contain :func:`optax.apply_if_finite` (``max_consecutive_skips``), which
drops an update whose gradient holds NaN or Inf (:attr:`StepInfo.skipped`), unless it is the
``max_consecutive_skips + 1``-th such update in a row: that one is applied. Where that
wrapper sits decides what a schedule counts: outside it (as in
:func:`lvm.train.optim.make_optimizer`), every step; inside it, the applied updates only.
"""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh
from jaxtyping import Array, Bool, Float, Int

from lvm._checks import check_floating, check_positive_int
from lvm.amortized import model_bound
from lvm.sharding import check_batch_size, constrain_batch, make_mesh, replicate
from lvm.types import Key, Objective, Scalar


class TrainState(NamedTuple):
    """What changes during training: the model, the optimizer state and the step count."""

    params: eqx.Module
    opt_state: optax.OptState
    step: Int[Array, ""]


class StepInfo(NamedTuple):
    """Diagnostics of one step (stacked along a leading axis by an epoch).

    ``finite``: the loss and the gradient norm are finite (so every gradient entry is).
    ``skipped``: the update was not applied (only with ``max_consecutive_skips``; then a
    step that is neither finite nor skipped is one that :func:`optax.apply_if_finite` gave
    up on).
    """

    loss: Scalar
    bound: Scalar
    grad_norm: Scalar
    finite: Bool[Array, ""]
    skipped: Bool[Array, ""]


def batch_bound(
    key: Key, model: eqx.Module, batch: Float[Array, "batch ..."], objective: Objective
) -> Scalar:
    """The mean over the batch of each datapoint's bound, datapoint b drawing with ``split(key, B)[b]``."""
    keys = jax.random.split(key, batch.shape[0])
    bounds = jax.vmap(lambda k, x: model_bound(k, model, x, objective))(keys, batch)
    return jnp.mean(bounds)


def _skip_guard(opt_state) -> optax.ApplyIfFiniteState | None:
    """The :func:`optax.apply_if_finite` state inside ``opt_state``, if there is one."""
    found = [
        s
        for s in jax.tree.leaves(
            opt_state, is_leaf=lambda s: isinstance(s, optax.ApplyIfFiniteState)
        )
        if isinstance(s, optax.ApplyIfFiniteState)
    ]
    return found[0] if found else None  # the outermost: is_leaf stops there


def _has_skip_guard(optimizer: optax.GradientTransformation) -> bool:
    """Whether ``optimizer`` contains :func:`optax.apply_if_finite` (its state's shape on a probe)."""
    try:
        probe = jax.eval_shape(optimizer.init, {"w": jax.ShapeDtypeStruct((2,), jnp.float32)})
    except Exception:  # an optimizer that cannot init on a vector: wrap it
        return False
    return _skip_guard(probe) is not None


def make_train_step(
    objective: Objective,
    optimizer: optax.GradientTransformation,
    *,
    mesh: Mesh | None = None,
    max_consecutive_skips: int | None = None,
):
    """Build the pure pair ``init(model) -> TrainState`` and ``step(key, state, batch) -> (TrainState, StepInfo)``.

    ``step`` is not jitted: wrap it in :func:`equinox.filter_jit` once (or call it inside
    :func:`make_train_epoch`). The batch (B, ...) is split over ``mesh`` (default: all
    devices); ``init`` replicates the state's arrays over the same mesh.
    ``max_consecutive_skips``: the optimizer skips updates with a non-finite gradient, up to
    that many in a row, through the :func:`optax.apply_if_finite` it contains (if it contains
    none, the whole optimizer is wrapped in one); None: every update is applied.
    """
    mesh = make_mesh() if mesh is None else mesh
    if max_consecutive_skips is not None:
        max_consecutive_skips = check_positive_int(max_consecutive_skips, "max_consecutive_skips")
        if not _has_skip_guard(optimizer):
            optimizer = optax.apply_if_finite(optimizer, max_consecutive_skips)

    def loss_fn(model, key, batch):
        bound = batch_bound(key, model, batch, objective)
        return -bound, bound

    def init(model: eqx.Module) -> TrainState:
        opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
        # Placed as the step's outputs will be, so that the second step does not recompile.
        return replicate(TrainState(model, opt_state, jnp.zeros((), jnp.int32)), mesh)

    def step(key: Key, state: TrainState, batch: Float[Array, "batch ..."]):
        if batch.ndim < 1:
            raise ValueError(f"batch must have shape (batch, ...), got {batch.shape}")
        check_floating(batch, "batch")
        check_batch_size(batch.shape[0], mesh)
        batch = constrain_batch(batch, mesh)
        (loss, bound), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(
            state.params, key, batch
        )
        params = eqx.filter(state.params, eqx.is_inexact_array)
        updates, opt_state = optimizer.update(grads, state.opt_state, params)
        model = eqx.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        # A NaN or Inf entry makes the norm NaN or Inf; so does a norm past float's range
        # (entries ~1e19), as much a divergence. Free: the norm is computed for Info anyway.
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        if max_consecutive_skips is None:
            skipped = jnp.zeros((), bool)
        else:  # rejected: non-finite, and not yet more than max_consecutive_skips in a row
            guard = _skip_guard(opt_state)
            skipped = ~guard.last_finite & (guard.notfinite_count <= max_consecutive_skips)
        info = StepInfo(loss, bound, grad_norm, finite, skipped)
        return TrainState(model, opt_state, state.step + 1), info

    return init, step


def make_train_epoch(
    objective: Objective,
    optimizer: optax.GradientTransformation,
    *,
    batch_size: int = 100,
    mesh: Mesh | None = None,
    max_consecutive_skips: int | None = None,
):
    """Build ``init`` and a jitted ``epoch(key, state, data) -> (TrainState, StepInfo)``.

    One epoch shuffles ``data`` (N, ...) with ``key``, drops the last ``N mod batch_size``
    images, and runs every minibatch step inside one ``lax.scan``: with
    ``perm_key, step_key = split(key)`` and ``order = permutation(perm_key, N)``, step j
    trains on rows ``order[j B : (j + 1) B]`` with key ``split(step_key, N // B)[j]``. The
    returned :class:`StepInfo` fields have shape ``(N // batch_size,)``. ``data`` should
    already be a device array (replicated over ``mesh``) so that it is not copied every
    epoch. ``max_consecutive_skips``: as in :func:`make_train_step`.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    mesh = make_mesh() if mesh is None else mesh
    check_batch_size(batch_size, mesh)
    init, step = make_train_step(
        objective, optimizer, mesh=mesh, max_consecutive_skips=max_consecutive_skips
    )

    @eqx.filter_jit
    def epoch(key: Key, state: TrainState, data: Float[Array, "n ..."]):
        num_batches = data.shape[0] // batch_size
        if num_batches < 1:
            raise ValueError(f"need at least batch_size={batch_size} images, got {data.shape[0]}")
        perm_key, step_key = jax.random.split(key)
        order = jax.random.permutation(perm_key, data.shape[0])[: num_batches * batch_size]
        order = order.reshape(num_batches, batch_size)
        step_keys = jax.random.split(step_key, num_batches)

        # The scan carries the state's arrays; its other leaves (an eqx.nn.MLP's activation
        # function, say) are closed over.
        arrays, rest = eqx.partition(state, eqx.is_array)

        def body(arrays, inputs):
            k, idx = inputs
            new_state, info = step(k, eqx.combine(arrays, rest), data[idx])
            return eqx.filter(new_state, eqx.is_array), info

        arrays, info = jax.lax.scan(body, arrays, (step_keys, order))
        return eqx.combine(arrays, rest), info

    return init, epoch
