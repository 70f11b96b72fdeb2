"""k-means++ seeding and Lloyd's k-means, the initialisation of EM."""

import jax
import jax.numpy as jnp
import numpy as np

from lvm.fit.kmeans import kmeans, kmeans_plusplus, squared_distances


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
