r"""Figure: how far below log p(x) is importance sampling on MNIST? AIS and BDMC against IS.

Writes ``paper_figures/estimators_ais_vs_is.{png,pdf,json}``.

Claim (Wu, Burda, Salakhutdinov & Grosse, ICLR 2017). Importance sampling with the encoder
as proposal, :math:`\log \frac1k \sum_i p(x, z_i)/q(z_i \mid x)`, is a stochastic lower
bound that is only as good as q(z|x); annealed importance sampling (AIS) with HMC
transitions from q(z|x) to p(z|x) is a tighter one, and on data simulated from the model
bidirectional Monte Carlo (BDMC; Grosse, Ghahramani & Adams, 2015) sandwiches the true
log p(x) between a forward AIS lower bound and a reverse AIS upper bound.

For the VAE k=1 and the IWAE k=50 (the runs shared with ``vae_loglik_table.py``), on the
first 100 test images, the top row shows the mean estimate of log p(x) against its cost,
the number of likelihood evaluations per image (log scale):

* the ELBO, estimated with 1,000 samples and drawn at the cost of one;
* IS with k = 1 ... 5,000 samples from q(z|x) (k evaluations of log p(x, z));
* AIS from q(z|x) with T = 100 ... 10,000 temperatures (sigmoidal schedule), 1 chain,
  10 leapfrog steps per HMC transition, step size adapted to 65% acceptance
  (``lvm.ais``): (T - 1) * 10 + 1 evaluations of the gradient of log p(x, z), each counted
  as one evaluation (in floating-point operations a gradient costs about three forward
  passes; the JSON has the measured seconds of every method).

The bottom row does the same on 100 images simulated from each decoder,
:math:`(z, x) \sim p(z)\,p(x \mid z)`, where z is an exact posterior sample: the BDMC lower
(forward AIS) and upper (reverse AIS from z) bounds for T = 100, 1,000, 10,000, beside
IS with k = 5,000. The true mean log p(x) of those images lies between the two lines.
Every error bar is one standard error of the paired difference to IS with k = 5,000 on the
same images (the spread over images, about 1 nat on the mean, is common to all methods and
is in the JSON), so the question the figure answers, "how far below the truth is IS with
k = 5,000?", is read off as the distance from the IS line up to the AIS line (a lower bound
on that distance) and, on simulated data, up to the BDMC upper bound (an upper bound on it).

Run: ``python experiments/estimators_ais_vs_is.py`` (``--quick``: tiny models, about a
minute). Cost: AIS and BDMC take 2 models * 100 images * 10 leapfrog steps * (14,400 +
2 * 11,100 temperatures) = 73 M gradient evaluations of the 784-200-200-50 decoder. The
default run took 17.7 minutes (15.1 min of CPU) on the 2-core CPU with both models already
in ``runs/vae``; training them first adds about 7 minutes (5 epochs).

Should hit (seed 0, 5 epochs; runs retrained 2026-12-08), mean over the images: IS with
k = 5,000 is 0.26 +- 0.08 nats below AIS with T = 10,000 for VAE k=1 and 0.96 +- 0.14 below
it for IWAE k=50 (AIS rises by only 0.02 and 0.01 nats from T = 1,000 to 10,000); on the
simulated images the BDMC gap at T = 10,000 is 0.012 +- 0.009 and -0.005 +- 0.016 nats
(zero within error), and IS sits 0.43-0.44 and 1.19-1.20 nats below the sandwich. (Before
the retraining the IWAE k=50 numbers were 0.82 +- 0.11 and 0.76: that run moves by
round-off amplified in training.)
"""

import sys
import time
from dataclasses import dataclass, field, replace
from functools import partial

import jax
import matplotlib.pyplot as plt
import numpy as np
from _script import save_figure, save_json, style
from _vae_runs import LABELS, Budget, eval_keys, load_data, parse_args, trained

import lvm
from lvm.evaluate import bound, log_px

NAME = "estimators_ais_vs_is"
COLORS = {"elbo": "black", "is": "tab:blue", "ais": "tab:red", "upper": "tab:purple"}


@dataclass(frozen=True)
class Config:
    budget: Budget = field(default_factory=Budget)
    runs: tuple[str, ...] = ("vae_k1", "iwae_k50")
    #: the first test images (TFDS order), and the images simulated from each decoder.
    num_images: int = 100
    num_simulated: int = 100
    elbo_num_samples: int = 1000
    is_num_samples: tuple[int, ...] = (1, 10, 100, 1000, 5000)
    ais_num_steps: tuple[int, ...] = (100, 300, 1000, 3000, 10000)
    bdmc_num_steps: tuple[int, ...] = (100, 1000, 10000)
    num_chains: int = 1
    num_leapfrog_steps: int = 10
    chunk_size: int = 100
    batch_size: int = 100

    def quick(self) -> "Config":
        return replace(
            self,
            num_images=6,
            num_simulated=6,
            elbo_num_samples=50,
            is_num_samples=(1, 10, 50),
            ais_num_steps=(10, 30),
            bdmc_num_steps=(10, 30),
            num_leapfrog_steps=3,
            chunk_size=10,
            batch_size=6,
        )


