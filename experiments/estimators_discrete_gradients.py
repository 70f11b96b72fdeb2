r"""Figure: gradients for a categorical latent, against the exact gradient; a mixture fitted by VIMCO.

Writes ``paper_figures/estimators_discrete_gradients.{png,pdf,json}``.

Claim. For a discrete z the reparameterization trick does not apply; the library's
estimators for the encoder's gradient (:mod:`lvm.estimators.discrete`) are checked on the
exact testbed ``lvm.testbeds.amortized_mixture.amortized_mixture_testbed()``: a K = 3, 2-D Gaussian
mixture with full covariances, an amortized categorical encoder q(z|x) (logits linear in
quadratic features of x) set away from p(z|x), and 3 datapoints. With k particles the
expected bounds E[ELBO_k] and E[IWAE_k] are sums over count vectors of the k draws
(``lvm.testbeds.enumeration``), so their gradients w.r.t. the encoder's 18 logit parameters
are exact. Over independent keys:

* the score-function estimators are unbiased: REINFORCE for the ELBO (no baseline; the
  learned constant baseline at the value a running average converges to, the mean of
  :math:`\mathbb E_q[\ell]`; the leave-one-out baseline of the other particles), NVIL
  (the input-dependent baseline :math:`b(x) = \mathbb E_q[\ell \mid x]` and variance
  normalization, its gradient multiplied back by :math:`\max(1, \sigma)`), REINFORCE for the
  IWAE bound, and VIMCO: the norm of their mean's error stays at the Monte-Carlo noise floor
  (the norm of the per-parameter standard errors; an unbiased estimator gives about 1 noise
  floor);
* the Concrete relaxation (tau = 0.5) is biased, and its bias falls as the temperature falls
  while its variance grows;
* the variance of REINFORCE for the ELBO_k falls as 1/k, and the baselines cut it about
  9-fold; REINFORCE for the IWAE bound gets worse with k (every particle's signal carries the
  whole bound's noise) while the gradient it estimates shrinks, so its SNR collapses; VIMCO's
  variance falls faster than the gradient it estimates, and its SNR stays near 1;
* fitted by VIMCO (``lvm.IWAE(5, gradient="vimco")``, Adam at 0.01, minibatches of 34) on Old
  Faithful (standardized), the amortized mixture reaches EM's maximum-likelihood optimum,
  from the same poor start (means at two random datapoints, unit covariances): its exact
  log-likelihood per point by epoch, beside REINFORCE for the same bound, NVIL for the
  ELBO_5, and EM's by iteration.

Run: ``python experiments/estimators_discrete_gradients.py`` (``just figures`` runs it);
``--quick`` for a seconds-long smoke run (``tests/test_experiments_discrete.py`` asserts its
claims). Runtime: 4.4 to 5.4 min in three runs on the 2 CPU cores shared with other jobs (load
9-14; 1.6-1.9 min of CPU; the testbed about 3.5 min, Old Faithful 1.3-1.6 min), mostly
compilation.

Should hit (seed 0, 2,000 keys per k). Total variance of the 18 encoder gradients at
k = 1 / 5 / 50 (exact gradient norms: ELBO 1.28; IWAE 0.56 at k = 5, 0.030 at k = 50):
REINFORCE (ELBO) 8.11 / 1.64 / 0.162; with the running-average baseline 0.913 / 0.181 /
0.0178; leave-one-out - / 0.312 / 0.0178; NVIL 0.831 / 0.165 / 0.0163; REINFORCE (IWAE) 12.3 /
48.3 / 326; VIMCO - / 0.311 / 0.00133; Concrete (tau = 0.5) 0.94 / 0.188 / 0.0179 (ELBO) and
0.94 / 0.674 / 0.0493 (IWAE). SNR at k = 1 -> 100: REINFORCE (ELBO) 0.45 -> 4.5, NVIL 1.4 ->
14.1, REINFORCE (IWAE) 0.36 -> 0.0006, VIMCO 1.00 (k = 2) -> 0.60. Bias of every unbiased
estimator between 0.26 and 2.2 noise floors at every k; Concrete (ELBO, tau = 0.5) 14-15% of
the gradient's norm at every k (8.5 to 83 noise floors), Concrete (IWAE) 15% at k = 1 to 17
times the (shrinking) gradient at k = 100. Concrete at k = 1 by temperature 2, 1, 0.5, 0.25,
0.1, 0.05: relative bias 0.73, 0.37, 0.13, 0.039, 0.044, 0.094 (noise floors 0.005 to
0.08: within noise from tau = 0.25 down), std / ||g*|| 0.21, 0.38, 0.75, 1.3, 2.4, 3.7
(REINFORCE: 2.2). Old Faithful: EM's optimum -1.4171 nats/point (EM from the start: 21
iterations); after 100 / 300 epochs VIMCO -1.4177 / -1.4173, REINFORCE (IWAE) -1.4217 /
-1.4173, NVIL (ELBO) -1.4550 / -1.4178.
"""

