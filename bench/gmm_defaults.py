"""lvm.fit.fit_em's default start against scikit-learn's GaussianMixture default, on real data.

Both sides fit with their defaults (tol 1e-3 nats/point, at most 100 EM iterations,
reg_covar 1e-6, float64) and the same number of restarts (``num_restarts`` = ``n_init``);
scikit-learn starts each restart from k-means run to convergence (``init_params="kmeans"``),
lvm from its default start (greedy k-means++ seeds refined by Lloyd's iterations, as
scikit-learn's) and from the start it had before (plain k-means++ seeds, no Lloyd
iteration: ``kmeans_iters=0, kmeans_local_trials=1``). Every
setting runs over several seeds (``jax.random.key(s)``, ``random_state=s``); the script
prints one JSON line per (data, covariance type, K, start) with the final mean
log-likelihood of every seed (nats/point, on the fitted data), its mean, and the median
wall time of a warm fit (the compile is reported apart), then one summary line per start.

Data, as scikit-learn ships them: iris (150 x 4), wine (178 x 13) and breast cancer
(569 x 30), each standardized to zero mean and unit variance per feature; the 8 x 8
digits (1797 x 64) reduced to 10 dimensions by PCA (not standardized). Usage::

    flock /tmp/lvm-heavy.lock python bench/gmm_defaults.py      # ~10 minutes on 2 shared cores
    python bench/gmm_defaults.py --quick                        # iris only, seconds
    python bench/gmm_defaults.py --sweep [--cache-dir DIR]      # the cost of a K sweep
"""

import argparse
import json
import os
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from sklearn import datasets  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.mixture import GaussianMixture as SkGMM  # noqa: E402

import lvm  # noqa: E402
from lvm.fit.selection import mean_log_likelihood  # noqa: E402


def _standardize(x):
    return (x - x.mean(0)) / x.std(0)


def load(name: str) -> np.ndarray:
    """The data sets above, float64."""
    if name == "old_faithful":
        from lvm.data.old_faithful import load_old_faithful

        return np.asarray(load_old_faithful(np.float64))
    if name == "digits_pca10":
        return PCA(10, random_state=0).fit_transform(datasets.load_digits().data)
    loader = {
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
    }[name]
    return _standardize(loader().data.astype(np.float64))


def fit_lvm(x, k, covariance_type, restarts, seed, start):
    """``start``: keyword arguments of fit_em's start (kmeans_iters, kmeans_local_trials)."""
    res = lvm.fit.fit_em(
        jax.random.key(seed),
        x,
        num_components=k,
        covariance_type=covariance_type,
        num_restarts=restarts,
        **start,
    )
    return float(mean_log_likelihood(res.params, x)), int(res.num_iterations)


