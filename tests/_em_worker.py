"""Worker of tests/test_em_multiprocess.py: EM on rows split over processes (run by ``run_processes``).

Every process builds the same data set from one seed, keeps its own half of the rows and
joins them into one global array (``lvm.sharding.global_batch``); EM then runs on it as on
any array. Prints one JSON line, ``RESULT{...}``, with the replicated results.
"""

import json
import os

import jax
import numpy as np

import lvm
from lvm import sharding
from lvm.fit import em_step, fit_em, fit_em_from
from lvm.sharding import host_value

# The data and the start are shared with the test (it imports these two).
NUM_POINTS, NUM_COMPONENTS, ITERATIONS = 3000, 3, 10


def data() -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0, 0.0], [4.0, 1.0, -1.0], [-2.0, 5.0, 2.0]])
    tril = np.array([[1.0, 0.0, 0.0], [0.5, 0.8, 0.0], [-0.3, 0.2, 0.6]])
    labels = rng.integers(0, 3, NUM_POINTS)
    return centres[labels] + rng.normal(size=(NUM_POINTS, 3)) @ tril.T


def start(dtype) -> lvm.GaussianMixture:
    means = np.array([[1.0, 0.0, 0.0], [3.0, 2.0, 0.0], [-1.0, 4.0, 1.0]], dtype)
    return lvm.GaussianMixture(np.zeros(3, dtype), means, np.eye(3, dtype=dtype)[None].repeat(3, 0))


def _values(tree) -> list:
    return [host_value(leaf).tolist() for leaf in jax.tree.leaves(tree)]


def main() -> None:
    # Before any computation: join the processes, then allow float64.
    sharding.initialize_distributed(
        os.environ["LVM_COORDINATOR"],
        int(os.environ["LVM_NUM_PROCESSES"]),
        int(os.environ["LVM_PROCESS_ID"]),
    )
    jax.config.update("jax_enable_x64", True)
    x = data()
    count, rank = jax.process_count(), jax.process_index()
    rows = slice(rank * NUM_POINTS // count, (rank + 1) * NUM_POINTS // count)
    mesh = sharding.make_mesh()
    out = {"num_devices": len(jax.devices()), "process_count": count}
    for name, dtype in (("float64", np.float64), ("float32", np.float32)):
        xg = sharding.global_batch(x[rows].astype(dtype), mesh)
        assert not xg.is_fully_addressable  # each process holds only its rows
        res = fit_em_from(start(dtype), xg, tol=-1.0, max_iter=ITERATIONS)
        out[name] = {"fit_from": _values((res.params, res.log_likelihood, res.trace))}
        if dtype == np.float64:
            out[name]["em_step"] = _values(em_step(start(dtype), xg))
            fit = fit_em(jax.random.key(1), xg, num_components=NUM_COMPONENTS, num_restarts=2)
            out[name]["fit_em"] = _values((fit.params, fit.restart_log_likelihood))
    print("RESULT" + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
