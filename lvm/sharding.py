"""Data parallelism over all devices: a 1-D mesh whose one axis, ``"batch"``, splits the batch.

The same code runs on one CPU (a mesh of one device, every constraint a no-op), on several
GPUs, or across hosts joined by :func:`jax.distributed.initialize` (``jax.devices()`` is then
global). Parameters are replicated, each minibatch is split along its first axis, and XLA's
partitioner inserts the all-reduce of the gradient mean.
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "batch"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``"batch"`` over ``devices`` (default: all of ``jax.devices()``)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (BATCH_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (parameters, optimizer state, the data set)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The first axis is split over the mesh's ``"batch"`` axis."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXIS))


def replicate(tree, mesh: Mesh):
    """Place every array leaf of ``tree`` on all devices of ``mesh`` (once, outside jit).

    Leaves that are not arrays (an activation function inside ``eqx.nn.MLP``, a Python
    scalar) stay as they are.
    """
    arrays, rest = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.device_put(arrays, replicated(mesh)), rest)


def constrain_batch(x, mesh: Mesh):
    """Inside jit: ask XLA to split ``x`` (and what is computed from it) along its first axis."""
    return jax.lax.with_sharding_constraint(x, batch_sharded(mesh))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raise ``ValueError`` unless the batch splits evenly over the mesh."""
    if batch_size % mesh.size:
        raise ValueError(
            f"batch size {batch_size} must be divisible by the number of devices {mesh.size}"
        )


def initialize_distributed(coordinator_address: str, num_processes: int, process_id: int) -> None:
    """Join ``num_processes`` processes into one JAX runtime (call first, in every process).

    A thin wrapper of :func:`jax.distributed.initialize` that also selects the gloo CPU
    collectives, so that processes on CPUs (one machine or several) can all-reduce. After it,
    ``jax.devices()`` lists every process's devices and :func:`make_mesh` spans them all.
    """
    # Only CPU collectives read this setting; it must be set before the backend starts.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )


def host_value(x) -> np.ndarray:
    """A replicated array's value on this host, even when other processes hold some devices."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)


def global_batch(local: np.ndarray, mesh: Mesh) -> jax.Array:
    """One array split along its first axis over ``mesh``, from each process's own rows.

    Process p passes its rows ``local`` (the same number in every process); the result is
    the global array, the rows of process 0 first. With one process it is just ``local``
    placed on the mesh.
    """
    global_shape = (local.shape[0] * jax.process_count(), *local.shape[1:])
    return jax.make_array_from_process_local_data(batch_sharded(mesh), local, global_shape)
