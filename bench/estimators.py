"""Throughput and memory of ``lvm.importance_sampling`` on the 50 -> 784 linear-Gaussian model.

What it measures, each in one run beside its peers:

* **throughput** in datapoint-samples per second (batch x k / seconds per call) of
  ``jit(vmap(importance_sampling))`` over a batch of datapoints, k in {1, 50, 5000}
  (k = 5000 also streamed with ``chunk_size=500``). The batch is 100,000 // k datapoints,
  clamped to [100, 10,000], so every call evaluates >= 100,000 particles (timing is not
  dominated by dispatch). Peers: the same estimator written by hand as one batched array
  program in ``jax.numpy`` (the fastest form we know, one (batch k, 50) x (50, 784) matmul),
  and the same in PyTorch (2 threads, ``no_grad``, chunked over k like the lvm call).
  The achieved GFLOP/s (2 x 784 x 50 flops per particle for W z; elementwise work not
  counted) is given as a fraction of the machine's float32 matmul peak (bench/matmul.py).
* **gradient cost** of the IWAE bound's gradient estimators on the MNIST VAE
  (784-200-200-50, random weights, a batch of 100 random binary images): seconds per
  ``value_and_grad`` of the batch loss for ``IWAE(k)`` with ``gradient="reparam"``,
  ``"stl"`` and ``"dreg"`` (k = 5, 50), timed in interleaved rounds (one call of each per
  round, the order rotated); the ratio to reparam is the median over rounds of the per-round ratio, so that
  both sides see the same background load.
* **memory** of k = 500 / 5,000 / 50,000 for a batch of 100 datapoints, streaming
  (``chunk_size=500``) vs unchunked: XLA's compiled temp buffer size
  (``memory_analysis()``, compile only) for all, and the measured peak RSS of a fresh
  subprocess per configuration for k <= 5,000 (``VmHWM`` of /proc/self/status).

The proposal is q(z|x) = N(posterior mean, diag posterior std), a diagonal Gaussian
like a VAE encoder's; a JSON line also reports the mean estimate next to the exact
log p(x), so a wrong estimator cannot look fast.

    python bench/estimators.py             # about 6 minutes on the 2-core CPU
    python bench/estimators.py --quick     # ~1 min on the loaded box (compiles, 2 subprocesses)
    python bench/estimators.py --part memory      # the memory rows only (~2 min)
    python bench/estimators.py --part gradients   # the gradient-cost rows only (~1 min)
    flock /tmp/lvm-heavy.lock python bench/estimators.py   # the committed numbers

PyTorch is optional (``pip install torch==2.13.0``, the CPU wheel); without it the
PyTorch column is skipped with a message.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from matmul import best_time, import_torch, measure_peak, rss_mib

import lvm

LATENT_DIM, DATA_DIM = 50, 784
FLOPS_PER_PARTICLE = 2 * DATA_DIM * LATENT_DIM
_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class Config:
    num_samples: tuple[int, ...] = (1, 50, 5000)
    chunk_size: int = 500
    particles_per_call: int = 100_000
    min_batch: int = 100
    max_batch: int = 10_000
    repeats: int = 5
    memory_num_samples: tuple[int, ...] = (500, 5000, 50_000)
    memory_batch: int = 100
    rss_max_num_samples: int = 5000
    gradient_num_samples: tuple[int, ...] = (5, 50)
    gradient_batch: int = 100
    gradient_rounds: int = 15
    seed: int = 0


QUICK = Config(
    num_samples=(1, 50),
    chunk_size=25,
    particles_per_call=2000,
    min_batch=10,
    repeats=2,
    memory_num_samples=(500,),
    memory_batch=10,
    rss_max_num_samples=500,
    gradient_num_samples=(5,),
    gradient_batch=10,
    gradient_rounds=3,
)


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def setup(key, batch: int):
    """The model, ``batch`` datapoints drawn from it and their diagonal proposals' (loc, scale)."""
    model_key, data_key = jax.random.split(key)
    model = lvm.LinearGaussian.random(model_key, latent_dim=LATENT_DIM, data_dim=DATA_DIM)
    _, xs = jax.vmap(model.sample)(jax.random.split(data_key, batch))
    locs = jax.vmap(lambda x: model.posterior(x).loc)(xs)
    # The posterior covariance does not depend on x: one diagonal serves every datapoint.
    scale = jnp.sqrt(jnp.diagonal(model.posterior(xs[0]).covariance))
    return model, xs, locs, scale


def lvm_estimator(model, num_samples: int, chunk_size: int | None):
    """jit(vmap(importance_sampling)) over (key, x, proposal loc): the library as a user calls it."""

    def one(key, x, loc, scale):
        proposal = lvm.DiagonalNormal(loc, scale)
        return lvm.importance_sampling(
            key, model.log_joint, proposal, x, num_samples=num_samples, chunk_size=chunk_size
        )

    return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None)))


