r"""Figure: the log of the k-sample importance average is biased low by about chi^2/(2k); the jackknife removes the 1/k term, SUMO all of it.

Writes ``paper_figures/estimators_log_bias.{png,pdf,json}``.

Claim. :math:`\hat p_k(x) = \frac1k\sum_i w_i` is unbiased for p(x), but by Jensen
:math:`\mathbb E[\log\hat p_k(x)] \le \log p(x)`. For large k the delta method gives

.. math:: \mathbb E[\log \hat p_k(x)] - \log p(x) \approx -\frac{\chi^2}{2k}, \qquad
          \mathrm{Var}[\log \hat p_k(x)] \approx \frac{\chi^2}{k}, \qquad
          \chi^2 = \frac{\mathrm{Var}_q(w)}{p(x)^2},

and at k = 1 the bias is exactly the ELBO gap :math:`-\mathrm{KL}(q \,\|\, p(z \mid x))`.
Two estimators remove that bias (bottom row). The order-1 jackknife of the same k weights
(``lvm.jackknife_iwae``; Nowozin, 2018) cancels the 1/k term, leaving
:math:`(\tfrac34\mu_2^2 - \tfrac13\mu_3)/(k(k-1))` with :math:`\mu_n = \mathbb E_q[(w/p(x) - 1)^n]`
(so :math:`\mu_2 = \chi^2`), but only once k is well above :math:`\chi^2`: before that it
behaves otherwise (here: overcorrects wildly at k = 2, then undercorrects). SUMO
(``lvm.sumo``; Luo et al., 2020) is unbiased term by term at an expected cost of m + 5.08
weights, but heavy-tailed (P(|error| > t) ~ 1/t, see ``lvm.sumo``), so its plain mean
converges slowly, visibly so for the prior.

Model: a linear-Gaussian model (d = 5 latents, D = 20 observations, sigma = 0.5) with one
datapoint drawn from it, where log p(x), p(z|x), chi^2 and mu_3 are all closed forms
(``lvm.testing.log_moment_gaussian``). Proposals of increasing quality: the prior, then
:math:`q = \mathcal N(\mu, s^2\Sigma)` around the exact posterior :math:`\mathcal N(\mu, \Sigma)`
with s^2 = 4, 2, 1.25, for which :math:`\chi^2 = (s^2/\sqrt{2s^2-1})^d - 1` exactly (6.90, 1.05,
0.107). Every IWAE and jackknife point averages ``num_reps`` independent estimates, both
from the same k weights of each repetition (``lvm.log_weights``); bands and bars are +-1
standard error. The IWAE bias is averaged with the control variate :math:`u = \hat p_k/p(x) - 1`
(mean exactly 0 since :math:`\hat p_k` is unbiased), which leaves the expectation alone and
resolves biases of 1e-5 nats. The jackknife's bias is far smaller (1e-9 nats at k = 1000 for
s^2 = 1.25), so it is averaged with four control variates of exactly known mean, the least-squares
fit of the errors on :math:`u`, :math:`u^2 - \chi^2/k`, :math:`u^3 - \mu_3/k^2` and
:math:`\overline{(w_i/p)^2} - 1 - \chi^2` subtracted (``lvm.testing.mean_with_control_variates``).
SUMO's mean is plain, over ``sumo_num_reps`` estimates.

Run: ``python experiments/estimators_log_bias.py`` (``just figures`` runs it); 1.8 min on
2 CPU cores (1.9 min of CPU; 4.4 min while other jobs shared them; ``--quick``: seconds). Should hit (seed 0):

* IWAE: at k = 10^4 the measured bias of every proposal within 3 standard errors of
  -chi^2/(2k) (for s^2 = 2: -5.22e-5 +- 0.22e-5 nats vs -5.26e-5 predicted), and at k = 1 the
  bias equals -KL(q || p(z|x)) within 3 standard errors (prior: -48.2 +- 1.9 vs -46.35 exact).
* Jackknife: log-log slope of |bias| over k = 100..1000 of -1.96 +- 0.15 (s^2 = 4),
  -2.01 +- 0.11 (s^2 = 2), -2.00 +- 0.07 (s^2 = 1.25), against IWAE's -1.03, -0.99, -0.98; at
  k = 1000 for s^2 = 2: +3.44e-7 +- 0.68e-7 nats vs +3.32e-7 predicted. For the prior
  (chi^2 = 631, so k < chi^2 throughout) slope -1.20 +- 0.13: +104 nats at k = 2, then negative
  (-5.1 at k = 5 to -0.016 +- 0.009 at k = 1000).
* SUMO (m = 1, 3, 10, 30, 100; 20,000 estimates each): for s^2 = 4, 2, 1.25 all 15 means within
  1.7 standard errors of log p(x); for the prior all five below it, by 1.2 to 2.8 standard errors.
"""