import sys
import time
from dataclasses import dataclass, replace

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import optax
from _script import parse_args, save_figure, save_json, style

import lvm
from lvm.data.old_faithful import load_old_faithful
from lvm.fit import fit_em, fit_em_from
from lvm.testbeds.amortized_mixture import (
    AmortizedMixture,
    amortized_mixture_testbed,
    quadratic_features,
)
from lvm.testbeds.enumeration import expected_model_bound, support
from lvm.train import make_train_epoch

NAME = "estimators_discrete_gradients"

#: label -> (the bound it estimates the gradient of, which testbed model, smallest k).
ESTIMATORS = {
    "REINFORCE (ELBO)": ("elbo", "plain", 1),
    "REINFORCE + running average": ("elbo", "constant", 1),
    "REINFORCE + leave-one-out": ("elbo", "plain", 2),
    "NVIL (ELBO)": ("elbo", "nvil", 1),
    "Concrete (ELBO)": ("elbo", "plain", 1),
    "REINFORCE (IWAE)": ("iwae", "plain", 1),
    "VIMCO (IWAE)": ("iwae", "plain", 2),
    "Concrete (IWAE)": ("iwae", "plain", 1),
}
COLORS = {
    "REINFORCE (ELBO)": "tab:gray",
    "REINFORCE + running average": "tab:olive",
    "REINFORCE + leave-one-out": "tab:cyan",
    "NVIL (ELBO)": "tab:green",
    "Concrete (ELBO)": "tab:orange",
    "REINFORCE (IWAE)": "tab:red",
    "VIMCO (IWAE)": "tab:blue",
    "Concrete (IWAE)": "tab:purple",
}
FITS = ("VIMCO (IWAE)", "REINFORCE (IWAE)", "NVIL (ELBO)")


@dataclass(frozen=True)
class Config:
    num_samples: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100)
    num_reps: int = 2000
    reps_per_batch: int = 500
    temperature: float = 0.5
    #: the temperatures of the Concrete panel (ELBO, k = temperature_num_samples)
    temperatures: tuple[float, ...] = (2.0, 1.0, 0.5, 0.25, 0.1, 0.05)
    temperature_num_samples: int = 1
    # Old Faithful, standardized
    num_components: int = 2
    fit_num_samples: int = 5
    fits: tuple[str, ...] = FITS
    num_epochs: int = 300
    batch_size: int = 34
    learning_rate: float = 0.01
    em_restarts: int = 10
    em_tol: float = 1e-6

    def quick(self) -> "Config":
        return replace(
            self,
            num_samples=(5,),
            num_reps=300,
            reps_per_batch=300,
            temperatures=(1.0, 0.2),
            fits=("VIMCO (IWAE)",),
            num_epochs=10,
        )


def objective(label: str, k: int, temperature: float):
    return {
        "REINFORCE (ELBO)": lambda: lvm.ELBO(k, gradient="reinforce"),
        "REINFORCE + running average": lambda: lvm.ELBO(
            k, gradient="reinforce", baseline="learned"
        ),
        "REINFORCE + leave-one-out": lambda: lvm.ELBO(
            k, gradient="reinforce", baseline="leave_one_out"
        ),
        "NVIL (ELBO)": lambda: lvm.ELBO(
            k, gradient="reinforce", baseline="learned", normalize=True
        ),
        "Concrete (ELBO)": lambda: lvm.ELBO(k, gradient="concrete", temperature=temperature),
        "REINFORCE (IWAE)": lambda: lvm.IWAE(k, gradient="reinforce"),
        "VIMCO (IWAE)": lambda: lvm.IWAE(k, gradient="vimco"),
        "Concrete (IWAE)": lambda: lvm.IWAE(k, gradient="concrete", temperature=temperature),
    }[label]()


