r"""EM's algebra for the Gaussian mixture: features, natural parameters, one fused pass, M-step.

A Gaussian is an exponential family. With the features
:math:`\phi(x) = (x, \mathrm{vech}(x x^\top))` (upper triangle; :math:`x \odot x` for
diagonal and :math:`\lVert x\rVert^2` for spherical covariances; x alone for tied ones),

.. math:: \log \pi_k + \log\mathcal N(x; \mu_k, \Sigma_k) = \phi(x)^\top \eta_k + c_k,
          \qquad \eta_k = \big(P_k\mu_k,\ -\tfrac12 \mathrm{vech}'(P_k)\big),\ P_k = \Sigma_k^{-1},

(off-diagonal entries of :math:`P_k` counted twice). So the E-step for all N points and
K components is ONE matrix product :math:`\Phi H^\top`, (N, F) x (F, K), and the
M-step's weighted sums are ONE more, :math:`(w \odot R)^\top \Phi`, (K, N) x (N, F),
with F = D + D(D+1)/2. A tied covariance :math:`\Sigma = L L^\top` shares its quadratic
term :math:`-\tfrac12\lVert L^{-1}x\rVert^2` across components: features are x alone
(F = D), that term is one more product :math:`X L^{-\top}`, and the shared scatter
:math:`\sum_n w_n x_n x_n^\top` is one more, :math:`(w \odot X)^\top X`.

**One fused pass.** :func:`em_sums` runs both products chunk by chunk (at most
``CHUNK`` rows), so each iteration reads the features from memory once.

**Float32.** Three things keep a float32 fit close to a float64 one (measured by
``bench/gmm_em_precision.py``):

* the work is done in centred, unit-variance coordinates (:mod:`lvm.fit._standardize`;
  EM is equivariant to that change of variables);
* the per-chunk sums are accumulated across chunks as compensated (hi, lo) pairs
  (:mod:`lvm.fit._compensated`), so their error does not grow with N;
* the M-step forms :math:`N_k^2\Sigma_k = N_k \sum_n w_n r_{nk} x_n x_n^\top -
  s_k s_k^\top` (:math:`s_k = \sum_n w_n r_{nk} x_n`) in pair arithmetic, so the
  cancellation between two numbers of size :math:`|\mu_k|^2` loses nothing beyond
  the last rounding.

**Across devices.** With a ``layout`` (a mesh and the name of its axis that splits the
rows), every sum over the data runs on each device's own rows inside
:func:`jax.shard_map`; the per-device pairs are gathered and added in device order, so
the result does not depend on how a collective orders its additions.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Float

from lvm._math import LOG_2PI as _LOG_2PI
from lvm.fit import _compensated as cp
from lvm.fit import _standardize as stdz
from lvm.fit._data import check_row_split, on_several_devices
from lvm.models.gmm import GaussianMixture
from lvm.types import Scalar

# Most rows per chunk of a pass: (chunk x F) features and (chunk x K) responsibilities stay
# in cache between the two products.
CHUNK = 4096


class Layout(NamedTuple):
    """Rows of the data split over ``mesh`` along its axis ``axis`` (hashable: a static argument)."""

    mesh: Mesh
    axis: str


def row_layout(x) -> Layout | None:
    """The :class:`Layout` of data whose rows are split over several devices; None otherwise."""
    return Layout(*check_row_split(x)) if on_several_devices(x) else None


def chunking(n: int) -> tuple[int, int]:
    """(number of chunks m, rows per chunk) with m = ceil(n / CHUNK) and m * rows >= n, minimal."""
    m = -(-n // CHUNK)
    return m, -(-n // m)


def _triu(d: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(d)


def features(x: Float[Array, "N D"], covariance_type: str) -> Float[Array, "N F"]:
    r""":math:`\phi(x)`: x followed by its second-order statistics (x alone when tied)."""
    if covariance_type == "full":
        i, j = _triu(x.shape[1])
        second = x[:, i] * x[:, j]
    elif covariance_type == "diag":
        second = x * x
    elif covariance_type == "spherical":
        second = jnp.sum(x * x, -1, keepdims=True)
    else:
        return x
    return jnp.concatenate([x, second], -1)


class Natural(NamedTuple):
    r""":math:`\log\pi_k + \log\mathcal N(x) = \phi(x)^\top\eta_k + c_k - \tfrac12\lVert W x\rVert^2`.

    ``whiten`` is W = L^{-1} for a tied covariance and None otherwise (the quadratic
    term is then inside :math:`\eta_k`).
    """

    eta: Float[Array, "K F"]
    const: Float[Array, " K"]
    whiten: Float[Array, "D D"] | None


def _inverse_tril(scale):
    eye = jnp.broadcast_to(jnp.eye(scale.shape[-1], dtype=scale.dtype), scale.shape)
    return jax.scipy.linalg.solve_triangular(scale, eye, lower=True)


def natural(params: GaussianMixture) -> Natural:
    """The natural parameters of every component (see :class:`Natural`)."""
    means, scale, cov = params.means, params.scale, params.covariance_type
    d = params.data_dim
    const = params.log_mixture_weights - 0.5 * d * _LOG_2PI
    whiten = None
    if cov in ("full", "tied"):
        inv = _inverse_tril(scale)  # L^{-1}
        prec = jnp.swapaxes(inv, -1, -2) @ inv
        half_log_det = jnp.sum(jnp.log(jnp.diagonal(scale, axis1=-2, axis2=-1)), -1)
        if cov == "full":
            lin = jnp.einsum("kij,kj->ki", prec, means)
            i, j = _triu(d)
            quad = jnp.where(i == j, -0.5, -1.0)[None, :] * prec[:, i, j]
            eta = jnp.concatenate([lin, quad], -1)
        else:
            lin = means @ prec
            eta, whiten = lin, inv
        const = const - 0.5 * jnp.sum(means * lin, -1) - half_log_det
    else:
        var = scale**2 if cov == "diag" else (scale**2)[:, None] * jnp.ones((1, d), scale.dtype)
        lin = means / var
        quad = -0.5 / var if cov == "diag" else -0.5 / var[:, :1]
        eta = jnp.concatenate([lin, quad], -1)
        const = const - 0.5 * jnp.sum(means * lin, -1) - 0.5 * jnp.sum(jnp.log(var), -1)
    return Natural(eta, const, whiten)


# ---------------------------------------------------------------- sums over the data


class Sums(NamedTuple):
    """Weighted sums over the data, each a compensated :class:`~lvm.fit._compensated.Pair`."""

    weight: cp.Pair  # N_k = sum_n w_n r_nk, (K,)
    moments: cp.Pair  # sum_n w_n r_nk phi(x_n), (K, F)
    scatter: cp.Pair | None  # sum_n w_n x_n x_n^T, (D, D); tied only
    log_lik: cp.Pair  # sum_n w_n log p(x_n), (); zero when the responsibilities were given


def _is_pair(t) -> bool:
    return isinstance(t, cp.Pair)


def _local_sum(fn, consts, rows):
    """sum over chunks of ``fn(consts, *chunk_rows)``, in compensated pairs (rows pre-padded)."""
    m, chunk = chunking(rows[0].shape[0])
    chunks = tuple(r.reshape(m, chunk, *r.shape[1:]) for r in rows)
    # Start from the first chunk's sums (not from zeros: inside shard_map they must carry
    # the same per-device type as what the loop adds).
    init = jax.tree.map(lambda a: cp.Pair(a, a * 0), fn(consts, *(c[0] for c in chunks)))

    def body(total, item):
        return jax.tree.map(cp.accumulate, total, fn(consts, *item), is_leaf=_is_pair), None

    total, _ = jax.lax.scan(body, init, tuple(c[1:] for c in chunks))
    return total


def sum_over_data(fn, consts, rows: tuple, layout: Layout | None):
    r""":math:`\sum_{\text{chunks}}` ``fn(consts, *rows_of_chunk)``, as pairs, over all devices of ``layout``.

    ``fn`` returns a pytree of partial sums; ``consts`` are the same on every device.
    """
    if layout is None:
        return _local_sum(fn, consts, rows)

    def per_device(consts, *local_rows):
        local = _local_sum(fn, consts, local_rows)
        gathered = jax.tree.map(lambda a: jax.lax.all_gather(a, layout.axis, to="invarying"), local)
        return jax.tree.map(lambda p: cp.sum_pairs(p, 0), gathered, is_leaf=_is_pair)

    specs = (P(), *(P(layout.axis) for _ in rows))
    return jax.shard_map(per_device, mesh=layout.mesh, in_specs=specs, out_specs=P())(consts, *rows)


def _m_parts(wr, ph, w, tied: bool):
    scatter = (ph * w[:, None]).T @ ph if tied else None
    return jnp.sum(wr, 0), wr.T @ ph, scatter


def _e_and_m_parts(nat: Natural, ph, w):
    """One chunk: log-joint (first product), responsibilities, weighted sums (second product)."""
    log_joint = ph @ nat.eta.T + nat.const[None, :]
    if nat.whiten is not None:
        shared = -0.5 * jnp.sum((ph @ nat.whiten.T) ** 2, -1)
        log_joint = log_joint + shared[:, None]
    # log-sum-exp by hand so that the exponentials are taken once and reused for r_nk.
    peak = jnp.max(log_joint, axis=-1, keepdims=True)
    unnorm = jnp.exp(log_joint - peak)
    total = jnp.sum(unnorm, axis=-1, keepdims=True)
    wr = unnorm * (w[:, None] / total)
    log_px = (peak + jnp.log(total))[:, 0]
    return (*_m_parts(wr, ph, w, nat.whiten is not None), w @ log_px)


def em_sums(
    params: GaussianMixture, phi: Float[Array, "N F"], weight: Float[Array, " N"], layout
) -> Sums:
    """E-step and the M-step's sums in one pass; ``log_lik`` is that of ``params``."""
    return Sums(*sum_over_data(_e_and_m_parts, natural(params), (phi, weight), layout))


