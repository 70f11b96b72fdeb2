r"""Figure and table: the inference gap of a VAE taken apart (Cremer, Li & Duvenaud, 2018).

Writes ``paper_figures/vae_inference_gap.{png,pdf,json,md}``.

Claim. The gap between log p(x) and the ELBO of the amortized q(z|x) splits into

.. math:: \log p(x) - \mathcal L[q_\phi] =
          \underbrace{\log p(x) - \mathcal L[q^*]}_{\text{approximation gap}}
          + \underbrace{\mathcal L[q^*] - \mathcal L[q_\phi]}_{\text{amortization gap}},

with :math:`q^* = \arg\max_{q \in \mathcal Q} \mathcal L[q]` the best member of the encoder's
family :math:`\mathcal Q` for that one x: the first term is the price of the family, the
second that of sharing one encoder across all x. For two models trained with the library's
MNIST budget (runs ``vae_k1``, a diagonal Gaussian q, and ``vae_iaf_k1``, an IAF q; 784-200-
200-50, tanh, ELBO k=1, 5 epochs, Adam 1e-3; ``_vae_runs.py``), on the first 100 test images
(the same for both models), this reports per model

* log p(x) by AIS (``lvm.AIS``: T = 1,000 sigmoidal temperatures, 1 chain, 10 leapfrog steps,
  as in ``vae_loglik_table.py``; from the amortized q(z|x) for the Gaussian model, from the
  diagonal Gaussian with the mean and standard deviations of 1,000 draws of q(z|x) for the
  IAF model, whose density at every HMC position would need the flow's slow inverse), beside
  IS with k = 5,000 from the amortized q(z|x) on the same images and their paired difference
  (the check: AIS and IS estimate the same log p(x), both from below);
* :math:`\mathcal L[q^*_{\rm flow}]` and :math:`\mathcal L[q^*_{\rm Gauss}]`: ``lvm.optimize_proposal``
  per image (vmapped), the ELBO(8) (reparameterized) maximized by Adam (2,000 steps: a linear
  warm-up over 100, then cosine decay from a peak of 1e-2 for the Gaussian, 3e-3 for the
  flow; with 1,000 steps at 3e-3 the bounds were still rising), then the ELBO of q* from 1,000
  fresh samples. The
  Gaussian family starts from the encoder's Gaussian (for the IAF model: the Gaussian with the
  mean and standard deviations of 1,000 draws of its amortized q); the flow family is two
  affine IAF layers with 200-unit MADEs (the IAF encoder's architecture) on a diagonal
  Gaussian base, starting from the amortized q (for the Gaussian model: identity layers on its
  Gaussian; for the IAF model: its own amortized flow, every parameter, the conditioning
  features h included, free per image). So each family contains its start, and
  :math:`\mathcal L[q^*] \ge \mathcal L[q_\phi]` up to the optimizer;
* :math:`\mathcal L[q_\phi]`: the ELBO of the amortized q from 1,000 samples per image;
* the approximation gap (AIS log p(x) − L[q*] of the model's own family) and the amortization
  gap (L[q*] − L[q]), and the same with the other family, each as the mean over images of the
  per-image difference with its paired standard error over images.

Published values. The issue asks for Cremer et al.'s MNIST numbers (their Table 2) beside
ours; they are not in the table because they could not be checked against the paper from
this repository's sources. Their budget differs in any case: they trained far longer (to
convergence rather than 5 epochs) and their q* optimization ran to convergence per image.

Run: ``python experiments/vae_inference_gap.py --runs-dir /work/runs/vae`` (``just figures``
runs it; it trains ``vae_k1`` and ``vae_iaf_k1`` where ``--runs-dir`` lacks them, about a minute
each). On the shared 2-core CPU with both runs present it took 19 minutes: AIS 42 s and 50 s, IS
24 s and 22 s, the per-image optimizations 6 min (Gaussian model) and 9 min (IAF model).
``--quick``: tiny models on 500 images, about 3 minutes (compiles).
Should hit (seed 0, 5 epochs, the first 100 test images): log p(x) (AIS) -116.84 (Gaussian q)
and -112.05 (IAF q), +-3.5 over images; approximation gap 1.15 +- 0.03 and 0.39 +- 0.05,
amortization gap 3.92 +- 0.23 and 5.57 +- 0.23 nats (paired s.e.); AIS - IS +0.31 +- 0.07 and
+0.24 +- 0.08. The IAF model's flow q* was still rising by 0.28 nats over its last 500 steps:
its amortization gap lies between 5.57 and 5.96 nats.
"""

