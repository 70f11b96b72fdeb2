"""Seconds per training epoch of the VAE / IWAE on binarized MNIST: lvm (JAX) vs PyTorch, same run.

For k = 1 (VAE, ELBO), 5 and 50 (IWAE bound), batch 100, Adam (lr 1e-3, eps 1e-4), the
784-200-200-(50, 50) / 50-200-200-784 tanh architecture:

* **lvm**: ``make_train_epoch(objective, optax.adam)`` from ``lvm.train``, the whole epoch
  one compiled ``lax.scan``. It is timed on a subset of ``steps`` minibatches (a shorter
  epoch, its own compiled scan) and scaled to the 500 steps of the 50,000-image epoch;
  the first call (trace + compile + run) is reported separately as ``compile_seconds``.
* **pytorch**: bench/_torch_vae.py, the same model and objectives vectorised over the k
  samples, eager, at 1 and 2 threads (on a shared 2-core machine 2 OpenMP threads can be
  the slower; the ratio is taken against PyTorch's faster setting), and with
  ``--torch-compile`` also ``torch.compile`` of the loss (compile time reported apart).

Each timing is the best of ``repeats`` runs after a warm-up. GFLOP/s counts the dense
layers only (2 m n flops per row forward, twice that backward, no input gradient for the
first encoder layer: 987,200 flops per image for the encoder, 1,240,800 per sample for
the decoder per step), as a fraction of the float32 matmul peak from bench/matmul.py.
Data: the binarized MNIST training set through ``lvm.data.mnist``; if it cannot be
loaded, a random binary array of the same shape (the JSON says which).

    python bench/vae_train.py                    # 1-7 minutes on the shared 2-core CPU (load)
    python bench/vae_train.py --torch-compile    # + torch.compile rows, about 3 minutes more
    python bench/vae_train.py --quick            # ~30 s (imports, data, compiles)
    python bench/vae_train.py --devices 2        # lvm data parallel over 2 CPU devices
    flock /tmp/lvm-heavy.lock python bench/vae_train.py   # the committed numbers

PyTorch is optional (``pip install torch==2.13.0``, the CPU wheel); without it the
PyTorch rows are skipped with a message.
"""

import argparse
import json
import os
import time
from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np
import optax
from matmul import best_time, import_torch, measure_peak

import lvm

EPOCH_IMAGES = 50_000
HIDDEN, LATENT, PIXELS = 200, 50, 784


@dataclass(frozen=True)
class Config:
    num_samples: tuple[int, ...] = (1, 5, 50)
    #: minibatches timed per k (the epoch is scaled from these)
    steps: tuple[int, ...] = (100, 100, 20)
    batch_size: int = 100
    repeats: int = 3
    torch_threads: tuple[int, ...] = (1, 2)
    torch_compile: bool = False
    seed: int = 0


QUICK = Config(num_samples=(1, 5), steps=(3, 3), repeats=1, torch_threads=(1,))


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def step_flops(batch_size: int, k: int) -> float:
    """Dense-layer flops of one training step (forward + backward), see the module docstring."""
    encoder_forward = 2 * (PIXELS * HIDDEN + HIDDEN * HIDDEN + HIDDEN * 2 * LATENT)
    decoder_forward = 2 * (LATENT * HIDDEN + HIDDEN * HIDDEN + HIDDEN * PIXELS)
    encoder = 3 * encoder_forward - 2 * PIXELS * HIDDEN
    decoder = 3 * decoder_forward
    return batch_size * (encoder + k * decoder)


def load_train_images(seed: int) -> tuple[np.ndarray, str]:
    try:
        from lvm.data.mnist import load_binarized_mnist

        return load_binarized_mnist(splits=("train",)).train, "binarized_mnist train"
    except Exception as err:  # noqa: BLE001 - any failure falls back, and the JSON says so
        emit({"bench": "data", "warning": f"binarized MNIST not loaded ({err!r}); random data"})
        rng = np.random.default_rng(seed)
        return (rng.random((EPOCH_IMAGES, PIXELS)) < 0.13).astype(np.float32), "random binary"


def objective_for(k: int):
    return lvm.ELBO(1) if k == 1 else lvm.IWAE(k)


