r"""Table and figure: test log p(x) (k = 5,000) and active units of VAEs and IWAEs on MNIST.

Writes ``paper_figures/vae_loglik_table.{png,pdf,json,md}`` (the JSON also holds every
test image's log p(x) estimate per model).

Claim (Burda et al., 2016, Table 1). Trained with the same architecture, data and epochs,
the IWAE bound gives better test log-likelihoods than the ELBO, increasingly so with k,
and uses more latent dimensions; averaging the ELBO over k samples (VAE k) helps little.
For each of VAE k=1, VAE k=5, VAE k=50 (the ELBO averaged over k samples) and IWAE k=5,
k=50 (the bound L_k), this reports

* test log p(x): importance sampling with q(z|x) as proposal and k = 5,000 samples,
  :math:`\log \frac{1}{k} \sum_i p(x, z_i) / q(z_i \mid x)`, streamed in chunks of 100
  (``lvm.evaluate.log_px``; memory does not grow with k), averaged over the first 1,000
  images of the test split (default budget; ``--num-test 0`` or ``--paper-budget``: all
  10,000), with the standard error over images and, since every model sees the same
  images, the paired difference to VAE k=1 with its standard error;
* test log p(x) by annealed importance sampling (``lvm.evaluate.log_px(key, model, x, lvm.AIS(T))``:
  AIS from q(z|x) to p(z|x) over T = 1,000 temperatures of a sigmoidal schedule, 1 chain,
  10 leapfrog steps per HMC transition; Wu et al., 2017) on the first 100 test images,
  beside IS with k = 5,000 on the same 100 images and their paired difference. AIS costs
  (T - 1) * 10 + 1 = 9,991 gradient evaluations of log p(x, z) per image (a gradient is
  about three forward passes) against IS's 5,000 forward evaluations, about 6x the compute;
* the test ELBO (k=1) on all 10,000 test images;
* active units on all test images: latent dimensions u with
  :math:`\mathrm{Cov}_x(\mathbb E_{q(z \mid x)}[z_u]) > 10^{-2}`.

One row trains the ELBO (k=1) with an IAF q(z|x) (``VAEConfig(posterior="iaf")``, run
``vae_iaf_k1``): its AIS starts from the diagonal Gaussian with the mean and standard
deviations of 1,000 draws of q(z|x) (AIS from the flow itself would invert it at every HMC
step), and its active units use the mean of 1,000 draws per image.

Three rows change the model instead of the objective, with the same budget: the VAE (k=1)
with a VampPrior, p(z) the mean of the encoder's q(z|u_k) at K = 500 learned pseudo-inputs
initialised from the first 500 training images (Tomczak & Welling, 2018;
``VAEConfig(prior="vamp")``), and Burda et al.'s two stochastic layers (latents 100 and 50,
``lvm.TwoLayerVAE``) trained as a VAE (k=1) and as an IWAE (k=5). The two-layer rows' active
units are counted per layer, "z1+z2" (Burda et al.'s convention), reading the plug-in mean of
q (``TwoLayerPosterior.loc``).

Two more rows train the IWAE k=5 and k=50 bounds with DReG, the doubly reparameterized
encoder gradient (Tucker et al., 2019; ``IWAE(k, gradient="dreg")``): same objective, same
budget; each is reported with its paired difference against the plain IWAE of the same k on
the same test images.

Three rows train a model with 200 binary latents (``lvm.BernoulliVAE``, the "nonlinear"
MNIST model of the REBAR and RELAX papers: 784-200-200-200 tanh each way, learned prior
logits), which has no pathwise gradient: NVIL (``ELBO(1, gradient="reinforce",
baseline="learned", normalize=True)``, an input-dependent baseline network of 100 tanh
units), VIMCO (``IWAE(5, gradient="vimco")``) and the biased Concrete relaxation
(``ELBO(1, gradient="concrete", temperature=2/3)``), same budget and data. Their test
log p(x) is the same IS k = 5,000 estimate (q(z|x) is a product of Bernoullis); they have
no AIS column (HMC needs a continuous z) and no active units (no posterior mean ``loc``).
The published numbers for this model (Grathwohl et al., 2018) are training ELBOs, so they
go in a note under the table beside our training ELBO (k = 1, every training image), not
in the published log p(x) column.

The markdown table puts the published numbers beside ours. They are NOT like for like:
Burda et al. trained 3,280 epochs on MNIST re-binarized at random for every minibatch
(dynamic binarization, which acts as data augmentation and scores better), while this
uses the fixed (static) binarization of Larochelle & Murray (TFDS ``binarized_mnist``)
and, by default, 5 epochs.

Models: the runs shared with ``vae_learning_curves.py`` and ``vae_samples.py``
(784-200-200-50, tanh, batch 100, Adam 1e-3, 5 epochs; see ``_vae_runs.py``).

Run: ``python experiments/vae_loglik_table.py`` (``just figures`` runs it). With all 14
runs in ``runs/vae`` it took 20.7 minutes on the 2-core CPU (2026-12-08, a quiet box for
most of it): the k = 5,000 evaluations 19-36 s per 50-D model on 1,000 images, 62-85 s for
the binary-latent and IAF models, 127 s for the VampPrior's (500 encodings per prior
evaluation), and the AIS column (100 x 9,991 = 1 M gradient evaluations per model) 11-29 s
per model, 130 s for the VampPrior. Training the seven 50-D models from scratch took 79
minutes with other jobs on the machine (load 12-19; the k = 50 models 150-690 s per epoch
there). ``--quick``: seconds.
Should hit (seed 0, 5 epochs): log p(x) of -118.1 (VAE k=1), -115.0 (VAE k=5), -115.1
(VAE k=50), -113.2 (IWAE k=5), -109.8 (IWAE k=50), -111.1 (IWAE k=5, DReG) and -107.5 nats
(IWAE k=50, DReG), +- 1.0 over images; paired with VAE k=1, IWAE k=50 is better by
8.3 +- 0.3 nats; DReG beats plain IWAE by 2.15 +- 0.13 (k=5) and 2.33 +- 0.13 nats (k=50);
AIS (T = 1,000) lies 0.14-0.90 nats above IS on the first 100 images; the IAF-q VAE: -113.5. The new rows (trained
alone, evaluated as here): -206.1 (VampPrior: collapsed onto its prior, 0 active units; see the
README), -158.7 (VAE, 2 layers, 53+0 active units) and -122.4 nats (IWAE k=5, 2 layers, 98+1). Far from the
published -86.8 to -84.8: 5 epochs instead of 3,280, and static instead of dynamic
binarization. The binary-latent rows (seed 0, 5 epochs): log p(x) -166.6 (NVIL), -180.5
(VIMCO k=5), -189.9 (Concrete), +- 1.4; training ELBO -178.0, -201.1, -196.4, against the
published training ELBOs -101.5 (NVIL) and -102.2 (Concrete): all three spend their first
epochs on a plateau near the independent-pixel model's -206 nats.
"""