import math
import sys
from dataclasses import dataclass, replace
from functools import partial

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from _script import parse_args, save_figure, save_json, style
from _testbeds import log_k_grid, over_repetitions, stack

import lvm
from lvm.estimators import jackknife_log_mean_exp
from lvm.estimators.debiased import SUMO_EXPECTED_EXTRA_SAMPLES
from lvm.testing import (
    log_bias_control_variate,
    mean_se,
    mean_with_control_variates,
    relative_moments_gaussian,
    var_se,
)

NAME = "estimators_log_bias"


@dataclass(frozen=True)
class Config:
    latent_dim: int = 5
    data_dim: int = 20
    noise_std: float = 0.5
    #: q = N(mu, s^2 Sigma) around the exact posterior N(mu, Sigma); the prior is added as the worst q.
    scale_sqs: tuple[float, ...] = (4.0, 2.0, 1.25)
    num_samples: tuple[int, ...] = tuple(log_k_grid(10_000, per_decade=3))
    num_reps: int = 1000
    #: reps x proposals x chunk_size particles are live at once: bounds the memory.
    particles_in_memory: int = 250_000
    #: the jackknife (and the IWAE estimate beside it) from k weights held at once, 2 <= k <= this.
    jackknife_max_k: int = 1000
    #: SUMO's always-drawn weights m; its expected cost is m + 5.08.
    sumo_num_samples: tuple[int, ...] = (1, 3, 10, 30, 100)
    sumo_num_reps: int = 20_000

    def quick(self) -> "Config":
        return replace(
            self,
            num_samples=(1, 30, 1000),
            num_reps=200,
            sumo_num_samples=(1, 10),
            sumo_num_reps=2000,
        )


def make_proposals(model, x, scale_sqs):
    """The prior and N(mu, s^2 Sigma) around the exact posterior N(mu, Sigma), for each s^2."""
    post = model.posterior(x)
    d = model.latent_dim
    prior = lvm.MultivariateNormal(jnp.zeros(d), jnp.eye(d))
    return [prior] + [
        lvm.MultivariateNormal(post.loc, math.sqrt(s2) * post.scale_tril) for s2 in scale_sqs
    ]


@partial(jax.jit, static_argnums=0)
def setup(config: Config, seed):
    """The model, its datapoint x and the estimation key (no estimator runs here)."""
    # split(key, 4)[:3] equals split(key, 3): the IWAE numbers are those of a 3-way split.
    model_key, data_key, est_key, sumo_key = jax.random.split(jax.random.key(seed), 4)
    model = lvm.LinearGaussian.random(
        model_key,
        latent_dim=config.latent_dim,
        data_dim=config.data_dim,
        noise_std=config.noise_std,
    )
    _, x = model.sample(data_key)
    return model, x, est_key, sumo_key


def _exact(config: Config, model, *, x):
    """Closed forms: log p(x), the posterior, the proposals and KL(q || p(z|x))."""
    post = model.posterior(x)
    singles = make_proposals(model, x, config.scale_sqs)
    return {
        "log_px": model.log_marginal(x),
        "posterior": post,
        "proposals": stack(singles),
        "kl": jnp.stack([lvm.kl_divergence(q, post) for q in singles]),
    }


