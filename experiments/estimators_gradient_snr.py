r"""Figure: signal-to-noise ratio of IWAE, DReG and STL gradients versus k (after Rainforth et al., 2018).

Writes ``paper_figures/estimators_gradient_snr.{png,pdf,json}``.

Claim (Rainforth et al., 2018, "Tighter variational bounds are not necessarily better";
Tucker et al., 2019). For a gradient estimate g of one parameter, over independent keys,
:math:`\mathrm{SNR} = |\mathbb E[g]| / \mathrm{std}(g)`. With the IWAE bound
:math:`\mathcal L_k` and its reparameterized gradient, the decoder's SNR grows like
:math:`k^{1/2}` but the encoder's falls like :math:`k^{-1/2}`: the encoder's true gradient
:math:`\nabla_\phi \mathcal L_k` shrinks as O(1/k) (at k = infinity the bound is log p(x),
whatever q) while its noise shrinks only as :math:`O(k^{-1/2})`. DReG
(``lvm.IWAE(k, gradient="dreg")``), unbiased for the same gradient, weighs each particle by
:math:`\tilde w_i^2` and removes the score term, so its encoder noise falls as
:math:`O(k^{-3/2})` and its SNR grows. IWAE-STL (``gradient="stl"``) also drops the score
term, but is biased for k > 1: its mean tends to a nonzero constant, so its SNR grows
too, towards the wrong gradient. The decoder's gradient is the same for all three, key by
key (``tests/test_gradients.py``), so their decoder curves coincide.

Parts, each a row of the figure:

* ``linear``: the linear-Gaussian model (d = 5, D = 20, sigma = 0.5) and one datapoint,
  with an amortized Gaussian encoder :math:`q(z|x) = \mathcal N(Ax + c, LL^\top)` set away
  from the exact posterior :math:`\mathcal N(\mu, L_*L_*^\top)`: mean :math:`\mu + 0.3 L_* \mathbf 1`,
  scale :math:`1.2 L_*` (:math:`\chi^2 = 0.63`); every encoder parameter
  (A, c, the lower triangle of L: 120) and decoder parameter (W, b, sigma: 121).
  1,000 repetitions for each of k = 1, 3, 10, ..., 1000.
* ``mnist``: the IWAE k = 50 model trained on binarized MNIST (the run ``iwae_k50`` shared
  with ``vae_loglik_table.py``, loaded from ``runs/vae`` or trained), the first test image,
  16 encoder parameters (output biases of 8 latent means and 8 scales) and 16 decoder
  parameters (output biases of the 16 central pixels); 300 repetitions per k.

Each curve is the median over the part's parameters of their SNR, the band its
inter-quartile range. IWAE's :math:`|\mathbb E[g]|` is estimated from the DReG draws of the
same k (both are unbiased for :math:`\nabla\mathcal L_k`; DReG's spread is 10-100x smaller),
since at large k it is below the noise floor :math:`1/\sqrt R` of IWAE's own sample mean; slopes are fitted per parameter on log SNR against log k for
k >= 10 and their median is reported (legend and JSON).

Run: ``python experiments/estimators_gradient_snr.py`` (both parts; ``just figures`` runs
it), ``--parts linear`` or ``--parts mnist`` for one part (the other is kept from the JSON
already in ``--out-dir``, if any), ``--quick`` for a seconds-long smoke run (tiny MNIST
model). Runtime on 2 shared CPU cores: the linear part 67 s (54 s of CPU); the MNIST part
52 s when the run exists (measured, quiet machine), plus training ``iwae_k50`` if it is not
in ``runs/vae`` (5 epochs: about 6 min).
Should hit (seed 0), linear part, median over parameters of the slopes for k = 10..1000:
IWAE encoder -0.50 (median SNR 0.24 at k = 1 -> 0.0069 at k = 1000), DReG encoder +0.50
(0.78 -> 12.2), IWAE-STL encoder +0.50 (0.78 -> 18.2); decoder +0.50 for all three
(0.91 -> 35.2). MNIST part (IWAE k=50 after 5 epochs, 16 encoder and 16 decoder output
biases, 300 repetitions): IWAE encoder -0.19 (0.12 -> 0.024), DReG encoder -0.10 (0.22 ->
0.13), IWAE-STL encoder +0.14, decoder +0.19 for all three; 52 s with the run present.
"""

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field, replace
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from _script import save_figure, save_json, style
from _testbeds import log_k_grid
from _vae_runs import Budget, load_data, parse_args, trained