import sys
import time
from dataclasses import dataclass, field, replace

import equinox as eqx
import jax
import matplotlib.pyplot as plt
import numpy as np
from _script import save_figure, save_json, style
from _vae_runs import (
    DISCRETE_RUNS,
    LABELS,
    PAIRED_WITH,
    PUBLISHED,
    PUBLISHED_SOURCE,
    PUBLISHED_TRAIN_ELBO,
    PUBLISHED_TRAIN_ELBO_ROW,
    PUBLISHED_TRAIN_ELBO_SOURCE,
    RUN_COLORS,
    RUNS,
    Budget,
    MomentMatchedQ,
    eval_keys,
    load_data,
    parse_args,
    trained,
)

from lvm import AIS, ELBO, IWAE
from lvm.evaluate import active_units, bound, log_px

NAME = "vae_loglik_table"


@dataclass(frozen=True)
class Config:
    budget: Budget = field(default_factory=Budget)
    runs: tuple[str, ...] = tuple(RUNS)
    #: the AIS column: the first ``ais_num_test`` test images (IS is read off the same ones).
    ais_num_test: int = 100
    ais_num_steps: int = 1000
    ais_num_chains: int = 1
    ais_num_leapfrog_steps: int = 10

    def quick(self) -> "Config":
        return replace(self, ais_num_test=10, ais_num_steps=10, ais_num_leapfrog_steps=3)

    @property
    def ais_cost(self) -> int:
        """Gradient evaluations of log p(x, z) per image: C ((T - 1) L + 1)."""
        return self.ais_num_chains * ((self.ais_num_steps - 1) * self.ais_num_leapfrog_steps + 1)


