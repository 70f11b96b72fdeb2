"""The training run of the fault-tolerance tests, in a process of its own that the test kills.

    python _train_worker.py OUT_DIR run                  # trains and checkpoints every epoch until killed
    python _train_worker.py OUT_DIR pause-before-rename  # stops inside the 2nd checkpoint write
    python _train_worker.py OUT_DIR pause-after-first    # 3 epochs, waiting after the 1st checkpoint

``pause-before-rename`` wraps ``os.replace``: when the second checkpoint's temporary file is
written and flushed, just before it is renamed over ``checkpoint.eqx``, the process prints
``PAUSED <temporary file>`` and waits on stdin, so that the test kills it exactly there. ``pause-after-first`` trains ``PAUSED_RUN_EPOCHS``
epochs; after writing the first checkpoint it prints ``CHECKPOINTED <pid>`` and waits for a
line on stdin, so that the test can start a second run on the same folder meanwhile.
"""

import os
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import lvm
from lvm.models.vae import VAEConfig
from lvm.train import TrainConfig, train_vae

#: Epochs of the "run" mode: more than any test waits for, so the kill lands mid-run.
FOREVER = 10_000
#: Epochs of the "pause-after-first" mode.
PAUSED_RUN_EPOCHS = 3
#: A pixel value that no binary image has, inside [0, 1]: it passes every input check.
POISON = 0.5
SMALL = VAEConfig(data_dim=784, latent_dim=4, hidden_sizes=(16,))


def poisoned_elbo(key, log_joint, proposal, x):
    """The ELBO, times +inf for an image whose first pixel is POISON: its loss and gradient are
    non-finite. A user's objective, to inject non-finite minibatches through the data."""
    return jnp.where(x[0] == POISON, jnp.inf, 1.0) * lvm.elbo(key, log_joint, proposal, x)


def config(num_epochs: int, **overrides) -> TrainConfig:
    """The run of these tests (the same compiled epoch for all of them in one process)."""
    settings = dict(
        objective=poisoned_elbo,
        num_epochs=num_epochs,
        checkpoint_every=1,
        eval_every=0,
        learning_rate=3e-3,
    )
    return TrainConfig(**(settings | overrides))


def images() -> np.ndarray:
    """400 binary images (none poisoned): 5 random prototypes, pixels flipped with probability 0.05."""
    rng = np.random.default_rng(1)
    prototypes = rng.random((5, 784)) < 0.2
    return (prototypes[rng.integers(0, 5, 400)] ^ (rng.random((400, 784)) < 0.05)).astype(
        np.float32
    )


def _pause_before_second_rename() -> None:
    replace = os.replace

    def paused_replace(src, dst):
        if Path(dst).name == "checkpoint.eqx" and Path(dst).exists():
            print(f"PAUSED {src}", flush=True)
            sys.stdin.read()  # until the test kills this process
        replace(src, dst)

    os.replace = paused_replace


def _pause_after_first_checkpoint() -> None:
    import lvm.train.loop as loop

    save = loop.save_checkpoint
    saved = []

    def paused_save(path, state, *, metadata):
        save(path, state, metadata=metadata)
        if not saved:
            saved.append(path)
            print(f"CHECKPOINTED {os.getpid()}", flush=True)
            sys.stdin.readline()

    loop.save_checkpoint = paused_save


def main(out_dir: Path, mode: str) -> None:
    num_epochs = FOREVER
    if mode == "pause-before-rename":
        _pause_before_second_rename()
    if mode == "pause-after-first":
        _pause_after_first_checkpoint()
        num_epochs = PAUSED_RUN_EPOCHS
    train_vae(config(num_epochs), images(), model_config=SMALL, out_dir=out_dir, progress=False)


if __name__ == "__main__":
    # Through the module's import name, so that the checkpoint records the objective as
    # "_train_worker:poisoned_elbo" (importable by the test), not "__main__:poisoned_elbo".
    import _train_worker

    _train_worker.main(Path(sys.argv[1]), sys.argv[2])