def given_sums(
    resp: Float[Array, "N K"],
    phi: Float[Array, "N F"],
    weight: Float[Array, " N"],
    covariance_type: str,
    layout,
) -> Sums:
    """The M-step's sums for given responsibilities (the initialisation's hard ones)."""
    tied = covariance_type == "tied"

    def parts(_, ph, w, r):
        return (*_m_parts(r * w[:, None], ph, w, tied), jnp.zeros((), ph.dtype))

    return Sums(*sum_over_data(parts, None, (phi, weight, resp), layout))


# ---------------------------------------------------------------- M-step


def _columns(p: cp.Pair, index) -> cp.Pair:
    return cp.Pair(p.hi[..., index], p.lo[..., index])


def _symmetric(vech, d: int):
    i, j = _triu(d)
    out = jnp.zeros((*vech.shape[:-1], d, d), vech.dtype)
    return out.at[..., i, j].set(vech).at[..., j, i].set(vech)


def m_step(
    sums: Sums, total_weight: Scalar, reg: Float[Array, " D"], covariance_type: str
) -> GaussianMixture:
    r"""Weighted ML parameters from the sums, with the covariance floor ``reg`` added.

    With :math:`s_k` the first and :math:`S_k` the second moment sums,
    :math:`N_k^2\Sigma_k = N_k S_k - s_k s_k^\top` is formed in pair arithmetic. A
    covariance that is not positive definite even after the floor (a component on fewer
    than D + 1 distinct points with ``reg_covar = 0``) gives NaN, which the callers
    turn into an error.
    """
    d = reg.shape[0]
    eps = jnp.finfo(sums.moments.hi.dtype).eps
    nk = cp.Pair(sums.weight.hi + 10 * eps, sums.weight.lo)  # as scikit-learn: no 0/0
    first = _columns(sums.moments, slice(0, d))
    second = _columns(sums.moments, slice(d, None))
    n_k = nk.value
    means = first.value / n_k[:, None]
    logits = jnp.log(n_k / total_weight)
    n_col = cp.Pair(nk.hi[:, None], nk.lo[:, None])
    if covariance_type in ("full", "tied"):
        i, j = _triu(d)
        outer = cp.mul(_columns(first, i), _columns(first, j))  # s_k s_k^T, upper triangle
        if covariance_type == "full":
            centred = cp.sub(cp.mul(n_col, second), outer).value / (n_k**2)[:, None]
        else:  # W Sigma = sum_n w_n x_n x_n^T - sum_k s_k s_k^T / N_k
            between = cp.sum_pairs(cp.div(outer, n_col), 0)
            scatter = cp.Pair(sums.scatter.hi[i, j], sums.scatter.lo[i, j])
            centred = cp.sub(scatter, between).value / total_weight
        floor = jnp.diag(reg) if covariance_type == "tied" else jnp.diag(reg)[None]
        scale = jnp.linalg.cholesky(_symmetric(centred, d) + floor)
    elif covariance_type == "diag":
        centred = cp.sub(cp.mul(n_col, second), cp.mul(first, first)).value / (n_k**2)[:, None]
        scale = jnp.sqrt(jnp.maximum(centred, 0.0) + reg[None, :])
    else:
        square = cp.sum_pairs(cp.mul(first, first), 1)  # sum_d s_kd^2
        centred = cp.sub(cp.mul(nk, _columns(second, 0)), square).value / (d * n_k**2)
        scale = jnp.sqrt(jnp.maximum(centred, 0.0) + jnp.mean(reg))
    return GaussianMixture(logits, means, scale, covariance_type)


