r"""Figure: the importance-weighted bounds tighten with k, L_1 <= L_5 <= L_50 <= ... <= log p(x).

Writes ``paper_figures/estimators_iwae_bounds.{png,pdf,json}``.

Claim (Burda et al., 2016). For a fixed proposal q,
:math:`\mathcal L_k = \mathbb E[\log \frac1k \sum_{i=1}^k w_i]` is non-decreasing in k,
starts at the ELBO (k = 1) and tends to log p(x). Shown on two exact models, each with two
fixed, deliberately non-optimal proposals:

* linear-Gaussian (d = 5, D = 20, sigma = 0.5): the mean-field Gaussian
  :math:`\mathcal N(\mu, \mathrm{diag}(1/\Lambda_{ii}))` (the best factorised q, Lambda the
  posterior precision) and the over-dispersed :math:`\mathcal N(\mu, 3\Sigma)`;
* Gaussian mixture (K = 3 in 2-D, the one of the ELBO-gap figure): q = the prior pi, and a q
  that puts 90% of its mass on the component that least explains x.

Each :math:`\mathcal L_k` is the mean of ``num_reps`` independent ``lvm.importance_sampling``
estimates (streamed in chunks for large k), +- 1 standard error; the k = 1 star is the
closed-form ELBO log p(x) - KL(q || p(z|x)).

Run: ``python experiments/estimators_iwae_bounds.py`` (``just figures`` runs it); about 1.5 min
(60 s of CPU) on 2 CPU cores. Should hit: every measured L_k at or below log p(x) within 3 standard errors and
non-decreasing in k within 3 standard errors; for the mean-field q the gap falls from
KL = 0.31 nats (L_1 measured 0.28 +- 0.03 below log p(x)) to 0.002 +- 0.002 nats at k = 5000.
"""

import sys
from dataclasses import dataclass, replace
from functools import partial

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from _script import parse_args, save_figure, save_json, style
from _testbeds import categorical_kl, log_k_grid, over_repetitions, stack

import lvm
from lvm.testing import mean_se, mixture_testbed

NAME = "estimators_iwae_bounds"


@dataclass(frozen=True)
class Config:
    latent_dim: int = 5
    data_dim: int = 20
    noise_std: float = 0.5
    over_dispersion: float = 3.0
    #: Mass the "wrong" mixture proposal puts on the component that least explains x.
    wrong_mass: float = 0.9
    num_samples: tuple[int, ...] = tuple(log_k_grid(5000, per_decade=3))
    num_reps: int = 500
    #: proposals x reps x chunk_size particles are live at once: bounds the memory.
    particles_in_memory: int = 250_000

    def quick(self) -> "Config":
        return replace(self, num_samples=(1, 5, 50), num_reps=200)


def make_setups(config: Config, model_key, data_key):
    """The two exact models, their datapoints and two fixed, non-optimal proposals each."""
    lg = lvm.LinearGaussian.random(
        model_key,
        latent_dim=config.latent_dim,
        data_dim=config.data_dim,
        noise_std=config.noise_std,
    )
    _, x_lg = lg.sample(data_key)
    post = lg.posterior(x_lg)
    precision = jnp.linalg.inv(post.covariance)
    mean_field = lvm.MultivariateNormal(post.loc, jnp.diag(1.0 / jnp.sqrt(jnp.diag(precision))))
    wide = lvm.MultivariateNormal(post.loc, jnp.sqrt(config.over_dispersion) * post.scale_tril)

    gmm, x_gmm = mixture_testbed()
    resp = gmm.responsibilities(x_gmm)
    k = gmm.num_components
    worst = jnp.argmin(resp)
    probs = jnp.full(k, (1.0 - config.wrong_mass) / (k - 1)).at[worst].set(config.wrong_mass)
    wrong = lvm.Categorical(jnp.log(probs))
    return {
        "linear_gaussian": (lg, x_lg, stack([mean_field, wide])),
        "mixture": (gmm, x_gmm, stack([gmm.prior(), wrong])),
    }


KL = {"linear_gaussian": lvm.kl_divergence, "mixture": categorical_kl}


LABELS = {
    "linear_gaussian": ["mean-field q = N(μ, diag(1/Λ_ii))", "q = N(μ, {over_dispersion:g}Σ)"],
    "mixture": ["q = prior π", "q = {wrong_mass:.0%} on the least responsible component"],
}


@partial(jax.jit, static_argnums=0)
def setup(config: Config, seed):
    """Models, datapoints, proposals and the estimation key (no estimator runs here)."""
    model_key, data_key, est_key = jax.random.split(jax.random.key(seed), 3)
    return make_setups(config, model_key, data_key), est_key