def _sem(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1) / np.sqrt(len(values)))


def _has_posterior_mean(model, x) -> bool:
    """Whether q(z|x) has its mean as ``loc`` (the Gaussians); a flow q has none, and its
    Monte-Carlo moments (``MomentMatchedQ``) stand in for it."""
    q = eqx.filter_eval_shape(model.encode, x[0])
    return isinstance(getattr(q, "loc", None), jax.ShapeDtypeStruct)


def _pm(value, sem, sign: str = "") -> str:
    return "—" if value is None else f"{value:{sign}.2f} ± {sem:.2f}"


def markdown(rows: dict, budget: Budget, num_test: int, config: Config) -> str:
    num_ais = min(config.ais_num_test, num_test)
    lines = [
        f"| model | objective | epochs | test log p(x), k={budget.eval_num_samples:,} "
        f"({num_test:,} images) | vs VAE k=1 (paired) "
        f"| IS k={budget.eval_num_samples:,} ({num_ais:,} images) "
        f"| AIS T={config.ais_num_steps:,} ({num_ais:,} images) | AIS − IS (paired) "
        "| test ELBO | active units | published log p(x) | published active units |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        paper_ll, paper_au = PUBLISHED[name]
        diff = (
            "—"
            if name == "vae_k1"
            else f"{row['log_px_minus_vae_k1']:+.2f} ± {row['log_px_minus_vae_k1_sem']:.2f}"
        )
        paper_ll = "—" if paper_ll is None else f"{paper_ll:.2f}"
        paper_au = "—" if paper_au is None else paper_au
        units = "—" if row["active_units"] is None else row["active_units"]
        if row.get("active_units_by_layer"):
            units = "+".join(str(u) for u in row["active_units_by_layer"])
        lines.append(
            f"| {LABELS[name]} | {row['objective']} | {row['epochs']} "
            f"| {row['log_px']:.2f} ± {row['log_px_sem']:.2f} | {diff} "
            f"| {row['is_subset_log_px']:.2f} ± {row['is_subset_log_px_sem']:.2f} "
            f"| {_pm(row['ais_log_px'], row['ais_log_px_sem'])} "
            f"| {_pm(row['ais_minus_is'], row['ais_minus_is_sem'], '+')} "
            f"| {row['elbo']:.2f} | {units} | {paper_ll} | {paper_au} |"
        )
    lines += [
        "",
        "Ours: static binarization (TFDS `binarized_mnist`), "
        f"{budget.num_epochs:,} epochs, nats per image, ± one standard error over images. "
        f"AIS: from q(z|x), {config.ais_num_steps:,} temperatures (sigmoidal), "
        f"{config.ais_num_chains} chain(s), {config.ais_num_leapfrog_steps} leapfrog steps per "
        f"HMC transition: {config.ais_cost:,} gradient evaluations of log p(x, z) per image, "
        f"against {budget.eval_num_samples:,} evaluations for IS. "
        f"Published: {PUBLISHED_SOURCE}.",
    ]
    discrete = [n for n in rows if n in DISCRETE_RUNS]
    if discrete:
        lines += [
            "",
            "Binary latents (`lvm.BernoulliVAE`: 200 Bernoulli latents with learned prior "
            "logits, 784-200-200-200 tanh each way): no AIS (its HMC transitions need a "
            "continuous z) and no active units (they are defined by the posterior mean of a "
            "Gaussian q), hence —. Their published numbers are TRAINING ELBOs, not test "
            f"log p(x): {PUBLISHED_TRAIN_ELBO_SOURCE}: "
            + ", ".join(f"{k} {v}" for k, v in PUBLISHED_TRAIN_ELBO.items())
            + f". Ours after {budget.num_epochs:,} epochs, the ELBO (k = 1) of the final model "
            "on every training image, and the mean training bound (the run's own objective) "
            "over the last epoch's minibatches:",
            "",
        ]
        for n in discrete:
            row = rows[n]
            published = PUBLISHED_TRAIN_ELBO_ROW.get(n)
            published = (
                f"published {PUBLISHED_TRAIN_ELBO[published]} ({published})"
                if published
                else "no published row for this estimator"
            )
            lines.append(
                f"- {LABELS[n]}: training ELBO {row['train_elbo']:.2f} ± "
                f"{row['train_elbo_sem']:.2f}; last epoch's training bound "
                f"{row['last_epoch_train_bound']:.2f}; {published}"
            )
    paired = [(n, rows[n]) for n in rows if n in PAIRED_WITH and "paired_with" in rows[n]]
    if paired:
        lines += ["", "DReG against plain IWAE of the same k, paired on the same test images:", ""]
        lines += [
            f"- {LABELS[n]} − {LABELS[row['paired_with']]}: log p(x) "
            f"{row['log_px_minus_paired']:+.2f} ± {row['log_px_minus_paired_sem']:.2f} nats"
            for n, row in paired
        ]
    return "\n".join(lines) + "\n"


def plot(rows: dict, num_test: int, budget: Budget):
    names = list(rows)
    # One panel above the other, each as wide as its rows need.
    width = max(8.0, 0.85 * len(names))
    fig, (ax_ll, ax_au) = plt.subplots(2, 1, figsize=(width, 9.0), gridspec_kw={"hspace": 0.9})
    x = np.arange(len(names))
    nll = np.array([-rows[n]["log_px"] for n in names])
    sem = np.array([rows[n]["log_px_sem"] for n in names])
    paper_nll = np.array([np.nan if PUBLISHED[n][0] is None else -PUBLISHED[n][0] for n in names])
    colors = [RUN_COLORS[n] for n in names]
    ax_ll.bar(x, nll, yerr=sem, color=colors, capsize=3, label="this repo (static binarization)")
    ax_ll.plot(
        x, paper_nll, "k_", ms=22, mew=2, label="Burda et al. (dynamic binarization, 3,280 ep.)"
    )
    low = min(nll.min(), np.nanmin(paper_nll))
    high = max(nll.max(), np.nanmax(paper_nll))
    ax_ll.set_ylim(np.floor(low - 0.6 * (high - low) - 1), np.ceil(high + 0.15 * (high - low) + 1))
    ax_ll.set_ylabel("test $-\\log p(x)$ (nats, lower is better)")
    ax_ll.set_title(
        f"test NLL, k={budget.eval_num_samples:,} importance samples, {num_test:,} images\n"
        "(y axis does not start at 0; error bars: ±1 s.e. over images)"
    )
    ax_ll.legend(loc="upper right", fontsize=8)

    units = [np.nan if rows[n]["active_units"] is None else rows[n]["active_units"] for n in names]
    paper_units = [np.nan if PUBLISHED[n][1] is None else PUBLISHED[n][1] for n in names]
    ax_au.bar(x, units, color=colors)
    ax_au.plot(x, paper_units, "k_", ms=22, mew=2, label="Burda et al.")
    ax_au.set_ylabel(f"active units (of {budget.latent_dim}; two layers: of 150)")
    ax_au.set_title("active latent units: $\\mathrm{Cov}_x(E_q[z_u]) > 0.01$")
    ax_au.legend(loc="upper left", fontsize=8)
    for ax in (ax_ll, ax_au):
        ax.set_xticks(x, [LABELS[n] for n in names], rotation=35, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        f"VAEs and IWAEs on binarized MNIST after {budget.num_epochs:,} epochs", fontsize=11, y=0.97
    )
    return fig


def main(argv=None) -> dict:
    wall_start = time.perf_counter()
    args = parse_args(argv, __doc__.splitlines()[0])
    budget = args.budget
    config = Config(budget=budget)
    if args.quick:
        config = config.quick()
    style()
    data = load_data(budget)
    test_subset = data.test[: budget.num_test]
    keys = eval_keys(args.seed)  # not the keys the models were trained with
    ais_subset = test_subset[: config.ais_num_test]

    per_image, ais_per_image, rows = {}, {}, {}
    for name in config.runs:
        result = trained(name, budget, data, seed=args.seed, runs_dir=args.runs_dir)
        start = time.perf_counter()
        values = log_px(
            keys.log_px,
            result.model,
            test_subset,
            IWAE(budget.eval_num_samples, chunk_size=budget.eval_chunk_size),
        )
        seconds = time.perf_counter() - start
        is_subset = np.asarray(values, np.float64)[: len(ais_subset)]  # same images, same draws
        ais = {"ais_log_px": None, "ais_log_px_sem": None, "ais_minus_is": None}
        ais |= {"ais_minus_is_sem": None, "ais_seconds": None}
        if name not in DISCRETE_RUNS:  # AIS's HMC transitions need a continuous z
            # A flow q (the IAF run) gives AIS its moment-matched Gaussian as the start (AIS
            # from the flow would invert it at every HMC step).
            ais_model = result.model
            if not _has_posterior_mean(result.model, data.test):
                ais_model = MomentMatchedQ(result.model, jax.random.split(keys.ais)[1], 1000)
            start = time.perf_counter()
            ais_values = log_px(
                keys.ais,
                ais_model,
                ais_subset,
                AIS(config.ais_num_steps, config.ais_num_chains, config.ais_num_leapfrog_steps),
            )
            ais_values = np.asarray(ais_values, np.float64)
            ais = {
                "ais_log_px": float(ais_values.mean()),
                "ais_log_px_sem": _sem(ais_values),
                "ais_minus_is": float((ais_values - is_subset).mean()),
                "ais_minus_is_sem": _sem(ais_values - is_subset),
                "ais_seconds": time.perf_counter() - start,
            }
            ais_per_image[name] = ais_values
        elbo = bound(keys.elbo, result.model, data.test, ELBO(1))
        units, variances, by_layer = None, None, None
        if name not in DISCRETE_RUNS:  # binary latents have no posterior mean to vary
            au_model, au_batch = result.model, 1000
            if not _has_posterior_mean(result.model, data.test):
                # The mean of n draws adds Var_q(z_u) / n to A_u: for an inactive unit (q = the
                # prior, variance 1) n = 1,000 adds 0.001, a tenth of the threshold (n = 100
                # would add the whole threshold and count every unit).
                au_model = MomentMatchedQ(result.model, jax.random.split(keys.elbo)[1], 1000)
                au_batch = 100  # images per call: 100 x 1,000 draws through the MADEs
            units, variances = active_units(au_model, data.test, batch_size=au_batch)
            variances = np.asarray(variances)
            # A model of several stochastic layers (lvm.TwoLayerVAE) is counted layer by layer,
            # with active_units' threshold of 0.01.
            layers = getattr(getattr(result.model, "config", None), "latent_dims", None)
            if layers is not None:
                edges = np.cumsum([0, *layers])
                by_layer = [
                    int(np.sum(variances[a:b] > 0.01))
                    for a, b in zip(edges[:-1], edges[1:], strict=True)
                ]
            units, variances = int(units), np.sort(variances)[::-1]
        per_image[name] = np.asarray(values, np.float64)
        rows[name] = {
            "objective": repr(RUNS[name]),
            "epochs": len(result.history),
            "log_px": float(per_image[name].mean()),
            "log_px_sem": _sem(per_image[name]),
            "elbo": float(np.mean(elbo)),
            "elbo_sem": _sem(np.asarray(elbo, np.float64)),
            "active_units": units,
            "active_units_by_layer": by_layer,
            "latent_dim": None if variances is None else len(variances),
            "latent_variances": variances,
            "log_px_seconds": seconds,
            "is_subset_log_px": float(is_subset.mean()),
            "is_subset_log_px_sem": _sem(is_subset),
            **ais,
            "published_log_px": PUBLISHED[name][0],
            "published_active_units": PUBLISHED[name][1],
            "epoch_seconds": [e["epoch_seconds"] for e in result.history],
        }
        if name in DISCRETE_RUNS:
            # The training ELBO beside the published ones (Grathwohl et al. report training
            # ELBOs): every training image, k = 1, a key no other number draws with.
            train_elbo = bound(jax.random.fold_in(keys.elbo, 1), result.model, data.train, ELBO(1))
            train_elbo = np.asarray(train_elbo, np.float64)
            rows[name] |= {
                "train_elbo": float(train_elbo.mean()),
                "train_elbo_sem": _sem(train_elbo),
                "last_epoch_train_bound": result.history[-1]["train_bound"],
                "published_train_elbo": PUBLISHED_TRAIN_ELBO.get(
                    PUBLISHED_TRAIN_ELBO_ROW.get(name)
                ),
            }
        ais_note = (
            "no AIS (binary z)"
            if rows[name]["ais_log_px"] is None
            else f"AIS on {len(ais_subset)} images {rows[name]['ais_log_px']:.2f} vs IS "
            f"{rows[name]['is_subset_log_px']:.2f} ({rows[name]['ais_seconds']:.0f} s)"
        )
        print(
            f"{LABELS[name]:>12}: log p(x) {rows[name]['log_px']:.2f} ± "
            f"{rows[name]['log_px_sem']:.2f}, ELBO {rows[name]['elbo']:.2f}, "
            f"active units {units}  ({seconds:.0f} s for log p(x)); {ais_note}",
            flush=True,
        )
    if "vae_k1" in per_image:
        for name, row in rows.items():
            diff = per_image[name] - per_image["vae_k1"]
            row["log_px_minus_vae_k1"] = float(diff.mean())
            row["log_px_minus_vae_k1_sem"] = _sem(diff) if name != "vae_k1" else 0.0
    for name, base in PAIRED_WITH.items():
        if name in per_image and base in per_image:
            diff = per_image[name] - per_image[base]
            rows[name] |= {
                "paired_with": base,
                "log_px_minus_paired": float(diff.mean()),
                "log_px_minus_paired_sem": _sem(diff),
            }

    num_test = len(test_subset)
    table = markdown(rows, budget, num_test, config)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{NAME}.md").write_text(table)
    png = save_figure(plot(rows, num_test, budget), args.out_dir, NAME)
    results = {
        "config": config,
        "seed": args.seed,
        "num_test_images": num_test,
        "eval_num_samples": budget.eval_num_samples,
        "ais_num_images": len(ais_subset),
        "ais_cost_per_image": config.ais_cost,
        "ais_cost_model": (
            "num_chains * ((num_steps - 1) * num_leapfrog_steps + 1) gradient evaluations of "
            "log p(x, z) per image; IS: eval_num_samples forward evaluations"
        ),
        "binarization": "static (Larochelle & Murray 2011, TFDS binarized_mnist)",
        "published_source": PUBLISHED_SOURCE,
        "rows": rows,
        # every image's estimate, so that the means and paired differences can be rechecked
        "log_px_per_image": per_image,
        "ais_log_px_per_image": ais_per_image,
    }
    results["wall_seconds"] = time.perf_counter() - wall_start
    save_json(args.out_dir, NAME, results)
    print(table)
    print(f"wrote {png}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
