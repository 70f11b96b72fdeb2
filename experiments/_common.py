r"""The one helper module of the figure scripts (not run by ``just figures``).

Every ``experiments/<name>.py`` takes ``--quick``, ``--seed`` and ``--out-dir`` and writes
``<out-dir>/<name>.{png,pdf,json}``; the VAE scripts take the budget flags too. Sections:

* **flags, look and output files**: :func:`parse_args`, :func:`style`, :func:`save_figure`,
  :func:`save_json`;
* **Monte-Carlo summaries**: means, variances and RMS with their standard errors, and the
  control-variate bias estimate;
* **exact testbeds** of the estimator figures: the closed-form second moment of an
  importance weight between Gaussians, the K = 3 mixture, the k grid;
* **the VAE runs** shared by the ``vae_*`` figures: the :class:`Budget`, the models, the
  training cache under ``runs/vae``.

The chi-square closed form every estimator figure leans on is the second moment of the
importance weight between two Gaussians,

.. math:: \chi^2(p \,\|\, q) + 1 = \mathbb E_q\Big[\Big(\frac{p(z)}{q(z)}\Big)^2\Big]
          = \int \frac{p(z)^2}{q(z)}\,dz ,

which for :math:`p = p(z \mid x)` is :math:`\mathrm{Var}_q(w)/p(x)^2 + 1`, the relative
variance of one importance weight :math:`w = p(x,z)/q(z)`.

Runs are shared. The models that several figures use (VAE k=1, 5, 50 and IWAE k=5, 50)
are trained once and kept under ``--runs-dir`` (default ``runs/vae``, git-ignored), one
folder per run named after the model and a fingerprint of every setting except the
number of epochs. A script that finds a run's checkpoint loads it (or trains it further
when more epochs are asked for, through ``lvm.train.train_vae(resume=True)``); a script
that does not, trains it. So each script works alone on a fresh clone, and
``just figures`` trains each model once.

Budgets (one frozen :class:`Budget`, chosen by flags):

* default: 5 epochs for every 784-200-200-50 model, Adam at a constant 1e-3, the full
  50,000 training and 10,000 validation images; test log p(x) with k = 5,000 on the first
  1,000 test images; the 2-D latent model 20 epochs. This is what fits in well under
  45 minutes on a 2-core CPU (the two k = 50 models dominate: about 1 min per epoch each).
* ``--paper-budget``: Burda et al. (2016): 3,280 epochs with their schedule (learning rate
  1e-3 * 10^(-i/7) for 3^i epochs, i = 0..7), the full 10,000-image test set. For a GPU.
* ``--quick``: a tiny model on 500 images for one epoch, k = 64 for log p(x): seconds.
"""

import argparse
import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lvm import ELBO, IWAE  # noqa: E402
from lvm.data.mnist import BinarizedMNIST, load_binarized_mnist  # noqa: E402
from lvm.models.vae import VAEConfig  # noqa: E402
from lvm.train import TrainConfig, run_keys, train_vae  # noqa: E402

# ================================================================ flags, look, output files


def parse_args(argv, description: str, *, vae: bool = False) -> argparse.Namespace:
    """Parse ``--quick``, ``--seed``, ``--out-dir`` (and with ``vae=True`` the budget flags).

    With ``vae=True`` the namespace also holds ``budget``, the :class:`Budget` the flags
    select, and ``runs_dir``.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--seed", type=int, default=0, help="root PRNG seed")
    parser.add_argument("--out-dir", type=Path, default=Path("paper_figures"))
    if not vae:
        return parser.parse_args(argv)
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=None,
        help="where trained runs are kept and shared between scripts "
        "(default runs/vae; with --quick, runs/vae-quick)",
    )
    parser.add_argument(
        "--paper-budget",
        action="store_true",
        help="Burda et al.'s budget: 3,280 epochs, their learning-rate schedule, full test set",
    )
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the 50-D models")
    parser.add_argument(
        "--num-test", type=int, default=None, help="test images for log p(x) (0 = all 10,000)"
    )
    args = parser.parse_args(argv)
    if args.quick and args.paper_budget:
        parser.error("--quick and --paper-budget exclude each other")
    budget = Budget()
    if args.paper_budget:
        budget = budget.paper()
    if args.quick:
        budget = budget.quick()
    if args.epochs is not None:
        budget = replace(budget, num_epochs=args.epochs)
    if args.num_test is not None:
        budget = replace(budget, num_test=args.num_test or None)
    if args.runs_dir is None:
        args.runs_dir = Path("runs/vae-quick" if args.quick else "runs/vae")
    args.budget = budget
    return args


def style(*, grid: bool = False) -> None:
    """One look for all figures; ``grid=True`` for line plots (not over images)."""
    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "font.size": 10,
            "axes.titlesize": 10.5,
            "axes.labelsize": 10,
            "legend.fontsize": 8.5,
            "axes.grid": grid,
            "grid.alpha": 0.3,
        }
    )


def save_figure(fig, out_dir: Path, name: str, *, dpi: int = 150) -> Path:
    """Write ``<out_dir>/<name>.png`` and ``.pdf``, close the figure; returns the PNG path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{name}.png"
    fig.savefig(png, dpi=dpi, bbox_inches="tight")
    fig.savefig(out_dir / f"{name}.pdf", bbox_inches="tight")
    plt.close(fig)
    return png


