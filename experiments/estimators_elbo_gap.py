r"""Figure: the ELBO is log p(x) minus KL(q || p(z|x)), tight exactly at the posterior.

Writes ``paper_figures/estimators_elbo_gap.{png,pdf,json}``.

Claim. For any q,

.. math:: \mathrm{ELBO}(q) = \mathbb E_q[\log p(x,z) - \log q(z)]
          = \log p(x) - \mathrm{KL}(q \,\|\, p(z \mid x))
          = \mathbb E_q[\log p(x,z)] + H(q),

so ELBO <= log p(x) with equality iff q = p(z|x). Shown on two exact models:

* linear-Gaussian (continuous z; d = 5, D = 20, sigma = 0.5): the Gaussians
  :math:`q_t = \mathcal N(t\mu, L_tL_t^\top)`, :math:`L_t = (1-t)I + tL` for t in [0, 1]
  (prior to exact posterior :math:`\mathcal N(\mu, LL^\top)`), then for t > 1 the mean keeps
  moving past :math:`\mu` with the posterior covariance;
* Gaussian mixture (discrete z; K = 3 components in 2-D): :math:`q_t \propto \pi^{1-t}\,
  p(z \mid x)^t`, the prior at t = 0, the posterior at t = 1, over-confident beyond.

The ELBO is estimated by Monte Carlo (``lvm.log_weights``: mean +- 1 standard error over
``num_samples`` draws) and compared with the closed form log p(x) - KL (``lvm.kl_divergence``
for the Gaussians, the exact K-term sum for the mixture). Right: ``lvm.elbo_decomposition``
for four q as stacked bars, E_q[log p(x,z)] then H(q), ending at the ELBO.

Run: ``python experiments/estimators_elbo_gap.py`` (``just figures`` runs it); about 15 s on
2 CPU cores. Should hit: Monte-Carlo ELBO within 3 standard errors of log p(x) - KL at every t,
and at t = 1 ELBO = log p(x) to float64 round-off (|difference| < 1e-10; every log-weight is log p(x)).
"""

import sys
from dataclasses import dataclass, replace
from functools import partial

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from _script import parse_args, save_figure, save_json, style
from _testbeds import categorical_kl

import lvm
from lvm.testing import mixture_testbed

NAME = "estimators_elbo_gap"


@dataclass(frozen=True)
class Config:
    latent_dim: int = 5
    data_dim: int = 20
    noise_std: float = 0.5
    num_t: int = 41
    t_max: float = 1.6
    #: Monte-Carlo samples per ELBO estimate.
    num_samples: int = 4000
    #: The q shown as stacked bars.
    bar_ts: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5)

    def quick(self) -> "Config":
        return replace(self, num_t=9, num_samples=300)


def gaussian_family(model, x, ts):
    r"""Stacked :math:`q_t`: prior at t = 0, exact posterior at t = 1, mean moved past it for t > 1."""
    post = model.posterior(x)
    eye = jnp.eye(model.latent_dim)

    def q_at(t):
        w = jnp.clip(t, 0.0, 1.0)
        return lvm.MultivariateNormal(t * post.loc, (1.0 - w) * eye + w * post.scale_tril)

    return jax.vmap(q_at)(jnp.asarray(ts))


def categorical_family(model, x, ts):
    r"""Stacked :math:`q_t \propto \pi^{1-t} p(z|x)^t` (log-linear path through the posterior)."""
    log_prior, log_post = model.log_mixture_weights, model.log_responsibilities(x)

    def q_at(t):
        return lvm.Categorical(jax.nn.log_softmax((1.0 - t) * log_prior + t * log_post))

    return jax.vmap(q_at)(jnp.asarray(ts))


def elbo_curve(log_joint, x, proposals, key, *, num_samples):
    """Monte-Carlo ELBO and its standard error for each stacked proposal."""
    n = jax.tree.leaves(proposals)[0].shape[0]

    def one(q, k):
        log_w = lvm.log_weights(k, log_joint, q, x, num_samples=num_samples)
        return jnp.mean(log_w), jnp.std(log_w, ddof=1) / jnp.sqrt(num_samples)

    return jax.vmap(one)(proposals, jax.random.split(key, n))