import sys
import time
from dataclasses import dataclass, field, replace

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from _script import save_figure, save_json, style
from _vae_runs import (
    LABELS,
    RUN_COLORS,
    Budget,
    MomentMatchedQ,
    eval_keys,
    has_gaussian_q,
    load_data,
    parse_args,
    trained,
)

import lvm
from lvm import AIS, ELBO, IWAE
from lvm.evaluate import log_px

NAME = "vae_inference_gap"
FAMILIES = ("flow", "gaussian")
#: the family of each run's own encoder
OWN_FAMILY = {"vae_k1": "gaussian", "vae_iaf_k1": "flow"}


@dataclass(frozen=True)
class Config:
    budget: Budget = field(default_factory=Budget)
    runs: tuple[str, ...] = ("vae_k1", "vae_iaf_k1")
    num_images: int = 100
    ais_num_steps: int = 1000
    ais_num_chains: int = 1
    ais_num_leapfrog_steps: int = 10
    is_num_samples: int = 5000
    is_chunk_size: int = 100
    #: the per-image optimization of q*: ELBO(opt_num_samples), Adam, a linear warm-up over
    #: opt_warmup_steps then cosine decay; a smaller peak learning rate for the flows (their
    #: first full-size Adam steps move every MADE weight at once)
    opt_num_steps: int = 2000
    opt_warmup_steps: int = 100
    opt_num_samples: int = 8
    gaussian_learning_rate: float = 1e-2
    flow_learning_rate: float = 3e-3
    #: the flow family: IAF layers and MADE width (the IAF encoder's)
    flow_layers: int = 2
    flow_width: int = 200
    #: samples per image for L[q] and L[q*] (fresh keys), and for the moment-matched Gaussian
    eval_num_samples: int = 1000
    #: images per compiled call of the optimization (memory: chunk * samples * 784 logits)
    image_chunk: int = 25

    def quick(self) -> "Config":
        return replace(
            self,
            num_images=6,
            ais_num_steps=10,
            ais_num_leapfrog_steps=3,
            opt_num_steps=20,
            opt_warmup_steps=2,
            flow_width=16,
            eval_num_samples=32,
            image_chunk=6,
        )


def _sem(values) -> float:
    values = np.asarray(values, np.float64)
    return float(np.std(values, ddof=1) / np.sqrt(len(values)))


def _moment_matched(key, q, num_samples: int) -> lvm.DiagonalNormal:
    """The diagonal Gaussian with the mean and standard deviations of ``num_samples`` draws of q."""
    zs = lvm.sample_n(key, q, num_samples)
    return lvm.DiagonalNormal(zs.mean(0), zs.std(0))


def _best_bounds(model, run: str, x_chunk, keys, bijection, config: Config):
    """L[q*] of both families for a chunk of images (vmapped), their optimization traces, and L[q]."""

    def optimizer(peak):
        return optax.adam(
            optax.warmup_cosine_decay_schedule(
                0.0, peak, config.opt_warmup_steps, config.opt_num_steps
            )
        )

    learning_rates = {"gaussian": config.gaussian_learning_rate, "flow": config.flow_learning_rate}
    objective = ELBO(config.opt_num_samples)
    evaluate = ELBO(config.eval_num_samples)

    def one(key, x):
        opt_key, eval_key, moment_key = jax.random.split(key, 3)
        q = model.encode(x)
        if OWN_FAMILY[run] == "gaussian":
            starts = {"gaussian": q, "flow": lvm.Flow(q, bijection)}
        else:
            starts = {
                "gaussian": _moment_matched(moment_key, q, config.eval_num_samples),
                "flow": q,
            }
        out = {"amortized": evaluate(eval_key, model.log_joint, q, x)}
        for i, (family, q0) in enumerate(sorted(starts.items())):
            q_star, info = lvm.optimize_proposal(
                jax.random.fold_in(opt_key, i),
                model.log_joint,
                q0,
                x,
                objective=objective,
                num_steps=config.opt_num_steps,
                optimizer=optimizer(learning_rates[family]),
            )
            # a fresh key for the evaluation: the trace is biased up by having been optimized on
            out[family] = evaluate(jax.random.fold_in(eval_key, i + 1), model.log_joint, q_star, x)
            out[f"{family}_trace"] = info.objective
        return out

    return eqx.filter_jit(eqx.filter_vmap(one))(keys, x_chunk)


