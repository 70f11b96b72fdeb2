"""Importance-sampled test log p(x) of the VAE: images per second and peak memory, lvm vs PyTorch.

* **throughput**: ``lvm.evaluate.log_px`` with k = 5,000 particles on 1,000 binarized
  MNIST test images, against the PyTorch reference of bench/_torch_vae.py doing the same
  (``no_grad``, chunked the same way, the encoder run once per batch) at 1 and 2 threads,
  for several (particles per chunk, images per batch) settings: (500, 100), the setting of
  the earlier runs; (100, 100), ``log_px``'s earlier default; (100, 50), its default now;
  (250, 20). What matters is the rows per step, images x particles: 5,000 or 10,000 rows of
  784 float32 logits (16 or 31 MB) stay near the caches, 50,000 (157 MB) go to memory. lvm
  runs in a fresh process per setting, on 1 CPU device and, with ``jax_num_cpu_devices=2``,
  on 2 (data parallel over the images of a batch). Reported as
  images per second, the ratio of the best lvm row against PyTorch's best row (any thread
  count and setting) and at equal settings, and GFLOP/s of the dense layers (434 kflops per
  image for the encoder, 414 kflops per particle for the decoder, forward only) as a
  fraction of the float32 matmul peak (bench/matmul.py). Compilation is timed apart.
* **memory**: peak RSS of a fresh subprocess per (framework, k, streaming or not) for
  k = 500, 5,000, 50,000 on 10 images (batches of 10): streaming with chunks of 500
  against unchunked (all k particles at once; PyTorch with one chunk of k). The JSON gives
  the RSS before the call (runtime, model and data) and the peak, and their difference.

The model is an untrained VAE with the default architecture (speed does not depend on the
weights). Data: the binarized MNIST test set through ``lvm.data.mnist``; if it cannot be
loaded, a random binary array of the same shape (the JSON says which).

    python bench/vae_eval.py              # about 15 minutes on the 2-core CPU (11 with --skip-memory)
    python bench/vae_eval.py --quick      # ~40 s (imports, data, compiles, 4 subprocesses)
    flock /tmp/lvm-heavy.lock python bench/vae_eval.py   # the committed numbers

PyTorch is optional (``pip install torch==2.13.0``, the CPU wheel); without it the
PyTorch rows are skipped with a message.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace

import jax
import numpy as np
from matmul import import_torch, measure_peak, rss_mib

HIDDEN, LATENT, PIXELS = 200, 50, 784
ENCODER_FLOPS = 2 * (PIXELS * HIDDEN + HIDDEN * HIDDEN + HIDDEN * 2 * LATENT)
DECODER_FLOPS = 2 * (LATENT * HIDDEN + HIDDEN * HIDDEN + HIDDEN * PIXELS)


@dataclass(frozen=True)
class Config:
    num_images: int = 1000
    num_samples: int = 5000
    chunk_size: int = 500
    batch_size: int = 100
    #: (particles per chunk, images per batch) of the throughput rows.
    settings: tuple[tuple[int, int], ...] = ((500, 100), (100, 100), (100, 50), (250, 20))
    lvm_devices: tuple[int, ...] = (1, 2)
    torch_threads: tuple[int, ...] = (1, 2)
    memory_num_samples: tuple[int, ...] = (500, 5000, 50_000)
    memory_images: int = 10
    seed: int = 0


QUICK = Config(
    num_images=20,
    num_samples=100,
    chunk_size=50,
    batch_size=10,
    settings=((50, 10),),
    torch_threads=(1,),
    memory_num_samples=(100,),
)


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def load_test_images(cfg: Config) -> tuple[np.ndarray, str]:
    try:
        from lvm.data.mnist import load_binarized_mnist

        images = load_binarized_mnist(splits=("test",)).test
        return images[: cfg.num_images], "binarized_mnist test"
    except Exception as err:  # noqa: BLE001 - any failure falls back, and the JSON says so
        emit({"bench": "data", "warning": f"binarized MNIST not loaded ({err!r}); random data"})
        rng = np.random.default_rng(cfg.seed)
        return (rng.random((cfg.num_images, PIXELS)) < 0.13).astype(np.float32), "random binary"


def lvm_log_px(cfg: Config, images, *, num_samples: int, chunk_size, batch_size: int):
    """A function of no arguments running ``lvm.evaluate.log_px`` on ``images``."""
    from lvm import IWAE
    from lvm.evaluate import log_px
    from lvm.models.vae import VAE, VAEConfig

    model_key, eval_key = jax.random.split(jax.random.key(cfg.seed))
    model = VAE(VAEConfig(), key=model_key)
    estimator = IWAE(num_samples, chunk_size=chunk_size)
    return lambda x=images: log_px(eval_key, model, x, estimator, batch_size=batch_size)


def torch_log_px(torch, cfg, images, *, num_samples: int, chunk_size: int, batch_size: int):
    import _torch_vae

    torch.manual_seed(cfg.seed)
    model = _torch_vae.TorchVAE()
    x = torch.from_numpy(np.array(images))
    return lambda: _torch_vae.log_px(
        model, x, num_samples=num_samples, chunk_size=chunk_size, batch_size=batch_size
    )


def report(impl, cfg, seconds, estimate, peak_gflops, data, **extra) -> float:
    flops = cfg.num_images * (ENCODER_FLOPS + cfg.num_samples * DECODER_FLOPS)
    gflops = flops / seconds / 1e9
    images_per_second = cfg.num_images / seconds
    record = {
        "bench": "vae_log_px",
        "impl": impl,
        "num_images": cfg.num_images,
        "num_samples": cfg.num_samples,
        "chunk_size": cfg.chunk_size,
        "seconds": round(seconds, 3),
        "images_per_second": round(images_per_second, 2),
        "gflops": round(gflops, 2),
        "fraction_of_matmul_peak": round(gflops / peak_gflops, 3),
        "mean_log_px_untrained": round(float(np.mean(estimate)), 2),
        "data": data,
    }
    emit(record | extra)
    return images_per_second


def throughput_child(cfg: Config, devices: int, chunk_size: int, batch_size: int) -> None:
    """In a fresh process: ``log_px`` on ``devices`` CPU devices; prints seconds and estimate."""
    jax.config.update("jax_num_cpu_devices", devices)  # before anything starts the backend
    images, _ = load_test_images(cfg)
    run = lvm_log_px(
        cfg, images, num_samples=cfg.num_samples, chunk_size=chunk_size, batch_size=batch_size
    )
    run(images[:batch_size])  # compile
    start = time.perf_counter()
    estimate = run()
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "estimate": np.asarray(estimate).tolist()}))


def throughput(cfg: Config, torch, peak_gflops: float, quick: bool) -> None:
    images, data = load_test_images(cfg)
    rates = {}
    for chunk_size, batch_size in cfg.settings:
        setting = dict(chunk_size=chunk_size, batch_size=batch_size)
        for devices in cfg.lvm_devices:
            flags = ["--quick"] if quick else []
            out = subprocess.run(
                [sys.executable, __file__, *flags, "--seed", str(cfg.seed),
                 "--_throughput_child", f"{devices},{chunk_size},{batch_size}"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            result = json.loads(out.stdout.strip().splitlines()[-1])
            rates[("lvm", devices, chunk_size, batch_size)] = report(
                "lvm", replace(cfg, chunk_size=chunk_size), result["seconds"],
                result["estimate"], peak_gflops, data, devices=devices, batch_size=batch_size,
            )  # fmt: skip
        if torch is None:
            continue
        for threads in cfg.torch_threads:
            torch.set_num_threads(threads)
            settings = dict(num_samples=cfg.num_samples, **setting)
            run = torch_log_px(torch, cfg, images, **settings)
            torch_log_px(torch, cfg, images[:batch_size], **settings)()  # warm-up
            start = time.perf_counter()
            estimate = run().numpy()
            seconds = time.perf_counter() - start
            rates[("pytorch", threads, chunk_size, batch_size)] = report(
                "pytorch", replace(cfg, chunk_size=chunk_size), seconds, estimate, peak_gflops,
                data, torch_threads=threads, batch_size=batch_size,
            )  # fmt: skip
    if torch is None:
        return
    best = {
        impl: max((r, key) for key, r in rates.items() if key[0] == impl)
        for impl in ("lvm", "pytorch")
    }
    same = {
        f"{c}x{b}": round(
            max(r for key, r in rates.items() if key[0] == "lvm" and key[2:] == (c, b))
            / max(r for key, r in rates.items() if key[0] == "pytorch" and key[2:] == (c, b)),
            2,
        )
        for c, b in cfg.settings
    }
    emit(
        {
            "bench": "vae_log_px_speedup",
            "num_samples": cfg.num_samples,
            "lvm_best": {"images_per_second": round(best["lvm"][0], 2), "devices_chunk_batch": best["lvm"][1][1:]},
            "pytorch_best": {"images_per_second": round(best["pytorch"][0], 2), "threads_chunk_batch": best["pytorch"][1][1:]},
            "speedup_best_vs_best": round(best["lvm"][0] / best["pytorch"][0], 2),
            "speedup_at_equal_setting": same,
        }
    )  # fmt: skip


def child(cfg: Config, framework: str, k: int, streaming: bool) -> None:
    """Subprocess body: one log p(x) call on ``memory_images`` images; prints RSS in MiB."""
    images, _ = load_test_images(replace(cfg, num_images=cfg.memory_images))
    chunk = cfg.chunk_size if streaming else (None if framework == "lvm" else k)
    settings = dict(num_samples=k, chunk_size=chunk, batch_size=cfg.memory_images)
    if framework == "lvm":
        run = lvm_log_px(cfg, images, **settings)
    else:
        torch = import_torch(announce=False)
        torch.set_num_threads(max(cfg.torch_threads))
        run = torch_log_px(torch, cfg, images, **settings)
    before = rss_mib()["rss_mib"]
    run()
    peak = rss_mib()["peak_rss_mib"]
    print(json.dumps({"rss_before_mib": before, "peak_rss_mib": peak}))


def memory(cfg: Config, torch, quick: bool) -> None:
    frameworks = ["lvm"] + (["pytorch"] if torch is not None else [])
    for k in cfg.memory_num_samples:
        for framework in frameworks:
            for streaming in (True, False):
                cmd = [sys.executable, __file__, "--_child", f"{framework},{k},{int(streaming)}"]
                cmd += ["--quick"] if quick else []
                out = subprocess.run(cmd, capture_output=True, text=True)
                record = {
                    "bench": "vae_log_px_memory",
                    "impl": framework,
                    "num_samples": k,
                    "chunk_size": cfg.chunk_size if streaming else None,
                    "num_images": cfg.memory_images,
                }
                if out.returncode != 0:
                    emit(record | {"error": out.stderr.strip().splitlines()[-1:]})
                    continue
                rss = json.loads(out.stdout.strip().splitlines()[-1])
                rss["call_mib"] = rss["peak_rss_mib"] - rss["rss_before_mib"]
                emit(record | {key: round(value, 1) for key, value in rss.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 images, k = 100: a few seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-memory", action="store_true", help="throughput only")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    parser.add_argument("--_throughput_child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cfg = replace(QUICK if args.quick else Config(), seed=args.seed)
    if args._throughput_child:
        throughput_child(cfg, *map(int, args._throughput_child.split(",")))
        return
    if args._child:
        framework, k, streaming = args._child.split(",")
        child(cfg, framework, int(k), bool(int(streaming)))
        return
    torch = import_torch()
    peak = measure_peak(quick=args.quick)["peak"]
    emit(
        {
            "bench": "environment",
            "matmul_peak_gflops": round(peak, 2),
            "jax": jax.__version__,
            "torch": torch.__version__ if torch else None,
            "load_average_1min": os.getloadavg()[0],
        }
    )
    throughput(cfg, torch, peak, args.quick)
    if not args.skip_memory:
        memory(cfg, torch, args.quick)


if __name__ == "__main__":
    main()
