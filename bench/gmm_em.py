"""EM per iteration: lvm.fit versus scikit-learn's GaussianMixture, same data, same start, same run.

Cases (``--quick`` shrinks N for a smoke run):

* large: N = 1,000,000, D = 16, K = 32, full and diagonal covariances;
* small: N = 10,000, D = 2, K = 4, full covariance.

For each case both libraries start from the same initial mixture (lvm's k-means++
initialisation) and run the same fixed number of EM iterations; the script prints
one JSON line with the seconds per iteration of each, their ratio, lvm's compile
time (reported apart), and the final mean log-likelihood of both (nats/point) with
their difference. lvm runs at float32 and at float64 (``jax_enable_x64``);
scikit-learn at float64, its only precision.

It also measures this machine's float32/float64 matmul throughput (a 2048^3
product) and times the parts of one lvm iteration: the fused pass over the data
(E-step and M-step sums, chunk by chunk), each of the two products it is made of
run alone over all the data (Phi @ H^T, (N x F) x (F x K), and R^T @ Phi,
(K x N) x (N x F)), and the M-step's small algebra (K Cholesky factorisations),
so the JSON says which operation dominates and how close an iteration comes to
the matmul peak.

gmmx (the JAX peer, ``pip install -e '.[bench]'``; skipped when it is not installed or
its (N, K, D) temporaries would exceed ``--gmmx-max-gb``) runs beside them: the same
start (``GaussianMixtureModelJax.from_squeezed``), the same iteration counts through its
own jitted ``EMFitter.fit`` (a ``while_loop``, here with ``tol=-1`` so that it runs
exactly ``max_iter`` iterations), float32 and float64 (gmmx accepts only float32 arrays:
for float64 the bench relaxes that dtype check, keeping its shape checks; gmmx's float32
runs under ``jax.enable_x64(False)``, as its own constants would otherwise promote them).
Its rows give its seconds per iteration, lvm's over gmmx's per round (interleaved, the
median), the log-likelihood it reaches, and its E-step and M-step timed apart. Usage::

    flock /tmp/lvm-heavy.lock python bench/gmm_em.py            # a few minutes on 2 cores
    python bench/gmm_em.py --quick                              # seconds
    python bench/gmm_em.py --large-n 200000                     # the gmmx table
"""

import argparse
import json
import os
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.mixture import GaussianMixture as SkGMM  # noqa: E402

import lvm  # noqa: E402
from lvm.fit import _expfam as ef  # noqa: E402
from lvm.fit import _standardize as stdz  # noqa: E402
from lvm.fit.selection import mean_log_likelihood  # noqa: E402


def _timeit(fn, repeats):
    """Best wall time of ``repeats`` calls of ``fn`` (which blocks until its result is ready)."""
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def matmul_gflops(dtype, n=2048):
    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    return 2 * n**3 / _timeit(lambda: f(a).block_until_ready(), 5) / 1e9


def synthetic(rng, n, d, k):
    """A K-component mixture with random means (spread 3) and random full covariances."""
    centres = 3.0 * rng.normal(size=(k, d))
    mix = rng.normal(size=(k, d, d)) / np.sqrt(d)
    z = rng.integers(0, k, n)
    eps = rng.normal(size=(n, d))
    return centres[z] + np.einsum("nij,nj->ni", mix[z], eps) + 0.3 * rng.normal(size=(n, d))


def _to_sklearn(params, covariance_type, reg_covar):
    weights = np.asarray(jax.nn.softmax(params.logits.astype(jnp.float64)))
    sk = SkGMM(params.num_components, covariance_type=covariance_type, reg_covar=reg_covar)
    sk.weights_ = weights / weights.sum()
    sk.means_ = np.asarray(params.means, np.float64)
    scale = np.asarray(params.scale, np.float64)
    if covariance_type == "full":
        sk.covariances_ = scale @ np.swapaxes(scale, -1, -2)
        sk.precisions_cholesky_ = np.swapaxes(np.linalg.inv(scale), -1, -2)
    else:
        sk.covariances_ = scale**2
        sk.precisions_cholesky_ = 1.0 / scale
    return sk


def _moments(params):
    """(weights, means, covariances) of an lvm mixture, numpy float64."""
    weights = np.asarray(jax.nn.softmax(params.logits.astype(jnp.float64)))
    scale = np.asarray(params.scale, np.float64)
    if params.covariance_type == "full":
        return weights, np.asarray(params.means, np.float64), scale @ np.swapaxes(scale, -1, -2)
    return weights, np.asarray(params.means, np.float64), scale**2