def to_jsonable(obj):
    """Dataclasses, dicts, sequences, paths and arrays as JSON values; refuses NaN and Inf."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, str | bool):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    arr = np.asarray(obj)
    if arr.dtype.kind in "fc":
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"refusing to write a non-finite number to JSON: {arr}")
        return arr.astype(float).tolist()
    if arr.dtype.kind in "iub":
        return arr.tolist()
    return repr(obj)


def save_json(out_dir: Path, name: str, data: dict) -> Path:
    """Write the numbers behind a figure to ``<out_dir>/<name>.json`` (finite numbers only)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(to_jsonable(data), indent=1))
    return path


# ================================================================ Monte-Carlo summaries


def mean_se(values, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Sample mean and its standard error along ``axis`` (repetitions)."""
    values = np.asarray(values, np.float64)
    n = values.shape[axis]
    return values.mean(axis), values.std(axis, ddof=1) / math.sqrt(n)


def var_se(values, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    r"""Sample variance and its standard error :math:`\sqrt{(m_4 - s^4)/n}` along ``axis``."""
    values = np.asarray(values, np.float64)
    n = values.shape[axis]
    centred = values - values.mean(axis, keepdims=True)
    var = (centred**2).sum(axis) / (n - 1)
    m4 = (centred**4).mean(axis)
    return var, np.sqrt(np.maximum(m4 - var**2, 0.0) / n)


def rms_se(values, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    r"""Root mean square :math:`\sqrt{\overline{e^2}}` and its standard error (delta method)."""
    msq, msq_se = mean_se(np.asarray(values, np.float64) ** 2, axis)
    rms = np.sqrt(msq)
    return rms, msq_se / (2.0 * np.maximum(rms, 1e-300))


def mean_with_control_variates(values, controls) -> tuple[float, float]:
    r"""Mean of ``values`` (R,) and its standard error, with regression control variates.

    ``controls`` (C, R) are statistics of the same draws whose means are exactly 0 (known in
    closed form and subtracted). The least-squares fit :math:`\hat\beta` of the values on them
    is subtracted: :math:`\overline{y - c^\top\hat\beta}` keeps the mean of y (up to
    :math:`O(1/R)` from estimating :math:`\beta`) and loses the part of its spread the controls
    explain. Standard error from the residuals.
    """
    y = np.asarray(values, np.float64)
    c = np.asarray(controls, np.float64).T
    centred = c - c.mean(0)
    beta, *_ = np.linalg.lstsq(centred, y - y.mean(), rcond=None)
    adjusted = y - c @ beta
    return float(adjusted.mean()), float(adjusted.std(ddof=1) / math.sqrt(len(y)))


def log_bias_control_variate(log_p_hat, log_px: float, axis: int = -1):
    r"""Mean and standard error of :math:`\log \hat p_k - \log p(x)` with a control variate.

    Because :math:`\hat p_k` is unbiased, :math:`u = \hat p_k/p(x) - 1` has mean exactly 0, so
    :math:`\log(1+u) - u` has the same mean as :math:`\log(1+u)` while its spread is
    :math:`O(u^2)` instead of :math:`O(u)`. This resolves biases of order
    :math:`\chi^2/(2k)` that are far below the raw Monte-Carlo noise :math:`\sqrt{\chi^2/k}`.
    ``log1p``/``expm1`` keep it exact to float round-off when u is tiny.
    """
    err = np.asarray(log_p_hat, np.float64) - log_px
    return mean_se(err - np.expm1(err), axis)


# ================================================================ exact testbeds (estimator figures)

#: One colour per proposal role, shared by every estimator figure.
COLORS = {
    "prior": "tab:red",
    "proposal": "tab:blue",
    "posterior": "tab:green",
    "exact": "black",
}


def log_moment_gaussian(p_loc, p_cov, q_loc, q_cov, order: int = 2) -> float:
    r""":math:`\log \int p(z)^n q(z)^{1-n}\,dz = \log \mathbb E_q[(p/q)^n]` for Gaussians p, q (float64).

    With precisions :math:`P_p, P_q`, :math:`A = nP_p - (n-1)P_q` (must be positive definite,
    else the integral diverges and this returns ``inf``) and
    :math:`b = nP_p\mu_p - (n-1)P_q\mu_q`, the integrand is :math:`e^{-z^\top A z/2 + b^\top z + c}`:

    .. math:: -\tfrac12\log|A| - \tfrac n2\log|\Sigma_p| + \tfrac{n-1}2 \log|\Sigma_q|
              + \tfrac12 b^\top A^{-1} b - \tfrac n2 \mu_p^\top P_p\mu_p
              + \tfrac{n-1}2 \mu_q^\top P_q\mu_q

    (the powers of 2 pi cancel). ``order`` n = 2 gives :math:`\chi^2(p\,\|\,q) + 1`.
    """
    n = order
    p_loc, q_loc = np.asarray(p_loc, np.float64), np.asarray(q_loc, np.float64)
    p_cov, q_cov = np.asarray(p_cov, np.float64), np.asarray(q_cov, np.float64)
    p_prec, q_prec = np.linalg.inv(p_cov), np.linalg.inv(q_cov)
    a = n * p_prec - (n - 1) * q_prec
    sign, log_det_a = np.linalg.slogdet(a)
    if sign <= 0 or np.min(np.linalg.eigvalsh((a + a.T) / 2)) <= 0:
        return math.inf
    b = n * p_prec @ p_loc - (n - 1) * q_prec @ q_loc
    quad = (
        b @ np.linalg.solve(a, b) / 2
        - n * (p_loc @ p_prec @ p_loc) / 2
        + (n - 1) * (q_loc @ q_prec @ q_loc) / 2
    )
    return float(
        -0.5 * log_det_a
        - 0.5 * n * np.linalg.slogdet(p_cov)[1]
        + 0.5 * (n - 1) * np.linalg.slogdet(q_cov)[1]
        + quad
    )


def log_second_moment_gaussian(p_loc, p_cov, q_loc, q_cov) -> float:
    r""":math:`\log \int p(z)^2 / q(z)\,dz` for Gaussians p, q: :func:`log_moment_gaussian` with n = 2."""
    return log_moment_gaussian(p_loc, p_cov, q_loc, q_cov, 2)


def relative_moments_gaussian(posterior, proposal) -> tuple[float, float]:
    r"""The central moments :math:`\mu_2 = \chi^2` and :math:`\mu_3` of :math:`r = w/p(x) = p(z|x)/q(z)` under q.

    From :math:`M_n = \mathbb E_q[r^n]` (:func:`log_moment_gaussian`): :math:`\mu_2 = M_2 - 1`,
    :math:`\mu_3 = M_3 - 3M_2 + 2`; ``inf`` where a moment diverges.
    """
    args = (posterior.loc, _covariance(posterior), proposal.loc, _covariance(proposal))
    m2, m3 = (math.exp(min(log_moment_gaussian(*args, n), 700.0)) for n in (2, 3))
    return m2 - 1.0, m3 - 3.0 * m2 + 2.0


def relative_variance_gaussian(posterior, proposal) -> float:
    r"""Exact :math:`\mathrm{Var}_q(w)/p(x)^2 = \chi^2(p(z|x) \,\|\, q)` for Gaussian posterior and q."""
    log_m2 = log_second_moment_gaussian(
        posterior.loc, _covariance(posterior), proposal.loc, _covariance(proposal)
    )
    return math.expm1(log_m2) if log_m2 < 700 else math.inf


def scaled_posterior_relative_variance(scale_sq: float, latent_dim: int) -> float:
    r"""The same for :math:`q = \mathcal N(\mu, s^2\Sigma)`: :math:`(s^2/\sqrt{2s^2-1})^d - 1`, s² > 1/2."""
    if scale_sq <= 0.5:
        return math.inf
    return math.expm1(latent_dim * math.log(scale_sq / math.sqrt(2.0 * scale_sq - 1.0)))


def _covariance(dist) -> np.ndarray:
    tril = np.asarray(dist.scale_tril, np.float64)
    return tril @ tril.T


def log_k_grid(max_k: int, per_decade: int = 3) -> list[int]:
    """Distinct integers 1..max_k spaced evenly on a log axis (1, 2, 5, 10, 20, 50, ... for 3)."""
    steps = {1: [1], 2: [1, 3], 3: [1, 2, 5], 4: [1, 2, 3, 5]}[per_decade]
    grid = []
    decade = 1
    while decade <= max_k:
        grid += [s * decade for s in steps if s * decade <= max_k]
        decade *= 10
    return grid


def over_repetitions(estimate, key, proposals, *, num_reps: int):
    """``estimate(key, q)`` for each stacked proposal q and ``num_reps`` keys: shape (P, R).

    ``estimate`` may return a pytree of scalars; every leaf comes back with shape (P, R).

    One flat ``vmap`` over all (proposal, repetition) combinations: it compiles much faster
    than two nested ones. Two rules keep the compiled programs from hanging on this 2-core
    CPU backend (jax 0.10.2; seen in 5 runs of 8 when broken):

    * one compiled program per sample size k, holding at most one chunked estimator
      (``lax.scan``): a program with several independent scans deadlocked in XLA's CPU runtime;
    * the datapoint x is closed over as a constant, not traced: ``lvm``'s finiteness check on
      a traced x compiles a host callback into the program; on a concrete x it runs once, eagerly.
    """
    num_proposals = jax.tree.leaves(proposals)[0].shape[0]
    keys = jax.random.split(key, num_proposals * num_reps)

    def repeat(a):
        return jnp.repeat(a, num_reps, axis=0)

    values = jax.vmap(estimate)(keys, jax.tree.map(repeat, proposals))
    return jax.tree.map(lambda v: v.reshape(num_proposals, num_reps), values)


def stack(trees):
    """Stack a list of same-structure pytrees (e.g. proposals) along a new leading axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


#: The exact discrete-latent testbed of the ELBO-gap and IWAE figures: K = 3 spherical
#: Gaussians in 2-D and a datapoint between them, so that p(z|x) is spread over components.
MIXTURE_LOGITS = (0.0, -0.5, -1.0)
MIXTURE_MEANS = ((-2.0, 0.0), (2.0, 0.0), (0.0, 2.5))
MIXTURE_STDS = (1.0, 0.8, 0.6)
MIXTURE_X = (0.6, 1.2)


def mixture_testbed():
    """``(GaussianMixture, x)``: the K = 3 mixture above and its datapoint x."""
    from lvm import GaussianMixture

    gmm = GaussianMixture(
        jnp.array(MIXTURE_LOGITS),
        jnp.array(MIXTURE_MEANS),
        jnp.array(MIXTURE_STDS),
        covariance_type="spherical",
    )
    return gmm, jnp.array(MIXTURE_X)


def categorical_kl(q, p):
    r"""Exact :math:`\mathrm{KL}(q \,\|\, p)` between two ``lvm.Categorical``: a K-term sum."""
    log_q, log_p = jax.nn.log_softmax(q.logits), jax.nn.log_softmax(p.logits)
    return jnp.sum(jnp.exp(log_q) * (log_q - log_p))


# ================================================================ the VAE runs

#: The models shared by the learning-curve, sample and log-likelihood figures.
#: "VAE k" = the ELBO averaged over k samples; "IWAE k" = the bound L_k (Burda et al., 2016);
#: "IWAE k, DReG" = the same bound trained with the doubly reparameterized gradient
#: (Tucker et al., 2019): same objective, lower-variance encoder gradient.
RUNS = {
    "vae_k1": ELBO(1),
    "vae_k5": ELBO(5),
    "vae_k50": ELBO(50),
    "iwae_k5": IWAE(5),
    "iwae_k50": IWAE(50),
    "iwae_k5_dreg": IWAE(5, gradient="dreg"),
    "iwae_k50_dreg": IWAE(50, gradient="dreg"),
}
#: Runs reported as a paired difference against another run on the same test images.
PAIRED_WITH = {"iwae_k5_dreg": "iwae_k5", "iwae_k50_dreg": "iwae_k50"}
LABELS = {
    "vae_k1": "VAE, k=1",
    "vae_k5": "VAE, k=5",
    "vae_k50": "VAE, k=50",
    "iwae_k5": "IWAE, k=5",
    "iwae_k50": "IWAE, k=50",
    "iwae_k5_dreg": "IWAE, k=5, DReG",
    "iwae_k50_dreg": "IWAE, k=50, DReG",
    "vae2d_k1": "VAE, 2-D latent, k=1",
}
RUN_COLORS = {
    "vae_k1": "tab:gray",
    "vae_k5": "tab:cyan",
    "vae_k50": "tab:blue",
    "iwae_k5": "tab:orange",
    "iwae_k50": "tab:red",
    "iwae_k5_dreg": "tab:olive",
    "iwae_k50_dreg": "tab:purple",
}

#: Burda et al. (2016), Table 1, MNIST, one stochastic layer (784-200-200-50, tanh),
#: 3,280 epochs, MNIST re-binarized at random for every minibatch (dynamic binarization):
#: test log p(x) estimated with k = 5,000, and active units.
PUBLISHED = {
    "vae_k1": (-86.76, 19),
    "vae_k5": (-86.47, 20),
    "vae_k50": (-86.35, 20),
    "iwae_k5": (-85.54, 22),
    "iwae_k50": (-84.78, 25),
    # Not in Burda et al.; Tucker et al. (2019) used other architectures and report no such row.
    "iwae_k5_dreg": (None, None),
    "iwae_k50_dreg": (None, None),
}
PUBLISHED_SOURCE = (
    "Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, Table 1: "
    "MNIST with dynamic binarization, one stochastic layer, 3,280 epochs"
)


@dataclass(frozen=True)
class Budget:
    """How long, and on how much data, the models are trained and evaluated."""

    num_epochs: int = 5
    #: the 2-D latent model is cheap (its cost is that of a k=1 VAE), so it gets more epochs.
    num_epochs_2d: int = 20
    schedule: str = "constant"
    learning_rate: float = 1e-3
    hidden_sizes: tuple[int, ...] = (200, 200)
    latent_dim: int = 50
    #: None = the whole split (50,000 / 10,000); else the first n images in TFDS's order.
    num_train: int | None = None
    num_validation: int | None = None
    #: test images for the k = 5,000 log p(x) (None = all 10,000); ELBO and active units
    #: always use the whole test split.
    num_test: int | None = 1000
    eval_num_samples: int = 5000
    eval_chunk_size: int = 100
    checkpoint_every: int = 5

    def quick(self) -> "Budget":
        return replace(
            self,
            num_epochs=1,
            num_epochs_2d=1,
            hidden_sizes=(32,),
            latent_dim=4,
            num_train=500,
            num_validation=100,
            num_test=20,
            eval_num_samples=64,
            eval_chunk_size=16,
        )

    def paper(self) -> "Budget":
        return replace(self, num_epochs=3280, num_epochs_2d=3280, schedule="iwae", num_test=None)


@functools.cache
def _all_splits() -> BinarizedMNIST:
    # Read once per process: the smoke tests run every script in one process.
    return load_binarized_mnist()


def load_data(budget: Budget) -> BinarizedMNIST:
    """Binarized MNIST (TFDS, static binarization), each split cut to the budget's size."""
    data = _all_splits()
    return BinarizedMNIST(
        train=data.train[: budget.num_train],
        validation=data.validation[: budget.num_validation],
        test=data.test,
    )


def model_config(name: str, budget: Budget) -> VAEConfig:
    """The architecture of run ``name`` (a key of :data:`RUNS`, or ``"vae2d_k1"``)."""
    latent_dim = 2 if name == "vae2d_k1" else budget.latent_dim
    return VAEConfig(latent_dim=latent_dim, hidden_sizes=budget.hidden_sizes)


def train_config(name: str, budget: Budget, *, seed: int) -> TrainConfig:
    """The :class:`TrainConfig` of run ``name`` (a key of :data:`RUNS`, or ``"vae2d_k1"``)."""
    latent_2d = name == "vae2d_k1"
    return TrainConfig(
        objective=ELBO(1) if latent_2d else RUNS[name],
        num_epochs=budget.num_epochs_2d if latent_2d else budget.num_epochs,
        learning_rate=budget.learning_rate,
        schedule=budget.schedule,
        seed=seed,
        checkpoint_every=budget.checkpoint_every,
        eval_every=1,
    )


class EvalKeys(NamedTuple):
    """The test-time branches of ``lvm.train.run_keys(seed).test``, one per consumer."""

    log_px: jax.Array
    elbo: jax.Array
    prior_samples: jax.Array
    reconstructions: jax.Array
    ais: jax.Array
    ais_vs_is: jax.Array


def eval_keys(seed: int) -> EvalKeys:
    """``split(run_keys(seed).test, 6)``: never a key that training (init, epochs, validation)
    draws with. ``log_px`` and ``elbo`` are the keys ``lvm.evaluate.evaluate(test, ...)`` splits
    off (``split(k, 4)[i] == split(k, 2)[i]`` with jax's threefry), so the figures' test
    numbers are those of ``python -m lvm.train`` with the same seed."""
    return EvalKeys(*jax.random.split(run_keys(seed).test, 6))


class _Verbatim(str):
    """A string whose repr is itself (a setting's repr written out by hand)."""

    def __repr__(self) -> str:
        return str(self)


def run_dir(
    runs_dir: Path, name: str, config: TrainConfig, num_train: int, model: VAEConfig
) -> Path:
    """``<runs_dir>/<name>-<fingerprint>``: the fingerprint covers all but the epoch settings.

    Runs that differ only in ``num_epochs`` share a folder, so asking for more epochs
    extends a run instead of starting again.
    """
    epoch_settings = {"num_epochs", "checkpoint_every", "eval_every"}
    settings = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.name not in epoch_settings
    }
    settings["num_train"] = num_train
    settings["model"] = model
    if config.nonfinite == "raise":
        # The default policy trains exactly as before these fields existed: same folder.
        del settings["nonfinite"], settings["max_consecutive_skips"]
    objective = config.objective
    if getattr(objective, "gradient", None) == "reparam":
        # Likewise the default gradient estimator: the objective's repr before `gradient` existed.
        kept = [f for f in dataclasses.fields(objective) if f.name != "gradient"]
        args = ", ".join(f"{f.name}={getattr(objective, f.name)!r}" for f in kept)
        settings["objective"] = _Verbatim(f"{type(objective).__name__}({args})")
    fingerprint = hashlib.sha256(repr(sorted(settings.items())).encode()).hexdigest()[:10]
    return runs_dir / f"{name}-{fingerprint}"


