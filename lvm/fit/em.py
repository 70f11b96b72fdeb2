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
          \Sigma_k = \frac{1}{N_k}\sum_n w_n r_{nk} (x_n - \mu_k)(x_n - \mu_k)^\top + \epsilon I

(tied: one :math:`\Sigma = \frac{1}{\sum_n w_n}\sum_{n,k} w_n r_{nk} (x_n - \mu_k)(x_n - \mu_k)^\top + \epsilon I`).

Each iteration cannot decrease the mean log-likelihood
:math:`\ell = \sum_n w_n \log p(x_n) / \sum_n w_n`. :func:`fit_em` stops, as scikit-learn
does, when :math:`|\ell_t - \ell_{t-1}| <` ``tol`` (nats per point) or after ``max_iter``
iterations; a non-finite :math:`\ell_t` stops it too, and then raises.

How an iteration is computed (two matrix products over features, a compensated M-step,
the data split over devices or processes): :mod:`lvm.fit._expfam`.

**Data split over processes.** ``x`` may be a global ``jax.Array`` whose rows are split
over the devices of several processes (``lvm.sharding.global_batch``): every function
here then runs each pass on the rows where they lie, adds the sufficient statistics
across processes, and returns replicated parameters; the input checks run on the devices.
"""

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from lvm._checks import check_choice, check_non_negative, check_not_nan, check_positive_int
from lvm.fit import _expfam as ef
from lvm.fit import _standardize as stdz
from lvm.fit._data import check_finite_result, check_mixture_data
from lvm.fit.initialization import initial, kmeans_setting
from lvm.models.gmm import COVARIANCE_TYPES, GaussianMixture
from lvm.sharding import host_value
from lvm.types import Key, Scalar


class EMResult(NamedTuple):
    """What :func:`fit_em` and :func:`fit_em_from` return.

    ``trace[i]`` is the mean log-likelihood (nats per point) of the parameters
    entering iteration i (NaN after the last one), from the fast expanded form of
    the E-step; ``log_likelihood`` is that of the returned ``params`` (one M-step
    past the last trace entry), evaluated from whitened differences, which stays
    accurate in float32 even for a component squeezed to the covariance floor.
    ``restart_log_likelihood`` holds the final value of every restart (NaN for a
    restart that failed); the best restart is the one returned.
    """

    params: GaussianMixture
    log_likelihood: Scalar
    trace: Float[Array, " max_iter"]
    num_iterations: Int[Array, ""]
    converged: Bool[Array, ""]
    restart_log_likelihood: Float[Array, " restarts"]


# ---------------------------------------------------------------- the loop


def _run(params, phi, weight, reg, tol, max_iter: int, layout):
    """The EM loop in standardised coordinates, inside ``lax.while_loop``."""
    cov = params.covariance_type
    total_weight = jnp.sum(weight)

    def cond(carry):
        i, _, _, _, converged, failed = carry
        return (i < max_iter) & ~converged & ~failed

    def body(carry):
        i, params, prev, trace, _, _ = carry
        sums = ef.em_sums(params, phi, weight, layout)
        ll = sums.log_lik.value / total_weight
        params = ef.m_step(sums, total_weight, reg, cov)
        return i + 1, params, ll, trace.at[i].set(ll), jnp.abs(ll - prev) < tol, ~jnp.isfinite(ll)

    dtype = phi.dtype
    init = (
        jnp.asarray(0),
        params,
        jnp.asarray(jnp.inf, dtype),  # |ll - inf| = inf: the first iteration never stops
        jnp.full((max_iter,), jnp.nan, dtype),
        jnp.asarray(False),
        jnp.asarray(False),
    )
    n_iter, params, _, trace, converged, _ = jax.lax.while_loop(cond, body, init)
    final_ll = ef.log_likelihood(params, phi, weight, layout)
    if dtype == jnp.float32:  # how far round-off moves the log-likelihood the rule compares
        expanded = ef.em_sums(params, phi, weight, layout).log_lik.value / total_weight
        resolution = jnp.abs(expanded - final_ll)
    else:
        resolution = jnp.zeros((), dtype)
    return params, final_ll, trace, n_iter, converged, resolution


def _fit_impl(
    key,
    x,
    weight,
    reg_covar,
    tol,
    *,
    num_components,
    covariance_type,
    max_iter,
    restarts,
    kmeans,
    layout,
):
    weight = jnp.ones(x.shape[0], x.dtype) if weight is None else weight
    a, phi, weight, reg = ef.prepare(x, weight, reg_covar, covariance_type, layout)

    def one_restart(k):
        p0 = initial(k, phi, weight, reg, a.scale, num_components, covariance_type, kmeans, layout)
        return _run(p0, phi, weight, reg, tol, max_iter, layout)

    keys = jax.random.split(key, restarts)
    params, ll, trace, n_iter, converged, resolution = jax.vmap(one_restart)(keys)
    best = jnp.argmax(jnp.where(jnp.isnan(ll), -jnp.inf, ll))
    params = jax.tree.map(lambda t: t[best], params)
    result = EMResult(
        stdz.from_standard(params, a),
        ll[best] - a.log_det,
        trace[best] - a.log_det,
        n_iter[best],
        converged[best],
        ll - a.log_det,
    )
    return result, resolution[best]


def _fit_from_impl(params, x, weight, reg_covar, tol, *, max_iter, layout):
    weight = jnp.ones(x.shape[0], x.dtype) if weight is None else weight
    cov = params.covariance_type
    a, phi, weight, reg = ef.prepare(x, weight, reg_covar, cov, layout)
    p, ll, trace, n_iter, converged, resolution = _run(
        stdz.to_standard(params, a), phi, weight, reg, tol, max_iter, layout
    )
    ll = ll - a.log_det
    result = EMResult(stdz.from_standard(p, a), ll, trace - a.log_det, n_iter, converged, ll[None])
    return result, resolution


def _em_step_impl(params, x, weight, reg_covar, layout):
    weight = jnp.ones(x.shape[0], x.dtype) if weight is None else weight
    cov = params.covariance_type
    a, phi, weight, reg = ef.prepare(x, weight, reg_covar, cov, layout)
    sums = ef.em_sums(stdz.to_standard(params, a), phi, weight, layout)
    return stdz.from_standard(ef.m_step(sums, jnp.sum(weight), reg, cov), a)


_fit_jit = jax.jit(
    _fit_impl,
    static_argnames=(
        "num_components",
        "covariance_type",
        "max_iter",
        "restarts",
        "kmeans",
        "layout",
    ),
)
_fit_from_jit = jax.jit(_fit_from_impl, static_argnames=("max_iter", "layout"))
_em_step_jit = jax.jit(_em_step_impl, static_argnames=("layout",))


# ---------------------------------------------------------------- checks around the loop


def _check_settings(covariance_type, reg_covar, tol):
    check_choice(covariance_type, COVARIANCE_TYPES, "covariance_type")
    check_non_negative(reg_covar, "reg_covar")
    check_not_nan(tol, "tol")


def _failure(what: str, reg_covar) -> str:
    return (
        f"{what} is not finite: EM met a covariance that is not positive definite even after "
        f"adding reg_covar={reg_covar:g} (a component collapsed onto too few distinct points). "
        "Increase reg_covar, use fewer components, or fit in float64"
    )


def _checked(result_and_resolution, reg_covar, tol) -> EMResult:
    r"""Raise on a non-finite fit; warn when float32 round-off is coarser than ``tol``.

    The stopping rule compares mean log-likelihoods from the expanded form
    :math:`\phi^\top\eta_k + c_k`, whose float32 round-off grows with the components'
    precisions (``bench/gmm_em_precision.py`` measures it; ``bench/README.md`` has it). The
    fit measures it at the result, as the distance between that form and the whitened
    one; a smaller ``tol`` asks the rule to see changes it cannot.
    """
    result, resolution = result_and_resolution
    check_finite_result(
        (result.params, result.log_likelihood), _failure("the fitted mixture", reg_covar)
    )
    resolution = float(host_value(resolution))
    if 0 < tol < resolution:
        warnings.warn(
            f"tol={tol:g} nats/point is below the float32 round-off of the log-likelihood the "
            f"stopping rule compares on these data (~{resolution:.1g} nats/point): the rule may "
            "stop, or run on, on round-off. Fit in float64 (jax_enable_x64) for this tol, or "
            f"use tol >= {resolution:.1g}",
            stacklevel=3,
        )
    return result


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
        x: data, (N, D); may be split over devices or processes (module docstring).
        sample_weight: optional non-negative weights w_n, (N,).
        reg_covar: covariance floor epsilon added to every variance.

    Returns:
        The updated :class:`~lvm.GaussianMixture`. Raises ``ValueError`` if it is not
        finite (a covariance not positive definite after the floor).
    """
    _check_settings(params.covariance_type, reg_covar, None)
    check_finite_result(params, "params contain NaN or Inf")
    x, w = check_mixture_data(x, sample_weight, data_dim=params.data_dim)
    out = _em_step_jit(params, x, w, reg_covar, layout=ef.row_layout(x))
    return check_finite_result(out, _failure("the updated mixture", reg_covar))


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
    kmeans_iters: int = 300,
    kmeans_local_trials: int | None = None,
) -> EMResult:
    """Fit a K-component mixture by EM from k-means++ initialisations, best of several restarts.

    Each restart starts as scikit-learn's ``init_params="kmeans"``: greedy k-means++
    centres from its own key ``split(key, num_restarts)[r]``, refined by Lloyd's
    iterations until no assignment changes (or the centres move less than 1e-4 of the
    data's mean variance, or ``kmeans_iters`` iterations), k-means in the data's own
    units; every point goes to its nearest centre and one M-step fits the hard
    clusters (:func:`lvm.fit.initialize`). Then EM runs until
    :math:`|\\ell_t - \\ell_{t-1}| <` ``tol`` nats/point or ``max_iter`` iterations. All
    restarts run at once (``vmap``), in one jit-compiled call; the one with the
    highest final log-likelihood is returned.

    Args:
        key: PRNG key for the initialisations.
        x: data, (N, D), finite; may be split over devices or processes.
        num_components: K, 1 <= K <= N.
        covariance_type: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``.
        num_restarts: number of initialisations run in parallel.
        tol: stop when the mean log-likelihood changes by less than this (nats/point);
            a float32 fit warns when ``tol`` is below the round-off it measured.
        max_iter: most EM iterations (also the length of ``trace``).
        reg_covar: covariance floor epsilon (as scikit-learn's).
        sample_weight: optional non-negative weights, (N,).
        kmeans_iters: most Lloyd iterations after the seeding (0: seeds only).
        kmeans_local_trials: candidates per k-means++ centre, the best kept (``None``:
            scikit-learn's 2 + floor(log K); 1: plain k-means++).

    Returns:
        :class:`EMResult`. Raises ``ValueError`` when every restart failed (a non-finite
        result: a covariance not positive definite after the floor).
    """
    k = check_positive_int(num_components, "num_components")
    restarts = check_positive_int(num_restarts, "num_restarts")
    max_iter = check_positive_int(max_iter, "max_iter")
    _check_settings(covariance_type, reg_covar, tol)
    x, w = check_mixture_data(x, sample_weight, num_components=k)
    result = _fit_jit(
        key,
        x,
        w,
        reg_covar,
        tol,
        num_components=k,
        covariance_type=covariance_type,
        max_iter=max_iter,
        restarts=restarts,
        kmeans=kmeans_setting(kmeans_iters, kmeans_local_trials),
        layout=ef.row_layout(x),
    )
    return _checked(result, reg_covar, tol)


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
    check_finite_result(params, "params contain NaN or Inf")
    x, w = check_mixture_data(
        x, sample_weight, num_components=params.num_components, data_dim=params.data_dim
    )
    _check_settings(params.covariance_type, reg_covar, tol)
    result = _fit_from_jit(params, x, w, reg_covar, tol, max_iter=max_iter, layout=ef.row_layout(x))
    return _checked(result, reg_covar, tol)