import lvm
from lvm import model_bound

NAME = "estimators_gradient_snr"
PARTS = ("linear", "mnist")
#: label -> the ``gradient`` option of ``lvm.IWAE``.
ESTIMATORS = {"IWAE": "reparam", "DReG": "dreg", "IWAE-STL": "stl"}
COLORS = {"IWAE": "tab:red", "DReG": "tab:blue", "IWAE-STL": "tab:green"}


@dataclass(frozen=True)
class Config:
    latent_dim: int = 5
    data_dim: int = 20
    noise_std: float = 0.5
    #: the encoder away from the exact posterior N(mu, LL^T): mean mu + shift * L 1, scale factor
    #: on L; chi^2 = (s^2/sqrt(2s^2-1))^d exp(d shift^2/(2s^2-1)) - 1 = 0.63.
    encoder_shift: float = 0.3
    encoder_scale: float = 1.2
    num_samples: tuple[int, ...] = tuple(log_k_grid(1000, per_decade=2))
    num_reps: int = 1000
    #: repetitions evaluated at once (lax.map batches), bounding memory.
    reps_per_batch: int = 100
    budget: Budget = field(default_factory=Budget)
    mnist_run: str = "iwae_k50"
    mnist_num_samples: tuple[int, ...] = tuple(log_k_grid(1000, per_decade=2))
    mnist_num_reps: int = 300
    mnist_reps_per_batch: int = 10
    #: encoder: this many latent means and as many scales; decoder: 2x this many central pixels.
    mnist_params_per_group: int = 8
    slope_min_k: int = 10

    def quick(self) -> "Config":
        return replace(
            self,
            num_samples=(2, 32),
            num_reps=100,
            budget=self.budget.quick(),
            mnist_num_samples=(16,),
            mnist_num_reps=16,
            mnist_reps_per_batch=8,
            mnist_params_per_group=2,
            slope_min_k=1,
        )


class LinearEncoder(eqx.Module):
    r""":math:`q(z \mid x) = \mathcal N(Ax + c, LL^\top)` (only the lower triangle of L is used)."""

    weight: jax.Array
    bias: jax.Array
    tril: jax.Array

    def __call__(self, x):
        return lvm.MultivariateNormal(self.weight @ x + self.bias, jnp.tril(self.tril))


def exact_encoder(model: lvm.LinearGaussian) -> LinearEncoder:
    """The encoder whose q(z|x) is p(z|x) for every x: A = S W^T / sigma^2, c = -A b, L = chol(S)."""
    d = model.latent_dim
    cov = jnp.linalg.inv(jnp.eye(d) + model.weight.T @ model.weight / model.noise_std**2)
    a = cov @ model.weight.T / model.noise_std**2
    return LinearEncoder(a, -a @ model.bias, jnp.linalg.cholesky(cov))


def snr_stats(grads: np.ndarray, num_reps: int, mean=None, mean_se=None) -> dict:
    """Per-parameter mean, std and SNR = |mean|/std of (R, P) gradients, with its s.e. by the
    delta method for Gaussian g: sqrt(se(mean)^2/std^2 + SNR^2/(2R)).

    ``mean`` (and its ``mean_se``): E[g] estimated from other, unbiased draws of the same
    quantity; by default the draws' own mean (se std/sqrt(R)).
    """
    own, std = grads.mean(0), grads.std(0, ddof=1)
    if mean is None:
        mean, mean_se = own, std / math.sqrt(num_reps)
    snr = np.abs(mean) / std
    return {
        "mean": own,
        "std": std,
        "snr": snr,
        "snr_se": np.sqrt((mean_se / std) ** 2 + snr**2 / (2 * num_reps)),
        "snr_own_mean": np.abs(own) / std,
    }


