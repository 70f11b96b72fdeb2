r"""Figure: a VAE with a 2-D latent space: the decoded manifold and the encoded test set.

Writes ``paper_figures/vae_latent2d.{png,pdf,json}``.

Claim. With only two latent dimensions the whole generative model can be looked at.
Left: the decoder's pixel probabilities :math:`\sigma(\mathrm{decoder}(z))` over a 20 x 20
grid of z at the prior's quantiles 2.5 % ... 97.5 % in each coordinate
(:math:`z_j = \Phi^{-1}(u_j)`, as in Kingma & Welling, 2014): digits change smoothly
into one another. Right: the posterior means :math:`\mathbb E_q[z \mid x]` of all 10,000
test images. Static binarized MNIST has no labels, so each point is coloured by its
image's ink (the number of pixels on), which the latent space visibly orders; the
dashed square is the extent of the manifold grid, the grey circles the prior's 1- and
2-sigma contours. The encoded set should fill the prior roughly like N(0, I) does,
since the KL term pulls the aggregate posterior towards it.

Model: 784-200-200-(2,2) encoder, 2-200-200-784 decoder, tanh, trained on the ELBO
(k=1), batch 100, Adam 1e-3, 20 epochs (default budget; ``--paper-budget``: 3,280 epochs
with Burda et al.'s schedule). Cached under ``runs/vae`` like the other VAE runs.

Run: ``python experiments/vae_latent2d.py`` (``just figures`` runs it); 85 s on 2 shared CPU
cores from scratch (about 3 s per epoch), seconds once trained. ``--quick``: seconds.
Should hit (seed 0, 20 epochs): test ELBO -143.9 nats per image (two latents carry little
information; the 50-D models reach -124 in 5 epochs), a manifold showing 0, 1, 2, 3, 5, 6,
7, 8 and 9, and corr(ink, E_q[z_1]) = -0.54: the ink count is one direction of the space.
"""

import sys
import time
from dataclasses import dataclass, field

import jax
import matplotlib.pyplot as plt
import numpy as np
from _script import save_figure, save_json, style
from _vae_runs import LABELS, Budget, eval_keys, image_grid, load_data, parse_args, trained
from matplotlib.patches import Circle, Rectangle
from scipy.stats import norm

from lvm import ELBO
from lvm.evaluate import bound

NAME = "vae_latent2d"
RUN = "vae2d_k1"


@dataclass(frozen=True)
class Config:
    budget: Budget = field(default_factory=Budget)
    grid_size: int = 20
    #: prior quantiles at the grid's edges.
    grid_quantile: float = 0.025


@jax.jit
def encode_means(model, x):
    """Posterior means E_q[z | x] and mean posterior std, per image: (N, 2), (N,)."""
    q = jax.vmap(model.encode)(x)
    return q.loc, q.scale.mean(axis=-1)


@jax.jit
def decode_probs(model, z):
    return jax.nn.sigmoid(jax.vmap(model.decode)(z))


def plot(manifold, z_axis, means, ink, config: Config):
    fig, (ax_m, ax_s) = plt.subplots(
        1, 2, figsize=(12.5, 6), gridspec_kw={"width_ratios": (1, 1.12)}
    )
    size = config.grid_size
    # Row 0 of the image is the top: highest z_2 first.
    tiles = manifold.reshape(size, size, 784)[::-1].reshape(-1, 784)
    ax_m.imshow(
        image_grid(tiles, size, pad=0),
        cmap="gray_r",
        vmin=0,
        vmax=1,
        extent=(z_axis[0], z_axis[-1], z_axis[0], z_axis[-1]),
    )
    ax_m.set_xlabel("$z_1$")
    ax_m.set_ylabel("$z_2$")
    ax_m.set_title(f"decoded manifold: p(x|z) means on a {size}x{size} grid of prior quantiles")

    order = np.argsort(ink)
    points = ax_s.scatter(
        means[order, 0], means[order, 1], c=ink[order], s=3, cmap="viridis", alpha=0.7, lw=0
    )
    fig.colorbar(points, ax=ax_s, label="ink: pixels on (of 784)")
    edge = z_axis[-1]
    ax_s.add_patch(
        Rectangle((-edge, -edge), 2 * edge, 2 * edge, fill=False, ls="--", color="k", lw=1)
    )
    for radius in (1, 2):
        ax_s.add_patch(Circle((0, 0), radius, fill=False, color="0.5", lw=0.8))
    limit = max(3.0, float(np.quantile(np.abs(means), 0.995)))
    ax_s.set_xlim(-limit, limit)
    ax_s.set_ylim(-limit, limit)
    ax_s.set_aspect("equal")
    ax_s.set_xlabel("$E_q[z_1 | x]$")
    ax_s.set_ylabel("$E_q[z_2 | x]$")
    ax_s.set_title(f"encoded test set ({len(means):,} images), coloured by ink")
    fig.suptitle(f"{LABELS[RUN]}, binarized MNIST", fontsize=11)
    fig.tight_layout()
    return fig


def main(argv=None) -> dict:
    wall_start = time.perf_counter()
    args = parse_args(argv, __doc__.splitlines()[0])
    budget = args.budget
    config = Config(budget=budget)
    style()
    data = load_data(budget)
    result = trained(RUN, budget, data, seed=args.seed, runs_dir=args.runs_dir)
    model = result.model

    quantiles = np.linspace(config.grid_quantile, 1 - config.grid_quantile, config.grid_size)
    z_axis = norm.ppf(quantiles).astype(np.float32)
    z1, z2 = np.meshgrid(z_axis, z_axis)  # row i: z_2 = z_axis[i]
    grid_z = np.stack([z1.ravel(), z2.ravel()], axis=-1)
    manifold = np.asarray(decode_probs(model, grid_z))

    means, stds = map(np.asarray, encode_means(model, data.test))
    ink = data.test.sum(axis=1)
    test_elbo = bound(eval_keys(args.seed).elbo, model, data.test, ELBO(1))
    correlations = [float(np.corrcoef(ink, means[:, j])[0, 1]) for j in range(2)]

    fig = plot(manifold, z_axis, means, ink, config)
    png = save_figure(fig, args.out_dir, NAME)
    results = {
        "config": config,
        "seed": args.seed,
        "epochs": len(result.history),
        "test_elbo_nats": float(np.mean(test_elbo)),
        "test_elbo_sem_nats": float(np.std(test_elbo, ddof=1) / np.sqrt(len(test_elbo))),
        "validation_bound_history": [h["validation_bound"] for h in result.history],
        "corr_ink_z": correlations,
        "mean_posterior_std": float(stds.mean()),
        "encoded_mean": means.mean(axis=0),
        "encoded_cov": np.cov(means.T),
        "fraction_inside_grid": float(np.mean(np.all(np.abs(means) <= z_axis[-1], axis=1))),
    }
    results["wall_seconds"] = time.perf_counter() - wall_start
    save_json(args.out_dir, NAME, results)
    print(
        f"{LABELS[RUN]}: test ELBO {results['test_elbo_nats']:.2f} nats, "
        f"corr(ink, z) = {correlations[0]:+.2f}, {correlations[1]:+.2f}"
    )
    print(f"wrote {png}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
