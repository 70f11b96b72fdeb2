import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

import lvm


def test_log_mean_exp_matches_scipy_and_is_stable():
    log_w = jax.random.normal(jax.random.key(1), (7, 3)) * 50.0 - 1000.0
    got = lvm.log_mean_exp(log_w, axis=0)
    want = logsumexp(np.asarray(log_w, np.float64), axis=0) - np.log(7)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert np.all(np.isfinite(got))


def test_effective_sample_size_extremes():
    assert float(lvm.effective_sample_size(jnp.full(10, -3.0))) == pytest.approx(10.0, rel=1e-6)
    one_dominates = jnp.array([0.0, -1e4, -1e4, -1e4])
    assert float(lvm.effective_sample_size(one_dominates)) == pytest.approx(1.0, rel=1e-6)
    w = np.random.default_rng(0).exponential(size=50)
    want = w.sum() ** 2 / (w**2).sum()
    got = lvm.effective_sample_size(jnp.log(jnp.asarray(w, jnp.float32)))
    assert float(got) == pytest.approx(want, rel=1e-5)


def _particle(key):
    return 30.0 * jax.random.normal(key) - 500.0


# Chunk sizes below k (100), with remainders (100 = 14 x 7 + 2 = 64 + 36 = 99 + 1): a chunk
# size >= k takes the unchunked path and would compare the function with itself.
@pytest.mark.parametrize("chunk_size", [1, 7, 64, 99])
def test_streaming_log_mean_exp_equals_unchunked(chunk_size):
    key = jax.random.key(3)
    values = np.array([float(_particle(jax.random.fold_in(key, i))) for i in range(100)])
    reference = logsumexp(values) - np.log(100)  # a Python loop over the particle keys and scipy
    full = lvm.particle_log_mean_exp(_particle, key, num_samples=100)
    chunked = lvm.particle_log_mean_exp(_particle, key, num_samples=100, chunk_size=chunk_size)
    np.testing.assert_allclose(full, reference, rtol=1e-6)
    np.testing.assert_allclose(chunked, reference, rtol=1e-6)


@pytest.mark.parametrize(
    "log_w",
    [
        np.array([0.3, -1.0, 2.0, 2.0, -0.5]),  # a tie at the maximum
        np.array([0.0, -80.0, -90.0, -85.0]),  # one value holds all the mass
        np.array([-1.0, -np.inf, -2.0]),
    ],
)
def test_leave_one_out_log_sum_exp_matches_a_loop(log_w):
    from lvm._math import leave_one_out_log_sum_exp

    want = [logsumexp(np.delete(log_w, i)) for i in range(len(log_w))]
    with jax.enable_x64(True):
        got = leave_one_out_log_sum_exp(jnp.asarray(log_w))
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


def test_streaming_gradient_equals_unchunked():
    def estimate(scale, chunk_size):
        return lvm.particle_log_mean_exp(
            lambda k: scale * jax.random.normal(k),
            jax.random.key(0),
            num_samples=50,
            chunk_size=chunk_size,
        )

    g_full = jax.grad(estimate)(2.0, None)
    g_chunk = jax.grad(estimate)(2.0, 8)
    np.testing.assert_allclose(g_chunk, g_full, rtol=1e-5)


def test_streaming_all_minus_inf_gives_minus_inf_not_nan():
    out = lvm.particle_log_mean_exp(
        lambda k: jnp.array(-jnp.inf), jax.random.key(0), num_samples=10, chunk_size=3
    )
    assert float(out) == -np.inf


@pytest.mark.parametrize("bad", [0, -3])
def test_num_samples_below_one_raises(bad):
    with pytest.raises(ValueError, match="num_samples"):
        lvm.particle_log_mean_exp(_particle, jax.random.key(0), num_samples=bad)
    with pytest.raises(ValueError, match="chunk_size"):
        lvm.particle_log_mean_exp(_particle, jax.random.key(0), num_samples=10, chunk_size=bad)


def test_num_samples_not_an_int_raises():
    with pytest.raises(TypeError, match="num_samples"):
        lvm.particle_log_mean_exp(_particle, jax.random.key(0), num_samples=2.5)


def test_effective_sample_size_is_zero_not_nan_when_every_weight_is_zero():
    # (sum w)^2 / sum w^2 is 0/0 here; no usable particle is an ESS of 0.
    assert float(lvm.effective_sample_size(jnp.full(5, -jnp.inf))) == 0.0
    assert float(lvm.effective_sample_size(jnp.array([-jnp.inf, 0.0, -jnp.inf]))) == 1.0


def test_particle_keys_are_split_keys_and_a_chunk_derives_its_own():
    from lvm._math import particle_keys

    key = jax.random.key(7)
    split = jax.random.key_data(jax.random.split(key, 10))
    np.testing.assert_array_equal(jax.random.key_data(particle_keys(key, 10)), split)
    np.testing.assert_array_equal(jax.random.key_data(particle_keys(key, 4, 6)), split[6:])