def time_lvm(cfg: Config, k: int, steps: int, images: np.ndarray) -> dict:
    from lvm.models.vae import VAE, VAEConfig
    from lvm.sharding import make_mesh, replicate
    from lvm.train import make_train_epoch

    init_key, train_key = jax.random.split(jax.random.key(cfg.seed))
    optimizer = optax.adam(1e-3, b1=0.9, b2=0.999, eps=1e-4)
    init, epoch = make_train_epoch(objective_for(k), optimizer, batch_size=cfg.batch_size)
    state = init(VAE(VAEConfig(), key=init_key))
    # On every device of the default mesh (all of jax.devices()): each takes part of a batch.
    subset = replicate(jnp.asarray(images[: steps * cfg.batch_size]), make_mesh())
    calls = 0

    def run():
        nonlocal state, calls
        state, infos = epoch(jax.random.fold_in(train_key, calls), state, subset)
        calls += 1
        jax.block_until_ready((state, infos))

    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    seconds = best_time(run, repeats=cfg.repeats, warmup=False)
    return {"seconds": seconds, "compile_seconds": max(first - seconds, 0.0)}


def time_torch(torch, cfg: Config, k: int, steps: int, images, threads: int, compile_: bool):
    import _torch_vae

    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    model = _torch_vae.TorchVAE()
    optimizer = _torch_vae.make_optimizer(model)
    objective = "elbo" if k == 1 else "iwae"
    step = _torch_vae.make_train_step(model, optimizer, objective, k, compile=compile_)
    generator = torch.Generator().manual_seed(cfg.seed)

    def run():
        _torch_vae.train_steps(step, images, steps, cfg.batch_size, generator)

    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    seconds = best_time(run, repeats=cfg.repeats, warmup=False)
    return {"seconds": seconds, "compile_seconds": max(first - seconds, 0.0) if compile_ else None}


def report(impl, k, steps, timing, peak_gflops, data, cfg, **extra) -> dict:
    per_step = timing["seconds"] / steps
    gflops = step_flops(cfg.batch_size, k) / per_step / 1e9
    record = {
        "bench": "vae_train_epoch",
        "impl": impl,
        "num_samples": k,
        "objective": "ELBO" if k == 1 else "IWAE",
        "timed_steps": steps,
        "seconds_per_epoch": round(per_step * EPOCH_IMAGES / cfg.batch_size, 3),
        "ms_per_step": round(per_step * 1e3, 3),
        "gflops": round(gflops, 2),
        "fraction_of_matmul_peak": round(gflops / peak_gflops, 3),
        "data": data,
    }
    if timing.get("compile_seconds") is not None:
        record["compile_seconds"] = round(timing["compile_seconds"], 2)
    emit(record | extra)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two k, three steps: seconds")
    parser.add_argument("--torch-compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--devices", type=int, default=1, help="CPU devices for lvm (jax_num_cpu_devices)"
    )
    args = parser.parse_args()
    jax.config.update("jax_num_cpu_devices", args.devices)  # before the backend starts
    cfg = QUICK if args.quick else Config()
    cfg = replace(cfg, seed=args.seed, torch_compile=args.torch_compile)
    torch = import_torch()
    peak = measure_peak(quick=args.quick)["peak"]
    emit(
        {
            "bench": "environment",
            "matmul_peak_gflops": round(peak, 2),
            "jax": jax.__version__,
            "torch": torch.__version__ if torch else None,
            "load_average_1min": os.getloadavg()[0],
            "lvm_devices": jax.device_count(),
        }
    )
    images, data = load_train_images(cfg.seed)
    torch_images = torch.from_numpy(np.array(images)) if torch is not None else None
    for k, steps in zip(cfg.num_samples, cfg.steps, strict=True):
        jax_record = report("lvm", k, steps, time_lvm(cfg, k, steps, images), peak, data, cfg)
        if torch is None:
            continue
        torch_seconds = []
        variants = [(t, False) for t in cfg.torch_threads]
        variants += [(max(cfg.torch_threads), True)] if cfg.torch_compile else []
        for threads, compile_ in variants:
            timing = time_torch(torch, cfg, k, steps, torch_images, threads, compile_)
            impl = "pytorch_compile" if compile_ else "pytorch"
            record = report(impl, k, steps, timing, peak, data, cfg, torch_threads=threads)
            torch_seconds.append(record["seconds_per_epoch"])
        emit(
            {
                "bench": "vae_train_speedup",
                "num_samples": k,
                "lvm_seconds_per_epoch": jax_record["seconds_per_epoch"],
                "best_pytorch_seconds_per_epoch": min(torch_seconds),
                "speedup_vs_best_pytorch": round(
                    min(torch_seconds) / jax_record["seconds_per_epoch"], 2
                ),
            }
        )


if __name__ == "__main__":
    main()
