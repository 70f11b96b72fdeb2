r"""Figure: training and validation bound per epoch of a VAE (k=1) and IWAEs (k=5, 50) on MNIST.

Writes ``paper_figures/vae_learning_curves.{png,pdf,json}``.

Claim. With the same architecture, data and epochs, the IWAE bound
:math:`\mathcal L_k = \mathbb E\big[\log \frac1k \sum_i p(x, z_i)/q(z_i \mid x)\big]`
is tighter than the ELBO (:math:`\mathcal L_1`) and its value rises with k at every epoch,
on the training and on the validation set alike (Burda et al., 2016). Each curve is the
model's own training objective: the mean over an epoch's minibatches while it trains
(so it lags the parameters by half an epoch), and the validation bound of the same
objective on the 10,000 validation images after each epoch. The gap between curves is
partly a tighter bound on the same log p(x), partly a better model; the k = 5,000 table
(``vae_loglik_table.py``) separates the two.

Setup: binarized MNIST (static binarization, TFDS ``binarized_mnist``), 784-200-200-(50,50)
encoder and 50-200-200-784 decoder with tanh, Bernoulli pixels, batch 100, Adam
(1e-3, eps 1e-4), 5 epochs (default budget, see ``_vae_runs.py``); ``--paper-budget``
trains Burda et al.'s 3,280 epochs with their schedule instead, ``--epochs N`` any other.
The runs are shared with ``vae_samples.py`` and ``vae_loglik_table.py`` (trained once,
under ``runs/vae``).

Run: ``python experiments/vae_learning_curves.py`` (``just figures`` runs it). On 2 shared
CPU cores, training the three runs from scratch took 7.8 min (per epoch: VAE k=1 4 s,
IWAE k=5 11 s, IWAE k=50 60 s, each with its validation bound); with the runs already
trained, seconds. ``--quick``: seconds.
Should hit (seed 0, 5 epochs): validation bounds ordered L_1 < L_5 < L_50 at every epoch,
-123.5, -118.0 and -114.0 nats after epoch 5 (runs retrained 2026-12-08; the IWAE k = 50 run
moves by about a nat between retrainings, float32 round-off amplified), all still rising by
about 5 nats per epoch
(far from converged: the paper trains 3,280 epochs).
"""

import sys
import time
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
from _script import save_figure, save_json, style
from _vae_runs import LABELS, RUN_COLORS, Budget, load_data, parse_args, trained
from matplotlib.ticker import MaxNLocator

NAME = "vae_learning_curves"


@dataclass(frozen=True)
class Config:
    budget: Budget = field(default_factory=Budget)
    runs: tuple[str, ...] = ("vae_k1", "iwae_k5", "iwae_k50")


def plot(histories: dict[str, list[dict]], budget: Budget):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for name, history in histories.items():
        epochs = [h["epoch"] for h in history]
        train = [h["train_bound"] for h in history]
        valid = [h["validation_bound"] for h in history]
        axes[0].plot(epochs, train, "o-", color=RUN_COLORS[name], label=LABELS[name], ms=3)
        axes[1].plot(epochs, valid, "o-", color=RUN_COLORS[name], label=LABELS[name], ms=3)
    axes[0].set_title("training bound (mean over the epoch's minibatches)")
    axes[1].set_title(
        f"validation bound ({budget.num_validation or 10_000:,} images, end of epoch)"
    )
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if max(len(h) for h in histories.values()) > 30:
            ax.set_xscale("log")
    axes[0].set_ylabel("bound per image (nats)")
    # The first epoch sits far below the rest: zoom on the later ones.
    later = [
        h[key]
        for hist in histories.values()
        for h in hist[1:]
        for key in ("train_bound", "validation_bound")
    ]
    if later:
        low, high = min(later), max(later)
        axes[0].set_ylim(low - 0.15 * (high - low) - 0.5, high + 0.1 * (high - low) + 0.5)
        axes[0].text(
            0.02,
            0.97,
            "y axis zoomed on epochs >= 2",
            transform=axes[0].transAxes,
            fontsize=8,
            va="top",
        )
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].legend(title="objective (k samples)", loc="lower right")
    fig.suptitle("Binarized MNIST: the model's own bound per epoch (higher is better)", fontsize=11)
    fig.tight_layout()
    return fig


def main(argv=None) -> dict:
    wall_start = time.perf_counter()
    args = parse_args(argv, __doc__.splitlines()[0])
    budget = args.budget
    config = Config(budget=budget)
    style()
    data = load_data(budget)
    histories = {
        name: trained(name, budget, data, seed=args.seed, runs_dir=args.runs_dir).history
        for name in config.runs
    }
    fig = plot(histories, budget)
    png = save_figure(fig, args.out_dir, NAME)
    final = {
        name: {
            "train_bound": history[-1]["train_bound"],
            "validation_bound": history[-1]["validation_bound"],
        }
        for name, history in histories.items()
    }
    results = {
        "config": config,
        "seed": args.seed,
        "epochs": {name: len(h) for name, h in histories.items()},
        "final": final,
        "histories": histories,
        "seconds_per_epoch": {
            name: float(np.median([h["epoch_seconds"] for h in hist]))
            for name, hist in histories.items()
        },
    }
    results["wall_seconds"] = time.perf_counter() - wall_start
    save_json(args.out_dir, NAME, results)
    for name, values in final.items():
        print(
            f"{LABELS[name]:>12}: train {values['train_bound']:.2f}  "
            f"validation {values['validation_bound']:.2f} nats"
        )
    print(f"wrote {png}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
