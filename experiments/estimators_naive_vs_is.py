r"""Figure: naive Monte Carlo (z from the prior) fails where importance sampling does not.

Writes ``paper_figures/estimators_naive_vs_is.{png,pdf,json}``.

Claim. :math:`p(x) = \mathbb E_{p(z)}[p(x \mid z)]` can be estimated by averaging the likelihood
over prior draws (naive Monte Carlo, ``lvm.naive_monte_carlo``), but the prior puts few draws
where p(z|x) has its mass, so the estimate's relative error
:math:`\sqrt{\mathrm{Var}(\hat p_k)}/p(x) = \sqrt{\chi^2(p(z|x)\,\|\,q)/k}` is enormous, worse
for a datapoint in the tail and exponentially worse as the latent dimension d grows. Drawing
z from a proposal close to the posterior (``lvm.importance_sampling`` with
:math:`q = \mathcal N(\mu, 2\Sigma)`) keeps :math:`\chi^2` small; the exact posterior gives
zero variance (every weight equals p(x)).

Model: linear-Gaussian with D = 4d observations and sigma = 0.5 (d = 5 in the k panels), so
every posterior shrinks each latent direction by the same factor; exact log p(x), p(z|x) and
:math:`\chi^2` (``lvm.testing.relative_variance_gaussian``). The typical datapoint is
drawn from the model; the tail one is generated from a latent of norm 4 (prior tail).
Top row: relative RMS error of :math:`\hat p_k(x)`; bottom row: RMS error of
:math:`\log \hat p_k(x)` in nats; both over ``num_reps`` independent repetitions with
+- 1 standard-error bands; dashed: the exact :math:`\sqrt{\chi^2/k}` (top), its delta-method
value for the log (bottom). Right column: k = 1000 fixed, d = 1 ... 50.

Run: ``python experiments/estimators_naive_vs_is.py`` (``just figures`` runs it); 52 s on a
quiet 2-core CPU (83 s of CPU; about 3 min while the box was shared with other jobs). Should hit: with q = N(mu, 2 Sigma) the measured relative error
follows sqrt(chi^2/k) (chi^2 = 1.05 at d = 5); for naive MC the measured relative RMS falls far
short of the exact value (1.00 against sqrt(631) = 25.1 at k = 1 on the typical point): the
weights are so heavy-tailed that the rare huge ones carrying the variance are almost never
drawn in 1,000 repetitions; naive MC (chi^2 = 631) needs k ~ 10^3 for a
log error under 1 nat on the typical point and is still 7 nats off in the tail at k = 10^4
(chi^2 = 8.9e5); at d = 50 its exact relative error at k = 1000 is 5e17 (chi^2 = 2.8e38) and
its measured log error 467 nats, while IS with q stays under 1 nat.
"""

import math
import sys
from dataclasses import dataclass, replace
from functools import partial
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
from _script import parse_args, save_figure, save_json, style
from _testbeds import COLORS, over_repetitions, stack

import lvm
from lvm.testing import relative_variance_gaussian, rms_se

NAME = "estimators_naive_vs_is"
ROLES = ("prior", "proposal", "posterior")


@dataclass(frozen=True)
class Config:
    latent_dim: int = 5
    #: D = data_per_latent * d, so that the posterior shrinkage per latent is the same for all d.
    data_per_latent: int = 4
    noise_std: float = 0.5
    #: The good proposal is N(mu, proposal_scale_sq * Sigma) around the exact posterior.
    proposal_scale_sq: float = 2.0
    #: The tail datapoint is generated from a latent of this norm (a typical one has norm ~sqrt(d)).
    tail_norm: float = 4.0
    num_samples: tuple[int, ...] = (1, 10, 100, 1000, 10_000)
    num_reps: int = 400
    dims: tuple[int, ...] = (1, 5, 20, 50)
    dim_num_samples: int = 1000
    dim_num_reps: int = 300
    #: pairs x reps x chunk_size particles are live at once: bounds the memory.
    particles_in_memory: int = 250_000

    def quick(self) -> "Config":
        return replace(self, num_samples=(100,), num_reps=100, dims=(1, 5), dim_num_samples=100)