# ---------------------------------------------------------------- the exact testbed


def testbed_models():
    """The testbed with three baseline settings, all at the fixed point of their training
    signals: none; a constant c = mean over datapoints of E_q[ell] (what a running average of
    the learning signal converges to); NVIL's b(x) = E_q[ell | x] (the linear head fitted by
    least squares, exact on 3 datapoints) with sigma^2 = mean of Var_q(ell | x)."""
    model, xs = amortized_mixture_testbed()

    def moments(x):
        q = model.encode(x)
        zs = support(q)
        log_q = jax.vmap(q.log_prob)(zs)
        ell = jax.vmap(lambda z: model.log_joint(x, z))(zs) - log_q
        mean = jnp.sum(jnp.exp(log_q) * ell)
        return mean, jnp.sum(jnp.exp(log_q) * (ell - mean) ** 2)

    means, variances = (np.asarray(a, np.float64) for a in jax.vmap(moments)(xs))
    feats = np.asarray(jax.vmap(quadratic_features)(xs), np.float64)
    design = np.concatenate([feats, np.ones((len(xs), 1))], 1)
    coef = np.linalg.lstsq(design, means, rcond=None)[0]
    enc = model.encoder
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    constant = eqx.tree_at(lambda e: e.baseline_bias, enc, f32(means.mean()))
    nvil = eqx.tree_at(
        lambda e: (e.baseline_weight, e.baseline_bias, e.log_scale),
        enc,
        (f32(coef[:-1]), f32(coef[-1]), f32(0.5 * np.log(variances.mean()))),
    )
    models = {
        "plain": model,
        "constant": eqx.tree_at(lambda m: m.encoder, model, constant),
        "nvil": eqx.tree_at(lambda m: m.encoder, model, nvil),
    }
    sigma = float(np.sqrt(variances.mean()))
    return models, xs, {"constant_baseline": float(means.mean()), "nvil_sigma": sigma}


def _encoder_grad(grad) -> jax.Array:
    return jnp.concatenate([grad.encoder.weight.ravel(), grad.encoder.bias])


def exact_gradients(model, xs, ks) -> dict:
    """{bound: {k: exact gradient}} of E[ELBO_k] (the same for every k) and E[IWAE_k]."""

    @eqx.filter_jit
    def grad(m, bound, k):
        return _encoder_grad(
            eqx.filter_grad(lambda m: expected_model_bound(m, xs, bound=bound, num_samples=k))(m)
        )

    out = {"elbo": {}, "iwae": {}}
    elbo = np.asarray(grad(model, "elbo", 1), np.float64)
    for k in ks:
        out["elbo"][k] = elbo
        out["iwae"][k] = np.asarray(grad(model, "iwae", k), np.float64)
    return out


def gradient_draws(objectives: dict, models: dict, xs, key, *, num_reps, batch) -> dict:
    """{label: (R, 18)} encoder gradients of the mean bound over ``xs``, the same R keys for all."""

    def one(key):
        keys = jax.random.split(key, xs.shape[0])
        out = {}
        for label, (obj, name) in objectives.items():

            def mean_bound(m, obj=obj):
                bounds = jax.vmap(lambda k, x: obj(k, m.log_joint, m.encode(x), x))(keys, xs)
                return jnp.mean(bounds)

            out[label] = _encoder_grad(eqx.filter_grad(mean_bound)(models[name]))
        return out

    run = jax.jit(lambda ks: jax.lax.map(one, ks, batch_size=batch))
    draws = run(jax.random.split(key, num_reps))
    return {label: np.asarray(g, np.float64) for label, g in draws.items()}


