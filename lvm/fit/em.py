r"""Expectation-maximisation for the Gaussian mixture (:class:`lvm.GaussianMixture`).

EM (Dempster, Laird & Rubin, 1977) alternates, for data :math:`x_{1..N}` with
sample weights :math:`w_n` (1 by default):

E-step, the posterior responsibilities under the current parameters,

.. math:: r_{nk} = p(z_n = k \mid x_n) = \frac{\pi_k \mathcal N(x_n; \mu_k, \Sigma_k)}
          {\sum_j \pi_j \mathcal N(x_n; \mu_j, \Sigma_j)},

M-step, the weighted maximum-likelihood estimates, with a covariance floor
:math:`\epsilon` (``reg_covar``, as scikit-learn) so that no component can collapse
onto a point and make :math:`\Sigma_k` singular,

.. math:: N_k = \sum_n w_n r_{nk}, \quad \pi_k = \frac{N_k}{\sum_n w_n}, \quad
          \mu_k = \frac{1}{N_k}\sum_n w_n r_{nk} x_n, \quad
          \Sigma_k = \frac{1}{N_k}\sum_n w_n r_{nk} x_n x_n^\top - \mu_k\mu_k^\top + \epsilon I.

Each iteration cannot decrease the mean log-likelihood
:math:`\ell = \sum_n w_n \log p(x_n) / \sum_n w_n`; :func:`fit_em` stops when it improves
by less than ``tol`` (scikit-learn's rule) or after ``max_iter`` iterations.

**How it is computed.** A Gaussian is an exponential family: with the features
:math:`\phi(x) = (x, \mathrm{vech}(x x^\top))` (upper triangle; :math:`x \odot x` for
diagonal and :math:`\lVert x\rVert^2` for spherical covariances),

.. math:: \log \pi_k + \log\mathcal N(x; \mu_k, \Sigma_k) = \phi(x)^\top \eta_k + c_k,
          \qquad \eta_k = \big(P_k\mu_k,\ -\tfrac12 \mathrm{vech}'(P_k)\big),\ P_k = \Sigma_k^{-1},

(off-diagonal entries of :math:`P_k` counted twice). So the E-step for all N points
and K components is ONE matrix product :math:`\Phi H^\top` of shapes
(N, F) x (F, K), and the M-step's weighted sums are ONE more,
:math:`(w \odot R)^\top \Phi`, (K, N) x (N, F), with F = D + D(D+1)/2. The features
are built once per fit; for large N both products run chunk by chunk in one fused
pass (:func:`_em_pass`), so each iteration reads the features from memory once.
The expanded quadratic form loses precision when the data sit far from the
origin, so the work is done in centred, unit-variance coordinates
(:mod:`lvm.fit._standardize`; EM is equivariant to that change of variables), and
the returned parameters are mapped back.
"""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from lvm._checks import (
    check_choice,
    check_data,
    check_non_negative,
    check_not_nan,
    check_positive_int,
    check_sample_weight,
)
from lvm.fit import _standardize as stdz
from lvm.fit.kmeans import kmeans, kmeans_plusplus, squared_distances
from lvm.models.gmm import COVARIANCE_TYPES, GaussianMixture
from lvm.types import Key, Scalar

_LOG_2PI = math.log(2.0 * math.pi)


class EMResult(NamedTuple):
    """What :func:`fit_em` and :func:`fit_em_from` return.

    ``trace[i]`` is the mean log-likelihood (nats per point) of the parameters
    entering iteration i (NaN after the last one), from the fast expanded form of
    the E-step; ``log_likelihood`` is that of the returned ``params`` (one M-step
    past the last trace entry), evaluated from whitened differences, which stays
    accurate in float32 even for a component squeezed to the covariance floor
    (where the trace can be off by ~1e-3 nats/point).
    ``restart_log_likelihood`` holds the final value of every restart; the best
    restart is the one returned.
    """

    params: GaussianMixture
    log_likelihood: Scalar
    trace: Float[Array, " max_iter"]
    num_iterations: Int[Array, ""]
    converged: Bool[Array, ""]
    restart_log_likelihood: Float[Array, " restarts"]


# ---------------------------------------------------------------- the computation