def _model(key, d, config):
    return lvm.LinearGaussian.random(
        key, latent_dim=d, data_dim=config.data_per_latent * d, noise_std=config.noise_std
    )


def _proposal(post, scale_sq):
    return lvm.MultivariateNormal(post.loc, math.sqrt(scale_sq) * post.scale_tril)


def _chunk_size(config: Config, k: int, num_reps: int) -> int | None:
    chunk = max(1, config.particles_in_memory // (2 * num_reps))
    return chunk if chunk < k else None


def _estimates(config: Config, kinds: tuple[str, ...], k: int, num_reps: int, model, keys, *, x):
    """``num_reps`` log p̂_k(x) - log p(x) per kind: naive MC (1, R), IS with (q, p(z|x)) (2, R)."""
    chunk_size = _chunk_size(config, k, num_reps)
    post = model.posterior(x)
    log_px = model.log_marginal(x)

    def naive(key, prior):
        return lvm.naive_monte_carlo(
            key, model.log_likelihood, prior, x, num_samples=k, chunk_size=chunk_size
        )

    def importance(key, q):
        return lvm.importance_sampling(
            key, model.log_joint, q, x, num_samples=k, chunk_size=chunk_size
        )

    setups = {
        "naive": (naive, stack([model.prior()])),
        "is": (importance, stack([_proposal(post, config.proposal_scale_sq), post])),
    }
    return [
        over_repetitions(setups[kind][0], key, setups[kind][1], num_reps=num_reps) - log_px
        for kind, key in zip(kinds, keys, strict=True)
    ]


def _errors(model, x, config, key, *, num_samples, num_reps):
    """Errors log p̂ - log p(x) of naive MC, IS with q and IS with the posterior: each (R,).

    A program holds at most one chunked scan: both estimators share one program only when
    neither is chunked (see ``_testbeds.over_repetitions`` for why).
    """
    keys = tuple(jax.random.split(key))
    if _chunk_size(config, num_samples, num_reps) is None:
        groups = [("naive", "is")]
    else:
        groups = [("naive",), ("is",)]
    out = {}
    for kinds in groups:
        fn = jax.jit(partial(_estimates, config, kinds, num_samples, num_reps, x=x))
        group_keys = [keys[("naive", "is").index(kind)] for kind in kinds]
        out |= dict(zip(kinds, fn(model, group_keys), strict=True))
    return {"prior": out["naive"][0], "proposal": out["is"][0], "posterior": out["is"][1]}


@partial(jax.jit, static_argnums=0)
def setup(config: Config, seed):
    """Models, datapoints and estimation keys (no estimator runs here)."""
    model_key, data_key, tail_key, est_key, dim_key = jax.random.split(jax.random.key(seed), 5)
    d = config.latent_dim
    model = _model(model_key, d, config)
    _, x_typical = model.sample(data_key)
    u_key, noise_key = jax.random.split(tail_key)
    u = jax.random.normal(u_key, (d,))
    z_tail = config.tail_norm * u / jnp.linalg.norm(u)
    noise = config.noise_std * jax.random.normal(noise_key, (model.data_dim,))
    x_tail = model.weight @ z_tail + model.bias + noise
    by_dim = []
    for d_i in config.dims:
        m_key, x_key, e_key = jax.random.split(jax.random.fold_in(dim_key, d_i), 3)
        model_d = _model(m_key, d_i, config)
        _, x_d = model_d.sample(x_key)
        by_dim.append((model_d, x_d, model_d.posterior(x_d), e_key))
    posts = [model.posterior(x) for x in (x_typical, x_tail)]
    return model, [x_typical, x_tail], posts, est_key, by_dim


def simulate(config: Config, seed: int) -> dict:
    model, xs, posts, est_key, by_dim = setup(config, seed)
    errors_by_k = {r: np.zeros((len(xs), len(config.num_samples), config.num_reps)) for r in ROLES}
    for j, k in enumerate(config.num_samples):
        for i, x in enumerate(xs):
            key = jax.random.fold_in(jax.random.fold_in(est_key, k), i)
            err = _errors(model, x, config, key, num_samples=k, num_reps=config.num_reps)
            for r in ROLES:
                errors_by_k[r][i, j] = np.asarray(err[r])
    errors_by_dim = {r: np.zeros((len(by_dim), config.dim_num_reps)) for r in ROLES}
    for i, (model_d, x_d, _, e_key) in enumerate(by_dim):
        err = _errors(
            model_d,
            x_d,
            config,
            e_key,
            num_samples=config.dim_num_samples,
            num_reps=config.dim_num_reps,
        )
        for r in ROLES:
            errors_by_dim[r][i] = np.asarray(err[r])
    # The exact log p(x) from the same formula the errors used, for the titles.
    log_px = [float(jax.jit(type(model).log_marginal)(model, x)) for x in xs]
    return {
        "log_px": np.array(log_px),
        "posteriors": posts,
        "posteriors_by_dim": [p for _, _, p, _ in by_dim],
        "errors_by_k": errors_by_k,
        "errors_by_dim": errors_by_dim,
    }


def _summaries(err):
    rel, rel_se = rms_se(np.expm1(err))
    log_rms, log_se = rms_se(err)
    return {
        "rel_rmse": rel,
        "rel_rmse_se": rel_se,
        "log_rmse": log_rms,
        "log_rmse_se": log_se,
        "max_abs_log_error": np.max(np.abs(err), axis=-1),
    }


def _chi2(post, config):
    """Exact chi^2 of the prior and of q = N(mu, s^2 Sigma) w.r.t. the posterior (numpy, float64)."""
    d = post.loc.shape[-1]
    prior = SimpleNamespace(loc=np.zeros(d), scale_tril=np.eye(d))
    scale = math.sqrt(config.proposal_scale_sq)
    q = SimpleNamespace(loc=post.loc, scale_tril=scale * post.scale_tril)
    return {
        "prior": relative_variance_gaussian(post, prior),
        "proposal": relative_variance_gaussian(post, q),
    }


def run(config: Config, seed: int) -> dict:
    sim = jax.tree.map(np.asarray, simulate(config, seed))
    chi2s = [_chi2(p, config) for p in sim["posteriors"]]
    chi2s_d = [_chi2(p, config) for p in sim["posteriors_by_dim"]]
    chi2 = {r: [c[r] for c in chi2s] for r in ("prior", "proposal")}
    chi2_d = {r: [c[r] for c in chi2s_d] for r in ("prior", "proposal")}
    per_k = {r: _summaries(sim["errors_by_k"][r].astype(np.float64)) for r in ROLES}
    per_d = {r: _summaries(sim["errors_by_dim"][r].astype(np.float64)) for r in ROLES}
    ks = list(config.num_samples)
    xs_log_px = sim["log_px"]
    return {
        "config": config,
        "seed": seed,
        "datapoints": ["typical", "tail"],
        "log_px": xs_log_px,
        "num_samples": ks,
        "chi2": chi2,
        "per_k": per_k,
        "dims": list(config.dims),
        "chi2_by_dim": chi2_d,
        "per_dim": per_d,
    }


_LABELS = {
    "prior": "naive MC: z ~ p(z)",
    "proposal": "IS: z ~ N(μ, 2Σ)",
    "posterior": "IS: z ~ p(z|x)",
}


def _band(ax, x, y, se, color, label, marker="o-"):
    ax.plot(x, y, marker, color=color, ms=3.5, label=label)
    ax.fill_between(x, np.maximum(y - se, y * 0.05), y + se, color=color, alpha=0.25)


def _prediction(chi2, k, metric):
    """sqrt(chi^2/k): exact for p̂ (top row); for log p̂ a delta-method value, shown where < 3."""
    pred = np.sqrt(np.asarray(chi2, np.float64) / k)
    return pred if metric == "rel_rmse" else np.where(pred < 3.0, pred, np.nan)


def _posterior_note(ax, max_err, right=False):
    ax.text(
        0.97 if right else 0.03,
        0.04,
        f"q = p(z|x): error 0 (largest |log p̂ − log p| = {max_err:.0e})",
        color=COLORS["posterior"],
        transform=ax.transAxes,
        fontsize=8,
        ha="right" if right else "left",
    )


def plot(res: dict):
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.6))
    ks = np.array(res["num_samples"], np.float64)
    pk = res["per_k"]
    for col, dp in enumerate(res["datapoints"]):
        for row, (metric, ylabel) in enumerate(
            [
                ("rel_rmse", "relative RMS error of p̂_k(x)"),
                ("log_rmse", "RMS error of log p̂_k(x)  (nats)"),
            ]
        ):
            ax = axes[row, col]
            for role in ("prior", "proposal"):
                c = COLORS[role]
                chi2 = res["chi2"][role][col]
                _band(
                    ax, ks, pk[role][metric][col], pk[role][metric + "_se"][col], c, _LABELS[role]
                )
                ax.plot(
                    ks,
                    _prediction(chi2, ks, metric),
                    "--",
                    color=c,
                    lw=1,
                    label=f"√(χ²/k), χ² = {chi2:.3g}",
                )
            _posterior_note(ax, float(np.max(pk["posterior"]["max_abs_log_error"][col])))
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("number of samples k")
            ax.set_ylabel(ylabel)
            ax.set_title(
                f"{dp} datapoint, d = {res['config'].latent_dim}, log p(x) = {res['log_px'][col]:.1f} nats"
            )
            ax.legend(loc="upper right", fontsize=7.5)
    dims = np.array(res["dims"], np.float64)
    k = res["config"].dim_num_samples
    pd = res["per_dim"]
    for row, metric in enumerate(("rel_rmse", "log_rmse")):
        ax = axes[row, 2]
        for role in ("prior", "proposal"):
            c = COLORS[role]
            _band(
                ax,
                dims,
                np.array(pd[role][metric]),
                np.array(pd[role][metric + "_se"]),
                c,
                _LABELS[role],
            )
            ax.plot(
                dims,
                _prediction(res["chi2_by_dim"][role], k, metric),
                "--",
                color=c,
                lw=1,
                label=f"√(χ²/k), {_LABELS[role].split(':')[0]}",
            )
        _posterior_note(ax, float(np.max(pd["posterior"]["max_abs_log_error"])), right=True)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(dims, [f"{d:g}" for d in dims])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("latent dimension d  (D = 4d)")
        ax.set_ylabel(
            "relative RMS error of p̂_k(x)" if row == 0 else "RMS error of log p̂_k(x)  (nats)"
        )
        ax.set_title(f"typical datapoint, k = {k} samples, growing d")
        ax.legend(loc="upper left", fontsize=7.5)
    fig.suptitle(
        "Naive Monte Carlo vs importance sampling: RMS error over "
        f"{res['config'].num_reps} repetitions (bands ± 1 s.e.). Dashed: √(χ²/k), exact for p̂ (top), "
        "delta method for log p̂ (bottom, drawn where < 3)",
        fontsize=11,
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
    for role in ("prior", "proposal"):
        print(f"{role:9s} chi2 (typical, tail) = {res['chi2'][role]}")
        print(f"{role:9s} log RMSE vs k, typical: {np.round(res['per_k'][role]['log_rmse'][0], 3)}")
        print(f"{role:9s} log RMSE vs k, tail:    {np.round(res['per_k'][role]['log_rmse'][1], 3)}")
        print(f"{role:9s} chi2 by d = {np.array(res['chi2_by_dim'][role])}")
        print(f"{role:9s} log RMSE by d = {np.round(res['per_dim'][role]['log_rmse'], 3)}")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
