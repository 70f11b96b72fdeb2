r"""Figure: importance sampling in a 2-D latent space, where the prior's samples land vs where the mass is.

Writes ``paper_figures/estimators_is_picture.{png,pdf,json}``.

Claim. For a datapoint whose posterior p(z|x) sits away from the bulk of the prior, almost
every z drawn from the prior lands where p(x|z) is negligible, so one or two importance
weights carry the whole estimate (effective sample size ~1-3 of 300). Samples from a proposal
close to the posterior (:math:`q = \mathcal N(\mu, 2\Sigma)`) spread the weight evenly
(ESS in the hundreds). Model: linear-Gaussian with d = 2 latents, D = 6 observations,
sigma = 0.5; x is generated from the latent z† = (2.0, -1.6). Panels: the exact posterior
(green contours) and the prior (grey), the samples (``lvm.sample_n``) with marker area and
colour showing their normalised weights :math:`w_i / \sum_j w_j` (``lvm.log_weights``; sample i
uses the same split key in both, so position and weight belong together), and the sorted
normalised weights of both samplers. ESS is Kish's (``lvm.effective_sample_size``).

Run: ``python experiments/estimators_is_picture.py`` (``just figures`` runs it); about 10 s on
2 CPU cores. Should hit: ESS of the prior's samples below 5% of that of q's samples, and the
estimate log p̂(x) from q within 0.1 nats of the exact log p(x).
"""

import sys
from dataclasses import dataclass, replace
from functools import partial

import jax
import jax.numpy as jnp
import matplotlib.colors
import matplotlib.pyplot as plt
import numpy as np
from _script import parse_args, save_figure, save_json, style
from _testbeds import COLORS

import lvm

NAME = "estimators_is_picture"
GRID_LIMIT = 3.2


@dataclass(frozen=True)
class Config:
    data_dim: int = 6
    noise_std: float = 0.5
    z_dagger: tuple[float, float] = (2.0, -1.6)
    proposal_scale_sq: float = 2.0
    num_samples: int = 300
    grid_size: int = 200

    def quick(self) -> "Config":
        return replace(self, num_samples=100, grid_size=60)


@partial(jax.jit, static_argnums=0)
def setup(config: Config, seed):
    """The d = 2 model, the datapoint x and the sampling keys (no estimator runs here)."""
    model_key, noise_key, prior_key, q_key = jax.random.split(jax.random.key(seed), 4)
    model = lvm.LinearGaussian.random(
        model_key, latent_dim=2, data_dim=config.data_dim, noise_std=config.noise_std
    )
    z_dagger = jnp.array(config.z_dagger)
    noise = config.noise_std * jax.random.normal(noise_key, (config.data_dim,))
    x = model.weight @ z_dagger + model.bias + noise
    return model, x, prior_key, q_key


def simulate(config: Config, seed: int) -> dict:
    """One compiled program (see ``_testbeds.over_repetitions``)."""
    model, x, prior_key, q_key = setup(config, seed)
    return jax.jit(partial(_simulate, config, x=x))(model, prior_key, q_key)


def _simulate(config: Config, model, prior_key, q_key, *, x):
    """Both samplers' particles and weights, and the density grids."""
    post = model.posterior(x)
    q = lvm.MultivariateNormal(post.loc, jnp.sqrt(config.proposal_scale_sq) * post.scale_tril)

    out = {"log_px": model.log_marginal(x), "posterior_mean": post.loc}
    for name, dist, key in (("prior", model.prior(), prior_key), ("proposal", q, q_key)):
        n = config.num_samples
        z = lvm.sample_n(key, dist, n)
        log_w = lvm.log_weights(key, model.log_joint, dist, x, num_samples=n)
        out[name] = {
            "z": z,
            "log_w": log_w,
            # The same particles scored directly: checks that z and log_w belong together.
            "log_w_direct": jax.vmap(lambda zi, d=dist: model.log_joint(x, zi) - d.log_prob(zi))(z),
            "normalised_w": jax.nn.softmax(log_w),
            "ess": lvm.effective_sample_size(log_w),
            "log_p_hat": lvm.importance_sampling(key, model.log_joint, dist, x, num_samples=n),
        }

    g = jnp.linspace(-GRID_LIMIT, GRID_LIMIT, config.grid_size)
    zz = jnp.stack(jnp.meshgrid(g, g), axis=-1).reshape(-1, 2)
    out["grid"] = g
    for name, dist in (("posterior", post), ("prior", model.prior()), ("q", q)):
        out[f"log_{name}_grid"] = jax.vmap(dist.log_prob)(zz).reshape(g.size, g.size)
    return out


