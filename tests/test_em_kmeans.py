"""k-means++ seeding and Lloyd's k-means, the initialisation of EM."""

import jax
import jax.numpy as jnp
import numpy as np

from lvm.fit.kmeans import kmeans, kmeans_objective, kmeans_plusplus, squared_distances


def test_kmeans_plusplus_picks_distinct_data_points():
    # 5 distinct points, each repeated: the D^2 weighting never re-picks a chosen point.
    points = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [5, 5]], np.float32)
    x = jnp.asarray(np.repeat(points, 7, axis=0))
    for seed in range(5):
        centres = np.asarray(kmeans_plusplus(jax.random.key(seed), x, 5))
        assert sorted(map(tuple, centres.tolist())) == sorted(map(tuple, points.tolist()))


def test_kmeans_plusplus_respects_zero_weights():
    x = jnp.asarray(np.arange(20, dtype=np.float32).reshape(10, 2))
    w = jnp.zeros(10).at[jnp.array([2, 7])].set(1.0)
    centres = np.asarray(kmeans_plusplus(jax.random.key(0), x, 2, sample_weight=w))
    assert sorted(centres[:, 0].tolist()) == [4.0, 14.0]


def test_kmeans_recovers_separated_centres():
    rng = np.random.default_rng(0)
    truth = np.array([[-5.0, 0.0], [5.0, 0.0], [0.0, 8.0]], np.float32)
    labels = rng.integers(0, 3, 600)
    x = truth[labels] + 0.3 * rng.normal(size=(600, 2)).astype(np.float32)
    centres, assigned = kmeans(jax.random.key(1), jnp.asarray(x), 3, num_iters=10)
    centres = np.asarray(centres)
    order = [int(np.argmin(((centres - t) ** 2).sum(1))) for t in truth]
    # Each centre within 5 standard errors (0.3 / sqrt(~200) per coordinate) of the truth.
    np.testing.assert_allclose(centres[order], truth, atol=5 * 0.3 / np.sqrt(150))
    # The hard assignments are the true labels up to relabelling.
    np.testing.assert_array_equal(np.asarray(order)[labels], np.asarray(assigned))


def test_squared_distances_match_direct_and_all_identical_data_is_fine():
    x = jnp.asarray(np.random.default_rng(2).normal(size=(8, 3)), jnp.float32)
    c = x[:3]
    direct = jnp.sum((x[:, None, :] - c[None, :, :]) ** 2, -1)
    np.testing.assert_allclose(squared_distances(x, c), direct, atol=1e-5)
    same = jnp.ones((6, 2))
    assert np.all(np.isfinite(np.asarray(kmeans_plusplus(jax.random.key(0), same, 3))))


def _blobs(seed=3, n=400, d=3, k=6):
    """Overlapping clusters, so that Lloyd's iterations take several steps to settle."""
    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.normal(size=(k, d))
    return centres[rng.integers(0, k, n)] + rng.normal(size=(n, d))


# One compile for every iteration budget and tolerance (both are traced values here).
_kmeans_jit = jax.jit(kmeans, static_argnums=2)
_seeds_jit = jax.jit(kmeans_plusplus, static_argnums=2)


def test_lloyd_iterations_never_increase_the_kmeans_objective():
    # Each Lloyd step first reassigns (never worse for fixed centres), then moves each centre
    # to its cluster's mean (never worse for fixed labels): the objective is non-increasing.
    # Float64, so the only slack is round-off in the N-term sum (1e-12 relative).
    @jax.jit
    def path(key, x, w):
        def after(t):  # the objective after t iterations, and whether labels are nearest
            centres, labels = kmeans(key, x, 6, num_iters=t, sample_weight=w)
            nearest = jnp.all(labels == jnp.argmin(squared_distances(x, centres), -1))
            return kmeans_objective(x, centres, sample_weight=w), nearest

        return jax.vmap(after)(jnp.arange(12))

    with jax.enable_x64(True):
        x = jnp.asarray(_blobs())
        w = jnp.asarray(np.random.default_rng(4).uniform(0.5, 2.0, x.shape[0]))
        for seed in range(3):
            values, nearest = map(np.asarray, path(jax.random.key(seed), x, w))
            assert nearest.all()  # the returned labels are the nearest returned centres
            steps = np.diff(values)
            assert np.all(steps <= 1e-12 * values[0]), steps
            assert values[-1] < values[0]  # and the refinement does something here


def test_lloyd_matches_sklearn_kmeans_from_the_same_seeds():
    # scikit-learn's Lloyd from lvm's k-means++ centres: with tol=0 both run until no
    # assignment changes, so they must reach the same partition and the same inertia
    # (float64; round-off only). With scikit-learn's default tol=1e-4 both stop on the
    # same centre-shift rule, scaled by the mean feature variance.
    from sklearn.cluster import KMeans

    with jax.enable_x64(True):
        x = _blobs(seed=5, n=500, d=4, k=8)
        for seed, tol in [(0, 0.0), (1, 0.0), (2, 1e-4)]:
            key = jax.random.key(seed)
            seeds = np.asarray(_seeds_jit(key, jnp.asarray(x), 8))
            centres, labels = _kmeans_jit(key, jnp.asarray(x), 8, num_iters=300, tol=tol)
            sk = KMeans(8, init=seeds, n_init=1, max_iter=300, tol=tol, algorithm="lloyd")
            sk.fit(x)
            np.testing.assert_array_equal(np.asarray(labels), sk.labels_)
            np.testing.assert_allclose(np.asarray(centres), sk.cluster_centers_, rtol=1e-10)
            inertia = float(kmeans_objective(jnp.asarray(x), centres))
            np.testing.assert_allclose(inertia, sk.inertia_, rtol=1e-10)


def test_kmeans_stops_at_a_fixed_point():
    # Once no assignment changes, further iterations change nothing: any budget past the
    # fixed point gives bit-identical centres.
    x = jnp.asarray(_blobs(seed=6).astype(np.float32))
    a, la = _kmeans_jit(jax.random.key(0), x, 6, num_iters=100)
    b, lb = _kmeans_jit(jax.random.key(0), x, 6, num_iters=1000)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(la), np.asarray(lb))