def handwritten_estimator(model, num_samples: int):
    """The same estimate as one batched array program: the hand-optimised jax.numpy peer."""
    weight, bias, sigma = model.weight, model.bias, model.noise_std

    @jax.jit
    def run(key, xs, locs, scale):
        eps = jax.random.normal(key, (xs.shape[0], num_samples, LATENT_DIM))
        z = locs[:, None, :] + scale[None, None, :] * eps
        mean = jnp.einsum("bkd,Dd->bkD", z, weight) + bias[None, None, :]
        resid = (xs[:, None, :] - mean) / sigma
        log_lik = -0.5 * jnp.sum(resid**2, -1) - DATA_DIM * (jnp.log(sigma) + 0.5 * _LOG_2PI)
        log_prior = -0.5 * jnp.sum(z**2, -1) - 0.5 * LATENT_DIM * _LOG_2PI
        log_q = -0.5 * jnp.sum(eps**2, -1) - jnp.sum(jnp.log(scale)) - 0.5 * LATENT_DIM * _LOG_2PI
        return lvm.log_mean_exp(log_lik + log_prior - log_q, axis=1)

    return run


def torch_estimator(torch, model, num_samples: int, chunk_size: int):
    """The same estimate in PyTorch: no_grad, chunked over k with a running logsumexp."""
    weight_t = torch.from_numpy(np.array(model.weight)).T.contiguous()  # (d, D)
    bias = torch.from_numpy(np.array(model.bias))
    sigma = float(model.noise_std)
    const = -DATA_DIM * (math.log(sigma) + 0.5 * _LOG_2PI)

    def run(generator, xs, locs, scale):
        batch = xs.shape[0]
        log_q_const = torch.log(scale).sum()
        chunks = []
        with torch.no_grad():
            for start in range(0, num_samples, chunk_size):
                c = min(chunk_size, num_samples - start)
                eps = torch.randn(c, batch, LATENT_DIM, generator=generator)
                z = locs + scale * eps
                mean = torch.addmm(bias, z.reshape(-1, LATENT_DIM), weight_t)
                resid = (xs - mean.reshape(c, batch, DATA_DIM)) / sigma
                log_lik = -0.5 * resid.square().sum(-1) + const
                log_w = log_lik - 0.5 * z.square().sum(-1) + 0.5 * eps.square().sum(-1)
                chunks.append(torch.logsumexp(log_w + log_q_const, 0))
            log_sum = torch.logsumexp(torch.stack(chunks), 0)
        return log_sum - math.log(num_samples)

    return run


