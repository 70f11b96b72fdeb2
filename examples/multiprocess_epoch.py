"""One training epoch of a small VAE, data-parallel over several processes (hosts).

Run one copy per process; they find each other through the coordinator's address (process
0's host and a free port) and join one JAX runtime (:func:`lvm.sharding.initialize_distributed`;
on CPUs the gradient all-reduce goes through gloo)::

    for i in 0 1; do
      LVM_COORDINATOR=localhost:12355 LVM_NUM_PROCESSES=2 LVM_PROCESS_ID=$i \\
        python examples/multiprocess_epoch.py /tmp/mp &
    done; wait

Process p of P loads only its own rows of each minibatch (rows p B/P ... (p+1) B/P - 1 of
the batch of B); :func:`lvm.sharding.global_batch` makes them one global array over the mesh
of every process's devices, and one jitted :func:`lvm.train.make_train_step` runs on it: each
process computes the gradient of its rows, and XLA all-reduces the mean. The parameters are
replicated, so every process ends with the same model. Each writes it to
``OUT_DIR/params-P<P>-p<p>.npz``; process 0 then trains the same epoch alone, on its one
device and the whole minibatches (``OUT_DIR/params-reference.npz``), and prints the largest
difference: float32 round-off, from the all-reduce summing the two halves' gradients in
another order than one device does (tests/test_sharding.py checks this with 2 processes).
"""

import json
import os
import sys
from pathlib import Path

from lvm.sharding import initialize_distributed

initialize_distributed(
    os.environ["LVM_COORDINATOR"],
    int(os.environ["LVM_NUM_PROCESSES"]),
    int(os.environ["LVM_PROCESS_ID"]),
)

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import lvm  # noqa: E402
from lvm.models.vae import VAE, VAEConfig  # noqa: E402
from lvm.sharding import global_batch, make_mesh  # noqa: E402
from lvm.train import make_train_step  # noqa: E402

MODEL = VAEConfig(data_dim=64, latent_dim=2, hidden_sizes=(16,))
NUM_IMAGES, BATCH_SIZE, LEARNING_RATE = 120, 20, 1e-2


def train_epoch(mesh, batches):
    """Adam steps on ``mesh``, one per minibatch of ``batches``; the initial and final parameters."""
    optimizer = optax.adam(LEARNING_RATE, eps=1e-4)
    init, step = make_train_step(lvm.IWAE(2), optimizer, mesh=mesh)
    step = eqx.filter_jit(step)
    root = jax.random.key(0)
    state = init(VAE(MODEL, key=jax.random.fold_in(root, 0)))
    initial = [np.asarray(leaf) for leaf in jax.tree.leaves(state.params)]
    for j, batch in enumerate(batches):
        state, info = step(jax.random.fold_in(jax.random.fold_in(root, 1), j), state, batch)
        if not bool(info.finite):
            raise FloatingPointError(f"non-finite loss or gradient at step {j}")
    return initial, [np.asarray(leaf) for leaf in jax.tree.leaves(state.params)]


def _max_abs_difference(a, b) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


def main(out_dir: Path) -> None:
    num, me = jax.process_count(), jax.process_index()
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)  # the same data and shuffle in every process
    images = (rng.random((NUM_IMAGES, MODEL.data_dim)) < 0.3).astype(np.float32)
    order = rng.permutation(NUM_IMAGES).reshape(-1, BATCH_SIZE)
    share = BATCH_SIZE // num

    mesh = make_mesh()  # every process's devices
    mine = (global_batch(images[rows[me * share : (me + 1) * share]], mesh) for rows in order)
    initial, params = train_epoch(mesh, mine)
    np.savez(out_dir / f"params-P{num}-p{me}.npz", *params)
    summary = {"processes": num, "process": me, "devices": jax.device_count()}
    if me == 0:
        whole = (jnp.asarray(images[rows]) for rows in order)
        _, reference = train_epoch(make_mesh(jax.local_devices()[:1]), whole)
        np.savez(out_dir / "params-reference.npz", *reference)
        summary["max_abs_change_in_training"] = _max_abs_difference(params, initial)
        summary["max_abs_difference_to_one_device"] = _max_abs_difference(params, reference)
    print(json.dumps(summary))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
