"""Cost of a flow posterior per training step: the IAF q(z|x) against the diagonal Gaussian q(z|x).

One training-style step is ``value_and_grad`` of the loss -mean_b IWAE_5(x_b) of a batch of 100
MNIST-shaped datapoints (random binary images, p = 0.2), w.r.t. all the parameters, jitted once.
Both models share everything but q: the library's VAE (784-200-200-50, tanh, Bernoulli decoder),
whose encoder's last hidden layer gives the 200-unit features h(x) and whose last linear layer
gives the Gaussian q_0(z|x) = N(mu(h), diag softplus(.)^2). The flow model pushes q_0 through
``lvm.iaf_bijection(dim=50, cond_dim=200, flow_layers=2, nn_width=200)``, two affine IAF layers
conditioned on h (Kingma et al., 2016), scored from the forward pass (``sample_and_log_prob``).

The two steps run in the same process in interleaved rounds (one call of each per round, who goes
first alternating); the ratio is the median over rounds of the per-round ratio flow / Gaussian,
so both see the same background load. JSON lines on stdout.

    python bench/flow_posterior.py            # ~1 min on the 2-core CPU (compiles included)
    python bench/flow_posterior.py --quick    # a few rounds, for a smoke run
"""

import argparse
import json
import os
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import lvm
from lvm.models.vae import VAE, VAEConfig


class _Model(eqx.Module):
    """The VAE with q(z|x) = q_0(z|x) (``bijection=None``) or an IAF of q_0 conditioned on h(x)."""

    vae: VAE
    bijection: eqx.Module | None

    def encode(self, x):
        layers, act = self.vae.encoder.layers, jnp.tanh
        h = x
        for layer in layers[:-1]:
            h = act(h @ layer.weight.T + layer.bias)
        loc, raw_scale = jnp.split(h @ layers[-1].weight.T + layers[-1].bias, 2)
        base = lvm.DiagonalNormal(loc, jax.nn.softplus(raw_scale))
        return base if self.bijection is None else lvm.Flow(base, self.bijection, h)


def _step(objective, batch):
    @eqx.filter_jit
    def step(model, key):
        def loss(model):
            keys = jax.random.split(key, batch.shape[0])
            bounds = jax.vmap(lambda k, x: objective(k, model.vae.log_joint, model.encode(x), x))(
                keys, batch
            )
            return -jnp.mean(bounds)

        return eqx.filter_value_and_grad(loss)(model)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    batch_size, num_samples = 100, 5

    vae_key, flow_key, data_key, step_key = jax.random.split(jax.random.key(args.seed), 4)
    vae = VAE(VAEConfig(), key=vae_key)
    bijection = lvm.iaf_bijection(
        flow_key, dim=50, cond_dim=200, flow_layers=2, nn_width=200, identity_init=False
    )
    models = {"gaussian": _Model(vae, None), "iaf": _Model(vae, bijection)}
    batch = jax.random.bernoulli(data_key, 0.2, (batch_size, 784)).astype(jnp.float32)
    step = _step(lvm.IWAE(num_samples), batch)

    print(
        json.dumps(
            {"bench": "load_average", "1min": round(os.getloadavg()[0], 2), "jax": jax.__version__}
        )
    )
    values = {}
    for name, model in models.items():
        start = time.perf_counter()
        value, _ = jax.block_until_ready(step(model, step_key))
        values[name] = float(value)
        compile_s = time.perf_counter() - start
        print(
            json.dumps(
                {"bench": "flow_posterior_compile", "q": name, "seconds": round(compile_s, 2)}
            )
        )
    times = {name: [] for name in models}
    names = list(models)
    for r in range(rounds):
        key = jax.random.fold_in(step_key, r)
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            jax.block_until_ready(step(models[name], key))
            times[name].append(time.perf_counter() - start)
    base = np.array(times["gaussian"])
    for name, t in times.items():
        t = np.array(t)
        print(
            json.dumps(
                {
                    "bench": "flow_posterior_step",
                    "q": name,
                    "objective": f"IWAE({num_samples})",
                    "batch": batch_size,
                    "loss_at_init": round(values[name], 3),
                    "best_seconds": round(float(t.min()), 5),
                    "median_seconds": round(float(np.median(t)), 5),
                    "ratio_to_gaussian_median": round(float(np.median(t / base)), 3),
                    "ratio_quartiles": [
                        round(float(v), 3) for v in np.percentile(t / base, [25, 75])
                    ],
                    "rounds": rounds,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