def trained(name: str, budget: Budget, data: BinarizedMNIST, *, seed: int, runs_dir: Path):
    """Train run ``name`` to the budget, or load (and extend) it from its checkpoint.

    Returns ``lvm.train.TrainResult(model, state, history)``; ``history`` holds every epoch
    of the run, with the training and validation bound of the run's own objective.
    """
    config = train_config(name, budget, seed=seed)
    out_dir = run_dir(runs_dir, name, config, len(data.train), model_config(name, budget))
    resume = (out_dir / "checkpoint.eqx").is_file()
    print(f"[{name}] {'resuming' if resume else 'training'} -> {out_dir}", flush=True)
    result = train_vae(
        config,
        data.train,
        model_config=model_config(name, budget),
        validation_x=data.validation,
        out_dir=out_dir,
        resume=resume,
        progress=True,
    )
    if len(result.history) != config.num_epochs:
        raise ValueError(
            f"{out_dir} holds a run of {len(result.history)} epochs, {config.num_epochs} asked "
            "for: pass --epochs to match it or another --runs-dir"
        )
    return result


def image_grid(images: np.ndarray, num_cols: int, pad: int = 1) -> np.ndarray:
    """Tile (n, 784) images into one 2-D array, ``num_cols`` per row, ``pad`` pixels apart."""
    images = np.asarray(images).reshape(-1, 28, 28)
    num_rows = math.ceil(len(images) / num_cols)
    size = 28 + pad
    grid = np.ones((num_rows * size + pad, num_cols * size + pad), np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, num_cols)
        grid[pad + r * size : pad + r * size + 28, pad + c * size : pad + c * size + 28] = image
    return grid
