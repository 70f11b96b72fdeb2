"""EM over rows split across two processes equals EM on one process, to float round-off.

Two processes on localhost (JAX's distributed runtime, gloo collectives; see
``tests/_multiprocess.py``) each hold half of the rows of one data set; ``fit_em_from``,
``em_step`` and ``fit_em`` run on the global array, adding the sufficient statistics across
the processes. The reference is the same call on all the rows in this process.

How to launch such a run yourself: README, "EM over data split across processes".
"""

import json
from pathlib import Path

import jax
import numpy as np
from _em_worker import ITERATIONS, NUM_COMPONENTS, data, start
from _multiprocess import run_processes

from lvm.fit import em_step, fit_em, fit_em_from

WORKER = Path(__file__).with_name("_em_worker.py")


def _values(tree) -> list:
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


def _max_relative_difference(got: list, want: list) -> float:
    return max(
        float(np.max(np.abs(np.asarray(g) - w) / (np.abs(w) + 1.0)))
        for g, w in zip(got, want, strict=True)
    )


def test_two_processes_reproduce_single_process_em():
    outputs = run_processes(WORKER, num_processes=2, timeout=240)
    results = [
        json.loads(next(line for line in out.splitlines() if line.startswith("RESULT"))[6:])
        for out in outputs
    ]
    assert results[0] == results[1]  # replicated: both processes hold the same numbers
    result = results[0]
    assert result["num_devices"] == 2 and result["process_count"] == 2
    x = data()
    with jax.enable_x64(True):
        res = fit_em_from(start(np.float64), x, tol=-1.0, max_iter=ITERATIONS)
        step = em_step(start(np.float64), x)
        fit = fit_em(jax.random.key(1), x, num_components=NUM_COMPONENTS, num_restarts=2)
        want64 = {
            "fit_from": _values((res.params, res.log_likelihood, res.trace)),
            "em_step": _values(step),
            "fit_em": _values((fit.params, fit.restart_log_likelihood)),
        }
    res32 = fit_em_from(start(np.float32), x.astype(np.float32), tol=-1.0, max_iter=ITERATIONS)
    want32 = _values((res32.params, res32.log_likelihood, res32.trace))
    # The two runs add the same numbers in another order (two half-data products joined by
    # a pair sum, versus one product; the standardisation's reductions across processes),
    # so they differ by round-off, amplified by the iterations. Float64 (eps 2.2e-16): 1e-12
    # relative allows an amplification of 4,500 (measured: 1e-14); float32 (eps 1.2e-7):
    # 1e-5 allows 80 (measured: 8e-7).
    for name, want in want64.items():
        assert _max_relative_difference(result["float64"][name], want) < 1e-12, name
    assert _max_relative_difference(result["float32"]["fit_from"], want32) < 1e-5