def measure(model, run: str, x: np.ndarray, keys, config: Config) -> dict:
    """Every per-image number of one model: AIS, IS, L[q*] of both families, L[q]; and traces."""
    ais = AIS(config.ais_num_steps, config.ais_num_chains, config.ais_num_leapfrog_steps)
    start = time.perf_counter()
    # The IAF q starts AIS as its moment-matched Gaussian: AIS from q itself would invert the
    # flow at every HMC step (50 sequential MADE passes per layer; most of an hour here).
    ais_model = model
    if not has_gaussian_q(model, x[0]):
        ais_model = MomentMatchedQ(model, jax.random.split(keys.ais)[1], config.eval_num_samples)
    ais_values = log_px(keys.ais, ais_model, x, ais)
    ais_seconds = time.perf_counter() - start
    start = time.perf_counter()
    is_values = log_px(
        keys.log_px, model, x, IWAE(config.is_num_samples, chunk_size=config.is_chunk_size)
    )
    is_seconds = time.perf_counter() - start

    # Named keys for the optimization, beside (never equal to) the keys of the other numbers.
    opt_root = jax.random.fold_in(keys.elbo, 19)
    image_keys = jax.vmap(lambda i: jax.random.fold_in(opt_root, i))(jnp.arange(len(x)))
    bijection = lvm.iaf_bijection(
        jax.random.fold_in(keys.elbo, 20),
        dim=model.config.latent_dim,
        flow_layers=config.flow_layers,
        nn_width=config.flow_width,
    )
    start = time.perf_counter()
    chunks = []
    for i in range(0, len(x), config.image_chunk):
        sl = slice(i, i + config.image_chunk)
        out = _best_bounds(model, run, jnp.asarray(x[sl]), image_keys[sl], bijection, config)
        chunks.append(jax.tree.map(np.asarray, out))
    opt_seconds = time.perf_counter() - start
    per_image = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    return {
        "ais": np.asarray(ais_values, np.float64),
        "is": np.asarray(is_values, np.float64),
        "best_flow": per_image["flow"].astype(np.float64),
        "best_gaussian": per_image["gaussian"].astype(np.float64),
        "amortized": per_image["amortized"].astype(np.float64),
        "trace_flow": per_image["flow_trace"].mean(0),
        "trace_gaussian": per_image["gaussian_trace"].mean(0),
        "seconds": {"ais": ais_seconds, "is": is_seconds, "opt": opt_seconds},
    }


