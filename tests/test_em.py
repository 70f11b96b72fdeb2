"""EM for the Gaussian mixture: monotonicity, scikit-learn agreement, recovery, the floor, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGMM

import lvm
from lvm.data.old_faithful import load_old_faithful
from lvm.fit import em_step, fit_em, fit_em_from, initialize
from lvm.fit.selection import mean_log_likelihood

COV_TYPES = ["full", "diag", "spherical"]


def _random_data(seed=0, n=300, d=3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, d)) * 3.0
    return (centres[rng.integers(0, 3, n)] + rng.normal(size=(n, d))).astype(np.float32)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_em_increases_log_likelihood_monotonically(covariance_type):
    x = _random_data()
    res = fit_em(
        jax.random.key(1),
        x,
        num_components=5,
        covariance_type=covariance_type,
        tol=-np.inf,  # never stop early: run all iterations
        max_iter=100,
    )
    trace = np.asarray(res.trace)
    assert int(res.num_iterations) == 100 and np.all(np.isfinite(trace))
    # Float32 round-off on values of ~5 nats: allow 2e-6 nats/point of apparent decrease.
    assert np.all(np.diff(trace) >= -2e-6), np.diff(trace).min()
    assert float(res.log_likelihood) >= trace[-1] - 2e-6
    assert trace[-1] > trace[0] + 0.01  # it actually moved


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_reported_log_likelihood_equals_direct_evaluation(covariance_type):
    # The matrix-product E-step must agree with GaussianMixture.log_marginal (triangular solves).
    x = _random_data(seed=3) + 100.0  # far from the origin: the case centring is for
    # Same static arguments as the monotonicity test above: one compilation serves both.
    res = fit_em(jax.random.key(0), x, num_components=5, covariance_type=covariance_type)
    direct = mean_log_likelihood(res.params, x)
    np.testing.assert_allclose(res.log_likelihood, direct, atol=2e-5)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_em_step_is_one_iteration_of_fit(covariance_type):
    x = _random_data(seed=2)
    p0 = initialize(jax.random.key(0), x, num_components=3, covariance_type=covariance_type)
    one = em_step(p0, x)
    res = fit_em_from(p0, x, max_iter=1)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(res.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _sklearn_from(params: lvm.GaussianMixture, tol: float) -> SkGMM:
    weights = np.asarray(jax.nn.softmax(params.logits), np.float64)
    means = np.asarray(params.means, np.float64)
    cov = np.asarray(params.covariances, np.float64)
    if params.covariance_type == "full":
        prec = np.linalg.inv(cov)
    elif params.covariance_type == "diag":
        prec = 1.0 / np.diagonal(cov, axis1=1, axis2=2)
    else:
        prec = 1.0 / cov[:, 0, 0]
    return SkGMM(
        params.num_components,
        covariance_type=params.covariance_type,
        tol=tol,
        max_iter=200,
        weights_init=weights / weights.sum(),
        means_init=means,
        precisions_init=prec,
    )


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_old_faithful_matches_sklearn(covariance_type):
    x = load_old_faithful()
    tol = 1e-3  # scikit-learn's default, used by both
    p0 = initialize(jax.random.key(0), x, num_components=2, covariance_type=covariance_type)
    ours = fit_em_from(p0, x, tol=tol, max_iter=200)
    sk = _sklearn_from(p0, tol).fit(x)
    assert bool(ours.converged) and sk.converged_
    assert int(ours.num_iterations) == sk.n_iter_
    assert abs(float(ours.log_likelihood) - sk.score(x)) < 1e-4
    np.testing.assert_allclose(np.asarray(ours.params.means), sk.means_, rtol=1e-3, atol=1e-3)


def test_recovers_known_mixture_from_50000_samples():
    means = jnp.array([[-4.0, 0.0], [3.0, 3.0], [3.0, -3.0]])
    tril = jnp.array(
        [[[1.0, 0.0], [0.5, 0.7]], [[0.6, 0.0], [-0.3, 1.2]], [[1.5, 0.0], [0.0, 0.4]]]
    )
    truth = lvm.GaussianMixture(jnp.log(jnp.array([0.5, 0.3, 0.2])), means, tril)
    n = 50_000
    _, x = jax.vmap(truth.sample)(jax.random.split(jax.random.key(7), n))
    res = fit_em(jax.random.key(8), x, num_components=3, num_restarts=3, tol=1e-6, max_iter=300)
    order = np.argsort(
        np.asarray(res.params.means[:, 0]) + 1e-3 * np.asarray(res.params.means[:, 1])
    )
    order = order[[0, 2, 1]]  # truth order: left, upper right, lower right
    fitted_w = np.asarray(jax.nn.softmax(res.params.logits))[order]
    fitted_mu = np.asarray(res.params.means)[order]
    fitted_cov = np.asarray(res.params.covariances)[order]
    true_w = np.array([0.5, 0.3, 0.2])
    true_cov = np.asarray(truth.covariances)
    se_w = np.sqrt(true_w * (1 - true_w) / n)
    np.testing.assert_array_less(np.abs(fitted_w - true_w), 5 * se_w)
    nk = n * true_w
    se_mu = np.sqrt(np.diagonal(true_cov, axis1=1, axis2=2) / nk[:, None])
    np.testing.assert_array_less(np.abs(fitted_mu - np.asarray(means)), 5 * se_mu)
    var = np.diagonal(true_cov, axis1=1, axis2=2)
    se_cov = np.sqrt((var[:, :, None] * var[:, None, :] + true_cov**2) / nk[:, None, None])
    np.testing.assert_array_less(np.abs(fitted_cov - true_cov), 5 * se_cov)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_covariance_floor_keeps_duplicated_points_finite(covariance_type):
    rng = np.random.default_rng(0)
    # 60 copies of one point, 30 of another, 10 scattered: components collapse onto the copies.
    x = np.concatenate(
        [np.tile([[1.0, 2.0]], (60, 1)), np.tile([[5.0, -1.0]], (30, 1)), rng.normal(size=(10, 2))]
    ).astype(np.float32)
    reg = 1e-4
    res = fit_em(
        jax.random.key(0), x, num_components=3, covariance_type=covariance_type, reg_covar=reg
    )
    leaves = jax.tree.leaves(res.params) + [res.log_likelihood]
    assert all(np.all(np.isfinite(np.asarray(v))) for v in leaves)
    eig = np.linalg.eigvalsh(np.asarray(res.params.covariances, np.float64))
    assert eig.min() >= 0.99 * reg
    # Identical points only: every covariance is exactly the floor.
    same = np.tile([[3.0, 4.0]], (100, 1)).astype(np.float32)
    res = fit_em(
        jax.random.key(0), same, num_components=3, covariance_type=covariance_type, reg_covar=reg
    )
    assert np.isfinite(float(res.log_likelihood))
    np.testing.assert_allclose(
        np.asarray(res.params.covariances), reg * np.eye(2)[None].repeat(3, 0), rtol=1e-3, atol=1e-9
    )


def test_sample_weights_equal_duplicated_rows():
    x = _random_data(seed=4, n=120)
    counts = np.random.default_rng(1).integers(0, 4, len(x))
    p0 = initialize(jax.random.key(0), x, num_components=3)
    weighted = fit_em_from(p0, x, sample_weight=counts.astype(np.float32), tol=-np.inf, max_iter=20)
    repeated = fit_em_from(p0, np.repeat(x, counts, axis=0), tol=-np.inf, max_iter=20)
    np.testing.assert_allclose(weighted.log_likelihood, repeated.log_likelihood, atol=1e-5)
    np.testing.assert_allclose(weighted.params.means, repeated.params.means, atol=1e-4)


def test_restarts_keep_the_best():
    x = _random_data(seed=5)
    res = fit_em(jax.random.key(3), x, num_components=6, num_restarts=5, max_iter=50)
    lls = np.asarray(res.restart_log_likelihood)
    assert lls.shape == (5,)
    assert float(res.log_likelihood) == lls.max()
    assert lls.max() > lls.min()  # the restarts really differ


def test_fit_does_not_retrace_for_new_data_of_the_same_shape():
    from lvm.fit import em

    fit_em(jax.random.key(0), _random_data(seed=6), num_components=2)
    size = em._fit_jit._cache_size()
    fit_em(jax.random.key(1), _random_data(seed=7), num_components=2, tol=1e-4)
    assert em._fit_jit._cache_size() == size


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_components": 400}, "exceeds the number of data points"),
        ({"num_components": 0}, "num_components must be >= 1"),
        ({"num_components": 2, "covariance_type": "tied"}, "covariance_type"),
        ({"num_components": 2, "reg_covar": -1.0}, "reg_covar"),
        ({"num_components": 2, "sample_weight": -np.ones(300)}, "non-negative"),
    ],
)
def test_bad_input_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_em(jax.random.key(0), _random_data(), **kwargs)


def test_nan_and_bad_shapes_raise():
    x = _random_data()
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_em(jax.random.key(0), x, num_components=2)
    # Shape errors: ValueError, or jaxtyping's TypeError first when its import hook is on (tests).
    with pytest.raises((ValueError, TypeError)):
        fit_em(jax.random.key(0), np.ones(10), num_components=2)
    with pytest.raises((ValueError, TypeError)):
        fit_em(jax.random.key(0), _random_data(), num_components=2, sample_weight=np.ones(5))
    with pytest.raises(TypeError, match="int"):
        fit_em(jax.random.key(0), _random_data(), num_components=2.5)


def test_float64_matches_sklearn_to_round_off():
    with jax.enable_x64(True):
        x = jnp.asarray(load_old_faithful(np.float64))
        p0 = initialize(jax.random.key(0), x, num_components=2)
        assert p0.means.dtype == jnp.float64
        ours = fit_em_from(p0, x, tol=1e-10, max_iter=500)
        assert ours.params.scale.dtype == jnp.float64
        sk = _sklearn_from(p0, 1e-10).set_params(max_iter=500).fit(np.asarray(x))
        assert int(ours.num_iterations) == sk.n_iter_
        assert abs(float(ours.log_likelihood) - sk.score(np.asarray(x))) < 1e-9
        np.testing.assert_allclose(np.asarray(ours.params.covariances), sk.covariances_, rtol=1e-7)


def test_chunked_pass_equals_single_pass():
    # 70 copies of 1000 points (70,000 rows: the chunked, zero-padded path) have the same
    # empirical distribution as the 1000 points (one pass): the EM step must agree.
    from lvm.fit import em

    x = _random_data(seed=8, n=1000)
    tiled = np.tile(x, (70, 1))
    assert tiled.shape[0] >= em._MIN_CHUNKED and tiled.shape[0] % em._CHUNK != 0
    p0 = initialize(jax.random.key(0), x, num_components=4)
    small, large = em_step(p0, x), em_step(p0, tiled)
    for a, b in zip(jax.tree.leaves(small), jax.tree.leaves(large), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    res = fit_em_from(p0, tiled, max_iter=5, tol=-np.inf)
    np.testing.assert_allclose(res.log_likelihood, mean_log_likelihood(res.params, x), atol=2e-5)