# ---------------------------------------------------------------- the reported log-likelihood


def _whitened_log_px(covariance_type: str, consts, xs: Float[Array, "n D"]) -> Float[Array, " n"]:
    inv, shift, const = consts
    if covariance_type == "full":
        u = jnp.einsum("kij,nj->nki", inv, xs) - shift[None]
    elif covariance_type == "tied":
        u = (xs @ inv.T)[:, None, :] - shift[None]
    else:
        u = xs[:, None, :] * inv[None] - shift[None]
    return jax.nn.logsumexp(const[None, :] - 0.5 * jnp.sum(u**2, -1), -1)


def log_likelihood(
    params: GaussianMixture, phi: Float[Array, "N F"], weight: Float[Array, " N"], layout
) -> Scalar:
    r"""Weighted mean log p(x_n) from whitened differences :math:`L_k^{-1}(x_n - \mu_k)`.

    Slower than the expanded form of the pass (a (chunk, K, D) intermediate), but its
    float32 error grows with :math:`\lVert P_k\rVert^{1/2}` instead of
    :math:`\lVert P_k\rVert`, which matters for a component squeezed to the floor. Used
    for the log-likelihood reported with the fitted parameters.
    """
    cov, means, scale, d = params.covariance_type, params.means, params.scale, params.data_dim
    if cov in ("full", "tied"):
        inv = _inverse_tril(scale)
        shift = jnp.einsum("kij,kj->ki", inv, means) if cov == "full" else means @ inv.T
        log_det = jnp.sum(jnp.log(jnp.diagonal(scale, axis1=-2, axis2=-1)), -1)
    else:
        std = scale if cov == "diag" else scale[:, None] * jnp.ones((1, d), scale.dtype)
        inv, shift, log_det = 1.0 / std, means / std, jnp.sum(jnp.log(std), -1)
    const = params.log_mixture_weights - log_det - 0.5 * d * _LOG_2PI

    def part(consts, ph, w):
        return w @ _whitened_log_px(cov, consts, ph[:, :d])

    total = sum_over_data(part, (inv, shift, const), (phi, weight), layout)
    return total.value / jnp.sum(weight)


# ---------------------------------------------------------------- data preparation


def prepare(x, weight, reg_covar, covariance_type: str, layout: Layout | None):
    """Standardise x, build the features and pad every device's rows to whole chunks.

    Returns ``(affine, phi, weight, reg)``: padded rows have zero weight, so they change
    no sum; ``reg`` is the covariance floor in standardised coordinates.
    """
    a = stdz.data_affine(x, weight, covariance_type)
    xs = a.apply(x)
    reg = jnp.asarray(reg_covar, x.dtype) / a.scale**2

    def pad_and_build(xs, w):
        m, chunk = chunking(xs.shape[0])
        pad = m * chunk - xs.shape[0]
        return features(jnp.pad(xs, ((0, pad), (0, 0))), covariance_type), jnp.pad(w, (0, pad))

    if layout is None:
        phi, weight = pad_and_build(xs, weight)
    else:
        rows = P(layout.axis)
        phi, weight = jax.shard_map(
            pad_and_build, mesh=layout.mesh, in_specs=(rows, rows), out_specs=(rows, rows)
        )(xs, weight)
    return a, phi, weight, reg