def ais_cost(config: Config, num_steps: int) -> int:
    """Gradient evaluations of log p(x, z) per image for one AIS run: C ((T - 1) L + 1)."""
    return config.num_chains * ((num_steps - 1) * config.num_leapfrog_steps + 1)


@partial(jax.jit, static_argnames=("num_steps", "num_chains", "num_leapfrog_steps"))
def _bdmc_batch(model, key, xs, zs, index, *, num_steps, num_chains, num_leapfrog_steps):
    def one(i, x, z):
        return lvm.bdmc(
            jax.random.fold_in(key, i),
            model.log_joint,
            model.encode(x),
            x,
            z,
            num_steps=num_steps,
            num_chains=num_chains,
            num_leapfrog_steps=num_leapfrog_steps,
        )[:2]

    return jax.vmap(one)(index, xs, zs)


def bdmc_bounds(key, model, xs, zs, config: Config, num_steps: int):
    """Per-image BDMC (lower, upper) with q(z|x) as the initial distribution; image i uses fold_in(key, i)."""
    lower, upper = [], []
    for start in range(0, len(xs), config.batch_size):
        stop = min(start + config.batch_size, len(xs))
        lo, up = _bdmc_batch(
            model,
            key,
            xs[start:stop],
            zs[start:stop],
            np.arange(start, stop),
            num_steps=num_steps,
            num_chains=config.num_chains,
            num_leapfrog_steps=config.num_leapfrog_steps,
        )
        lower.append(np.asarray(lo, np.float64))
        upper.append(np.asarray(up, np.float64))
    return np.concatenate(lower), np.concatenate(upper)


def summary(values: np.ndarray, reference: np.ndarray) -> dict:
    """Mean and s.e. over images, and the paired difference to ``reference`` (same images)."""
    values = np.asarray(values, np.float64)
    diff = values - reference
    n = len(values)
    return {
        "mean": float(values.mean()),
        "se": float(values.std(ddof=1) / np.sqrt(n)),
        "minus_reference": float(diff.mean()),
        "minus_reference_se": float(diff.std(ddof=1) / np.sqrt(n)),
    }


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run_model(name, model, test_x, key, config: Config) -> dict:
    """Every estimate on the test images and the BDMC sandwich on simulated images."""
    elbo_key, is_key, ais_key, sim_key, bdmc_key = jax.random.split(key, 5)
    k_ref = max(config.is_num_samples)

    def is_values(x, k):
        return log_px(is_key, model, x, lvm.IWAE(k, chunk_size=config.chunk_size),
                      batch_size=config.batch_size)  # fmt: skip

    per_is, seconds = {}, {}
    for k in config.is_num_samples:
        per_is[k], seconds[f"is_{k}"] = _timed(lambda k=k: is_values(test_x, k))
    reference = per_is[k_ref]
    elbo, seconds["elbo"] = _timed(
        lambda: bound(
            elbo_key, model, test_x, lvm.ELBO(config.elbo_num_samples), batch_size=config.batch_size
        )  # fmt: skip
    )
    test = {
        "elbo": {**summary(elbo, reference), "cost": 1},
        "is": [{"num_samples": k, "cost": k, **summary(per_is[k], reference)} for k in per_is],
        "ais": [],
    }
    for t in config.ais_num_steps:
        values, seconds[f"ais_{t}"] = _timed(
            lambda t=t: log_px(
                ais_key,
                model,
                test_x,
                lvm.AIS(t, config.num_chains, config.num_leapfrog_steps),
                batch_size=config.batch_size,
            )  # fmt: skip
        )
        test["ais"].append(
            {"num_steps": t, "cost": ais_cost(config, t), **summary(values, reference)}
        )
        print(f"[{name}] AIS T={t}: {values.mean():.2f} ({seconds[f'ais_{t}']:.0f} s)", flush=True)

    zs, xs = jax.vmap(model.sample)(jax.random.split(sim_key, config.num_simulated))
    xs_np = np.asarray(xs, np.float32)
    sim_reference, seconds["simulated_is"] = _timed(lambda: is_values(xs_np, k_ref))
    simulated = {"is": {"num_samples": k_ref, **summary(sim_reference, sim_reference)}, "bdmc": []}
    for t in config.bdmc_num_steps:
        (lower, upper), seconds[f"bdmc_{t}"] = _timed(
            lambda t=t: bdmc_bounds(bdmc_key, model, xs, zs, config, t)
        )
        gap = upper - lower
        simulated["bdmc"].append(
            {
                "num_steps": t,
                "cost_per_direction": ais_cost(config, t),
                "lower": summary(lower, sim_reference),
                "upper": summary(upper, sim_reference),
                "gap": float(gap.mean()),
                "gap_se": float(gap.std(ddof=1) / np.sqrt(len(gap))),
            }
        )
        print(f"[{name}] BDMC T={t}: [{lower.mean():.2f}, {upper.mean():.2f}] "
              f"({seconds[f'bdmc_{t}']:.0f} s)", flush=True)  # fmt: skip
    best = test["ais"][-1]
    top = simulated["bdmc"][-1]
    return {
        "test": test,
        "simulated": simulated,
        "seconds": seconds,
        # The answer: on test images, IS with k_ref is below the best AIS by this much (a
        # lower bound on its error); on simulated images, the truth is at most `upper` above it.
        "is_below_best_ais": best["minus_reference"],
        "is_below_best_ais_se": best["minus_reference_se"],
        "simulated_is_below_bdmc_lower": top["lower"]["minus_reference"],
        "simulated_is_below_bdmc_upper": top["upper"]["minus_reference"],
    }