def _sklearn_score(weights, means, covariances, covariance_type, x64):
    """Mean log-likelihood (nats/point) of a mixture given by its moments, by scikit-learn."""
    sk = SkGMM(len(weights), covariance_type=covariance_type)
    sk.weights_ = weights / weights.sum()
    sk.means_ = means
    sk.covariances_ = covariances
    if covariance_type == "full":
        sk.precisions_cholesky_ = np.swapaxes(
            np.linalg.inv(np.linalg.cholesky(covariances)), -1, -2
        )
    else:
        sk.precisions_cholesky_ = 1.0 / np.sqrt(covariances)
    return float(sk.score(x64))


def _gmmx():
    """The gmmx module, with its float32-only dtype check relaxed to admit float64; or None."""
    try:
        import gmmx
        import gmmx.gmm
    except ImportError:
        return None
    check = gmmx.gmm.check_shape
    if not getattr(check, "_lvm_bench", False):

        def check_shape(array, expected):  # the shape check, at any float dtype
            return check(
                array.astype(jnp.float32) if array.dtype == jnp.float64 else array, expected
            )

        check_shape._lvm_bench = True
        gmmx.gmm.check_shape = check_shape
    return gmmx


def gmmx_case(params0, x, x64, num_iters, ll_iters, reg_covar, dtype):
    """Time gmmx's jitted EM (``EMFitter.fit``) from lvm's start; the same outputs as lvm_case."""
    gmmx = _gmmx()
    cov = params0.covariance_type
    weights, means, covs = _moments(params0)
    x = jnp.asarray(x, dtype)
    x32 = dtype == jnp.float32

    def run(fn):  # gmmx's float32 needs x64 off (its 2 pi constant would promote to float64)
        if x32:
            with jax.enable_x64(False):
                return fn()
        return fn()

    def build():
        g = gmmx.GaussianMixtureModelJax.from_squeezed(
            means=np.asarray(means, dtype),
            covariances=np.asarray(covs, dtype),
            weights=np.asarray(weights, dtype),
            covariance_type=cov,
        )
        fitters = {
            n: gmmx.EMFitter(max_iter=n, tol=-1.0, reg_covar=reg_covar)
            for n in (num_iters, ll_iters)
        }
        return g, fitters

    g0, fitters = run(build)
    fit = fitters[num_iters]
    t = time.perf_counter()
    run(lambda: jax.block_until_ready(fit.fit(x, g0)))  # compile and warm up
    compile_s = time.perf_counter() - t
    out = run(lambda: fitters[ll_iters].fit(x, g0))
    assert int(out.n_iter) == ll_iters
    gm = out.gmm
    ll = _sklearn_score(
        np.asarray(gm.weights, np.float64).reshape(-1),
        np.asarray(gm.means, np.float64)[0, :, :, 0],
        np.asarray(gm.covariances.values, np.float64)[0, :, :, :]
        if cov == "full"
        else np.asarray(gm.covariances.values, np.float64)[0, :, :, 0],
        cov,
        x64,
    )

    def timer():
        t = time.perf_counter()
        run(lambda: jax.block_until_ready(fit.fit(x, g0)))
        return (time.perf_counter() - t) / num_iters

    # E-step and M-step apart (gmmx's own methods, each jitted alone).
    e_step = jax.jit(lambda x, g: fit.e_step(x, g))
    m_step = jax.jit(lambda x, g, r: fit.m_step(x, g, r))
    _, log_resp = run(lambda: jax.block_until_ready(e_step(x, g0)))
    run(lambda: jax.block_until_ready(m_step(x, g0, log_resp)))
    parts = {
        "gmmx_estep_s": _timeit(lambda: run(lambda: jax.block_until_ready(e_step(x, g0))), 3),
        "gmmx_mstep_s": _timeit(
            lambda: run(lambda: jax.block_until_ready(m_step(x, g0, log_resp))), 3
        ),
    }
    return ll, compile_s, parts, timer


def _gmmx_fits(n, d, k, dtype, max_gb):
    """Whether gmmx's largest temporaries, a few (N, K, D) arrays, fit in ``max_gb``."""
    return 3 * n * k * d * jnp.dtype(dtype).itemsize / 1e9 <= max_gb


def sklearn_iterations(sk, x, num_iters, between=()):
    """scikit-learn's own loop body (BaseMixture.fit_predict): E-step, M-step; seconds of each.

    After each iteration every callable in ``between`` runs once (lvm's timers), so
    both libraries are timed under the same background load, round by round.
    """
    times, others = [], [[] for _ in between]
    for _ in range(num_iters):
        t = time.perf_counter()
        _, log_resp = sk._e_step(x)
        sk._m_step(x, log_resp)
        times.append(time.perf_counter() - t)
        for out, fn in zip(others, between, strict=True):
            out.append(fn())
    return np.array(times), [np.array(o) for o in others]


def _cast(params, dtype):
    return jax.tree_util.tree_map(lambda a: a.astype(dtype), params)