def decompositions(log_joint, x, proposals, key, *, num_samples):
    """``lvm.elbo_decomposition`` for each stacked proposal."""
    n = jax.tree.leaves(proposals)[0].shape[0]

    def one(q, k):
        return lvm.elbo_decomposition(k, log_joint, q, x, num_samples=num_samples)

    return jax.vmap(one)(proposals, jax.random.split(key, n))


@partial(jax.jit, static_argnums=0)
def setup(config: Config, seed):
    """The linear-Gaussian model, its datapoint and the estimation keys (no estimator runs here)."""
    model_key, data_key, lg_key, gmm_key = jax.random.split(jax.random.key(seed), 4)
    lg = lvm.LinearGaussian.random(
        model_key,
        latent_dim=config.latent_dim,
        data_dim=config.data_dim,
        noise_std=config.noise_std,
    )
    _, x_lg = lg.sample(data_key)
    return lg, x_lg, lg_key, gmm_key


def simulate(config: Config, seed: int) -> dict:
    """Both models, all q, in one compiled program (see ``_testbeds.over_repetitions``)."""
    lg, x_lg, lg_key, gmm_key = setup(config, seed)
    return jax.jit(partial(_simulate, config, x_lg=x_lg))(lg, lg_key, gmm_key)


def _simulate(config: Config, lg, lg_key, gmm_key, *, x_lg):
    ts = jnp.linspace(0.0, config.t_max, config.num_t)
    bar_ts = jnp.array(config.bar_ts)
    gmm, x_gmm = mixture_testbed()

    out = {}
    setups = {
        "linear_gaussian": (lg, x_lg, gaussian_family, lvm.kl_divergence, lg_key),
        "mixture": (gmm, x_gmm, categorical_family, categorical_kl, gmm_key),
    }
    for name, (model, x, family, kl_fn, key) in setups.items():
        curve_key, bar_key, post_key = jax.random.split(key, 3)
        post = model.posterior(x)
        qs = family(model, x, ts)
        kl = jax.vmap(lambda q, post=post, kl_fn=kl_fn: kl_fn(q, post))(qs)
        log_px = model.log_marginal(x)
        mc, mc_se = elbo_curve(model.log_joint, x, qs, curve_key, num_samples=config.num_samples)
        terms = decompositions(
            model.log_joint, x, family(model, x, bar_ts), bar_key, num_samples=config.num_samples
        )
        # The exact posterior, given directly: every log-weight equals log p(x).
        at_post = lvm.elbo(post_key, model.log_joint, post, x, num_samples=config.num_samples)
        out[name] = {
            "log_px": log_px,
            "kl": kl,
            "elbo_closed_form": log_px - kl,
            "elbo_mc": mc,
            "elbo_mc_se": mc_se,
            "elbo_at_posterior": at_post,
            "bar_elbo": terms.elbo,
            "bar_expected_log_joint": terms.expected_log_joint,
            "bar_entropy": terms.entropy,
        }
    return out


def run(config: Config, seed: int) -> dict:
    out = jax.tree.map(np.asarray, simulate(config, seed))
    ts = np.linspace(0.0, config.t_max, config.num_t)
    return {"config": config, "seed": seed, "t": ts, "bar_t": np.array(config.bar_ts), **out}