def summarise(g: np.ndarray, exact: np.ndarray) -> dict:
    r"""Relative bias :math:`\|\bar g - g^*\| / \|g^*\|` with its s.e. (that of the mean along the
    bias' direction), total variance :math:`\sum_p \mathrm{Var}(g_p)` with its s.e., and
    :math:`\mathrm{SNR} = \|g^*\| / \sqrt{\sum_p \mathrm{Var}(g_p)}`; also the largest
    per-parameter |z| of the mean against the exact gradient."""
    r = g.shape[0]
    mean = g.mean(0)
    offset = mean - exact
    norm = np.linalg.norm(exact)
    bias = np.linalg.norm(offset)
    u = offset / max(bias, 1e-300)
    centred = g - mean
    bias_se = np.sqrt(max(u @ (centred.T @ centred / (r - 1)) @ u, 0.0) / r)
    sq = np.sum(centred**2, 1) * r / (r - 1)
    total_var, total_var_se = sq.mean(), sq.std(ddof=1) / np.sqrt(r)
    se = g.std(0, ddof=1) / np.sqrt(r)
    return {
        "relative_bias": bias / norm,
        "relative_bias_se": bias_se / norm,
        "noise_floor": np.linalg.norm(se) / norm,
        "total_variance": total_var,
        "total_variance_se": total_var_se,
        "snr": norm / np.sqrt(total_var),
        "max_abs_z": float(np.max(np.abs(offset / se))),
        "exact_norm": norm,
    }


def run_testbed(config: Config, key) -> dict:
    start = time.perf_counter()
    models, xs, baselines = testbed_models()
    sigma = max(1.0, baselines["nvil_sigma"])
    ks = list(config.num_samples)
    exact = exact_gradients(models["plain"], xs, ks + [config.temperature_num_samples])
    out = {"num_samples": ks, "estimators": {}, **baselines}
    per_k = {label: [] for label in ESTIMATORS}
    for k in ks:
        objectives = {
            label: (objective(label, k, config.temperature), name)
            for label, (_, name, min_k) in ESTIMATORS.items()
            if k >= min_k
        }
        draws = gradient_draws(
            objectives,
            models,
            xs,
            jax.random.fold_in(key, k),
            num_reps=config.num_reps,
            batch=config.reps_per_batch,
        )
        for label, g in draws.items():
            if label == "NVIL (ELBO)":
                g = g * sigma  # back to the gradient of the bound (normalization divides by sigma)
            per_k[label].append({"k": k, **summarise(g, exact[ESTIMATORS[label][0]][k])})
        print(f"[testbed] k={k} done ({time.perf_counter() - start:.0f} s)", flush=True)
    for label, rows in per_k.items():
        out["estimators"][label] = {name: [row[name] for row in rows] for name in rows[0]}

    # The Concrete panel: one k, several temperatures, the same keys; REINFORCE as reference.
    k = config.temperature_num_samples
    objectives = {
        f"tau={t}": (lvm.ELBO(k, gradient="concrete", temperature=t), "plain")
        for t in config.temperatures
    }
    objectives["REINFORCE"] = (lvm.ELBO(k, gradient="reinforce"), "plain")
    draws = gradient_draws(
        objectives,
        models,
        xs,
        jax.random.fold_in(key, 10_000),
        num_reps=config.num_reps,
        batch=config.reps_per_batch,
    )
    rows = [summarise(draws[f"tau={t}"], exact["elbo"][k]) for t in config.temperatures]
    out["concrete"] = {
        "num_samples": k,
        "temperatures": list(config.temperatures),
        **{name: [row[name] for row in rows] for name in rows[0]},
        "reinforce": summarise(draws["REINFORCE"], exact["elbo"][k]),
    }
    out["seconds"] = time.perf_counter() - start
    return out


# ---------------------------------------------------------------- Old Faithful


def _standardized_faithful() -> np.ndarray:
    x = load_old_faithful(np.float64)
    return ((x - x.mean(0)) / x.std(0)).astype(np.float32)


def _start(x: np.ndarray, num_components: int, key) -> lvm.GaussianMixture:
    """A deliberately poor common start: means at random datapoints, unit covariances, equal weights."""
    rows = np.asarray(jax.random.choice(key, x.shape[0], (num_components,), replace=False))
    d = x.shape[1]
    return lvm.GaussianMixture(
        jnp.zeros(num_components),
        jnp.asarray(x[rows]),
        jnp.broadcast_to(jnp.eye(d), (num_components, d, d)),
        covariance_type="full",
    )


