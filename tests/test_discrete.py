"""Gradient estimators for discrete latents, checked against exact enumeration.

The testbed (``lvm.testbeds.amortized_mixture.amortized_mixture_testbed``) is a K = 3 Gaussian mixture
with an amortized categorical encoder away from p(z|x), and 3 datapoints: with k particles,
E[ELBO_k] and E[IWAE_k] are sums over the 3^k tuples of z (``lvm.testbeds.enumeration``),
so their gradients are exact, and each estimator's mean over keys must match them within
standard errors (4 s.e. per parameter). A second, binary testbed (3 Bernoulli latents, a
linear-Gaussian decoder, 2^3 latent values) runs the same estimators on the proposal the
discrete VAE uses.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lvm
from lvm.testbeds.amortized_mixture import (
    AmortizedMixture,
    amortized_mixture_testbed,
    exact_encoder,
)
from lvm.testbeds.enumeration import count_vectors, expected_model_bound, support
from lvm.train import objective_from_dict, objective_to_dict

#: The exact references, jitted once per (bound, k, method).
_expected = eqx.filter_jit(expected_model_bound)
K = 3  # particles in the unbiasedness tests: 27 tuples to enumerate
LOG_SCALE = math.log(2.0)  # NVIL's learned scale: sigma = 2 halves the encoder's gradient


@pytest.fixture(scope="module")
def testbed():
    model, xs = amortized_mixture_testbed()
    # A baseline head that is not zero (the estimators must stay unbiased whatever b(x) is)
    # and a learned scale sigma = 2.
    enc = model.encoder
    enc = eqx.tree_at(
        lambda e: (e.baseline_weight, e.baseline_bias, e.log_scale),
        enc,
        (
            0.1 * jnp.arange(enc.baseline_weight.shape[0], dtype=jnp.float32),
            jnp.array(-4.0),
            jnp.array(LOG_SCALE),
        ),
    )
    return eqx.tree_at(lambda m: m.encoder, model, enc), xs


def _flat(tree) -> jax.Array:
    return jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree.leaves(tree)])


def _groups(grad):
    """The gradient split as (encoder logits' parameters, mixture parameters, baseline, log-scale)."""
    e = grad.encoder
    return {
        "encoder": _flat((e.weight, e.bias)),
        "mixture": _flat(grad.params),
        "baseline": _flat((e.baseline_weight, e.baseline_bias)),
        "log_scale": e.log_scale[None],
    }


def _draws(objectives: dict, model, xs, *, reps: int, seed: int = 0) -> dict:
    """Per key, the gradient of each objective's mean bound over ``xs`` (datapoint b drawing with
    ``split(key, B)[b]``): {name: {group: (R, P) array}}, all estimators on the same keys."""

    def one(key):
        keys = jax.random.split(key, xs.shape[0])
        out = {}
        for name, objective in objectives.items():

            def mean_bound(m, objective=objective):
                bounds = jax.vmap(lambda k, x: objective(k, m.log_joint, m.encode(x), x))(keys, xs)
                return jnp.mean(bounds)

            out[name] = _groups(eqx.filter_grad(mean_bound)(model))
        return out

    keys = jax.random.split(jax.random.key(seed), reps)
    draws = jax.jit(lambda ks: jax.lax.map(one, ks, batch_size=500))(keys)
    return jax.tree.map(lambda a: np.asarray(a, np.float64), draws)


def _exact(model, xs, bound: str, k: int) -> dict:
    grad = eqx.filter_jit(
        eqx.filter_grad(
            lambda m: expected_model_bound(m, xs, bound=bound, num_samples=k, method="tuples")
        )
    )(model)
    return jax.tree.map(lambda a: np.asarray(a, np.float64), _groups(grad))


def _z_scores(draws: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """(mean - exact) / s.e. per parameter; a parameter whose draws are all equal (the unused
    upper triangle of a Cholesky factor: always 0) must equal the exact value to 1e-6."""
    se = draws.std(0, ddof=1) / math.sqrt(draws.shape[0])
    diff = draws.mean(0) - exact
    constant = se == 0
    assert np.all(np.abs(diff[constant]) < 1e-6)
    return np.where(constant, 0.0, diff / np.where(constant, 1.0, se))


def test_enumeration_by_tuples_and_by_counts_agree(testbed):
    """Both sums give the same E[bound]; E[ELBO_k] does not depend on k; E[IWAE_k] rises with k
    towards log p(x); at q = p(z|x) the ELBO is log p(x) and its encoder gradient is zero."""
    model, xs = testbed
    assert count_vectors(4, 3).shape == (15, 3) and np.all(count_vectors(4, 3).sum(1) == 4)
    values = {}
    for bound in ("elbo", "iwae"):
        for k in (1, 4):
            by = [
                float(_expected(model, xs, bound=bound, num_samples=k, method=m))
                for m in ("tuples", "counts")
            ]
            assert by[0] == pytest.approx(by[1], abs=2e-5)
            values[bound, k] = by[1]
    assert values["elbo", 1] == pytest.approx(values["elbo", 4], abs=2e-5)
    log_px = float(jnp.mean(jax.vmap(model.mixture.log_marginal)(xs)))
    iwae = [values["iwae", k] for k in (1, 4)] + [
        float(_expected(model, xs, bound="iwae", num_samples=200))
    ]
    assert np.all(np.diff(iwae) > 0) and iwae[-1] < log_px and log_px - iwae[-1] < 0.02
    best = AmortizedMixture.from_mixture(model.mixture, exact_encoder(model.mixture))
    value, grad = eqx.filter_jit(
        eqx.filter_value_and_grad(
            lambda m: expected_model_bound(m, xs, bound="elbo", num_samples=1)
        )
    )(best)
    assert float(value) == pytest.approx(log_px, abs=1e-5)
    assert np.max(np.abs(_groups(grad)["encoder"])) < 1e-4


def _support_terms(model, xs):
    """Per datapoint, over the K values of z: q(z|x), the log-weight ell(z) and the baseline b(x)."""

    def one(x):
        q = model.encode(x)
        zs = support(q)
        log_q = jax.vmap(q.log_prob)(zs)
        ell = jax.vmap(lambda z: model.log_joint(x, z))(zs) - log_q
        return jnp.exp(log_q), jax.lax.stop_gradient(ell), q.baseline, q.log_scale

    return jax.vmap(one)(xs)


def test_score_function_estimators_are_unbiased(testbed):
    """REINFORCE with each baseline, NVIL and VIMCO: the mean gradient over 3,000 keys is
    within 4 s.e. of the enumerated exact gradient for every encoder and mixture parameter
    (k = 3). NVIL's encoder gradient is the exact one divided by max(1, sigma) = 2. The learned
    baseline and scale receive the exact gradients of their training signals."""
    model, xs = testbed
    elbo = {
        "none": lvm.ELBO(K, gradient="reinforce"),
        "leave_one_out": lvm.ELBO(K, gradient="reinforce", baseline="leave_one_out"),
        "learned": lvm.ELBO(K, gradient="reinforce", baseline="learned"),
        "nvil": lvm.ELBO(K, gradient="reinforce", baseline="learned", normalize=True),
    }
    iwae = {
        "iwae_none": lvm.IWAE(K, gradient="reinforce"),
        "iwae_learned": lvm.IWAE(K, gradient="reinforce", baseline="learned"),
        "vimco": lvm.IWAE(K, gradient="vimco"),
    }
    draws = _draws({**elbo, **iwae}, model, xs, reps=3000)
    exact = {"elbo": _exact(model, xs, "elbo", K), "iwae": _exact(model, xs, "iwae", K)}
    for name in (*elbo, *iwae):
        ref = exact["iwae" if name in iwae else "elbo"]
        scale = 2.0 if name == "nvil" else 1.0
        for group in ("encoder", "mixture"):
            want = ref[group] / (scale if group == "encoder" else 1.0)
            z = _z_scores(draws[name][group], want)
            assert np.all(np.abs(z) < 4), (name, group, z)

    # The baseline's signal -1/2 E[(ell - b)^2] and the scale's -E[c^2 e^{-2s}/2 + s], c = ell - b.
    def baseline_loss(m):
        q, ell, b, _ = _support_terms(m, xs)
        return -0.5 * jnp.mean(jnp.sum(q * (ell - b[:, None]) ** 2, 1))

    def scale_loss(m):
        q, ell, b, s = _support_terms(m, xs)
        c2 = jax.lax.stop_gradient((ell - b[:, None]) ** 2)
        return -jnp.mean(
            jnp.sum(q * jax.lax.stop_gradient(0.5 * c2) * jnp.exp(-2 * s[:, None]), 1) + s
        )

    want_b = np.asarray(_groups(eqx.filter_jit(eqx.filter_grad(baseline_loss))(model))["baseline"])
    want_s = np.asarray(_groups(eqx.filter_jit(eqx.filter_grad(scale_loss))(model))["log_scale"])
    for name in ("learned", "nvil"):
        assert np.all(np.abs(_z_scores(draws[name]["baseline"], want_b)) < 4), name
    assert np.all(np.abs(_z_scores(draws["nvil"]["log_scale"], want_s)) < 4)
    for name in ("none", "leave_one_out", "vimco"):  # no learned baseline: nothing trains it
        assert np.all(draws[name]["baseline"] == 0) and np.all(draws[name]["log_scale"] == 0)


def test_vimco_variance_is_below_reinforce(testbed):
    """At k = 5, for every encoder parameter, VIMCO's gradient variance is below that of
    REINFORCE on the same bound (IWAE_5), beyond 4 s.e. of the paired difference of squared
    deviations; its total variance (the sum over parameters) is also below that of REINFORCE on
    the ELBO_5, beyond 4 s.e."""
    model, xs = testbed
    k, reps = 5, 1500
    draws = _draws(
        {
            "vimco": lvm.IWAE(k, gradient="vimco"),
            "iwae": lvm.IWAE(k, gradient="reinforce"),
            "elbo": lvm.ELBO(k, gradient="reinforce"),
        },
        model,
        xs,
        reps=reps,
        seed=1,
    )
    sq = {n: (d["encoder"] - d["encoder"].mean(0)) ** 2 for n, d in draws.items()}
    diff = sq["iwae"] - sq["vimco"]
    assert np.all(diff.mean(0) > 4 * diff.std(0, ddof=1) / math.sqrt(reps))
    assert sq["vimco"].mean(0).sum() < 0.05 * sq["iwae"].mean(0).sum()
    total = (sq["elbo"] - sq["vimco"]).sum(1)
    assert total.mean() > 4 * total.std(ddof=1) / math.sqrt(reps)


def test_concrete_bias_shrinks_as_the_temperature_falls(testbed):
    """Concrete (k = 1, the same keys at every temperature): at tau = 1 the mean gradient is
    many s.e. from the exact one; the norm of the bias falls from tau = 1 to 0.5 to 0.2, each
    step by more than 4 s.e. (the s.e. of a norm: that of the mean along the bias' direction)."""
    model, xs = testbed
    temps = (1.0, 0.5, 0.2)
    objectives = {t: lvm.ELBO(1, gradient="concrete", temperature=t) for t in temps}
    draws = _draws(objectives, model, xs, reps=8000, seed=2)
    exact = _exact(model, xs, "elbo", 1)["encoder"]
    bias, se = [], []
    for t in temps:
        g = draws[t]["encoder"]
        offset = g.mean(0) - exact
        bias.append(np.linalg.norm(offset))
        u = offset / bias[-1]
        se.append(math.sqrt(u @ np.cov(g.T) @ u / g.shape[0]))
    assert np.max(np.abs(_z_scores(draws[1.0]["encoder"], exact))) > 10
    for j in range(len(temps) - 1):
        assert bias[j] - bias[j + 1] > 4 * (se[j] + se[j + 1]), (bias, se)


def test_zero_score_terms_at_the_posterior(testbed):
    """At q = p(z|x) every log-weight is log p(x), so the advantages of VIMCO and of the
    leave-one-out REINFORCE vanish key by key (float32 round-off): the ELBO's encoder gradient
    is 0, and VIMCO's is the IWAE bound's direct term alone (what the plain bound's autodiff
    gives for a discrete z), while plain REINFORCE's is not 0."""
    model, xs = testbed
    best = AmortizedMixture.from_mixture(model.mixture, exact_encoder(model.mixture))
    draws = _draws(
        {
            "plain": lvm.ELBO(4, gradient="reinforce"),
            "leave_one_out": lvm.ELBO(4, gradient="reinforce", baseline="leave_one_out"),
            "vimco": lvm.IWAE(4, gradient="vimco"),
            "direct": lvm.IWAE(4),
        },
        best,
        xs,
        reps=16,
    )
    plain = np.max(np.abs(draws["plain"]["encoder"]))
    assert plain > 0.1
    assert np.max(np.abs(draws["leave_one_out"]["encoder"])) < 1e-4 * plain
    assert np.max(np.abs(draws["vimco"]["encoder"] - draws["direct"]["encoder"])) < 1e-4 * plain
    assert np.max(np.abs(draws["direct"]["encoder"])) > 0.01


# ---------------------------------------------------------------- binary latents


class Bits(eqx.Module):
    """z: 3 Bernoulli bits with prior logits; x | z ~ N(W z + b, 0.5^2 I) in 2-D; q(z|x) =
    Bernoulli(A x + c) with a learned baseline and scale."""

    prior_logits: jax.Array
    weight: jax.Array
    bias: jax.Array
    enc_weight: jax.Array
    enc_bias: jax.Array
    baseline: jax.Array
    log_scale: jax.Array

    @property
    def log_joint(self):
        def log_likelihood(x, z):
            r = (x - self.weight @ z - self.bias) / 0.5
            return -0.5 * jnp.sum(r**2) - x.shape[0] * math.log(0.5 * math.sqrt(2 * math.pi))

        return lvm.Joint(lvm.Bernoulli(self.prior_logits), log_likelihood)

    def encode(self, x):
        q = lvm.Bernoulli(self.enc_weight @ x + self.enc_bias)
        return lvm.WithBaseline(q, self.baseline, self.log_scale)


@pytest.fixture(scope="module")
def bits():
    k = jax.random.split(jax.random.key(3), 4)
    model = Bits(
        jnp.array([0.5, -0.5, 0.0]),
        jax.random.normal(k[0], (2, 3)),
        jnp.array([0.2, -0.1]),
        0.5 * jax.random.normal(k[1], (3, 2)),
        jnp.array([0.3, -0.3, 0.0]),
        jnp.array(-3.0),
        jnp.array(0.0),
    )
    return model, jax.random.normal(k[2], (2, 2))


def _bits_groups(grad):
    return {"encoder": _flat((grad.enc_weight, grad.enc_bias)), "mixture": _flat(grad.weight)}


def test_binary_latents_vimco_and_nvil_are_unbiased_and_concrete_is_not(bits):
    """On 3 Bernoulli latents (k = 2: 64 tuples of latent values), VIMCO and NVIL (learned
    baseline, normalize) match the enumerated gradient within 4 s.e. (NVIL's scale is 1 here);
    the Concrete estimator at tau = 1, fed the relaxed bits, does not."""
    model, xs = bits
    objectives = {
        "vimco": lvm.IWAE(2, gradient="vimco"),
        "nvil": lvm.ELBO(2, gradient="reinforce", baseline="learned", normalize=True),
        "concrete": lvm.ELBO(2, gradient="concrete", temperature=1.0),
    }

    def one(key):
        keys = jax.random.split(key, xs.shape[0])
        out = {}
        for name, objective in objectives.items():

            def mean_bound(m, objective=objective):
                b = jax.vmap(lambda k, x: objective(k, m.log_joint, m.encode(x), x))(keys, xs)
                return jnp.mean(b)

            out[name] = _bits_groups(jax.grad(mean_bound)(model))
        return out

    reps = 3000
    draws = jax.jit(lambda ks: jax.lax.map(one, ks, batch_size=500))(
        jax.random.split(jax.random.key(4), reps)
    )
    for name, bound in (("vimco", "iwae"), ("nvil", "elbo"), ("concrete", "elbo")):
        exact = _bits_groups(
            jax.jit(
                jax.grad(
                    lambda m, bound=bound: expected_model_bound(
                        m, xs, bound=bound, num_samples=2, method="tuples"
                    )
                )
            )(model)
        )
        z = _z_scores(np.asarray(draws[name]["encoder"], np.float64), np.asarray(exact["encoder"]))
        if name == "concrete":
            assert np.max(np.abs(z)) > 6, z
        else:
            assert np.all(np.abs(z) < 4), (name, z)
            zm = _z_scores(np.asarray(draws[name]["mixture"], np.float64), exact["mixture"])
            assert np.all(np.abs(zm) < 4), (name, zm)


# ---------------------------------------------------------------- values, options, bad input

OPTIONS = {
    "ELBO": (
        {"gradient": "reinforce"},
        {"gradient": "reinforce", "baseline": "leave_one_out"},
        {"gradient": "reinforce", "baseline": "learned", "normalize": True},
        {"gradient": "concrete", "temperature": 0.5},
        {"gradient": "concrete", "temperature": 0.5, "straight_through": True},
    ),
    "IWAE": (
        {"gradient": "reinforce"},
        {"gradient": "reinforce", "baseline": "learned", "normalize": True},
        {"gradient": "vimco"},
        {"gradient": "concrete", "temperature": 0.5},
        {"gradient": "concrete", "temperature": 0.5, "straight_through": True},
    ),
}


@pytest.mark.parametrize("name", ["ELBO", "IWAE"])
def test_values_are_unchanged_by_the_gradient_option(name, testbed, bits):
    """Same key, same numbers (bit for bit) as the default option, categorical and binary z."""
    cls = getattr(lvm, name)
    keys = jax.random.split(jax.random.key(5), 20)
    for model, xs in (testbed, bits):
        x = xs[0]
        objectives = [cls(3)] + [cls(3, **options) for options in OPTIONS[name]]

        def values(key, model=model, x=x, objectives=objectives):
            return [o(key, model.log_joint, model.encode(x), x) for o in objectives]

        reference, *others = np.asarray(jax.jit(jax.vmap(values))(keys))
        for options, got in zip(OPTIONS[name], others, strict=True):
            np.testing.assert_array_equal(got, reference, str(options))


def test_reprs_and_json_of_the_existing_options_are_unchanged():
    assert repr(lvm.ELBO()) == "ELBO(num_samples=1, gradient='reparam')"
    assert (
        repr(lvm.IWAE(5, gradient="dreg"))
        == "IWAE(num_samples=5, chunk_size=None, gradient='dreg')"
    )
    assert objective_to_dict(lvm.ELBO(2, gradient="stl")) == {
        "type": "ELBO",
        "num_samples": 2,
        "gradient": "stl",
    }
    nvil = lvm.ELBO(1, gradient="reinforce", baseline="learned", normalize=True)
    assert repr(nvil) == (
        "ELBO(num_samples=1, gradient='reinforce', baseline='learned', normalize=True)"
    )
    for objective in (
        nvil,
        lvm.IWAE(4, gradient="vimco"),
        lvm.IWAE(3, gradient="concrete", temperature=0.5, straight_through=True),
    ):
        spec = objective_to_dict(objective)
        assert objective_from_dict(spec) == objective
        assert hash(objective) == hash(objective_from_dict(spec))


def test_invalid_combinations_raise_when_built():
    bad = [
        (lambda: lvm.ELBO(4, gradient="vimco"), "IWAE\\(k, gradient='vimco'\\)"),
        (lambda: lvm.IWAE(1, gradient="vimco"), "num_samples >= 2"),
        (lambda: lvm.IWAE(8, chunk_size=2, gradient="vimco"), "chunk_size=None"),
        (lambda: lvm.IWAE(8, chunk_size=2, gradient="reinforce"), "chunk_size=None"),
        (lambda: lvm.ELBO(1, gradient="reinforce", baseline="leave_one_out"), "num_samples >= 2"),
        (lambda: lvm.IWAE(4, gradient="reinforce", baseline="leave_one_out"), "is VIMCO"),
        (lambda: lvm.ELBO(2, gradient="reinforce", baseline="running"), "baseline must be one of"),
        (
            lambda: lvm.IWAE(4, gradient="vimco", baseline="learned"),
            "settings of gradient='reinforce'",
        ),
        (
            lambda: lvm.ELBO(2, gradient="concrete", normalize=True),
            "settings of gradient='reinforce'",
        ),
        (lambda: lvm.ELBO(2, normalize=True), "settings of gradient='reinforce'"),
        (lambda: lvm.ELBO(2, gradient="concrete"), "needs a temperature"),
        (lambda: lvm.IWAE(2, gradient="concrete", temperature=0.0), "needs a temperature"),
        (
            lambda: lvm.ELBO(2, gradient="reinforce", temperature=0.5),
            "setting of gradient='concrete'",
        ),
        (lambda: lvm.IWAE(2, straight_through=True), "setting of gradient='concrete'"),
        (lambda: lvm.ELBO(2, gradient="score"), "gradient must be one of"),
    ]
    for build, message in bad:
        with pytest.raises(ValueError, match=message):
            build()


def test_proposals_without_what_the_estimator_needs_raise(testbed):
    model, xs = testbed
    x = xs[0]
    plain = model.encode(x).distribution  # a Categorical with no baseline
    with pytest.raises(TypeError, match="learned baseline"):
        lvm.ELBO(2, gradient="reinforce", baseline="learned")(
            jax.random.key(0), model.log_joint, plain, x
        )
    no_scale = lvm.WithBaseline(plain, jnp.array(0.0))
    with pytest.raises(TypeError, match="learned log_scale"):
        lvm.ELBO(2, gradient="reinforce", normalize=True)(
            jax.random.key(0), model.log_joint, no_scale, x
        )
    gaussian = lvm.DiagonalNormal(jnp.zeros(2), jnp.ones(2))
    with pytest.raises(TypeError, match="relaxed\\(temperature\\)"):
        lvm.ELBO(1, gradient="concrete", temperature=0.5)(
            jax.random.key(0), lambda x, z: -jnp.sum(z**2), gaussian, x
        )