def lvm_case(params0, x, x64, num_iters, reg_covar, dtype):
    """Time lvm's EM iterations (features built once, as in fit) and its parts."""
    x = jnp.asarray(x, dtype)
    params0 = _cast(params0, dtype)
    cov = params0.covariance_type
    w = jnp.ones(x.shape[0], dtype)

    prepare = jax.jit(lambda x, w: ef.prepare(x, w, reg_covar, cov, None))
    t = time.perf_counter()
    a, phi, w, reg = jax.block_until_ready(prepare(x, w))
    setup_s = time.perf_counter() - t  # includes its compile; small either way
    p0 = stdz.to_standard(params0, a)
    total_w = jnp.sum(w)

    def one_iteration(p, phi, w):
        return ef.m_step(ef.em_sums(p, phi, w, None), total_w, reg, cov)

    @jax.jit
    def iterate(p, phi, w):
        return jax.lax.fori_loop(0, num_iters, lambda _, p: one_iteration(p, phi, w), p)

    t = time.perf_counter()
    compiled = iterate.lower(p0, phi, w).compile()
    compile_s = time.perf_counter() - t
    out = jax.block_until_ready(compiled(p0, phi, w))
    total = _timeit(lambda: jax.block_until_ready(compiled(p0, phi, w)), 3)

    def timer():
        """Seconds per iteration of one more run, for timing interleaved with scikit-learn."""
        return _timeit(lambda: jax.block_until_ready(compiled(p0, phi, w)), 1) / num_iters

    fitted = stdz.from_standard(out, a)
    ll = float(mean_log_likelihood(_cast(fitted, jnp.float64), x64))

    # The parts: the fused pass over the data, and the two products it is made of,
    # each over the whole data at once (for reference), and the small M-step algebra.
    eta = jax.jit(ef.natural)(p0).eta
    resp = jnp.full((phi.shape[0], eta.shape[0]), 1.0 / eta.shape[0], phi.dtype)
    estep_mm = jax.jit(lambda phi, eta: phi @ eta.T)
    mstep_mm = jax.jit(lambda r, phi: r.T @ phi)
    em_pass = jax.jit(lambda p, phi, w: ef.em_sums(p, phi, w, None))
    sums = em_pass(p0, phi, w)
    algebra = jax.jit(lambda sums: ef.m_step(sums, total_w, reg, cov))
    jax.block_until_ready((estep_mm(phi, eta), mstep_mm(resp, phi), algebra(sums)))
    parts = {
        "fused_pass_s": _timeit(lambda: jax.block_until_ready(em_pass(p0, phi, w)), 5),
        "estep_matmul_s": _timeit(lambda: estep_mm(phi, eta).block_until_ready(), 5),
        "mstep_matmul_s": _timeit(lambda: mstep_mm(resp, phi).block_until_ready(), 5),
        "mstep_algebra_s": _timeit(lambda: jax.block_until_ready(algebra(sums)), 5),
    }
    return total / num_iters, compile_s, setup_s, ll, parts, phi.shape[1], timer


