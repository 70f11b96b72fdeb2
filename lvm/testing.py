r"""Monte-Carlo statistics and closed-form testbeds, shared by the tests and the figure scripts.

Everything here is NumPy in float64 on the host: the numbers an estimator is checked
against, never part of an estimator.

**Monte-Carlo summaries** of R independent repetitions :math:`y_1, \dots, y_R`:
:func:`mean_se`, :func:`var_se`, :func:`rms_se` (each value with its standard error),
:func:`mean_with_control_variates` and :func:`log_bias_control_variate` (a mean with
statistics of known mean subtracted, to resolve a bias far below the raw spread), and
:func:`log_log_slope` (the power law :math:`|b_k| \propto k^{s}` fitted to such means).

**Closed forms** of importance weights between Gaussians: the moments
:math:`M_n = \mathbb E_q[(p/q)^n]` (:func:`log_moment_gaussian`). For
:math:`p = p(z \mid x)` and the weight :math:`w = p(x, z)/q(z)`,

.. math:: \chi^2(p \,\|\, q) + 1 = \mathbb E_q\Big[\Big(\frac{p(z)}{q(z)}\Big)^2\Big]
          = \int \frac{p(z)^2}{q(z)}\,dz = \frac{\mathrm{Var}_q(w)}{p(x)^2} + 1 ,

the relative variance of one weight, which sets the error :math:`\sqrt{\chi^2/k}` and the
bias :math:`-\chi^2/(2k)` of the k-sample estimate :math:`\log \hat p_k(x)`.

**The K = 3 mixture testbed** (:func:`mixture_testbed`): a discrete latent whose
posterior is spread over three components, with exact log p(x) and p(z|x).
"""

import math

import jax.numpy as jnp
import numpy as np

from lvm.models.gmm import GaussianMixture

#: A statistic along one axis: an array, or a NumPy scalar when the input is 1-D.
_Stat = np.ndarray | np.floating

# ---------------------------------------------------------------- Monte-Carlo summaries


def mean_se(values, axis: int = -1) -> tuple[_Stat, _Stat]:
    r"""Sample mean :math:`\bar y` and its standard error :math:`s/\sqrt R` along ``axis``.

    :math:`s` is the sample standard deviation with ``ddof=1`` and R the length of ``axis``
    (the repetitions).
    """
    values = np.asarray(values, np.float64)
    n = values.shape[axis]
    return values.mean(axis), values.std(axis, ddof=1) / math.sqrt(n)


def var_se(values, axis: int = -1) -> tuple[_Stat, _Stat]:
    r"""Sample variance :math:`s^2` and its standard error :math:`\sqrt{(m_4 - s^4)/R}` along ``axis``.

    :math:`m_4` is the fourth central sample moment: :math:`\mathrm{Var}(s^2) \approx
    (\mu_4 - \sigma^4)/R` for large R.
    """
    values = np.asarray(values, np.float64)
    n = values.shape[axis]
    centred = values - values.mean(axis, keepdims=True)
    var = (centred**2).sum(axis) / (n - 1)
    m4 = (centred**4).mean(axis)
    return var, np.sqrt(np.maximum(m4 - var**2, 0.0) / n)


def rms_se(values, axis: int = -1) -> tuple[_Stat, _Stat]:
    r"""Root mean square :math:`\sqrt{\overline{e^2}}` and its standard error.

    By the delta method, :math:`\mathrm{se}(\sqrt{m}) = \mathrm{se}(m)/(2\sqrt m)` with
    :math:`m = \overline{e^2}` and :math:`\mathrm{se}(m)` from :func:`mean_se`.
    """
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