def summarize(run: str, m: dict) -> dict:
    """Means over images, with paired standard errors for every difference."""
    own = OWN_FAMILY[run]
    best = {"flow": m["best_flow"], "gaussian": m["best_gaussian"]}

    def pair(a, b):
        d = np.asarray(a) - np.asarray(b)
        return {"mean": float(d.mean()), "sem": _sem(d)}

    row = {
        "own_family": own,
        "log_px_ais": {"mean": float(m["ais"].mean()), "sem": _sem(m["ais"])},
        "log_px_is": {"mean": float(m["is"].mean()), "sem": _sem(m["is"])},
        "ais_minus_is": pair(m["ais"], m["is"]),
        "elbo_best_flow": {"mean": float(best["flow"].mean()), "sem": _sem(best["flow"])},
        "elbo_best_gaussian": {
            "mean": float(best["gaussian"].mean()),
            "sem": _sem(best["gaussian"]),
        },
        "elbo_amortized": {"mean": float(m["amortized"].mean()), "sem": _sem(m["amortized"])},
        "inference_gap": pair(m["ais"], m["amortized"]),
        "approximation_gap": pair(m["ais"], best[own]),
        "amortization_gap": pair(best[own], m["amortized"]),
    }
    other = "flow" if own == "gaussian" else "gaussian"
    row[f"approximation_gap_{other}_family"] = pair(m["ais"], best[other])
    row[f"amortization_gap_{other}_family"] = pair(best[other], m["amortized"])
    row["flow_minus_gaussian_best"] = pair(best["flow"], best["gaussian"])
    return row


def _pm(entry) -> str:
    return f"{entry['mean']:.2f} ± {entry['sem']:.2f}"


