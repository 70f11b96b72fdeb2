"""A checkpointed training run in several processes, for ``tests/test_train_multiprocess.py``.

    python _mp_train_worker.py OUT_DIR EPOCHS RESULT.npz [kill-after-first]

Every process joins the JAX runtime (``LVM_COORDINATOR``, ``LVM_NUM_PROCESSES``,
``LVM_PROCESS_ID``, as ``tests/_multiprocess.py`` sets them), holds the same data, and calls
``lvm.train.train_vae(..., out_dir=OUT_DIR, resume=True)``: process 0 takes the folder's lock
and writes the files, every process resumes from the same checkpoint. Each writes its final
parameters to ``RESULT.npz`` with ``-p<process>`` before the suffix. With
``kill-after-first``, process 0 kills itself with SIGKILL right after writing the first
checkpoint (the other process then waits on it in the next all-reduce until the test kills it).
With ``LVM_NUM_PROCESSES`` unset the run is one process on one device, the reference.
"""

import os
import signal
import sys
from pathlib import Path

if os.environ.get("LVM_NUM_PROCESSES"):
    from lvm.sharding import initialize_distributed

    initialize_distributed(
        os.environ["LVM_COORDINATOR"],
        int(os.environ["LVM_NUM_PROCESSES"]),
        int(os.environ["LVM_PROCESS_ID"]),
    )

import jax  # noqa: E402
import numpy as np  # noqa: E402

import lvm  # noqa: E402
from lvm.models.vae import VAEConfig  # noqa: E402
from lvm.train import TrainConfig, train_vae  # noqa: E402

MODEL = VAEConfig(data_dim=64, latent_dim=2, hidden_sizes=(16,))


def config(num_epochs: int) -> TrainConfig:
    return TrainConfig(
        objective=lvm.IWAE(2),
        num_epochs=num_epochs,
        batch_size=20,
        learning_rate=1e-2,
        checkpoint_every=1,
        eval_every=1,
    )


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)  # the same images in every process
    images = (rng.random((160, MODEL.data_dim)) < 0.3).astype(np.float32)
    return images[:120], images[120:]


def _die_after_first_checkpoint() -> None:
    import lvm.train.loop as loop

    save = loop.save_checkpoint

    def save_then_die(path, state, *, metadata):
        save(path, state, metadata=metadata)
        os.kill(os.getpid(), signal.SIGKILL)

    loop.save_checkpoint = save_then_die


def main(out_dir: Path, num_epochs: int, result: Path, mode: str | None) -> None:
    if mode == "kill-after-first" and jax.process_index() == 0:
        _die_after_first_checkpoint()
    train_x, validation_x = data()
    trained = train_vae(
        config(num_epochs),
        train_x,
        model_config=MODEL,
        validation_x=validation_x,
        out_dir=out_dir,
        resume=True,
        progress=False,
    )
    leaves = [
        np.asarray(jax.device_get(leaf.addressable_data(0)))
        for leaf in jax.tree.leaves(trained.model)
    ]
    validation = [r["validation_bound"] for r in trained.history]
    target = result.with_name(f"{result.stem}-p{jax.process_index()}{result.suffix}")
    np.savez(target, *leaves, validation=np.asarray(validation))


if __name__ == "__main__":
    main(
        Path(sys.argv[1]),
        int(sys.argv[2]),
        Path(sys.argv[3]),
        sys.argv[4] if len(sys.argv) > 4 else None,
    )
