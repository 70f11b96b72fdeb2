"""Run a Python worker script in several processes joined by ``lvm.sharding.initialize_distributed``.

Each process gets ``LVM_COORDINATOR``, ``LVM_NUM_PROCESSES`` and ``LVM_PROCESS_ID`` in its
environment (and one CPU device); the worker calls
``initialize_distributed(os.environ[...])`` first. Used by the multi-process tests: the
processes talk over localhost with JAX's own distributed runtime and gloo collectives.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start_processes(worker: Path, *args: str, num_processes: int = 2) -> list[subprocess.Popen]:
    """Start ``num_processes`` copies of ``worker`` joined into one runtime; the caller waits."""
    env = dict(os.environ)
    env.update(
        LVM_COORDINATOR=f"localhost:{_free_port()}",
        LVM_NUM_PROCESSES=str(num_processes),
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
    )
    env.pop("XLA_FLAGS", None)  # one device per process
    return [
        subprocess.Popen(
            [sys.executable, str(worker), *args],
            env={**env, "LVM_PROCESS_ID": str(i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(num_processes)
    ]


def run_processes(
    worker: Path, *args: str, num_processes: int = 2, timeout: float = 300
) -> list[str]:
    """Start ``num_processes`` copies of ``worker``; return their stdouts, raising if any fails."""
    procs = start_processes(worker, *args, num_processes=num_processes)
    outputs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            if p.returncode != 0:
                raise RuntimeError(f"worker {worker.name} failed ({p.returncode}):\n{err[-3000:]}")
            outputs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return outputs
