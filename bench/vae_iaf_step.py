"""Cost of one training step of the library's IAF-q VAE against the Gaussian-q VAE (the vae_iaf_k1 run).

The two models are the library's own: ``VAE(VAEConfig())`` (784-200-200-50, tanh, diagonal
Gaussian q) and ``VAE(VAEConfig(posterior="iaf"))`` (the same, with q an IAF of that Gaussian:
two affine IAF layers, 200-unit MADEs conditioned on the encoder's last hidden layer; the
defaults ``num_flow_layers=2``, ``flow_width=200``). One step is what ``lvm.train`` runs for the
``vae_k1`` and ``vae_iaf_k1`` runs: ``make_train_step(ELBO(1), optax.adam(1e-3, eps=1e-4))``
(value_and_grad of the negated mean ELBO over a batch of 100, the Adam update), jitted once,
on the first 100 binarized MNIST training images (random binary images if MNIST is absent).

The two steps run in the same process in interleaved rounds (one step of each per round,
who goes first alternating), so both see the same background load; the ratio is the median
over rounds of the per-round ratio IAF / Gaussian, with its quartiles. JSON lines on stdout.

    python bench/vae_iaf_step.py            # ~1 min on the shared 2-core CPU (compiles included)
    python bench/vae_iaf_step.py --quick    # a few rounds, for a smoke run
"""

import argparse
import json
import os
import time

import equinox as eqx
import jax
import numpy as np
import optax

import lvm
from lvm.models.vae import VAE, VAEConfig
from lvm.train import make_train_step


def _batch(batch_size: int, seed: int) -> tuple[np.ndarray, str]:
    try:
        from lvm.data.mnist import load_binarized_mnist

        return np.asarray(load_binarized_mnist().train[:batch_size], np.float32), "mnist"
    except Exception as err:  # noqa: BLE001 - any failure to load falls back, and says so
        print(json.dumps({"bench": "data", "fallback": "random", "reason": repr(err)[:200]}))
        rng = np.random.default_rng(seed)
        return (rng.random((batch_size, 784)) < 0.2).astype(np.float32), "random"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    batch_size = 100

    init_key, step_key = jax.random.split(jax.random.key(args.seed))
    configs = {"gaussian": VAEConfig(), "iaf": VAEConfig(posterior="iaf")}
    batch, data = _batch(batch_size, args.seed)
    init, step = make_train_step(lvm.ELBO(1), optax.adam(1e-3, eps=1e-4))
    step = eqx.filter_jit(step)
    states = {name: init(VAE(c, key=init_key)) for name, c in configs.items()}
    num_params = {
        name: sum(a.size for a in jax.tree.leaves(eqx.filter(s.params, eqx.is_inexact_array)))
        for name, s in states.items()
    }
    print(
        json.dumps(
            {
                "bench": "load_average",
                "1min": round(os.getloadavg()[0], 2),
                "jax": jax.__version__,
                "data": data,
            }
        )
    )
    for name in configs:
        start = time.perf_counter()
        states[name], _ = jax.block_until_ready(step(step_key, states[name], batch))
        print(
            json.dumps(
                {
                    "bench": "vae_iaf_step_compile",
                    "q": name,
                    "seconds": round(time.perf_counter() - start, 2),
                }
            )
        )
    times = {name: [] for name in configs}
    names = list(configs)
    for r in range(rounds):
        key = jax.random.fold_in(step_key, r)
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            states[name], _ = jax.block_until_ready(step(key, states[name], batch))
            times[name].append(time.perf_counter() - start)
    base = np.array(times["gaussian"])
    for name, t in times.items():
        t = np.array(t)
        ratio = t / base
        print(
            json.dumps(
                {
                    "bench": "vae_iaf_step",
                    "q": name,
                    "objective": "ELBO(1)",
                    "batch": batch_size,
                    "parameters": int(num_params[name]),
                    "best_seconds": round(float(t.min()), 5),
                    "median_seconds": round(float(np.median(t)), 5),
                    "ratio_to_gaussian_median": round(float(np.median(ratio)), 3),
                    "ratio_quartiles": [round(float(v), 3) for v in np.percentile(ratio, [25, 75])],
                    "rounds": rounds,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