def log_log_slope(ks, values, se) -> tuple[float, float]:
    r"""Weighted least-squares slope s of :math:`\log|b_k| = a + s \log k`, and its standard error.

    ``values`` :math:`b_k` (e.g. biases at each k) with standard errors ``se``; by the delta
    method :math:`\log|b_k|` has standard error :math:`\sigma_k = \mathrm{se}_k/|b_k|`, and
    with weights :math:`1/\sigma_k^2` the coefficients' covariance is
    :math:`(X^\top W X)^{-1}`. Meaningful when every :math:`|b_k|` is resolved
    (several standard errors from 0).
    """
    ks, values, se = (np.asarray(a, np.float64) for a in (ks, values, se))
    y, sy = np.log(np.abs(values)), se / np.abs(values)
    design = np.stack([np.ones(len(ks)), np.log(ks)], 1)
    w = 1.0 / sy**2
    cov = np.linalg.inv(design.T @ (w[:, None] * design))
    coef = cov @ design.T @ (w * y)
    return float(coef[1]), math.sqrt(cov[1, 1])


# ---------------------------------------------------------------- importance weights between Gaussians


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

    ``posterior`` and ``proposal`` are Gaussians with ``loc`` and ``scale_tril`` (any
    ``lvm`` Gaussian). From :math:`M_n = \mathbb E_q[r^n]` (:func:`log_moment_gaussian`):
    :math:`\mu_2 = M_2 - 1`, :math:`\mu_3 = M_3 - 3M_2 + 2`; ``inf`` where a moment diverges.
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


def scaled_posterior_moment(scale_sq: float, latent_dim: int, order: int = 2) -> float:
    r""":math:`M_n = \mathbb E_q[(p/q)^n]` for :math:`p = \mathcal N(\mu, \Sigma)`, :math:`q = \mathcal N(\mu, s^2\Sigma)`.

    In the whitened coordinates the integral factorises over the d = ``latent_dim`` axes, each
    a 1-D Gaussian integral:

    .. math:: M_n = \Big(\frac{s^{\,n-1}}{\sqrt{n - (n-1)/s^2}}\Big)^d,

    finite when :math:`s^2 > (n-1)/n` (else ``inf``). n = 2 gives
    :math:`(s^2/\sqrt{2s^2 - 1})^d`.
    """
    n = order
    if n * scale_sq - (n - 1) <= 0:
        return math.inf
    s = math.sqrt(scale_sq)
    return math.exp(latent_dim * ((n - 1) * math.log(s) - 0.5 * math.log(n - (n - 1) / scale_sq)))


def scaled_posterior_relative_variance(scale_sq: float, latent_dim: int) -> float:
    r"""The same for :math:`q = \mathcal N(\mu, s^2\Sigma)`: :math:`(s^2/\sqrt{2s^2-1})^d - 1`, s² > 1/2."""
    if scale_sq <= 0.5:
        return math.inf
    return math.expm1(latent_dim * math.log(scale_sq / math.sqrt(2.0 * scale_sq - 1.0)))


def _covariance(dist) -> np.ndarray:
    tril = np.tril(np.asarray(dist.scale_tril, np.float64))
    return tril @ tril.T


# ---------------------------------------------------------------- the K = 3 mixture testbed

#: The exact discrete-latent testbed of the ELBO-gap and IWAE figures: K = 3 spherical
#: Gaussians in 2-D and a datapoint between them, so that p(z|x) is spread over components.
MIXTURE_LOGITS = (0.0, -0.5, -1.0)
MIXTURE_MEANS = ((-2.0, 0.0), (2.0, 0.0), (0.0, 2.5))
MIXTURE_STDS = (1.0, 0.8, 0.6)
MIXTURE_X = (0.6, 1.2)


def mixture_testbed():
    """``(GaussianMixture, x)``: the K = 3 mixture above and its datapoint x."""
    gmm = GaussianMixture(
        jnp.array(MIXTURE_LOGITS),
        jnp.array(MIXTURE_MEANS),
        jnp.array(MIXTURE_STDS),
        covariance_type="spherical",
    )
    return gmm, jnp.array(MIXTURE_X)