def markdown(rows: dict, config: Config, num_images: int) -> str:
    lines = [
        f"| model (q of training) | log p(x), AIS T={config.ais_num_steps:,} "
        f"| IS k={config.is_num_samples:,} | AIS − IS (paired) | L[q* flow] | L[q* Gaussian] "
        "| L[q amortized] | approximation gap | amortization gap |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run, row in rows.items():
        lines.append(
            f"| {LABELS[run]} ({row['own_family']}) | {_pm(row['log_px_ais'])} "
            f"| {_pm(row['log_px_is'])} | {_pm(row['ais_minus_is'])} "
            f"| {_pm(row['elbo_best_flow'])} | {_pm(row['elbo_best_gaussian'])} "
            f"| {_pm(row['elbo_amortized'])} | {_pm(row['approximation_gap'])} "
            f"| {_pm(row['amortization_gap'])} |"
        )
    b = config.budget
    lines += [
        "",
        f"Nats per image, the first {num_images:,} test images (static binarization, TFDS "
        f"`binarized_mnist`), models after {b.num_epochs} epochs (784-200-200-50, tanh, ELBO k=1, "
        "Adam 1e-3). Bounds: ± one standard error over images; gaps and AIS − IS: the mean of "
        "the per-image difference ± its paired standard error over images. The gaps use the "
        "family of the model's own encoder: approximation = log p(x) (AIS) − L[q*], amortization "
        f"= L[q*] − L[q]. q*: ELBO({config.opt_num_samples}) maximized per image by Adam "
        f"({config.opt_num_steps:,} steps, warm-up {config.opt_warmup_steps} then cosine decay "
        f"from {config.gaussian_learning_rate:g} (Gaussian) or {config.flow_learning_rate:g} "
        f"(flow)) from the amortized q; every L from {config.eval_num_samples:,} fresh samples. "
        "Flow family: "
        f"{config.flow_layers} affine IAF layers, MADE width {config.flow_width}, on a diagonal "
        "Gaussian.",
    ]
    return "\n".join(lines) + "\n"


def figure(rows: dict, results: dict, config: Config, num_images: int):
    fig, (ax_gap, ax_trace) = plt.subplots(1, 2, figsize=(10.5, 4.0))
    runs = list(rows)
    width = 0.38
    for j, (key, label, hatch) in enumerate(
        [
            ("approximation_gap", "approximation gap", ""),
            ("amortization_gap", "amortization gap", "//"),
        ]
    ):
        means = [rows[r][key]["mean"] for r in runs]
        sems = [rows[r][key]["sem"] for r in runs]
        pos = np.arange(len(runs)) + (j - 0.5) * width
        ax_gap.bar(
            pos,
            means,
            width,
            yerr=sems,
            capsize=3,
            color=[RUN_COLORS[r] for r in runs],
            hatch=hatch,
            edgecolor="black",
            label=label,
        )
    ax_gap.set_xticks(
        np.arange(len(runs)), [f"{LABELS[r]}\n(q* family: {rows[r]['own_family']})" for r in runs]
    )
    ax_gap.set_ylabel("nats per image")
    ax_gap.set_title(
        f"log p(x) − L[q] split in two ({num_images} test images)\n"
        "error bars: ±1 paired s.e. over images"
    )
    ax_gap.legend(loc="upper left")
    tops = [
        rows[r][k]["mean"] + rows[r][k]["sem"]
        for r in runs
        for k in ("approximation_gap", "amortization_gap")
    ]
    ax_gap.set_ylim(min(0.0, *tops), 1.3 * max(tops))
    ax_gap.grid(axis="y", alpha=0.3)
    steps = np.arange(1, config.opt_num_steps + 1)
    for run in runs:
        for family, ls in (("flow", "-"), ("gaussian", "--")):
            ax_trace.plot(
                steps,
                results[run][f"trace_{family}"],
                ls,
                color=RUN_COLORS[run],
                label=f"{LABELS[run]}: q* {family}",
            )
        ax_trace.axhline(rows[run]["log_px_ais"]["mean"], color=RUN_COLORS[run], lw=0.8, ls=":")
    ax_trace.set_xscale("log")
    ax_trace.set_xlabel("optimization step of q* (per image)")
    ax_trace.set_ylabel(f"ELBO({config.opt_num_samples}) estimate, mean over images")
    ax_trace.set_title("optimizing q per image (dotted: AIS log p(x))")
    ax_trace.legend(fontsize=7.5, loc="lower right")
    ax_trace.grid(alpha=0.3)
    # the first steps of a flow can dip far down (a warm-up step of every weight at once)
    tail = slice(config.opt_num_steps // 10, None)
    lows = [min(results[r][f"trace_{f}"][tail].min() for f in FAMILIES) for r in runs]
    highs = [rows[r]["log_px_ais"]["mean"] for r in runs]
    ax_trace.set_ylim(min(lows) - 2, max(highs) + 1)
    fig.tight_layout()
    return fig


def main(argv=None) -> dict:
    wall_start = time.perf_counter()
    args = parse_args(argv, __doc__.splitlines()[0])
    config = Config(budget=args.budget)
    if args.quick:
        config = config.quick()
    style()
    data = load_data(config.budget)
    x = np.asarray(data.test[: config.num_images], np.float32)
    keys = eval_keys(args.seed)  # the keys of vae_loglik_table: same images, same IS/AIS draws

    results, rows = {}, {}
    for run in config.runs:
        model = trained(run, config.budget, data, seed=args.seed, runs_dir=args.runs_dir).model
        results[run] = measure(model, run, x, keys, config)
        rows[run] = summarize(run, results[run])
        row = rows[run]
        print(
            f"{LABELS[run]}: AIS {_pm(row['log_px_ais'])}, IS {_pm(row['log_px_is'])}, "
            f"L[q* flow] {_pm(row['elbo_best_flow'])}, L[q* Gauss] {_pm(row['elbo_best_gaussian'])}, "
            f"L[q] {_pm(row['elbo_amortized'])}; approximation gap {_pm(row['approximation_gap'])}, "
            f"amortization gap {_pm(row['amortization_gap'])} ({results[run]['seconds']})",
            flush=True,
        )

    png = save_figure(figure(rows, results, config, len(x)), args.out_dir, NAME)
    (args.out_dir / f"{NAME}.md").write_text(markdown(rows, config, len(x)))
    out = {
        "config": config,
        "num_images": len(x),
        "rows": rows,
        "per_image": {
            run: {k: v for k, v in r.items() if k not in ("seconds",) and not k.startswith("trace")}
            for run, r in results.items()
        },
        "traces": {run: {f: results[run][f"trace_{f}"] for f in FAMILIES} for run in results},
        "seconds": {run: results[run]["seconds"] for run in results},
        "wall_seconds": time.perf_counter() - wall_start,
        "published": None,
        "published_note": (
            "Cremer, Li & Duvenaud (2018), Table 2 (MNIST): not reproduced here, as the values "
            "could not be checked against the paper in this session"
        ),
    }
    save_json(args.out_dir, NAME, out)
    print(f"wrote {png} in {out['wall_seconds']:.0f} s")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
