"""Float32 matmul throughput of this machine: the yardstick for every "% of peak" in bench/.

Times ``jnp.dot`` (jitted) and, if installed, ``torch.mm`` (2 threads) on square matrices
and on the VAE's own layer shapes (a batch of 100 images, or 100 x k particles, through
784-200-50 layers), and prints one JSON line per (framework, shape) with the achieved
GFLOP/s (2 m n k flops per product), then a summary line with the peak over shapes.
Other bench scripts import :func:`measure_peak` to express their GFLOP/s as a fraction of it.

    python bench/matmul.py            # about 20 s
    python bench/matmul.py --quick    # about 6 s

PyTorch is a bench-only dependency: ``pip install torch==2.13.0`` (the CPU wheel).
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

TORCH_THREADS = 2
TORCH_HINT = "PyTorch not installed: pip install torch==2.13.0 (the CPU wheel) to run the reference"

#: (m, k, n) of A (m x k) @ B (k x n): square sizes, then the VAE's layers at batch 100 and 100 x 50.
SHAPES = [
    (1024, 1024, 1024),
    (2048, 2048, 2048),
    (100, 784, 200),
    (100, 200, 784),
    (5000, 784, 200),
    (5000, 200, 784),
    (5000, 200, 50),
]
QUICK_SHAPES = [(1024, 1024, 1024), (5000, 200, 784)]


def import_torch(*, announce: bool = True):
    """Return the torch module set to 2 threads, or None (printing why, if asked) when missing."""
    try:
        import torch
    except ImportError:
        if announce:
            print(json.dumps({"bench": "skip", "framework": "pytorch", "reason": TORCH_HINT}))
        return None
    torch.set_num_threads(TORCH_THREADS)
    return torch


def rss_mib() -> dict[str, float]:
    """This process's resident memory now and its peak, MiB, from /proc/self/status.

    ``VmHWM`` (the peak) starts afresh at exec, unlike ``getrusage``'s ``ru_maxrss``, which
    a child started by ``subprocess`` inherits from its parent on Linux.
    """
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024
    return {"rss_mib": fields["VmRSS"], "peak_rss_mib": fields["VmHWM"]}


def best_time(fn, *, repeats: int, min_time: float = 0.0, warmup: bool = True) -> float:
    """Best wall time of ``fn()`` over ``repeats`` calls (after one warm-up call if asked), seconds.

    ``fn`` must block until its result is ready. Keeps calling past ``repeats`` until
    ``min_time`` seconds have been spent, so that very short calls are timed many times.
    """
    if warmup:
        fn()
    best, spent, n = float("inf"), 0.0, 0
    while n < repeats or spent < min_time:
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best, spent, n = min(best, elapsed), spent + elapsed, n + 1
    return best


def jax_matmul_gflops(m: int, k: int, n: int, *, repeats: int = 5, min_time: float = 0.2) -> float:
    a = jax.random.normal(jax.random.key(0), (m, k), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (k, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    seconds = best_time(lambda: dot(a, b).block_until_ready(), repeats=repeats, min_time=min_time)
    return 2.0 * m * k * n / seconds / 1e9


def torch_matmul_gflops(
    torch, m: int, k: int, n: int, *, repeats: int = 5, min_time: float = 0.2
) -> float:
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.standard_normal((m, k), dtype=np.float32))
    b = torch.from_numpy(rng.standard_normal((k, n), dtype=np.float32))
    with torch.no_grad():
        seconds = best_time(lambda: torch.mm(a, b), repeats=repeats, min_time=min_time)
    return 2.0 * m * k * n / seconds / 1e9


def measure_peak(*, quick: bool = False, emit: bool = False) -> dict[str, float]:
    """Peak float32 matmul GFLOP/s over :data:`SHAPES` for jax and (if installed) torch."""
    torch = import_torch(announce=emit)
    shapes, min_time = (QUICK_SHAPES, 0.0) if quick else (SHAPES, 0.2)
    peaks = {}
    for framework in ("jax", "pytorch"):
        if framework == "pytorch" and torch is None:
            continue
        rates = []
        for m, k, n in shapes:
            if framework == "jax":
                rate = jax_matmul_gflops(m, k, n, min_time=min_time)
            else:
                rate = torch_matmul_gflops(torch, m, k, n, min_time=min_time)
            rates.append(rate)
            if emit:
                record = {"bench": "matmul", "framework": framework, "m": m, "k": k, "n": n}
                print(json.dumps(record | {"gflops": round(rate, 2)}), flush=True)
        peaks[framework] = max(rates)
    peaks["peak"] = max(peaks.values())
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two shapes only, a few seconds")
    args = parser.parse_args()
    peaks = measure_peak(quick=args.quick, emit=True)
    summary = {"bench": "matmul_peak", "dtype": "float32"}
    summary |= {f"{name}_gflops": round(value, 2) for name, value in peaks.items()}
    summary |= {"jax": jax.__version__, "devices": str(jax.devices())}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