def plot(results: dict, config: Config):
    names = list(results)
    fig, axes = plt.subplots(2, len(names), figsize=(5.6 * len(names), 8.4), squeeze=False)
    k_ref = max(config.is_num_samples)
    for j, name in enumerate(names):
        r = results[name]
        ax = axes[0, j]
        elbo = r["test"]["elbo"]
        ax.errorbar([1], [elbo["mean"]], [elbo["minus_reference_se"]], fmt="s",
                    color=COLORS["elbo"], label=f"ELBO ({config.elbo_num_samples:,} samples)")  # fmt: skip
        ks, ts = config.is_num_samples, config.ais_num_steps
        for method, label in (
            ("is", f"IS from q(z|x), k = {min(ks):,} ... {max(ks):,}"),
            ("ais", f"AIS from q(z|x), T = {min(ts):,} ... {max(ts):,}"),
        ):
            rows = r["test"][method]
            ax.errorbar(
                [row["cost"] for row in rows],
                [row["mean"] for row in rows],
                [row["minus_reference_se"] for row in rows],
                fmt="o-",
                color=COLORS[method],
                capsize=3,
                label=label,
            )
        ax.set_title(f"{LABELS[name]}: {config.num_images} test images")
        ax = axes[1, j]
        bdmc = r["simulated"]["bdmc"]
        cost = [row["cost_per_direction"] for row in bdmc]
        for side, label in (
            ("lower", "BDMC lower (forward AIS)"),
            ("upper", "BDMC upper (reverse AIS)"),
        ):
            ax.errorbar(
                cost,
                [row[side]["mean"] for row in bdmc],
                [row[side]["minus_reference_se"] for row in bdmc],
                fmt="o-",
                color=COLORS["ais" if side == "lower" else "upper"],
                capsize=3,
                label=label,
            )
        ax.axhline(r["simulated"]["is"]["mean"], color=COLORS["is"], ls="--",
                   label=f"IS, k = {k_ref:,}")  # fmt: skip
        ax.set_title(f"{LABELS[name]}: {config.num_simulated} images simulated from the decoder")
    for ax in axes.ravel():
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        ax.set_ylabel("mean log p(x) estimate (nats)")
    for ax in axes[1]:
        ax.set_xlabel("likelihood evaluations per image (one AIS gradient = one)")
    fig.suptitle(
        f"AIS vs IS on binarized MNIST (error bars: ±1 s.e. of the paired difference to IS, "
        f"k = {k_ref:,})",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


def main(argv=None) -> dict:
    wall_start = time.perf_counter()
    args = parse_args(argv, __doc__.splitlines()[0])
    budget = args.budget
    config = Config(budget=budget)
    if args.quick:
        config = config.quick()
    style()
    data = load_data(config.budget)
    test_x = data.test[: config.num_images]
    # A branch of the test key that no training draw and no other figure uses.
    model_keys = jax.random.split(eval_keys(args.seed).ais_vs_is, len(config.runs))
    results = {}
    for name, key in zip(config.runs, model_keys, strict=True):
        model = trained(name, config.budget, data, seed=args.seed, runs_dir=args.runs_dir).model
        results[name] = run_model(name, model, test_x, key, config)
    png = save_figure(plot(results, config), args.out_dir, NAME)
    out = {
        "config": config,
        "seed": args.seed,
        "cost_model": (
            "likelihood evaluations per image: IS k -> k evaluations of log p(x, z); ELBO -> 1; "
            "AIS -> num_chains * ((T - 1) * num_leapfrog_steps + 1) evaluations of the gradient "
            "of log p(x, z) (about 3x a forward pass in FLOPs); BDMC -> that, per direction"
        ),
        "results": results,
        "wall_seconds": time.perf_counter() - wall_start,
    }
    save_json(args.out_dir, NAME, out)
    for name, r in results.items():
        print(
            f"{LABELS[name]:>12}: IS k={max(config.is_num_samples):,} is "
            f"{r['is_below_best_ais']:.2f} ± {r['is_below_best_ais_se']:.2f} nats below AIS "
            f"T={max(config.ais_num_steps):,}; on simulated data the truth is "
            f"{r['simulated_is_below_bdmc_lower']:.2f} to {r['simulated_is_below_bdmc_upper']:.2f} "
            "nats above IS",
            flush=True,
        )
    print(f"wrote {png}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