def batch_for(cfg: Config, num_samples: int) -> int:
    return int(np.clip(cfg.particles_per_call // num_samples, cfg.min_batch, cfg.max_batch))


def throughput(cfg: Config, torch, peak_gflops: float, k: int) -> None:
    """Time every implementation on the same batch for one k."""
    batch = batch_for(cfg, k)
    model, xs, locs, scale = setup(jax.random.key(cfg.seed), batch)
    exact = float(jnp.mean(jax.vmap(model.log_marginal)(xs)))
    run_key = jax.random.key(cfg.seed + 1)
    keys = jax.random.split(run_key, batch)
    runs = {"lvm": (lvm_estimator(model, k, None), keys)}
    if k > cfg.chunk_size:
        runs["lvm_chunked"] = (lvm_estimator(model, k, cfg.chunk_size), keys)
    runs["jnp_handwritten"] = (handwritten_estimator(model, k), run_key)
    for name, (fn, fn_key) in runs.items():
        estimate = fn(fn_key, xs, locs, scale)
        seconds = best_time(
            lambda fn=fn, fn_key=fn_key: fn(fn_key, xs, locs, scale).block_until_ready(),
            repeats=cfg.repeats,
        )
        report(name, k, batch, seconds, float(jnp.mean(estimate)), exact, peak_gflops)
    if torch is not None:
        fn = torch_estimator(torch, model, k, cfg.chunk_size)
        args = [torch.from_numpy(np.array(a)) for a in (xs, locs, scale)]
        generator = torch.Generator().manual_seed(cfg.seed)
        estimate = fn(generator, *args)
        seconds = best_time(lambda: fn(generator, *args), repeats=cfg.repeats)
        report("pytorch", k, batch, seconds, float(estimate.mean()), exact, peak_gflops)


def report(name, k, batch, seconds, mean_estimate, exact, peak_gflops) -> None:
    gflops = FLOPS_PER_PARTICLE * batch * k / seconds / 1e9
    emit(
        {
            "bench": "importance_sampling_throughput",
            "impl": name,
            "num_samples": k,
            "batch": batch,
            "seconds_per_call": round(seconds, 5),
            "samples_per_second": round(batch * k / seconds),
            "gflops": round(gflops, 2),
            "fraction_of_matmul_peak": round(gflops / peak_gflops, 3),
            "mean_log_px_estimate": round(mean_estimate, 3),
            "mean_log_px_exact": round(exact, 3),
        }
    )


def compiled_temp_bytes(cfg: Config, k: int, chunk_size: int | None) -> int:
    model, xs, locs, scale = setup(jax.random.key(cfg.seed), cfg.memory_batch)
    keys = jax.random.split(jax.random.key(cfg.seed + 1), cfg.memory_batch)
    compiled = lvm_estimator(model, k, chunk_size).lower(keys, xs, locs, scale).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def run_once(cfg: Config, k: int, chunk_size: int | None) -> None:
    """Subprocess body: one estimate, then print peak RSS (MiB) and the RSS before the call."""
    model, xs, locs, scale = setup(jax.random.key(cfg.seed), cfg.memory_batch)
    keys = jax.random.split(jax.random.key(cfg.seed + 1), cfg.memory_batch)
    fn = lvm_estimator(model, k, chunk_size)
    compiled = fn.lower(keys, xs, locs, scale).compile()
    before = rss_mib()
    compiled(keys, xs, locs, scale).block_until_ready()
    peak = rss_mib()["peak_rss_mib"]
    record = {"rss_before_call_mib": before["rss_mib"], "peak_rss_mib": peak}
    # Compilation (before the call) may have set the peak: the call's own growth is above RSS.
    print(json.dumps(record | {"call_mib": peak - before["rss_mib"]}))


def memory(cfg: Config, argv_quick: list[str]) -> None:
    for k in cfg.memory_num_samples:
        for chunk_size in (cfg.chunk_size, None):
            record = {
                "bench": "importance_sampling_memory",
                "num_samples": k,
                "chunk_size": chunk_size,
                "batch": cfg.memory_batch,
                "xla_temp_mib": round(compiled_temp_bytes(cfg, k, chunk_size) / 2**20, 1),
            }
            if k <= cfg.rss_max_num_samples:
                cmd = [sys.executable, __file__, *argv_quick, "--_child", f"{k},{chunk_size}"]
                child = json.loads(subprocess.run(cmd, capture_output=True, check=True).stdout)
                record |= {key: round(value, 1) for key, value in child.items()}
            emit(record)


def gradient_cost(cfg: Config) -> None:
    """Seconds per value_and_grad of the batch loss, IWAE(k) with each gradient estimator."""
    import equinox as eqx

    from lvm.models.vae import VAE, VAEConfig
    from lvm.train.step import batch_bound

    model_key, data_key, step_key = jax.random.split(jax.random.key(cfg.seed), 3)
    model = VAE(VAEConfig(), key=model_key)
    batch = jax.random.bernoulli(data_key, 0.2, (cfg.gradient_batch, 784)).astype(jnp.float32)
    for k in cfg.gradient_num_samples:
        steps = {}
        for gradient in ("reparam", "stl", "dreg"):
            objective = lvm.IWAE(k, gradient=gradient)

            @eqx.filter_jit
            def step(model, key, objective=objective):
                def loss(m):
                    return -batch_bound(key, m, batch, objective)

                return eqx.filter_value_and_grad(loss)(model)

            jax.block_until_ready(step(model, step_key))  # compile
            steps[gradient] = step
        times = {g: [] for g in steps}
        names = list(steps)
        for r in range(cfg.gradient_rounds):
            key = jax.random.fold_in(step_key, r)
            for gradient in names[r % 3 :] + names[: r % 3]:  # rotate who goes first
                step = steps[gradient]
                start = time.perf_counter()
                jax.block_until_ready(step(model, key))
                times[gradient].append(time.perf_counter() - start)
        base = np.array(times["reparam"])
        for gradient, t in times.items():
            emit(
                {
                    "bench": "iwae_gradient_cost",
                    "gradient": gradient,
                    "num_samples": k,
                    "batch": cfg.gradient_batch,
                    "best_seconds": round(min(t), 5),
                    "median_seconds": round(float(np.median(t)), 5),
                    "ratio_to_reparam_median": round(float(np.median(np.array(t) / base)), 3),
                    "rounds": cfg.gradient_rounds,
                }
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--part", choices=("all", "throughput", "gradients", "memory"), default="all"
    )
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cfg = QUICK if args.quick else Config()
    cfg = Config(**{**cfg.__dict__, "seed": args.seed})
    if args._child:
        k, chunk = args._child.split(",")
        run_once(cfg, int(k), None if chunk == "None" else int(chunk))
        return
    emit({"bench": "load_average", "1min": round(os.getloadavg()[0], 2), "jax": jax.__version__})
    if args.part in ("all", "throughput"):
        torch = import_torch()
        peak = measure_peak(quick=args.quick)
        emit({"bench": "matmul_peak", "gflops": round(peak["peak"], 2), "jax": jax.__version__})
        for k in cfg.num_samples:
            throughput(cfg, torch, peak["peak"], k)
    if args.part in ("all", "gradients"):
        gradient_cost(cfg)
    if args.part in ("all", "memory"):
        memory(cfg, ["--quick"] if args.quick else [])


if __name__ == "__main__":
    main()