def _repeat(grad_fn, key, num_reps, batch):
    """``grad_fn(key_r)`` for R keys, ``batch`` at a time: a dict of (R, P) arrays."""
    return jax.lax.map(grad_fn, jax.random.split(key, num_reps), batch_size=batch)


# ---------------------------------------------------------------- the linear-Gaussian part


def _linear_setup(config: Config, key):
    model_key, data_key = jax.random.split(key)
    model = lvm.LinearGaussian.random(
        model_key,
        latent_dim=config.latent_dim,
        data_dim=config.data_dim,
        noise_std=config.noise_std,
    )
    _, x = model.sample(data_key)
    best = exact_encoder(model)
    shift = config.encoder_shift * best.tril @ jnp.ones(config.latent_dim)
    encoder = LinearEncoder(best.weight, best.bias + shift, config.encoder_scale * best.tril)
    return model, x, encoder


def _linear_gradients(config: Config, k: int, gradient: str, model, encoder, key, *, x):
    objective = lvm.IWAE(k, gradient=gradient)
    lower = np.tril_indices(config.latent_dim)

    def one(key):
        def bound(enc, mod):
            return objective(key, mod.log_joint, enc(x), x)

        g_enc, g_mod = jax.grad(bound, argnums=(0, 1))(encoder, model)
        enc = jnp.concatenate([g_enc.weight.ravel(), g_enc.bias, g_enc.tril[lower]])
        dec = jnp.concatenate([g_mod.weight.ravel(), g_mod.bias, g_mod.noise_std[None]])
        return {"encoder": enc, "decoder": dec}

    return _repeat(one, key, config.num_reps, config.reps_per_batch)


def run_linear(config: Config, key) -> dict:
    start = time.perf_counter()
    model, x, encoder = _linear_setup(config, key)
    grads_key = jax.random.fold_in(key, 1)
    out = {"num_samples": list(config.num_samples)}
    draws = {}
    for label, gradient in ESTIMATORS.items():
        draws[label] = []
        for k in config.num_samples:
            # The same keys for every estimator at a given k: paired comparisons.
            fn = jax.jit(partial(_linear_gradients, config, k, gradient, x=x))
            draws[label].append(
                jax.device_get(fn(model, encoder, jax.random.fold_in(grads_key, k)))
            )
    out["estimators"] = _summarise(draws, config.num_reps)
    out["num_params"] = {
        g: len(out["estimators"]["IWAE"][g]["snr"][0]) for g in ("encoder", "decoder")
    }
    out["seconds"] = time.perf_counter() - start
    return out


# ---------------------------------------------------------------- the MNIST part


def _mnist_selection(model, per_group: int):
    """Indices of the chosen parameters: encoder output biases of the first latent means and
    scales, decoder output biases of the central pixels."""
    latent = model.config.latent_dim
    n = min(per_group, latent)
    enc = np.concatenate([np.arange(n), latent + np.arange(n)])
    side = int(round(math.sqrt(model.config.data_dim)))
    centre = side // 2 * side + side // 2
    dec = centre - per_group + np.arange(2 * per_group)
    return enc, dec


def _mnist_gradients(config: Config, k: int, gradient: str, model, key, *, x):
    objective = lvm.IWAE(k, gradient=gradient)
    enc_index, dec_index = _mnist_selection(model, config.mnist_params_per_group)

    def one(key):
        g = eqx.filter_grad(lambda m: model_bound(key, m, x, objective))(model)
        return {
            "encoder": g.encoder.layers[-1].bias[enc_index],
            "decoder": g.decoder.layers[-1].bias[dec_index],
        }

    return _repeat(one, key, config.mnist_num_reps, config.mnist_reps_per_batch)