def run_faithful(config: Config, key) -> dict:
    start_time = time.perf_counter()
    start_key, em_key, train_key = jax.random.split(key, 3)
    x = _standardized_faithful()
    data = jnp.asarray(x)
    start = _start(x, config.num_components, start_key)
    log_lik = jax.jit(lambda mix: jnp.mean(jax.vmap(mix.log_marginal)(data)))
    best = fit_em(
        em_key,
        x,
        num_components=config.num_components,
        num_restarts=config.em_restarts,
        tol=config.em_tol,
        max_iter=1000,
    )
    from_start = fit_em_from(start, x, tol=config.em_tol, max_iter=1000)
    em_trace = np.asarray(from_start.trace, np.float64)
    em_trace = em_trace[np.isfinite(em_trace)]
    out = {
        "em_optimum": float(best.log_likelihood),
        "em_from_start": float(from_start.log_likelihood),
        "em_trace": em_trace,
        "em_iterations": int(from_start.num_iterations),
        "start": float(log_lik(start)),
        "fits": {},
    }
    k = config.fit_num_samples
    objectives = {
        "VIMCO (IWAE)": lvm.IWAE(k, gradient="vimco"),
        "REINFORCE (IWAE)": lvm.IWAE(k, gradient="reinforce"),
        "NVIL (ELBO)": lvm.ELBO(k, gradient="reinforce", baseline="learned", normalize=True),
    }
    for label in config.fits:
        init, epoch = make_train_epoch(
            objectives[label], optax.adam(config.learning_rate), batch_size=config.batch_size
        )
        state = init(AmortizedMixture.from_mixture(start))
        curve, bounds = [float(log_lik(start))], []
        for e in range(config.num_epochs):
            state, info = epoch(jax.random.fold_in(train_key, e), state, data)
            curve.append(float(log_lik(state.params.mixture)))
            bounds.append(float(jnp.mean(info.bound)))
        out["fits"][label] = {"log_likelihood": curve, "bound": bounds, "final": curve[-1]}
        print(f"[faithful] {label}: {curve[-1]:.4f} nats/point (EM {out['em_optimum']:.4f})")
    out["seconds"] = time.perf_counter() - start_time
    return out


# ---------------------------------------------------------------- the figure