def run_case(name, n, d, k, covariance_type, sk_iters, jax_iters, peak, seed=0, gmmx_max_gb=2.0):
    rng = np.random.default_rng(seed)
    x64 = synthetic(rng, n, d, k)
    x32 = x64.astype(np.float32)
    reg_covar = 1e-6
    params0 = lvm.fit.initialize(
        jax.random.key(seed), x32, num_components=k, covariance_type=covariance_type
    )
    dtypes = (jnp.float32, jnp.float64)
    runs = {}
    for dtype in dtypes:
        data = x32 if dtype == jnp.float32 else x64
        # lvm at the same iteration count as sklearn (for the log-likelihood check) ...
        ll = lvm_case(params0, data, x64, sk_iters, reg_covar, dtype)[3]
        # ... and at more iterations for a steadier time per iteration.
        runs[dtype] = (ll, *lvm_case(params0, data, x64, jax_iters, reg_covar, dtype))
    peer = {}  # gmmx, where it is installed and its temporaries fit
    for dtype in dtypes:
        if _gmmx() is not None and _gmmx_fits(n, d, k, dtype, gmmx_max_gb):
            data = x32 if dtype == jnp.float32 else x64
            peer[dtype] = gmmx_case(params0, data, x64, jax_iters, sk_iters, reg_covar, dtype)
    timers = [runs[dt][-1] for dt in dtypes] + [peer[dt][-1] for dt in peer]
    # scikit-learn from the same start, one iteration at a time, each followed by one
    # timed lvm run per dtype (interleaved, so both see the same background load).
    sk = _to_sklearn(params0, covariance_type, reg_covar)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk_times, rounds_all = sklearn_iterations(sk, x64, sk_iters, between=timers)
    lvm_rounds, peer_rounds = rounds_all[: len(dtypes)], rounds_all[len(dtypes) :]
    sk_s = float(sk_times.min())  # best iteration: the least disturbed by other processes
    sk_ll = float(sk.score(x64))
    for dtype, rounds in zip(dtypes, lvm_rounds, strict=True):
        ll, per_iter, compile_s, setup_s, _, parts, f, _ = runs[dtype]
        per_iter = min(per_iter, float(rounds.min()))
        flops = 2 * (2 * n * f * k)  # the two big products per iteration
        row = {
            "case": name,
            "covariance_type": covariance_type,
            "N": n,
            "D": d,
            "K": k,
            "features_F": f,
            "dtype": jnp.dtype(dtype).name,
            "lvm_s_per_iter": per_iter,
            "sklearn_s_per_iter": sk_s,
            "sklearn_s_per_iter_mean": float(sk_times.mean()),
            "speedup": sk_s / per_iter,
            "speedup_median_interleaved": float(np.median(sk_times / rounds)),
            "lvm_s_per_iter_interleaved": rounds.tolist(),
            "sklearn_s_per_iter_all": sk_times.tolist(),
            "lvm_compile_s": compile_s,
            "lvm_setup_s": setup_s,
            "sklearn_iters": sk_iters,
            "lvm_timed_iters": jax_iters,
            "ll_lvm": ll,
            "ll_sklearn": sk_ll,
            "ll_abs_diff": abs(ll - sk_ll),
            "ll_within_1e-4": abs(ll - sk_ll) < 1e-4,
            "matmul_gflops_per_iter": flops / 1e9,
            "achieved_gflops": flops / per_iter / 1e9,
            "machine_matmul_gflops": peak[jnp.dtype(dtype).name],
            **{key: v for key, v in parts.items()},
            "load_average_1min": os.getloadavg()[0],
        }
        print(json.dumps(row), flush=True)
    for dtype, rounds in zip(peer, peer_rounds, strict=True):
        ll, compile_s, parts, _ = peer[dtype]
        lvm_ll, lvm_per_iter = runs[dtype][0], runs[dtype][1]
        lvm_rounds_dt = lvm_rounds[dtypes.index(dtype)]
        row = {
            "case": name,
            "peer": "gmmx",
            "covariance_type": covariance_type,
            "N": n,
            "D": d,
            "K": k,
            "dtype": jnp.dtype(dtype).name,
            "gmmx_s_per_iter": float(rounds.min()),
            "gmmx_s_per_iter_median": float(np.median(rounds)),
            "lvm_s_per_iter": min(lvm_per_iter, float(lvm_rounds_dt.min())),
            "lvm_speedup_over_gmmx_median_interleaved": float(np.median(rounds / lvm_rounds_dt)),
            "lvm_speedup_over_gmmx_best": float(rounds.min())
            / min(lvm_per_iter, float(lvm_rounds_dt.min())),
            "gmmx_speedup_over_sklearn_median_interleaved": float(np.median(sk_times / rounds)),
            "gmmx_s_per_iter_interleaved": rounds.tolist(),
            "gmmx_compile_and_first_run_s": compile_s,
            "iters": sk_iters,
            "ll_gmmx": ll,
            "ll_lvm": lvm_ll,
            "ll_sklearn": sk_ll,
            "ll_gmmx_minus_sklearn": ll - sk_ll,
            **parts,
            "load_average_1min": os.getloadavg()[0],
        }
        print(json.dumps(row), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N, seconds")
    parser.add_argument("--sklearn-iters", type=int, default=3)
    parser.add_argument("--lvm-iters", type=int, default=10)
    parser.add_argument("--large-n", type=int, default=1_000_000, help="N of the large cases")
    parser.add_argument(
        "--gmmx-max-gb", type=float, default=2.0, help="skip gmmx where 3 N K D floats exceed this"
    )
    args = parser.parse_args(argv)
    peak = {"float32": matmul_gflops(jnp.float32), "float64": matmul_gflops(jnp.float64)}
    print(
        json.dumps(
            {
                "machine": "matmul 2048^3",
                **{f"{k}_gflops": v for k, v in peak.items()},
                "cpu_count": os.cpu_count(),
                "load_average_1min": os.getloadavg()[0],
            }
        )
    )
    big = 20_000 if args.quick else args.large_n
    gb = args.gmmx_max_gb
    run_case("large", big, 16, 32, "full", args.sklearn_iters, args.lvm_iters, peak, gmmx_max_gb=gb)
    run_case("large", big, 16, 32, "diag", args.sklearn_iters, args.lvm_iters, peak, gmmx_max_gb=gb)
    small = (5, 50) if args.quick else (50, 500)
    run_case("small", 10_000, 2, 4, "full", *small, peak, gmmx_max_gb=gb)


if __name__ == "__main__":
    main()