def run_mnist(config: Config, key, *, seed: int, runs_dir) -> dict:
    data = load_data(config.budget)
    model = trained(config.mnist_run, config.budget, data, seed=seed, runs_dir=runs_dir).model
    start = time.perf_counter()
    x = jnp.asarray(data.test[0], jnp.float32)
    out = {"run": config.mnist_run, "num_samples": list(config.mnist_num_samples)}
    draws = {}
    for label, gradient in ESTIMATORS.items():
        draws[label] = []
        for k in config.mnist_num_samples:
            fn = eqx.filter_jit(partial(_mnist_gradients, config, k, gradient, x=x))
            draws[label].append(jax.device_get(fn(model, jax.random.fold_in(key, k))))
            print(f"[mnist] {label} k={k} done ({time.perf_counter() - start:.0f} s)", flush=True)
    out["estimators"] = _summarise(draws, config.mnist_num_reps)
    out["num_params"] = {
        g: len(out["estimators"]["IWAE"][g]["snr"][0]) for g in ("encoder", "decoder")
    }
    out["seconds"] = time.perf_counter() - start
    return out


# ---------------------------------------------------------------- summaries and the figure


def _summarise(draws: dict[str, list[dict]], num_reps: int) -> dict:
    """SNR statistics per estimator, group and k: (K, P) arrays.

    IWAE's and DReG's gradients have the same expectation, the gradient of L_k (both are
    unbiased: tests/test_gradients.py), so IWAE's |E[g]| is estimated from the DReG draws,
    whose spread is 10-100x smaller; without that, IWAE's encoder SNR at large k (below 0.01)
    would sit under the noise floor 1/sqrt(R) of its own mean. Each estimator's own standard
    deviation is the denominator. IWAE-STL is biased and uses its own mean.
    """
    out = {label: {} for label in draws}
    for group in ("encoder", "decoder"):
        for label, per_k in draws.items():
            rows = []
            for j, g in enumerate(per_k):
                g = np.asarray(g[group], np.float64)
                if label == "IWAE":
                    ref = np.asarray(draws["DReG"][j][group], np.float64)
                    mean, mean_se = ref.mean(0), ref.std(0, ddof=1) / math.sqrt(num_reps)
                    rows.append(snr_stats(g, num_reps, mean, mean_se))
                else:
                    rows.append(snr_stats(g, num_reps))
            out[label][group] = {name: np.stack([r[name] for r in rows]) for name in rows[0]}
    return out


def add_slopes(part: dict, min_k: int) -> None:
    """Per parameter, the weighted least-squares slope of log SNR on log k for k >= min_k;
    stores the median, quartiles and the median SNR curve."""
    ks = np.array(part["num_samples"], np.float64)
    use = ks >= min_k
    design = np.stack([np.ones(use.sum()), np.log(ks[use])], 1)
    for groups in part["estimators"].values():
        for g in groups.values():
            g["snr_median"] = np.median(g["snr"], axis=1)
            g["snr_quartiles"] = np.quantile(g["snr"], [0.25, 0.75], axis=1)
            if use.sum() < 2:  # one k (the quick MNIST run): no slope
                g["slope_median"] = None
                continue
            snr, se = np.asarray(g["snr"]), np.asarray(g["snr_se"])
            slopes = []
            for p in range(snr.shape[1]):
                y, w = np.log(snr[use, p]), (snr[use, p] / se[use, p]) ** 2
                coef = np.linalg.solve(design.T @ (w[:, None] * design), design.T @ (w * y))
                slopes.append(coef[1])
            slopes = np.array(slopes)
            g["slopes"] = slopes
            g["slope_median"] = float(np.median(slopes))
            g["slope_quartiles"] = np.quantile(slopes, [0.25, 0.75])