def _estimates(config: Config, k: int, model, proposals, key, *, x):
    """``num_reps`` independent log p̂_k(x) for every stacked proposal: (P, R).

    For 2 <= k <= ``jackknife_max_k`` the k weights of each repetition are held, and the
    jackknife and log of the mean of w^2 (a control variate) come from the same weights; the
    particles are those of the streaming estimate (particle i uses ``fold_in(key, i)``).
    """
    num_p = jax.tree.leaves(proposals)[0].shape[0]
    chunk = max(1, config.particles_in_memory // (num_p * config.num_reps))
    chunk = chunk if chunk < k else None

    def streamed(key, q):
        return {
            "log_p_hat": lvm.importance_sampling(
                key, model.log_joint, q, x, num_samples=k, chunk_size=chunk
            )
        }

    def held(key, q):
        log_w = lvm.log_weights(key, model.log_joint, q, x, num_samples=k, chunk_size=chunk)
        return {
            "log_p_hat": lvm.log_mean_exp(log_w),
            "jackknife": jackknife_log_mean_exp(log_w, order=1),
            "log_mean_w2": lvm.log_mean_exp(2.0 * log_w),
        }

    estimate = held if 2 <= k <= config.jackknife_max_k else streamed
    return over_repetitions(estimate, key, proposals, num_reps=config.num_reps)


def _sumo(config: Config, m: int, model, proposals, key, *, x):
    """``sumo_num_reps`` SUMO estimates with m always-drawn weights, every proposal: (P, R)."""

    def estimate(key, q):
        return lvm.sumo(key, model.log_joint, q, x, num_samples=m)

    return over_repetitions(estimate, key, proposals, num_reps=config.sumo_num_reps)


def simulate(config: Config, seed: int) -> dict:
    """One small compiled program per step (see ``_testbeds.over_repetitions``)."""
    model, x, est_key, sumo_key = setup(config, seed)
    out = jax.jit(partial(_exact, config, x=x))(model)
    per_k = [
        jax.jit(partial(_estimates, config, k, x=x))(
            model, out["proposals"], jax.random.fold_in(est_key, k)
        )
        for k in config.num_samples
    ]
    out["log_p_hat"] = jnp.stack([r["log_p_hat"] for r in per_k], axis=1)  # (P, len(ks), R)
    held = [r for r in per_k if "jackknife" in r]
    out["jackknife"] = jnp.stack([r["jackknife"] for r in held], axis=1)
    out["log_mean_w2"] = jnp.stack([r["log_mean_w2"] for r in held], axis=1)
    out["sumo"] = jnp.stack(
        [
            jax.jit(partial(_sumo, config, m, x=x))(
                model, out["proposals"], jax.random.fold_in(sumo_key, m)
            )
            for m in config.sumo_num_samples
        ],
        axis=1,
    )  # (P, len(ms), R_sumo)
    return out


def run(config: Config, seed: int) -> dict:
    sim = jax.tree.map(np.asarray, simulate(config, seed))
    log_px = float(sim["log_px"])
    num_p = sim["kl"].shape[0]
    post = sim["posterior"]
    moments = np.array(
        [
            relative_moments_gaussian(post, jax.tree.map(lambda a, i=i: a[i], sim["proposals"]))
            for i in range(num_p)
        ]
    )
    chi2, mu3 = moments[:, 0], moments[:, 1]
    kl = sim["kl"]
    labels = ["q = p(z) (prior)"] + [f"q = N(μ, {s2:g}Σ)" for s2 in config.scale_sqs]
    ks = list(config.num_samples)
    est = sim["log_p_hat"].astype(np.float64)
    stats = {}
    stats["bias"], stats["bias_se"] = log_bias_control_variate(est, log_px)
    stats["bias_plain"], stats["bias_plain_se"] = mean_se(est - log_px)
    stats["var"], stats["var_se"] = var_se(est)
    ks_arr = np.array(ks, np.float64)
    jack_ks = [k for k in ks if 2 <= k <= config.jackknife_max_k]
    jack_cols = [ks.index(k) for k in jack_ks]
    jack = _jackknife_bias(sim, log_px, chi2, mu3, jack_ks, jack_cols)
    sumo_err = sim["sumo"].astype(np.float64) - log_px
    stats["sumo_bias"], stats["sumo_bias_se"] = mean_se(sumo_err)
    stats["sumo_z"] = stats["sumo_bias"] / stats["sumo_bias_se"]
    jks = np.array(jack_ks, np.float64)
    # Slopes over the last decade of the jackknife's k (the asymptotic end), >= 2 points.
    top = [j for j, k in enumerate(jack_ks) if k >= jack_ks[-1] / 10]
    top = top if len(top) >= 2 else list(range(len(jack_ks)))[-2:]
    slope_ks = [jack_ks[j] for j in top]
    slopes = {
        "jackknife_slope": [],
        "jackknife_slope_se": [],
        "iwae_slope": [],
        "iwae_slope_se": [],
    }
    for i in range(num_p):
        for name, b, e in (
            ("jackknife", jack["jackknife_bias"][i, top], jack["jackknife_bias_se"][i, top]),
            (
                "iwae",
                stats["bias"][i, [jack_cols[j] for j in top]],
                stats["bias_se"][i, [jack_cols[j] for j in top]],
            ),
        ):
            slope, slope_se = log_log_slope(slope_ks, b, e)
            slopes[f"{name}_slope"].append(slope)
            slopes[f"{name}_slope_se"].append(slope_se)
    return {
        "config": config,
        "seed": seed,
        "log_px": log_px,
        "labels": labels,
        "num_samples": ks,
        "chi2": chi2,
        "kl_q_posterior": kl,
        "delta_bias": -chi2[:, None] / (2.0 * ks_arr[None, :]),
        "delta_var": chi2[:, None] / ks_arr[None, :],
        **stats,
        "mu3": mu3,
        "jackknife_num_samples": jack_ks,
        **jack,
        **slopes,
        "slope_range": [slope_ks[0], slope_ks[-1]],
        "jackknife_delta_bias": (0.75 * chi2**2 - mu3 / 3.0)[:, None]
        / (jks * (jks - 1.0))[None, :],
        "sumo_num_samples": list(config.sumo_num_samples),
        "sumo_expected_num_samples": [
            m + SUMO_EXPECTED_EXTRA_SAMPLES for m in config.sumo_num_samples
        ],
    }


def _jackknife_bias(sim, log_px, chi2, mu3, ks, cols) -> dict:
    """Jackknife bias per proposal and k, with four control variates of exactly known mean.

    The controls come from the same weights: u = p-hat/p - 1 (mean 0), u^2 (mean chi^2/k),
    u^3 (mean mu_3/k^2) and the mean of (w_i/p)^2 (mean 1 + chi^2).
    """
    num_p = len(chi2)
    bias, se = np.zeros((num_p, len(ks))), np.zeros((num_p, len(ks)))
    for i in range(num_p):
        for j, (k, col) in enumerate(zip(ks, cols, strict=True)):
            err = sim["jackknife"][i, j].astype(np.float64) - log_px
            u = np.expm1(sim["log_p_hat"][i, col].astype(np.float64) - log_px)
            r2 = np.exp(sim["log_mean_w2"][i, j].astype(np.float64) - 2 * log_px)
            controls = [u, u**2 - chi2[i] / k, u**3 - mu3[i] / k**2, r2 - 1.0 - chi2[i]]
            bias[i, j], se[i, j] = mean_with_control_variates(err, controls)
    return {"jackknife_bias": bias, "jackknife_bias_se": se}


def log_log_slope(ks, bias, se) -> tuple[float, float]:
    """Weighted least-squares slope of log|bias| on log k and its standard error."""
    ks, bias, se = (np.asarray(a, np.float64) for a in (ks, bias, se))
    y, sy = np.log(np.abs(bias)), se / np.abs(bias)
    design = np.stack([np.ones_like(ks), np.log(ks)], 1)
    w = 1.0 / sy**2
    cov = np.linalg.inv(design.T @ (w[:, None] * design))
    coef = cov @ design.T @ (w * y)
    return float(coef[1]), float(math.sqrt(cov[1, 1]))


def _signed_markers(ax, ks, bias, se, color, marker, label):
    """|bias| on log axes: filled markers where the bias is negative, open where positive."""
    neg = bias < 0
    ax.errorbar(ks, np.abs(bias), yerr=se, fmt="none", ecolor=color, elinewidth=0.8, alpha=0.7)
    ax.plot(ks[neg], np.abs(bias[neg]), marker, color=color, ms=5, ls="none", label=label)
    ax.plot(ks[~neg], np.abs(bias[~neg]), marker, color=color, ms=5, ls="none", mfc="white")


def _plot_sumo(ax, res, which: int = 2):
    """Signed bias in nats for one proposal: IWAE (band), the jackknife and SUMO (+-2 s.e.) at
    their (expected) number of weights; SUMO's bias/s.e. for every proposal in a text box."""
    ks = np.array(res["num_samples"], np.float64)
    jks = np.array(res["jackknife_num_samples"], np.float64)
    cost = np.array(res["sumo_expected_num_samples"], np.float64)
    bias, se = res["bias"][which], res["bias_se"][which]
    ax.plot(ks, bias, "o-", color="tab:red", ms=3.5, label="IWAE log p̂_k (± 1 s.e.)")
    ax.fill_between(ks, bias - se, bias + se, color="tab:red", alpha=0.25)
    ax.plot(ks, res["delta_bias"][which], "--", color="tab:red", lw=1, label="−χ²/(2k)")
    ax.errorbar(
        jks,
        res["jackknife_bias"][which],
        yerr=res["jackknife_bias_se"][which],
        fmt="s",
        color="tab:purple",
        ms=4,
        label="jackknife, order 1 (± 1 s.e.)",
    )
    ax.errorbar(
        cost,
        res["sumo_bias"][which],
        yerr=2 * res["sumo_bias_se"][which],
        fmt="D",
        color="k",
        ms=5,
        capsize=3,
        label=f"SUMO, m = {', '.join(map(str, res['sumo_num_samples']))} (± 2 s.e.)",
    )
    ax.axhline(0.0, color="k", lw=0.8)
    low = min(np.min(res["sumo_bias"][which] - 2.5 * res["sumo_bias_se"][which]), -0.12)
    high = max(np.max(res["sumo_bias"][which] + 2.5 * res["sumo_bias_se"][which]), 0.05)
    ax.set_ylim(low, high)
    lines = ["SUMO mean / s.e., m = " + ", ".join(map(str, res["sumo_num_samples"])) + ":"]
    lines += [
        f"{label.split(' (')[0]}: " + " ".join(f"{z:+.1f}" for z in res["sumo_z"][i])
        for i, label in enumerate(res["labels"])
    ]
    ax.text(
        0.98,
        0.03,
        "\n".join(lines),
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize=7.5,
        bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"},
    )
    ax.set_ylabel("E[estimate] − log p(x)  (nats)")
    ax.set_title(f"(d) Debiased, {res['labels'][which]}: SUMO at 0 within ± 2 s.e.")
    ax.legend(loc="upper right", fontsize=7.5)


def plot(res: dict):
    ks = np.array(res["num_samples"], np.float64)
    jks = np.array(res["jackknife_num_samples"], np.float64)
    colors = ["tab:red", "tab:orange", "tab:blue", "tab:green"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 9.2))
    (ax_b, ax_v), (ax_j, ax_s) = axes
    for i, label in enumerate(res["labels"]):
        c = colors[i % len(colors)]
        full = f"{label}, χ² = {res['chi2'][i]:.3g}"
        gap, se = -res["bias"][i], res["bias_se"][i]
        ax_b.plot(ks, gap, "o-", color=c, ms=3.5, label=full)
        ax_b.fill_between(ks, np.maximum(gap - se, gap * 1e-2), gap + se, color=c, alpha=0.25)
        ax_b.plot(ks, -res["delta_bias"][i], "--", color=c, lw=1)
        ax_b.plot(1, res["kl_q_posterior"][i], "*", color=c, ms=13, mec="k", mew=0.6)
        var, vse = res["var"][i], res["var_se"][i]
        ax_v.plot(ks, var, "o-", color=c, ms=3.5, label=full)
        ax_v.fill_between(ks, np.maximum(var - vse, var * 1e-2), var + vse, color=c, alpha=0.25)
        ax_v.plot(ks, res["delta_var"][i], "--", color=c, lw=1)
        # Jackknife against IWAE (faint), |bias| with the sign in the marker.
        ax_j.plot(ks, gap, "-", color=c, lw=1, alpha=0.35)
        slope, slope_se = res["jackknife_slope"][i], res["jackknife_slope_se"][i]
        _signed_markers(
            ax_j,
            jks,
            res["jackknife_bias"][i],
            res["jackknife_bias_se"][i],
            c,
            "s",
            f"{label}: slope {slope:.2f} ± {slope_se:.2f}",
        )
        ax_j.plot(jks, np.abs(res["jackknife_delta_bias"][i]), ":", color=c, lw=1.2)
    ax_b.plot([], [], "k--", lw=1, label="delta method χ²/(2k)")
    ax_b.plot([], [], "k*", ms=10, label="k = 1: exact ELBO gap KL(q‖p(z|x))")
    ax_v.plot([], [], "k--", lw=1, label="delta method χ²/k")
    ax_j.plot([], [], "k-", lw=1, alpha=0.35, label="IWAE (top left), for reference")
    ax_j.plot([], [], "k:", lw=1.2, label="delta method (¾μ₂² − ⅓μ₃)/(k(k−1))")
    ax_j.plot(
        [], [], "ks", ms=5, mfc="white", ls="none", label="open: positive bias (overcorrects)"
    )
    _plot_sumo(ax_s, res)
    for ax in (ax_b, ax_v, ax_j, ax_s):
        ax.set_xscale("log")
        ax.set_xlabel("number of samples k")
    for ax in (ax_b, ax_v, ax_j):
        ax.set_yscale("log")
    ax_s.set_xlabel("number of samples k (SUMO: expected number, m + 5.08)")
    ax_b.set_ylabel("log p(x) − E[log p̂_k(x)]  (nats)")
    ax_b.set_title("(a) IWAE: bias of log of the k-sample average, always low, ≈ χ²/(2k)")
    ax_v.set_ylabel("Var[log p̂_k(x)]  (nats²)")
    ax_v.set_title("(b) Variance of log p̂_k(x)")
    ax_j.set_ylabel("|E[estimate] − log p(x)|  (nats)")
    ax_j.set_title("(c) Jackknife, order 1: |bias| ∝ 1/k² once k ≫ χ² (slopes: k ≥ 100)")
    ax_b.legend(loc="lower left")
    ax_v.legend(loc="lower left")
    ax_j.legend(loc="lower left", fontsize=7.5)
    fig.suptitle(
        f"Linear-Gaussian model, d = {res['config'].latent_dim}, log p(x) = {res['log_px']:.2f} "
        f"nats; mean ± 1 s.e. over {res['config'].num_reps} repetitions "
        f"(SUMO: ± 2 s.e. over {res['config'].sumo_num_reps})",
        fontsize=10,
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
    for i, label in enumerate(res["labels"]):
        print(
            f"{label:22s} chi2={res['chi2'][i]:9.4g}  k=1 bias={res['bias'][i, 0]:+.4g} "
            f"(-KL={-res['kl_q_posterior'][i]:+.4g})  k={res['num_samples'][-1]} "
            f"bias={res['bias'][i, -1]:+.3e}±{res['bias_se'][i, -1]:.1e} "
            f"(delta {res['delta_bias'][i, -1]:+.3e})"
        )
    for i, label in enumerate(res["labels"]):
        jk = ", ".join(
            f"k={k}: {b:+.2e}±{e:.1e} (delta {d:+.2e})"
            for k, b, e, d in zip(
                res["jackknife_num_samples"],
                res["jackknife_bias"][i],
                res["jackknife_bias_se"][i],
                res["jackknife_delta_bias"][i],
                strict=True,
            )
        )
        print(
            f"{label:22s} jackknife slope {res['jackknife_slope'][i]:+.2f}±"
            f"{res['jackknife_slope_se'][i]:.2f} (IWAE {res['iwae_slope'][i]:+.2f}±"
            f"{res['iwae_slope_se'][i]:.2f}) over k in {res['slope_range']}: {jk}"
        )
        sumo = ", ".join(
            f"m={m}: {b:+.4f}±{e:.4f}"
            for m, b, e in zip(
                res["sumo_num_samples"], res["sumo_bias"][i], res["sumo_bias_se"][i], strict=True
            )
        )
        print(f"{label:22s} SUMO bias {sumo}")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