def _triu(d: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(d)


def _features(x: Float[Array, "N D"], covariance_type: str) -> Float[Array, "N F"]:
    r""":math:`\phi(x)`: x followed by its second-order statistics."""
    if covariance_type == "full":
        i, j = _triu(x.shape[1])
        second = x[:, i] * x[:, j]
    elif covariance_type == "diag":
        second = x * x
    else:
        second = jnp.sum(x * x, -1, keepdims=True)
    return jnp.concatenate([x, second], -1)


def _natural(params: GaussianMixture) -> tuple[Float[Array, "K F"], Float[Array, " K"]]:
    r"""(:math:`\eta_k`, :math:`c_k`) with :math:`\log\pi_k + \log\mathcal N(x) = \phi(x)^\top\eta_k + c_k`."""
    means, scale = params.means, params.scale
    k, d = means.shape
    const = params.log_mixture_weights - 0.5 * d * _LOG_2PI
    if params.covariance_type == "full":
        eye = jnp.broadcast_to(jnp.eye(d, dtype=means.dtype), (k, d, d))
        inv = jax.scipy.linalg.solve_triangular(scale, eye, lower=True)  # L^{-1}
        prec = jnp.swapaxes(inv, -1, -2) @ inv
        lin = jnp.einsum("kij,kj->ki", prec, means)
        i, j = _triu(d)
        quad = jnp.where(i == j, -0.5, -1.0)[None, :] * prec[:, i, j]
        half_log_det = jnp.sum(jnp.log(jnp.diagonal(scale, axis1=-2, axis2=-1)), -1)
        const = const - 0.5 * jnp.sum(means * lin, -1) - half_log_det
    elif params.covariance_type == "diag":
        prec = 1.0 / scale**2
        lin = means * prec
        quad = -0.5 * prec
        const = const - 0.5 * jnp.sum(means * lin, -1) - jnp.sum(jnp.log(scale), -1)
    else:
        prec = 1.0 / scale**2
        lin = means * prec[:, None]
        quad = -0.5 * prec[:, None]
        const = const - 0.5 * jnp.sum(means * lin, -1) - d * jnp.log(scale)
    return jnp.concatenate([lin, quad], -1), const


# Rows per chunk of the fused pass, and the data size from which chunking pays (below
# it, one pass over all rows at once is faster than a scan of small products).
_CHUNK = 4096
_MIN_CHUNKED = 16 * _CHUNK


def _em_pass(
    params: GaussianMixture, phi: Float[Array, "N F"], weight: Float[Array, " N"]
) -> tuple[Float[Array, "K F"], Float[Array, " K"], Scalar]:
    r"""One pass over the data: E-step and the M-step's sums, fused, ``_CHUNK`` rows at a time.

    Per chunk: log-joint :math:`\Phi_c H^\top + c` (one product), responsibilities,
    and the accumulation of :math:`(w \odot R_c)^\top \Phi_c` (a second product)
    while the chunk of features is still in cache, so the (N, F) features are read
    from memory once per iteration instead of twice. Returns the weighted sums
    :math:`\sum_n w_n r_{nk}\phi(x_n)`, :math:`N_k = \sum_n w_n r_{nk}` and the weighted
    mean log-likelihood of ``params``.
    """
    eta, const = _natural(params)
    n, f = phi.shape
    k = const.shape[0]
    chunk = _CHUNK if (n >= _MIN_CHUNKED and n % _CHUNK == 0) else n

    def body(carry, inputs):
        stats, nk, total_ll = carry
        ph, w = inputs
        log_joint = ph @ eta.T + const[None, :]
        # log-sum-exp by hand so that the exponentials are taken once and reused for r_nk.
        peak = jax.lax.stop_gradient(jnp.max(log_joint, axis=-1, keepdims=True))
        unnorm = jnp.exp(log_joint - peak)
        total = jnp.sum(unnorm, axis=-1, keepdims=True)
        wr = unnorm * (w[:, None] / total)
        log_px = (peak + jnp.log(total))[:, 0]
        return (stats + wr.T @ ph, nk + jnp.sum(wr, 0), total_ll + w @ log_px), None

    zero = jnp.zeros((), phi.dtype)
    init = (jnp.zeros((k, f), phi.dtype), jnp.zeros((k,), phi.dtype), zero)
    inputs = (phi.reshape(n // chunk, chunk, f), weight.reshape(n // chunk, chunk))
    (stats, nk, total_ll), _ = jax.lax.scan(body, init, inputs)
    return stats, nk, total_ll / jnp.sum(weight)


def _log_px_whitened(
    params: GaussianMixture, x: Float[Array, "N D"], batch_size: int = 4096
) -> Float[Array, " N"]:
    r"""log p(x_n) from whitened differences :math:`L_k^{-1}(x_n - \mu_k)`, in row batches.

    Slower than the expanded form of :func:`_em_pass` (an (N, K, D) intermediate, so it
    runs ``batch_size`` rows at a time) but its float32 error grows with
    :math:`\lVert P_k \rVert^{1/2}` instead of :math:`\lVert P_k \rVert`, which matters
    for a component squeezed near the covariance floor. Used for the reported
    log-likelihood of the fitted parameters.
    """
    means, scale = params.means, params.scale
    k, d = means.shape
    if params.covariance_type == "full":
        eye = jnp.broadcast_to(jnp.eye(d, dtype=means.dtype), (k, d, d))
        inv = jax.scipy.linalg.solve_triangular(scale, eye, lower=True)
        shift = jnp.einsum("kij,kj->ki", inv, means)
        log_det = jnp.sum(jnp.log(jnp.diagonal(scale, axis1=-2, axis2=-1)), -1)

        def whiten(row):
            return jnp.einsum("kij,j->ki", inv, row) - shift

    else:
        std = scale if params.covariance_type == "diag" else scale[:, None] * jnp.ones((1, d))
        log_det = jnp.sum(jnp.log(std), -1)

        def whiten(row):
            return (row[None, :] - means) / std

    const = params.log_mixture_weights - log_det - 0.5 * d * _LOG_2PI

    def log_px(row):
        return jax.nn.logsumexp(const - 0.5 * jnp.sum(whiten(row) ** 2, -1))

    return jax.lax.map(log_px, x, batch_size=min(batch_size, x.shape[0]))


def _m_step(
    resp: Float[Array, "N K"],
    phi: Float[Array, "N F"],
    weight: Float[Array, " N"],
    reg: Float[Array, " D"],
    covariance_type: str,
) -> GaussianMixture:
    """Weighted ML parameters for given responsibilities (the initialisation's hard ones)."""
    wr = resp * weight[:, None]
    return _params_from_stats(wr.T @ phi, jnp.sum(wr, 0), jnp.sum(weight), reg, covariance_type)


def _params_from_stats(
    stats: Float[Array, "K F"],
    nk: Float[Array, " K"],
    total_weight: Scalar,
    reg: Float[Array, " D"],
    covariance_type: str,
) -> GaussianMixture:
    """The M-step from the weighted sums: pi, mu and the floored covariances (Cholesky)."""
    d = reg.shape[0]
    nk = nk + 10 * jnp.finfo(stats.dtype).eps  # as scikit-learn: no 0/0
    stats = stats / nk[:, None]
    means, second = stats[:, :d], stats[:, d:]
    logits = jnp.log(nk / total_weight)
    if covariance_type == "full":
        i, j = _triu(d)
        k = means.shape[0]
        moment = jnp.zeros((k, d, d), stats.dtype).at[:, i, j].set(second).at[:, j, i].set(second)
        cov = moment - means[:, :, None] * means[:, None, :] + jnp.diag(reg)[None]
        scale = jnp.linalg.cholesky(cov)
        # Float round-off in the expanded moment can leave a collapsed component's
        # covariance a hair short of positive definite: fall back to its diagonal.
        var = jnp.maximum(jnp.diagonal(moment, axis1=-2, axis2=-1) - means**2, 0.0) + reg[None]
        fallback = jnp.sqrt(var)[:, :, None] * jnp.eye(d, dtype=stats.dtype)[None]
        ok = jnp.all(jnp.isfinite(scale), axis=(-2, -1))
        scale = jnp.where(ok[:, None, None], scale, fallback)
    elif covariance_type == "diag":
        scale = jnp.sqrt(jnp.maximum(second - means**2, 0.0) + reg[None])
    else:
        var = (second[:, 0] - jnp.sum(means**2, -1)) / d
        scale = jnp.sqrt(jnp.maximum(var, 0.0) + jnp.mean(reg))
    return GaussianMixture(logits, means, scale, covariance_type)


def _run(
    params: GaussianMixture,
    phi: Float[Array, "N F"],
    weight: Float[Array, " N"],
    reg: Float[Array, " D"],
    tol: Scalar,
    max_iter: int,
):
    """The EM loop in standardised coordinates, inside ``lax.while_loop``."""
    cov = params.covariance_type
    total_weight = jnp.sum(weight)

    def cond(carry):
        i, _, _, _, done = carry
        return (i < max_iter) & ~done

    def body(carry):
        i, params, prev, trace, _ = carry
        stats, nk, ll = _em_pass(params, phi, weight)
        params = _params_from_stats(stats, nk, total_weight, reg, cov)
        return i + 1, params, ll, trace.at[i].set(ll), ll - prev < tol

    dtype = phi.dtype
    init = (
        jnp.asarray(0),
        params,
        jnp.asarray(-jnp.inf, dtype),
        jnp.full((max_iter,), jnp.nan, dtype),
        jnp.asarray(False),
    )
    n_iter, params, _, trace, converged = jax.lax.while_loop(cond, body, init)
    xs = phi[:, : params.data_dim]  # the standardised data are the first D features
    final_ll = weight @ _log_px_whitened(params, xs) / jnp.sum(weight)
    return params, final_ll, trace, n_iter, converged


def _initial(key, xs, phi, weight, reg, num_components, covariance_type, kmeans_iters):
    """k-means++ (then Lloyd) centres -> hard assignments -> one M-step."""
    if kmeans_iters > 0:
        centres, labels = kmeans(
            key, xs, num_components, num_iters=kmeans_iters, sample_weight=weight
        )
    else:
        centres = kmeans_plusplus(key, xs, num_components, sample_weight=weight)
        labels = jnp.argmin(squared_distances(xs, centres), -1)
    resp = jax.nn.one_hot(labels, num_components, dtype=xs.dtype)
    return _m_step(resp, phi, weight, reg, covariance_type)


def _prepare(x, weight, reg_covar, covariance_type):
    """Pad to whole chunks (zero-weight rows change no sum), standardise, build features."""
    n = x.shape[0]
    pad = (-n) % _CHUNK if n >= _MIN_CHUNKED else 0
    x = jnp.pad(x, ((0, pad), (0, 0)))
    weight = jnp.pad(weight, (0, pad))
    a = stdz.data_affine(x, weight, covariance_type)
    xs = a.apply(x)
    reg = jnp.asarray(reg_covar, x.dtype) / a.scale**2
    return a, xs, _features(xs, covariance_type), reg, weight


def _fit_impl(
    key, x, weight, reg_covar, tol, *, num_components, covariance_type, max_iter, restarts, kiters
):
    a, xs, phi, reg, weight = _prepare(x, weight, reg_covar, covariance_type)

    def one_restart(k):
        p0 = _initial(k, xs, phi, weight, reg, num_components, covariance_type, kiters)
        return _run(p0, phi, weight, reg, tol, max_iter)

    params, ll, trace, n_iter, converged = jax.vmap(one_restart)(jax.random.split(key, restarts))
    best = jnp.argmax(jnp.where(jnp.isnan(ll), -jnp.inf, ll))
    pick = lambda t: t[best]  # noqa: E731
    params = jax.tree_util.tree_map(pick, params)
    return EMResult(
        stdz.from_standard(params, a),
        ll[best] - a.log_det,
        trace[best] - a.log_det,
        n_iter[best],
        converged[best],
        ll - a.log_det,
    )


def _fit_from_impl(params, x, weight, reg_covar, tol, *, max_iter):
    cov = params.covariance_type
    a, _, phi, reg, weight = _prepare(x, weight, reg_covar, cov)
    p, ll, trace, n_iter, converged = _run(
        stdz.to_standard(params, a), phi, weight, reg, tol, max_iter
    )
    ll = ll - a.log_det
    return EMResult(stdz.from_standard(p, a), ll, trace - a.log_det, n_iter, converged, ll[None])


def _em_step_impl(params, x, weight, reg_covar):
    cov = params.covariance_type
    a, _, phi, reg, weight = _prepare(x, weight, reg_covar, cov)
    stats, nk, _ = _em_pass(stdz.to_standard(params, a), phi, weight)
    return stdz.from_standard(_params_from_stats(stats, nk, jnp.sum(weight), reg, cov), a)


_fit_jit = jax.jit(
    _fit_impl,
    static_argnames=("num_components", "covariance_type", "max_iter", "restarts", "kiters"),
)
_fit_from_jit = jax.jit(_fit_from_impl, static_argnames=("max_iter",))
_em_step_jit = jax.jit(_em_step_impl)


# ---------------------------------------------------------------- validation


def _inputs(x, sample_weight, *, num_components: int | None = None, data_dim: int | None = None):
    """(x, weight) as checked arrays (see :mod:`lvm._checks`), with K <= N."""
    x = check_data(x, data_dim=data_dim)
    if num_components is not None and num_components > x.shape[0]:
        raise ValueError(
            f"num_components={num_components} exceeds the number of data points N={x.shape[0]}"
        )
    return x, check_sample_weight(sample_weight, x.shape[0], x.dtype)


def _check_settings(covariance_type, reg_covar, tol):
    check_choice(covariance_type, COVARIANCE_TYPES, "covariance_type")
    check_non_negative(reg_covar, "reg_covar")
    check_not_nan(tol, "tol")


# ---------------------------------------------------------------- public API


def em_step(
    params: GaussianMixture,
    x: Float[ArrayLike, "N D"],
    *,
    sample_weight: Float[ArrayLike, " N"] | None = None,
    reg_covar: float = 1e-6,
) -> GaussianMixture:
    """One EM iteration (E-step then M-step, see the module docstring); jit-compiled.

    Args:
        params: the current mixture (any covariance type; the result has the same).
        x: data, (N, D).
        sample_weight: optional non-negative weights w_n, (N,).
        reg_covar: covariance floor epsilon added to every variance.

    Returns:
        The updated :class:`~lvm.GaussianMixture`.
    """
    x, w = _inputs(x, sample_weight, data_dim=params.data_dim)
    _check_settings(params.covariance_type, reg_covar, None)
    return _em_step_jit(params, x, w, reg_covar)


def fit_em(
    key: Key,
    x: Float[ArrayLike, "N D"],
    *,
    num_components: int,
    covariance_type: str = "full",
    num_restarts: int = 1,
    tol: float = 1e-3,
    max_iter: int = 100,
    reg_covar: float = 1e-6,
    sample_weight: Float[ArrayLike, " N"] | None = None,
    kmeans_iters: int = 0,
) -> EMResult:
    """Fit a K-component mixture by EM from k-means++ initialisations, best of several restarts.

    Each restart draws k-means++ centres (optionally refined by ``kmeans_iters``
    Lloyd iterations) from its own key ``split(key, num_restarts)[r]``, assigns
    every point to its nearest centre and takes one M-step; then EM runs until the
    mean log-likelihood improves by less than ``tol`` nats/point or ``max_iter``
    iterations. All restarts run at once (``vmap``), in one jit-compiled call; the
    one with the highest final log-likelihood is returned.

    Args:
        key: PRNG key for the initialisations.
        x: data, (N, D), finite.
        num_components: K, 1 <= K <= N.
        covariance_type: ``"full"``, ``"diag"`` or ``"spherical"``.
        num_restarts: number of initialisations run in parallel.
        tol: stop when the mean log-likelihood improves by less than this.
        max_iter: most EM iterations (also the length of ``trace``).
        reg_covar: covariance floor epsilon (as scikit-learn's).
        sample_weight: optional non-negative weights, (N,).
        kmeans_iters: Lloyd iterations after k-means++ seeding (0: seeds only).

    Returns:
        :class:`EMResult`.
    """
    k = check_positive_int(num_components, "num_components")
    restarts = check_positive_int(num_restarts, "num_restarts")
    max_iter = check_positive_int(max_iter, "max_iter")
    _check_settings(covariance_type, reg_covar, tol)
    x, w = _inputs(x, sample_weight, num_components=k)
    return _fit_jit(
        key,
        x,
        w,
        reg_covar,
        tol,
        num_components=k,
        covariance_type=covariance_type,
        max_iter=max_iter,
        restarts=restarts,
        kiters=int(kmeans_iters),
    )


def fit_em_from(
    params: GaussianMixture,
    x: Float[ArrayLike, "N D"],
    *,
    tol: float = 1e-3,
    max_iter: int = 100,
    reg_covar: float = 1e-6,
    sample_weight: Float[ArrayLike, " N"] | None = None,
) -> EMResult:
    """Run EM from given initial parameters (same loop and stopping rule as :func:`fit_em`)."""
    max_iter = check_positive_int(max_iter, "max_iter")
    _check_settings(params.covariance_type, reg_covar, tol)
    x, w = _inputs(x, sample_weight, num_components=params.num_components, data_dim=params.data_dim)
    return _fit_from_jit(params, x, w, reg_covar, tol, max_iter=max_iter)


def initialize(
    key: Key,
    x: Float[ArrayLike, "N D"],
    *,
    num_components: int,
    covariance_type: str = "full",
    reg_covar: float = 1e-6,
    sample_weight: Float[ArrayLike, " N"] | None = None,
    kmeans_iters: int = 0,
) -> GaussianMixture:
    """The initial mixture :func:`fit_em` starts a restart from (k-means++ -> hard M-step)."""
    k = check_positive_int(num_components, "num_components")
    _check_settings(covariance_type, reg_covar, None)
    x, w = _inputs(x, sample_weight, num_components=k)
    return _initialize_jit(key, x, w, reg_covar, k, covariance_type, int(kmeans_iters))


@functools.partial(jax.jit, static_argnums=(4, 5, 6))
def _initialize_jit(key, x, weight, reg_covar, num_components, covariance_type, kmeans_iters):
    a, xs, phi, reg, weight = _prepare(x, weight, reg_covar, covariance_type)
    p0 = _initial(key, xs, phi, weight, reg, num_components, covariance_type, kmeans_iters)
    return stdz.from_standard(p0, a)
