"""Float32 EM: compensated sums, the pair-arithmetic M-step, the warning for an unresolvable tol.

The end-to-end float32-versus-float64 gap on 200,000 points is measured by
``bench/gmm_em_precision.py`` (too slow for the suite); these tests pin down the two
mechanisms behind it, each against float64 NumPy, and fail with plain float32 arithmetic.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from lvm.data.old_faithful import load_old_faithful
from lvm.fit import _compensated as cp
from lvm.fit import _expfam as ef
from lvm.fit import fit_em

COV_TYPES = ["full", "tied", "diag", "spherical"]


def test_sums_over_many_chunks_are_exact_pairs():
    # Integers below 2^10: every chunk's float32 sum (< 2^22) is exact, so the only error a
    # sum over the data can make is in adding the 64 chunk sums (total ~2^27, ulp 16). The
    # compensated pair must hold the exact total; a plain float32 running sum does not.
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 1024, size=(64 * ef.CHUNK, 2)).astype(np.float32)
    total = ef.sum_over_data(lambda _, r: jnp.sum(r, 0), None, (jnp.asarray(rows),), None)
    exact = rows.astype(np.int64).sum(0)
    held = np.asarray(total.hi, np.float64) + np.asarray(total.lo, np.float64)
    np.testing.assert_array_equal(held, exact)
    plain = np.float32(0) * rows[0]
    for part in rows.reshape(64, ef.CHUNK, 2).sum(1, dtype=np.float32):
        plain = plain + part  # float32 adds, as a plain scan would
    assert np.any(plain.astype(np.int64) != exact)  # the data do need the compensation


def _features64(x, covariance_type):
    if covariance_type == "full":
        i, j = np.triu_indices(x.shape[1])
        return np.concatenate([x, x[:, i] * x[:, j]], 1)
    if covariance_type == "diag":
        return np.concatenate([x, x * x], 1)
    if covariance_type == "spherical":
        return np.concatenate([x, (x * x).sum(1, keepdims=True)], 1)
    return x


def _as_pair(v):
    """A float64 array as a float32 (hi, lo) pair holding it to ~eps^2."""
    hi = np.asarray(v, np.float32)
    return cp.Pair(jnp.asarray(hi), jnp.asarray((v - hi.astype(np.float64)).astype(np.float32)))


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_m_step_keeps_narrow_far_components_accurate_in_float32(covariance_type):
    # Two components 1000 standard deviations from the origin: E[x x^T] and mu mu^T agree to
    # one part in 1e6, so rounding E[x x^T] to float32 (eps = 1.2e-7) would alone leave ~10%
    # error in the covariance. From sums held as pairs, the M-step must get it to the float32
    # rounding of the result and of a 2 x 2 Cholesky: 1e-5 relative (80 eps).
    rng = np.random.default_rng(1)
    n, d = 500, 2
    centres = np.array([[1000.0, 1000.0], [-1000.0, 1000.0]])
    labels = np.repeat([0, 1], n)
    tril = np.array([[1.0, 0.0], [0.6, 0.8]])
    x = centres[labels] + rng.normal(size=(2 * n, d)) @ tril.T
    resp = np.eye(2)[labels]
    phi = _features64(x, covariance_type)
    sums = ef.Sums(
        weight=_as_pair(resp.sum(0)),
        moments=_as_pair(resp.T @ phi),
        scatter=_as_pair(x.T @ x) if covariance_type == "tied" else None,
        log_lik=_as_pair(np.zeros(())),
    )
    params = ef.m_step(sums, jnp.float32(2 * n), jnp.zeros(d, jnp.float32), covariance_type)
    assert params.means.dtype == jnp.float32
    centred = [x[labels == k] - x[labels == k].mean(0) for k in range(2)]
    scatter = np.stack([c.T @ c for c in centred])  # per component, float64
    if covariance_type == "full":
        expected = scatter / n
    elif covariance_type == "tied":
        expected = np.broadcast_to(scatter.sum(0) / (2 * n), (2, d, d))
    elif covariance_type == "diag":
        expected = np.diagonal(scatter, axis1=1, axis2=2)[:, :, None] / n * np.eye(d)
    else:
        expected = np.trace(scatter, axis1=1, axis2=2)[:, None, None] / (d * n) * np.eye(d)
    got = np.asarray(params.covariances, np.float64)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    means = np.stack([x[labels == k].mean(0) for k in range(2)])
    np.testing.assert_allclose(np.asarray(params.means, np.float64), means, rtol=1e-6)


def test_tol_below_float32_round_off_warns_and_a_resolvable_one_does_not():
    # Standardized breast-cancer data: 30 strongly correlated features, so the expanded
    # log-likelihood carries ~6e-4 nats/point of float32 round-off (bench/gmm_em_precision.py)
    # and tol = 1e-6 cannot be met except by chance.
    x = load_breast_cancer().data
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    with pytest.warns(UserWarning, match="float32 round-off"):
        fit_em(jax.random.key(1), x, num_components=2, tol=1e-6, max_iter=50)
    # Old Faithful (2-D, two well-separated clusters): below 1e-6 nats/point at the fit.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_em(jax.random.key(1), load_old_faithful(np.float32), num_components=2, tol=1e-6)
