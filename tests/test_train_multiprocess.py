"""Checkpointed training across processes (issue 17.5): 2 processes on localhost (JAX's
distributed runtime, gloo) train 2 epochs with a checkpoint after each; both are killed after
the first checkpoint and both resume. Only process 0 writes files (and holds the folder's
lock); every process reads the same checkpoint. The resumed run ends byte-identical to an
uninterrupted 2-process run, and equal to a 1-process run up to the all-reduce's round-off."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _multiprocess import REPO, run_processes, start_processes  # noqa: E402

WORKER = REPO / "tests" / "_mp_train_worker.py"


def _load(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    with np.load(path) as f:
        arrays = sorted((k for k in f.files if k.startswith("arr_")), key=lambda k: int(k[4:]))
        return [f[k] for k in arrays], f["validation"]


def _bytes(arrays) -> list[bytes]:
    return [a.tobytes() for a in arrays]


def test_two_processes_resume_a_killed_run_to_the_uninterrupted_bytes(tmp_path):
    run_processes(WORKER, str(tmp_path / "whole"), "2", str(tmp_path / "whole.npz"))

    killed = tmp_path / "killed"
    procs = start_processes(
        WORKER, str(killed), "2", str(tmp_path / "unused.npz"), "kill-after-first"
    )
    try:
        procs[0].wait(timeout=300)
        assert procs[0].returncode == -signal.SIGKILL, procs[0].communicate()[1][-3000:]
        procs[1].kill()  # it waits for process 0 in the next all-reduce
        procs[1].wait(timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    from lvm.train import read_metadata

    assert read_metadata(killed / "checkpoint.eqx")[0]["epoch"] == 1  # killed right after it
    assert f"PID {procs[0].pid} " in (killed / ".lock").read_text()  # process 0 held the lock
    assert not list(tmp_path.glob("unused*"))

    run_processes(WORKER, str(killed), "2", str(tmp_path / "resumed.npz"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LVM_")}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    env.pop("XLA_FLAGS", None)
    one = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path / "one"), "2", str(tmp_path / "one.npz")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-3000:]

    whole, whole_val = _load(tmp_path / "whole-p0.npz")
    for name in ("whole-p1", "resumed-p0", "resumed-p1"):
        params, validation = _load(tmp_path / f"{name}.npz")
        assert _bytes(params) == _bytes(whole), name
        assert validation.tobytes() == whole_val.tobytes(), name
    reference, reference_val = _load(tmp_path / "one-p0.npz")
    assert len(whole) == 8  # 2 + 2 linear layers, weight and bias each
    # Round-off only: the all-reduce adds the halves' gradient sums in another order (about
    # 1e-7 relative); through Adam (eps 1e-4, lr 1e-2) that is at most 1e-5 per step, 12
    # steps here. A real fault moves parameters by ~lr = 1e-2 per step.
    for a, b in zip(whole, reference, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=12 * 1e-5)
    np.testing.assert_allclose(whole_val, reference_val, rtol=1e-5)
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(whole, _initial(), strict=True))
    assert moved > 1e-2  # training moved the parameters far beyond that tolerance


def _initial() -> list[np.ndarray]:
    import _mp_train_worker as worker
    import jax

    from lvm.models.vae import VAE
    from lvm.train import run_keys

    model = VAE(worker.MODEL, key=run_keys(worker.config(2).seed).init)
    return [np.asarray(leaf) for leaf in jax.tree.leaves(model)]
