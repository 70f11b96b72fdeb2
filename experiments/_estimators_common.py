r"""Shared pieces of the ``experiments/estimators_*.py`` figure scripts (not run by ``just figures``).

Command line, output files, Monte-Carlo summaries with standard errors, and the one
closed form every figure leans on: the second moment of the importance weight between
two Gaussians,

.. math:: \chi^2(p \,\|\, q) + 1 = \mathbb E_q\Big[\Big(\frac{p(z)}{q(z)}\Big)^2\Big]
          = \int \frac{p(z)^2}{q(z)}\,dz ,

which for :math:`p = p(z \mid x)` is :math:`\mathrm{Var}_q(w)/p(x)^2 + 1`, the relative
variance of one importance weight :math:`w = p(x,z)/q(z)`.
"""

import math

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _common import parse_args, save_figure, save_json  # noqa: E402, F401  (re-exported)

#: One colour per proposal role, shared by every figure.
COLORS = {
    "prior": "tab:red",
    "proposal": "tab:blue",
    "posterior": "tab:green",
    "exact": "black",
}


def style() -> None:
    """One look for all estimator figures."""
    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "font.size": 10,
            "axes.titlesize": 10.5,
            "axes.labelsize": 10,
            "legend.fontsize": 8.5,
            "axes.grid": True,
            "grid.alpha": 0.3,
        }
    )


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


def log_second_moment_gaussian(p_loc, p_cov, q_loc, q_cov) -> float:
    r""":math:`\log \int p(z)^2 / q(z)\,dz` for Gaussians p, q (float64, closed form).

    With :math:`A = 2\Sigma_p^{-1} - \Sigma_q^{-1}` (must be positive definite, else the
    integral diverges and this returns ``inf``), :math:`b = 2\Sigma_p^{-1}\mu_p - \Sigma_q^{-1}\mu_q`:

    .. math:: -\tfrac12\log|A| - \log|\Sigma_p| + \tfrac12\log|\Sigma_q|
              + \tfrac12 b^\top A^{-1} b - \mu_p^\top\Sigma_p^{-1}\mu_p
              + \tfrac12 \mu_q^\top \Sigma_q^{-1}\mu_q .
    """
    p_loc, q_loc = np.asarray(p_loc, np.float64), np.asarray(q_loc, np.float64)
    p_cov, q_cov = np.asarray(p_cov, np.float64), np.asarray(q_cov, np.float64)
    p_prec, q_prec = np.linalg.inv(p_cov), np.linalg.inv(q_cov)
    a = 2.0 * p_prec - q_prec
    sign, log_det_a = np.linalg.slogdet(a)
    if sign <= 0 or np.min(np.linalg.eigvalsh((a + a.T) / 2)) <= 0:
        return math.inf
    b = 2.0 * p_prec @ p_loc - q_prec @ q_loc
    quad = b @ np.linalg.solve(a, b) / 2 - p_loc @ p_prec @ p_loc + q_loc @ q_prec @ q_loc / 2
    return float(
        -0.5 * log_det_a - np.linalg.slogdet(p_cov)[1] + 0.5 * np.linalg.slogdet(q_cov)[1] + quad
    )


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
    return values.reshape(num_proposals, num_reps)


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
    import lvm

    gmm = lvm.GaussianMixture(
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