def fit_sklearn(x, k, covariance_type, restarts, seed):
    sk = SkGMM(k, covariance_type=covariance_type, n_init=restarts, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning, reported through n_iter_
        sk.fit(x)
    return float(sk.score(x)), int(sk.n_iter_)


def run(data, k, covariance_type, restarts, seeds, starts):
    """One JSON line per start; every fit of a seed runs back to back (same load)."""
    x = load(data)
    rows = {name: {"ll": [], "iters": [], "s": []} for name in starts}
    compile_s = {}
    fit_sklearn(x, k, covariance_type, restarts, seeds[0])  # warm scikit-learn up too
    for name, iters in starts.items():
        if iters is not None:  # the first call compiles; time it apart
            t = time.perf_counter()
            fit_lvm(x, k, covariance_type, restarts, seeds[0], iters)
            compile_s[name] = time.perf_counter() - t
    for seed in seeds:
        for name, iters in starts.items():
            t = time.perf_counter()
            if iters is None:
                ll, n = fit_sklearn(x, k, covariance_type, restarts, seed)
            else:
                ll, n = fit_lvm(x, k, covariance_type, restarts, seed, iters)
            rows[name]["s"].append(time.perf_counter() - t)
            rows[name]["ll"].append(ll)
            rows[name]["iters"].append(n)
    out = []
    for name, r in rows.items():
        row = {
            "data": data,
            "N": x.shape[0],
            "D": x.shape[1],
            "covariance_type": covariance_type,
            "K": k,
            "restarts": restarts,
            "start": name,
            "ll_mean": float(np.mean(r["ll"])),
            "ll": r["ll"],
            "em_iterations": r["iters"],
            "fit_s_median": float(np.median(r["s"])),
            "compile_s": compile_s.get(name),
            "load_average_1min": os.getloadavg()[0],
        }
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def sweep(data, covariance_type, ks, restarts):
    """A K sweep (as experiments/gmm_bic.py): seconds per K of the first fit_em call (compile
    included: K is a static shape, so every K compiles), of a second call (warm), and of
    scikit-learn's fit, one JSON line per K."""
    x = load(data)
    fit_sklearn(x, 2, covariance_type, restarts, 0)  # warm scikit-learn up
    for k in ks:
        t = time.perf_counter()
        fit_lvm(x, k, covariance_type, restarts, 0, {})
        first = time.perf_counter() - t
        t = time.perf_counter()
        fit_lvm(x, k, covariance_type, restarts, 1, {})
        warm = time.perf_counter() - t
        t = time.perf_counter()
        fit_sklearn(x, k, covariance_type, restarts, 0)
        sk = time.perf_counter() - t
        row = {
            "sweep": data,
            "covariance_type": covariance_type,
            "K": k,
            "restarts": restarts,
            "lvm_first_call_s": first,
            "lvm_warm_s": warm,
            "sklearn_s": sk,
            "compilation_cache": jax.config.jax_compilation_cache_dir,
            "load_average_1min": os.getloadavg()[0],
        }
        print(json.dumps(row), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="iris, one K, seconds")
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--data", nargs="*", help="a subset of the data sets")
    parser.add_argument("--ks", type=int, nargs="*", help="a subset of K")
    parser.add_argument("--sweep", action="store_true", help="time a K sweep instead")
    parser.add_argument("--cache-dir", help="JAX's persistent compilation cache (for --sweep)")
    args = parser.parse_args(argv)
    if args.sweep:
        if args.cache_dir:
            jax.config.update("jax_compilation_cache_dir", args.cache_dir)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        for name in args.data or ["old_faithful", "digits_pca10"]:
            sweep(name, "full", args.ks or range(1, 9), 10 if name == "old_faithful" else 5)
        return
    # lvm's default start, and plain k-means++ seeds without Lloyd iterations (the seeding of the
    # default before, now in the data's own units).
    starts = {
        "sklearn": None,
        "lvm_no_lloyd": {"kmeans_iters": 0, "kmeans_local_trials": 1},
        "lvm_default": {},
    }
    data = ["iris"] if args.quick else ["iris", "wine", "breast_cancer", "digits_pca10"]
    data = args.data or data
    ks = args.ks or ((3,) if args.quick else (2, 3, 5, 10))
    seeds = list(range(1 if args.quick else args.seeds))
    rows = []
    for name in data:
        for cov in ("full", "diag"):
            for k in ks:
                rows += run(name, k, cov, args.restarts, seeds, starts)
    # Summary: per start, the mean over settings of (lvm - sklearn) and the worst setting.
    by = {}
    for r in rows:
        by.setdefault((r["data"], r["covariance_type"], r["K"]), {})[r["start"]] = r
    for name in starts:
        if name == "sklearn":
            continue
        gaps = [s[name]["ll_mean"] - s["sklearn"]["ll_mean"] for s in by.values()]
        cost = [s[name]["fit_s_median"] for s in by.values()]
        print(
            json.dumps(
                {
                    "summary": name,
                    "start_settings": starts[name],
                    "settings": len(gaps),
                    "mean_gap_vs_sklearn": float(np.mean(gaps)),
                    "worst_gap_vs_sklearn": float(np.min(gaps)),
                    "settings_behind_by_1e-3": int(np.sum(np.array(gaps) < -1e-3)),
                    "total_fit_s": float(np.sum(cost)),
                    "sklearn_total_fit_s": float(
                        np.sum([s["sklearn"]["fit_s_median"] for s in by.values()])
                    ),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