def _log_ticks(ax, values) -> None:
    """A log x axis ticked at ``values``, written as plain numbers."""
    ax.set_xscale("log")
    ax.set_xticks(list(values))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def plot(res: dict, config: Config):
    fig = plt.figure(figsize=(16, 9.5))
    grid = fig.add_gridspec(2, 3, wspace=0.42)
    ax_bias, ax_var, ax_snr = (fig.add_subplot(grid[0, i]) for i in range(3))
    ax_temp, ax_fit = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1:])
    tb = res["testbed"]
    for label, s in tb["estimators"].items():
        ks = np.array(s["k"], np.float64)
        style_ = "--" if "(IWAE)" in label else "-"
        kw = {"color": COLORS[label], "ls": style_, "marker": "o", "ms": 3.5, "label": label}
        ax_bias.plot(ks, np.array(s["relative_bias"]) / np.array(s["noise_floor"]), **kw)
        ax_var.errorbar(ks, s["total_variance"], yerr=s["total_variance_se"], capsize=2, **kw)
        ax_snr.plot(ks, s["snr"], **kw)
    ax_bias.axhspan(0.3, 2.0, color="k", alpha=0.07, lw=0, label="noise (unbiased: ≈ 1)")
    for ax in (ax_bias, ax_var, ax_snr):
        ax.set_yscale("log")
        _log_ticks(ax, tb["num_samples"])
        ax.set_xlabel("number of samples k")
    ax_bias.set_ylabel("‖E[g] − g*‖ / ‖s.e. of E[g]‖  (bias in noise floors)")
    ax_bias.set_title(f"bias against the exact gradient g* ({config.num_reps} keys per k)")
    ax_var.set_ylabel("total variance Σ_p Var(g_p)  (±1 s.e.)")
    ax_var.set_title("variance of the encoder's gradient (18 logit parameters)")
    ax_snr.set_ylabel("SNR = ‖g*‖ / sqrt(Σ_p Var(g_p))")
    ax_snr.set_title("signal-to-noise ratio (g* of IWAE shrinks with k)")
    ax_bias.set_ylim(0.1, 1e5)  # room for the legend above the curves
    ax_bias.legend(fontsize=6.5, loc="upper left", ncol=2, handlelength=1.2, columnspacing=0.8)

    c = tb["concrete"]
    temps, norm = np.array(c["temperatures"]), np.array(c["exact_norm"])
    ax_temp.errorbar(
        temps,
        c["relative_bias"],
        yerr=c["relative_bias_se"],
        marker="o",
        color="tab:orange",
        capsize=2,
        label="Concrete: bias ‖E[g] − g*‖ / ‖g*‖",
    )
    ax_temp.plot(temps, c["noise_floor"], ":", color="k", lw=1, label="noise floor of the bias")
    ax_temp.plot(
        temps,
        np.sqrt(c["total_variance"]) / norm,
        "s--",
        color="tab:brown",
        ms=4,
        label="Concrete: std / ‖g*‖",
    )
    ax_temp.axhline(
        np.sqrt(c["reinforce"]["total_variance"]) / c["reinforce"]["exact_norm"],
        color="tab:gray",
        lw=1,
        label="REINFORCE: std / ‖g*‖",
    )
    ax_temp.set_yscale("log")
    _log_ticks(ax_temp, c["temperatures"])
    ax_temp.set_xlabel("temperature τ")
    ax_temp.set_ylabel("relative to ‖g*‖")
    ax_temp.set_title(f"Concrete (ELBO, k = {c['num_samples']}): bias falls with τ, variance grows")
    ax_temp.legend(fontsize=7, loc="lower right")

    fa = res["faithful"]
    for label in reversed(list(fa["fits"])):  # VIMCO drawn last, on top
        fit = fa["fits"][label]
        epochs = np.arange(len(fit["log_likelihood"]))
        ax_fit.plot(
            epochs,
            fit["log_likelihood"],
            color=COLORS[label],
            lw=2.2 if label.startswith("VIMCO") else 1.4,
            label=f"{label}, k = {config.fit_num_samples}: log-likelihood "
            f"{fit['final']:.4f} after {len(epochs) - 1} epochs",
        )
        ax_fit.plot(
            epochs[1:],
            fit["bound"],
            color=COLORS[label],
            lw=0.8,
            ls="--",
            label=f"{label}: its training bound (epoch mean)",
        )
    em = np.asarray(fa["em_trace"])
    ax_fit.plot(
        np.arange(len(em)),
        em,
        "k-",
        lw=1,
        marker=".",
        ms=3,
        label=f"EM from the same start, by iteration: {fa['em_from_start']:.4f}",
    )
    ax_fit.axhline(
        fa["em_optimum"],
        color="k",
        ls=":",
        label=f"EM optimum ({config.em_restarts} restarts): {fa['em_optimum']:.4f}",
    )
    ax_fit.set_xscale("symlog", linthresh=10)
    ax_fit.set_xlim(0, config.num_epochs)
    top = fa["em_optimum"]
    ax_fit.set_ylim(min(fa["start"], top - 1.0) - 0.05, top + 0.1)
    ax_fit.set_xlabel("epoch (EM: iteration)")
    ax_fit.set_ylabel("exact log-likelihood per point (nats, standardized data)")
    ax_fit.set_title(
        f"Old Faithful (standardized), K = {config.num_components} full-covariance "
        "mixture with an amortized encoder, Adam, minibatches of "
        f"{config.batch_size}"
    )
    ax_fit.legend(fontsize=8, loc="lower right")
    fig.suptitle(
        "Gradients for a categorical latent on the exact K = 3 mixture testbed "
        "(every expectation enumerated), and a mixture fitted by VIMCO",
        fontsize=11,
    )
    fig.subplots_adjust(left=0.05, right=0.97, top=0.92, bottom=0.07, hspace=0.3)
    return fig


def main(argv=None) -> dict:
    args = parse_args(argv, __doc__.splitlines()[0])
    config = Config().quick() if args.quick else Config()
    style(grid=True)
    testbed_key, faithful_key = jax.random.split(jax.random.key(args.seed))
    start = time.perf_counter()
    res = {
        "testbed": run_testbed(config, testbed_key),
        "faithful": run_faithful(config, faithful_key),
    }
    res["seconds"] = time.perf_counter() - start
    save_figure(plot(res, config), args.out_dir, NAME)
    save_json(args.out_dir, NAME, {**res, "config": config, "seed": args.seed})
    for label, s in res["testbed"]["estimators"].items():
        rows = ", ".join(
            f"k={k}: var {v:.3g} bias {b:.3f}±{e:.3f}"
            for k, v, b, e in zip(
                s["k"], s["total_variance"], s["relative_bias"], s["relative_bias_se"], strict=True
            )
        )
        print(f"{label:36s} {rows}")
    print(f"total {res['seconds']:.0f} s")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
