"""Float32 EM against float64 EM from the same start: the gap, its cause, the cost of the fix.

Data (the hard case): N = 200,000 points in D = 16 from K = 32 overlapping Gaussians,
centres ~ N(0, I), covariances s_k^2 A_k A_k^T / D with A_k a standard normal 16 x 16
matrix (no noise floor, so some covariances are nearly singular: condition numbers up to
~1e7) and s_k log-uniform on [0.3, 1]; numpy seed 0. The well-conditioned case adds
isotropic noise of standard deviation 0.3 to every point. Both precisions start from the
same ``lvm.fit.initialize`` mixture (key 0, computed on the float32 data) and run
``fit_em_from(tol=-1)`` for a fixed number of iterations; the float32 parameters are
scored in float64 on the float64 data, so the gap is that of the trajectories, not of
the scoring.

Each line of output is one JSON record:

* ``gap``: mean log-likelihood (nats/point) of float64 EM minus that of float32 EM, for
  this lvm ("after") and for the implementation before the compensated M-step ("before":
  ``lvm/fit/em.py`` at commit 0913c01, loaded from git): on the hard case after 3 and 20
  iterations, and after 20 iterations with the last 1 or 7 rows dropped (another chunk
  layout, so other round-off: the spread shows the float32 noise floor); on the
  well-conditioned case after 20 iterations;
* ``speed``: seconds per float32 iteration (fused pass + M-step) of both, timed in
  alternating rounds in this one run (median ratio reported);
* ``resolution``: |float32 - float64| of the mean log-likelihood the stopping rule sees,
  at the same parameters, on the synthetic data, Old Faithful (K = 2) and standardized
  breast-cancer data (scikit-learn's, K = 2): the smallest ``tol`` float32 can act on;
* ``breast_cancer``: ``fit_em_from(tol=1e-6)`` in both precisions from one start, before
  and after: final log-likelihood (scored in float64) and iterations.

Usage::

    python bench/gmm_em_precision.py            # ~6 minutes on 2 shared cores
    python bench/gmm_em_precision.py --quick    # N = 20,000, seconds
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402

from lvm.data.old_faithful import load_old_faithful  # noqa: E402
from lvm.fit import _expfam as ef  # noqa: E402
from lvm.fit import _standardize as stdz  # noqa: E402
from lvm.fit import fit_em_from, initialize  # noqa: E402
from lvm.fit.selection import mean_log_likelihood  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BEFORE = "0913c01"  # the last commit with the plain float32 M-step


def synthetic(rng, n, d=16, k=32, floor=0.0):
    """Overlapping components with Wishart-like covariances (+ floor^2 I; see module doc)."""
    centres = rng.normal(size=(k, d))
    scales = np.exp(rng.uniform(np.log(0.3), np.log(1.0), size=k))
    mix = scales[:, None, None] * rng.normal(size=(k, d, d)) / np.sqrt(d)
    z = rng.integers(0, k, n)
    x = centres[z] + np.einsum("nij,nj->ni", mix[z], rng.normal(size=(n, d)))
    return x + floor * rng.normal(size=(n, d)) if floor else x


def load_before():
    """``lvm.fit.em`` as it was at commit BEFORE (its imports still resolve in this lvm)."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{BEFORE}:lvm/fit/em.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "em_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("em_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cast(params, dtype):
    return jax.tree.map(lambda a: a.astype(dtype), params)


def _score(params, x64):
    return float(mean_log_likelihood(_cast(params, jnp.float64), x64))


def gaps(fit_from, p0, x64, iterations):
    """float64 minus float32 mean log-likelihood after each number of iterations."""
    out = {}
    for it in iterations:
        r64 = fit_from(_cast(p0, jnp.float64), x64, tol=-1.0, max_iter=it)
        r32 = fit_from(_cast(p0, jnp.float32), x64.astype(np.float32), tol=-1.0, max_iter=it)
        ll64, ll32 = _score(r64.params, x64), _score(r32.params, x64)
        out[str(it)] = {"ll_float64": ll64, "ll_float32": ll32, "gap": ll64 - ll32}
    return out


def iteration_timers(before, p0, x32, iters):
    """Compiled runs of ``iters`` float32 iterations (pass + M-step) of each implementation."""
    x = jnp.asarray(x32)
    w = jnp.ones(x.shape[0], jnp.float32)
    p0 = _cast(p0, jnp.float32)

    a, phi, weight, reg = jax.jit(lambda x, w: ef.prepare(x, w, 1e-6, "full", None))(x, w)
    total = jnp.sum(weight)

    def after_step(p):
        return ef.m_step(ef.em_sums(p, phi, weight, None), total, reg, "full")

    b_a, _, b_phi, b_reg, b_w = jax.jit(lambda x, w: before._prepare(x, w, 1e-6, "full"))(x, w)
    b_total = jnp.sum(b_w)

    def before_step(p):
        stats, nk, _ = before._em_pass(p, b_phi, b_w)
        return before._params_from_stats(stats, nk, b_total, b_reg, "full")

    timers = {}
    for name, step, start in (
        ("after", after_step, stdz.to_standard(p0, a)),
        ("before", before_step, stdz.to_standard(p0, b_a)),
    ):
        run = jax.jit(lambda p, step=step: jax.lax.fori_loop(0, iters, lambda _, q: step(q), p))
        jax.block_until_ready(run(start))  # compile

        def timer(run=run, start=start):
            t = time.perf_counter()
            jax.block_until_ready(run(start))
            return (time.perf_counter() - t) / iters

        timers[name] = timer
    return timers


def resolution(x64, num_components, key=0):
    """|float32 - float64| of the pass's mean log-likelihood, at the float64 fit's parameters."""
    p0 = initialize(jax.random.key(key), x64.astype(np.float32), num_components=num_components)
    errors = []
    for it in (1, 5, 20):
        p = fit_em_from(_cast(p0, jnp.float64), x64, tol=-1.0, max_iter=it).params
        lls = []
        for dtype in (jnp.float64, jnp.float32):
            x = jnp.asarray(x64, dtype)
            w = jnp.ones(x.shape[0], dtype)
            a, phi, weight, _ = ef.prepare(x, w, 1e-6, "full", None)
            sums = ef.em_sums(stdz.to_standard(_cast(p, dtype), a), phi, weight, None)
            lls.append(float(sums.log_lik.value / jnp.sum(weight)))
        errors.append(abs(lls[0] - lls[1]))
    return max(errors)


def breast_cancer(fit_from):
    x = load_breast_cancer().data
    x = (x - x.mean(0)) / x.std(0)
    p0 = initialize(jax.random.key(0), x.astype(np.float32), num_components=2)
    out = {}
    for dtype in (jnp.float64, jnp.float32):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tol warning is the point here
            r = fit_from(_cast(p0, dtype), x.astype(dtype), tol=1e-6, max_iter=1000)
        out[jnp.dtype(dtype).name] = {
            "ll": _score(r.params, x),
            "iterations": int(r.num_iterations),
            "converged": bool(r.converged),
        }
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 20,000 and fewer rounds")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds")
    parser.add_argument("--timing-iters", type=int, default=3)
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else 200_000
    x64 = synthetic(np.random.default_rng(0), n)
    x32 = x64.astype(np.float32)
    p0 = initialize(jax.random.key(0), x32, num_components=32)
    before = load_before()
    setting = {"N": n, "D": 16, "K": 32, "covariance_type": "full", "cpu_count": os.cpu_count()}

    well = synthetic(np.random.default_rng(0), n, floor=0.3)
    well_p0 = initialize(jax.random.key(0), well.astype(np.float32), num_components=32)
    for name, fit_from in (("after", fit_em_from), ("before", before.fit_em_from)):
        record = {"record": "gap", "implementation": name, **setting}
        record["hard"] = gaps(fit_from, p0, x64, (3, 20))
        for drop in (1, 7):
            record[f"hard_minus_{drop}_rows"] = gaps(fit_from, p0, x64[:-drop], (20,))
        record["well_conditioned"] = gaps(fit_from, well_p0, well, (20,))
        print(json.dumps(record), flush=True)

    timers = iteration_timers(before, p0, x32, args.timing_iters)
    times = {name: [] for name in timers}
    for _ in range(2 if args.quick else args.rounds):
        for name, timer in timers.items():
            times[name].append(timer())
    ratio = np.median(np.array(times["after"]) / np.array(times["before"]))
    print(
        json.dumps(
            {
                "record": "speed",
                **setting,
                "dtype": "float32",
                "s_per_iter": {k: v for k, v in times.items()},
                "best_s_per_iter": {k: min(v) for k, v in times.items()},
                "after_over_before_median": float(ratio),
                "load_average_1min": os.getloadavg()[0],
            }
        ),
        flush=True,
    )

    bc = load_breast_cancer().data
    bc = (bc - bc.mean(0)) / bc.std(0)
    res = {
        "synthetic_K32": resolution(x64, 32),
        "old_faithful_K2": resolution(load_old_faithful(np.float64), 2),
        "breast_cancer_K2": resolution(bc, 2),
    }
    print(json.dumps({"record": "resolution", "abs_ll_error_float32": res}), flush=True)

    for name, fit_from in (("after", fit_em_from), ("before", before.fit_em_from)):
        print(
            json.dumps(
                {"record": "breast_cancer", "implementation": name, **breast_cancer(fit_from)}
            ),
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