def _exact(name: str, model, proposals, *, x):
    post = model.posterior(x)
    log_px = model.log_marginal(x)
    kl = jax.vmap(lambda q: KL[name](q, post))(proposals)
    return {"log_px": log_px, "elbo_closed_form": log_px - kl}


def _estimates(config: Config, k: int, model, proposals, key, *, x):
    """``num_reps`` independent log p̂_k(x) for every stacked proposal: (P, R)."""
    num_p = jax.tree.leaves(proposals)[0].shape[0]
    chunk = max(1, config.particles_in_memory // (num_p * config.num_reps))

    def estimate(key, q):
        return lvm.importance_sampling(
            key, model.log_joint, q, x, num_samples=k, chunk_size=chunk if chunk < k else None
        )

    return over_repetitions(estimate, key, proposals, num_reps=config.num_reps)


def simulate(config: Config, seed: int) -> dict:
    """One small compiled program per (model, k) (see ``_testbeds.over_repetitions``)."""
    setups, est_key = setup(config, seed)
    out = {}
    for m, (name, (model, x, proposals)) in enumerate(setups.items()):
        out[name] = jax.jit(partial(_exact, name, x=x))(model, proposals)
        keys = [jax.random.fold_in(jax.random.fold_in(est_key, m), k) for k in config.num_samples]
        out[name]["log_p_hat"] = jnp.stack(
            [
                jax.jit(partial(_estimates, config, k, x=x))(model, proposals, key)
                for k, key in zip(config.num_samples, keys, strict=True)
            ],
            axis=1,
        )  # (P, len(ks), R)
    return out


def run(config: Config, seed: int) -> dict:
    sim = jax.tree.map(np.asarray, simulate(config, seed))
    out = {"config": config, "seed": seed, "num_samples": list(config.num_samples)}
    for name, r in sim.items():
        bound, bound_se = mean_se(r["log_p_hat"].astype(np.float64))
        labels = [
            label.format(over_dispersion=config.over_dispersion, wrong_mass=config.wrong_mass)
            for label in LABELS[name]
        ]
        out[name] = {
            "labels": labels,
            "log_px": float(r["log_px"]),
            "elbo_closed_form": r["elbo_closed_form"],
            "bound": bound,
            "bound_se": bound_se,
        }
    return out


def _panel(ax, res, name, title):
    r = res[name]
    ks = np.array(res["num_samples"], np.float64)
    colors = ["tab:blue", "tab:orange"]
    ax.axhline(r["log_px"], color="k", ls="--", lw=1.2, label="exact log p(x)")
    for i, label in enumerate(r["labels"]):
        c = colors[i]
        ax.errorbar(
            ks,
            r["bound"][i],
            yerr=r["bound_se"][i],
            fmt="o-",
            ms=4,
            capsize=2,
            color=c,
            label=label,
        )
        ax.plot(1, r["elbo_closed_form"][i], "*", ms=14, color=c, mec="k", mew=0.6)
    ax.plot([], [], "k*", ms=10, label="k = 1: exact ELBO = log p(x) − KL(q‖p(z|x))")
    ax.set_xscale("log")
    ax.set_xlabel("number of samples k")
    ax.set_ylabel("L_k = E[log p̂_k(x)]  (nats)")
    ax.set_title(title)
    ax.legend(loc="lower right")


def plot(res: dict):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    _panel(axes[0], res, "linear_gaussian", "Linear-Gaussian model, d = 5")
    _panel(axes[1], res, "mixture", "Gaussian mixture, K = 3 (discrete z)")
    fig.suptitle(
        f"IWAE bounds tighten with k for a fixed q: L_1 ≤ L_5 ≤ L_50 ≤ … ≤ log p(x)  "
        f"(mean ± 1 s.e. over {res['config'].num_reps} repetitions)",
        fontsize=10.5,
    )
    fig.tight_layout()
    return fig


def main(argv=None) -> dict:
    args = parse_args(argv, __doc__.splitlines()[0])
    config = Config().quick() if args.quick else Config()
    style(grid=True)
    with jax.enable_x64(True):
        res = run(config, args.seed)
    save_figure(plot(res), args.out_dir, NAME)
    save_json(args.out_dir, NAME, res)
    for name in ("linear_gaussian", "mixture"):
        r = res[name]
        for i, label in enumerate(r["labels"]):
            gaps = r["log_px"] - r["bound"][i]
            print(f"{name:16s} {label:45s} gap log p - L_k: " + " ".join(f"{g:.3g}" for g in gaps))
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