def _curve_panel(ax, res, name, title, t_label):
    r = res[name]
    t = res["t"]
    ax.axhline(r["log_px"], color="k", ls="--", lw=1.2, label="exact log p(x)")
    ax.plot(t, r["elbo_closed_form"], color="tab:blue", lw=2, label="log p(x) − KL(q‖p(z|x))")
    ax.errorbar(
        t,
        r["elbo_mc"],
        yerr=r["elbo_mc_se"],
        fmt="o",
        ms=3,
        color="tab:orange",
        label="ELBO(q), Monte Carlo ± 1 s.e.",
    )
    ax.fill_between(t, r["elbo_closed_form"], r["log_px"], color="tab:blue", alpha=0.12)
    ax.axvline(1.0, color="tab:green", lw=1, alpha=0.8)
    ax.text(
        1.015,
        0.45,
        "q = p(z|x)",
        color="tab:green",
        rotation=90,
        transform=ax.get_xaxis_transform(),
    )
    kl_ax = ax.twinx()
    kl_ax.plot(t, r["kl"], color="tab:purple", lw=1.2, ls=":")
    kl_ax.set_ylabel("KL(q‖p(z|x))  (nats, dotted)", color="tab:purple")
    kl_ax.tick_params(axis="y", colors="tab:purple")
    kl_ax.set_ylim(bottom=0)
    kl_ax.grid(False)
    ax.set_xlabel(t_label)
    ax.set_ylabel("nats")
    ax.set_title(title)
    ax.legend(loc="lower right")


def _bar_panel(ax, res, name, title):
    r = res[name]
    pos = np.arange(len(res["bar_t"]))
    e, h = r["bar_expected_log_joint"], r["bar_entropy"]
    # A waterfall: E_q[log p(x,z)] from 0, then H(q) from there, landing on the ELBO.
    ax.bar(pos - 0.16, e, width=0.3, color="tab:gray", label="E_q[log p(x,z)]")
    ax.bar(pos + 0.16, h, bottom=e, width=0.3, color="tab:cyan", label="+ H(q)")
    ax.hlines(r["bar_elbo"], pos - 0.33, pos + 0.33, color="tab:orange", lw=3, label="= ELBO")
    ax.axhline(r["log_px"], color="k", ls="--", lw=1.2, label="exact log p(x)", zorder=5)
    bottom = 1.08 * min(np.min(e), np.min(e + h))
    ax.set_ylim(bottom, -0.3 * bottom)
    ax.axhline(0.0, color="k", lw=0.8)
    names = {0.0: "prior", 1.0: "posterior"}
    ax.set_xticks(pos, [f"t = {t:g}\n({names.get(t, 'q_t')})" for t in res["bar_t"]])
    ax.set_ylabel("nats")
    ax.set_title(title)
    ax.legend(loc="upper center", ncol=2)


def plot(res: dict):
    fig, axes = plt.subplots(2, 2, figsize=(12.5, 9), gridspec_kw={"width_ratios": [1.6, 1]})
    _curve_panel(
        axes[0, 0],
        res,
        "linear_gaussian",
        "Linear-Gaussian, d = 5: ELBO = log p(x) − KL, equal at t = 1",
        "t  (0: q = prior,  1: q = exact posterior,  >1: mean moved past it)",
    )
    _bar_panel(axes[0, 1], res, "linear_gaussian", "ELBO = E_q[log p(x,z)] + H(q)")
    _curve_panel(
        axes[1, 0],
        res,
        "mixture",
        "Gaussian mixture, K = 3: q_t ∝ π^(1−t) p(z|x)^t",
        "t  (0: q = prior π,  1: q = p(z|x),  >1: over-confident)",
    )
    _bar_panel(axes[1, 1], res, "mixture", "ELBO = E_q[log p(x,z)] + H(q)")
    fig.suptitle("The ELBO gap is KL(q‖p(z|x)): shaded between the ELBO and log p(x)", fontsize=11)
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
        resolved = r["elbo_mc_se"] > 1e-8  # at q = p(z|x) the s.e. is round-off
        z = (r["elbo_mc"] - r["elbo_closed_form"])[resolved] / r["elbo_mc_se"][resolved]
        print(
            f"{name:16s} log p(x)={float(r['log_px']):.4f}  ELBO at posterior - log p(x) = "
            f"{float(r['elbo_at_posterior'] - r['log_px']):.2e}  max |MC - closed|/se = "
            f"{np.max(np.abs(z)):.2f}"
        )
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