def run(config: Config, seed: int) -> dict:
    out = jax.tree.map(np.asarray, simulate(config, seed))
    for name in ("prior", "proposal"):
        r = out[name]
        if not np.allclose(r.pop("log_w_direct"), r["log_w"]):
            raise AssertionError("lvm.sample_n and lvm.log_weights must draw the same particles")
    return {"config": config, "seed": seed, **out}


def _scatter_panel(ax, res, name, title, cmap, norm):
    g = res["grid"]
    ax.contour(g, g, np.exp(res["log_prior_grid"]), levels=5, colors="0.6", linewidths=0.8)
    post = np.exp(res["log_posterior_grid"])
    ax.contour(
        g, g, post, levels=np.max(post) * np.array([0.05, 0.3, 0.7]), colors=COLORS["posterior"]
    )
    if name == "proposal":
        q = np.exp(res["log_q_grid"])
        levels = np.max(q) * np.array([0.05, 0.3, 0.7])
        ax.contour(
            g, g, q, levels=levels, colors=COLORS["proposal"], linestyles="--", linewidths=0.8
        )
    r = res[name]
    w = r["normalised_w"]
    order = np.argsort(w)  # heaviest drawn last, on top
    z = r["z"][order]
    ax.scatter(
        z[:, 0],
        z[:, 1],
        s=3 + 800 * w[order],
        c=np.maximum(w[order], norm.vmin),
        cmap=cmap,
        norm=norm,
        edgecolors="k",
        linewidths=0.3,
        alpha=0.85,
    )
    ax.plot(*res["posterior_mean"], "+", color=COLORS["posterior"], ms=12, mew=2)
    ax.set_aspect("equal")
    ax.set_xlim(g[0], g[-1])
    ax.set_ylim(g[0], g[-1])
    ax.set_xlabel("z₁")
    ax.set_ylabel("z₂")
    n = len(w)
    ax.set_title(
        f"{title}\nESS = {float(r['ess']):.1f} of {n},  log p̂(x) = {float(r['log_p_hat']):.2f} nats"
    )


def plot(res: dict):
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.4), gridspec_kw={"width_ratios": [1, 1, 0.9]})
    cmap = plt.get_cmap("viridis")
    norm = matplotlib.colors.LogNorm(vmin=1e-6, vmax=1.0)
    _scatter_panel(axes[0], res, "prior", "z ~ p(z): naive Monte Carlo", cmap, norm)
    _scatter_panel(
        axes[1], res, "proposal", "z ~ q = N(μ, 2Σ) (dashed): importance sampling", cmap, norm
    )
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(
        sm,
        ax=axes[:2],
        shrink=0.85,
        label="normalised weight w_i / Σ_j w_j  (marker area ∝ weight)",
    )
    ax = axes[2]
    for name, label in (("prior", "z ~ p(z)"), ("proposal", "z ~ q")):
        w = np.sort(res[name]["normalised_w"])[::-1]
        ax.plot(np.arange(1, len(w) + 1), w, "o-", ms=2.5, color=COLORS[name], label=label)
    ax.axhline(1.0 / len(w), color="k", ls=":", lw=1, label="equal weights 1/n")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(1e-12, 2)
    ax.set_xlabel("rank of the sample (heaviest first)")
    ax.set_ylabel("normalised weight")
    ax.set_title("Sorted weights: a few prior samples carry the estimate")
    ax.legend(loc="lower left")
    axes[0].plot([], [], color="0.6", label="prior p(z)")
    axes[0].plot([], [], color=COLORS["posterior"], label="posterior p(z|x)")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(
        "Where the samples go vs where the posterior mass is (linear-Gaussian, d = 2; "
        f"exact log p(x) = {float(res['log_px']):.2f} nats)",
        fontsize=11,
    )
    return fig


def main(argv=None) -> dict:
    args = parse_args(argv, __doc__.splitlines()[0])
    config = Config().quick() if args.quick else Config()
    style(grid=True)
    with jax.enable_x64(True):
        res = run(config, args.seed)
    save_figure(plot(res), args.out_dir, NAME)
    # The density grids are a plotting aid recomputable from the model: keep them out of the JSON.
    save_json(args.out_dir, NAME, {k: v for k, v in res.items() if not k.endswith("_grid")})
    for name in ("prior", "proposal"):
        r = res[name]
        print(
            f"{name:9s} ESS={float(r['ess']):7.2f}/{config.num_samples}  log p_hat="
            f"{float(r['log_p_hat']):.3f}  exact={float(res['log_px']):.3f}  "
            f"max weight={float(np.max(r['normalised_w'])):.3f}"
        )
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