def plot(results: dict):
    parts = [p for p in PARTS if p in results]
    fig, axes = plt.subplots(
        max(len(parts), 1), 2, figsize=(11.5, 4.2 * max(len(parts), 1)), squeeze=False
    )
    titles = {
        "linear": "linear-Gaussian (d = 5, D = 20), all {n} {group} parameters",
        "mnist": "MNIST IWAE k = 50 model, {n} {group} output biases",
    }
    for row, part in zip(axes, parts, strict=False):
        res = results[part]
        ks = np.array(res["num_samples"], np.float64)
        for ax, group in zip(row, ("encoder", "decoder"), strict=True):
            for label, groups in res["estimators"].items():
                g = groups[group]
                med, (lo, hi) = np.asarray(g["snr_median"]), np.asarray(g["snr_quartiles"])
                slope = g.get("slope_median")
                ax.plot(
                    ks,
                    med,
                    "o-",
                    color=COLORS[label],
                    ms=4,
                    label=label if slope is None else f"{label}: slope {slope:+.2f}",
                )
                ax.fill_between(ks, lo, hi, color=COLORS[label], alpha=0.15)
            ref = np.asarray(res["estimators"]["IWAE"][group]["snr_median"])[0]
            for power, style_ in ((-0.5, ":"), (0.5, "--")):
                ax.plot(ks, ref * ks**power, style_, color="gray", lw=1, label=f"∝ k^{power:+.1f}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("number of samples k")
            ax.set_ylabel("SNR = |E[g]| / std(g)  (median over parameters)")
            title = titles[part].format(n=res["num_params"][group], group=group)
            if group == "decoder":
                title += "\n(the same gradient for all three estimators)"
            ax.set_title(title, fontsize=9.5)
            ax.legend(fontsize=8, loc="best")
    if not parts:
        axes[0, 0].text(0.5, 0.5, "no part run", ha="center")
    fig.suptitle(
        "Gradient SNR versus k: IWAE's encoder SNR falls like k^-1/2, DReG's grows "
        "(bands: inter-quartile range over parameters; slopes fitted for k ≥ 10)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def main(argv=None) -> dict:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--parts", default=",".join(PARTS), help="comma-separated: linear,mnist")
    known, rest = pre.parse_known_args(argv)
    parts = [p for p in known.parts.split(",") if p]
    if any(p not in PARTS for p in parts):
        raise SystemExit(f"--parts must be a subset of {PARTS}, got {known.parts!r}")
    args = parse_args(rest, __doc__.splitlines()[0])
    config = Config(budget=args.budget)
    if args.quick:
        config = replace(config.quick(), budget=args.budget)
    style(grid=True)
    linear_key, mnist_key = jax.random.split(jax.random.key(args.seed))

    results = {}
    previous = args.out_dir / f"{NAME}.json"
    if previous.exists() and not args.quick:
        results = {p: v for p, v in json.loads(previous.read_text()).items() if p in PARTS}
    if "linear" in parts:
        results["linear"] = run_linear(config, linear_key)
    if "mnist" in parts:
        results["mnist"] = run_mnist(config, mnist_key, seed=args.seed, runs_dir=args.runs_dir)
    for part in parts:
        add_slopes(results[part], config.slope_min_k)
    save_figure(plot(results), args.out_dir, NAME)
    save_json(args.out_dir, NAME, {**results, "config": config, "seed": args.seed})
    for part in parts:
        for label, groups in results[part]["estimators"].items():
            text = []
            for group, g in groups.items():
                slope = g["slope_median"]
                if slope is not None:
                    low, high = g["slope_quartiles"]
                    text.append(f"{group}: slope {slope:+.2f} (IQR {low:+.2f}..{high:+.2f}),")
                text.append(f"SNR {g['snr_median'][0]:.3g} -> {g['snr_median'][-1]:.3g}")
            print(f"[{part}] {label:9s} " + " ".join(text))
        print(f"[{part}] {results[part]['seconds']:.0f} s")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
