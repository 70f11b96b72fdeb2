"""Small distributions for priors and proposals: one draw per key, one log-density per z.

Continuous (reparameterized): :class:`DiagonalNormal`, :class:`MultivariateNormal`. Discrete:
:class:`Categorical`, :class:`Bernoulli` (a vector of binary latents), with their Concrete
relaxations :class:`RelaxedCategorical`, :class:`RelaxedBernoulli` for the relaxed gradient
estimator, and :class:`WithBaseline`, a proposal carrying a learned baseline for the
score-function ones (:mod:`lvm.estimators.discrete`).

Each is an :class:`equinox.Module` (a pytree), so a proposal can be built inside a
vmapped or jitted function, e.g. an amortized ``q(z|x)`` per datapoint.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from lvm._checks import check_positive_int, check_shape
from lvm._math import LOG_2PI, gaussian_log_density, particle_keys
from lvm.types import Distribution, Key, Latent, Scalar


def _check_vector(a, name: str) -> None:
    # Shapes are checked when a distribution is built, so that a (3,) mean beside a (1,)
    # scale raises here instead of broadcasting into a wrong number (outside pytest too).
    if len(jnp.shape(a)) != 1:
        raise ValueError(
            f"{name} must be a vector (one datapoint's latent), got shape {jnp.shape(a)}"
        )


class DiagonalNormal(eqx.Module):
    r"""Gaussian :math:`\mathcal N(\mu, \mathrm{diag}(\sigma^2))`, reparameterized: :math:`z = \mu + \sigma \odot \epsilon`."""

    loc: Float[Array, " d"]
    scale: Float[Array, " d"]

    def __check_init__(self):
        _check_vector(self.loc, "loc")
        check_shape(self.scale, self.loc.shape, "scale")

    def sample(self, key: Key) -> Float[Array, " d"]:
        eps = jax.random.normal(key, self.loc.shape, self.loc.dtype)
        return self.loc + self.scale * eps

    def log_prob(self, z: Float[Array, " d"]) -> Scalar:
        check_shape(z, self.loc.shape, "z")
        u = (z - self.loc) / self.scale
        return gaussian_log_density(jnp.sum(u**2), jnp.sum(jnp.log(self.scale)), u.size)

    def entropy(self) -> Scalar:
        d = self.loc.size
        return jnp.sum(jnp.log(self.scale)) + 0.5 * d * (1.0 + LOG_2PI)

    @property
    def scale_tril(self) -> Float[Array, "d d"]:
        return jnp.diag(self.scale)


class MultivariateNormal(eqx.Module):
    r"""Gaussian :math:`\mathcal N(\mu, LL^\top)` with lower-triangular ``scale_tril`` L: :math:`z = \mu + L\epsilon`.

    Entries above the diagonal of ``scale_tril`` are ignored everywhere (sampling, density,
    covariance), so that ``sample`` and ``log_prob`` describe the same distribution and
    their gradients w.r.t. those entries are zero.
    """

    loc: Float[Array, " d"]
    scale_tril: Float[Array, "d d"]

    def __check_init__(self):
        _check_vector(self.loc, "loc")
        check_shape(self.scale_tril, self.loc.shape * 2, "scale_tril")

    def sample(self, key: Key) -> Float[Array, " d"]:
        eps = jax.random.normal(key, self.loc.shape, self.loc.dtype)
        return self.loc + jnp.tril(self.scale_tril) @ eps

    def log_prob(self, z: Float[Array, " d"]) -> Scalar:
        check_shape(z, self.loc.shape, "z")
        u = jax.scipy.linalg.solve_triangular(self.scale_tril, z - self.loc, lower=True)
        log_det = jnp.sum(jnp.log(jnp.abs(jnp.diag(self.scale_tril))))
        return gaussian_log_density(jnp.sum(u**2), log_det, u.size)

    def entropy(self) -> Scalar:
        d = self.loc.size
        log_det = jnp.sum(jnp.log(jnp.abs(jnp.diag(self.scale_tril))))
        return log_det + 0.5 * d * (1.0 + LOG_2PI)

    @property
    def covariance(self) -> Float[Array, "d d"]:
        tril = jnp.tril(self.scale_tril)
        return tril @ tril.T


class Categorical(eqx.Module):
    r"""Categorical over :math:`\{0, \dots, K-1\}` with probabilities :math:`\mathrm{softmax}(\text{logits})`.

    Not reparameterizable: its samples are integers, so an estimator's gradient w.r.t. the
    logits needs a score-function or relaxed estimator (:mod:`lvm.estimators.discrete`).
    ``sample`` is the Gumbel-max trick, :math:`z = \arg\max_c (\text{logits}_c + g_c)` with
    :math:`g_c` standard Gumbel noise drawn from ``key`` (the draw of
    :func:`jax.random.categorical`), so that :meth:`relaxed` can couple a relaxed sample to
    the same z.
    """

    logits: Float[Array, " K"]

    def __check_init__(self):
        _check_vector(self.logits, "logits")

    def sample(self, key: Key) -> Int[Array, ""]:
        return jnp.argmax(self.logits + _gumbel(key, self.logits))

    def log_prob(self, z: Int[Array, ""]) -> Scalar:
        check_shape(z, (), "z")
        return jax.nn.log_softmax(self.logits)[z]

    def entropy(self) -> Scalar:
        log_p = jax.nn.log_softmax(self.logits)
        return -jnp.sum(jnp.exp(log_p) * log_p)

    @property
    def probs(self) -> Float[Array, " K"]:
        return jax.nn.softmax(self.logits)

    def relaxed(self, temperature) -> "RelaxedCategorical":
        """The Gumbel-softmax relaxation at ``temperature`` (:class:`RelaxedCategorical`)."""
        return RelaxedCategorical(self.logits, temperature)


class Bernoulli(eqx.Module):
    r"""d independent binary latents, :math:`z_j \sim \mathrm{Bernoulli}(\sigma(\text{logits}_j))`.

    .. math:: \log q(z) = \sum_j z_j\,\text{logits}_j - \log(1 + e^{\text{logits}_j})

    ``sample`` returns floats in {0, 1} of the logits' dtype, so that a decoder takes them
    as it takes any float latent; it thresholds logistic noise,
    :math:`z_j = [\text{logits}_j + \ell_j > 0]` with :math:`\ell_j = \log u_j - \log(1-u_j)`,
    :math:`u_j \sim U(0, 1)` from ``key``, so that :meth:`relaxed` can couple a relaxed sample
    to the same z. ``log_prob`` is the formula above for any float z of the right shape: at a
    relaxed :math:`z \in (0, 1)^d` it is the formula's linear extension (what the Concrete
    estimator evaluates), not a density. Not reparameterizable (see :class:`Categorical`).
    """

    logits: Float[Array, " d"]

    def __check_init__(self):
        _check_vector(self.logits, "logits")

    def sample(self, key: Key) -> Float[Array, " d"]:
        noise = jax.random.logistic(key, self.logits.shape, self.logits.dtype)
        return (self.logits + noise > 0).astype(self.logits.dtype)

    def log_prob(self, z: Float[Array, " d"]) -> Scalar:
        check_shape(z, self.logits.shape, "z")
        return jnp.sum(z * self.logits - jax.nn.softplus(self.logits))

    def entropy(self) -> Scalar:
        return jnp.sum(jax.nn.softplus(self.logits) - self.probs * self.logits)

    @property
    def probs(self) -> Float[Array, " d"]:
        return jax.nn.sigmoid(self.logits)

    def relaxed(self, temperature) -> "RelaxedBernoulli":
        """The binary Concrete relaxation at ``temperature`` (:class:`RelaxedBernoulli`)."""
        return RelaxedBernoulli(self.logits, temperature)


# ---------------------------------------------------------------- relaxations (Concrete)


def _gumbel(key: Key, logits) -> Array:
    return jax.random.gumbel(key, logits.shape, logits.dtype)


def _check_temperature(temperature) -> None:
    if isinstance(temperature, int | float) and not (
        math.isfinite(temperature) and temperature > 0
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    if not isinstance(temperature, int | float):
        check_shape(temperature, (), "temperature")


class RelaxedBernoulli(eqx.Module):
    r"""Binary Concrete (Maddison, Mnih & Teh, 2017): :math:`y = \sigma\big((\text{logits} + \ell)/\tau\big)`.

    With :math:`\ell` the logistic noise of :meth:`Bernoulli.sample` (same key), ``y`` lies in
    :math:`(0, 1)^d`, is differentiable in the logits, and :math:`[y_j > 1/2]` is the
    Bernoulli sample (:meth:`sample_coupled` returns both, the discrete one exactly as
    :meth:`Bernoulli.sample` draws it). As :math:`\tau \to 0` y tends to that binary sample.
    Its density, per coordinate with :math:`\alpha = e^{\text{logits}}`,

    .. math:: p_\tau(y) = \frac{\tau\,\alpha\,y^{-\tau-1}(1-y)^{-\tau-1}}
              {\big(\alpha y^{-\tau} + (1-y)^{-\tau}\big)^2},

    is computed through the logit :math:`t = \log y - \log(1-y)`, which is logistic with
    location :math:`\text{logits}/\tau` and scale :math:`1/\tau`:
    :math:`\log p_\tau(y) = \log\tau - a - 2\,\mathrm{softplus}(-a) + \mathrm{softplus}(t)
    + \mathrm{softplus}(-t)`, :math:`a = \tau t - \text{logits}`. In float32 y rounds to 1
    once :math:`(\text{logits} + \ell)/\tau > 17`, where ``log_prob`` is not finite; the
    samples and the estimators do not need it.
    """

    logits: Float[Array, " d"]
    temperature: Float[Array, ""] | float

    def __check_init__(self):
        _check_vector(self.logits, "logits")
        _check_temperature(self.temperature)

    def sample_coupled(self, key: Key) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
        """``(z, y)``: the Bernoulli sample of ``key`` and the relaxed sample of the same noise."""
        s = self.logits + jax.random.logistic(key, self.logits.shape, self.logits.dtype)
        return (s > 0).astype(self.logits.dtype), jax.nn.sigmoid(s / self.temperature)

    def sample(self, key: Key) -> Float[Array, " d"]:
        return self.sample_coupled(key)[1]

    def log_prob(self, y: Float[Array, " d"]) -> Scalar:
        check_shape(y, self.logits.shape, "y")
        t = jnp.log(y) - jnp.log1p(-y)
        a = self.temperature * t - self.logits
        log_density_t = jnp.log(self.temperature) - a - 2.0 * jax.nn.softplus(-a)
        return jnp.sum(log_density_t + jax.nn.softplus(t) + jax.nn.softplus(-t))

    def one_hot(self, z: Float[Array, " d"]) -> Float[Array, " d"]:
        """A discrete sample in the relaxed sample's coordinates: z itself."""
        return z

    def extend(self, fn, y: Float[Array, " d"]) -> Scalar:
        """``fn`` at the relaxed ``y``: a model of binary latents takes floats, so ``fn(y)``."""
        return fn(y)


class RelaxedCategorical(eqx.Module):
    r"""Concrete / Gumbel-softmax (Maddison et al., 2017; Jang, Gu & Poole, 2017) on the simplex.

    :math:`y = \mathrm{softmax}\big((\text{logits} + g)/\tau\big)` with the Gumbel noise g of
    :meth:`Categorical.sample` (same key): :math:`\arg\max_c y_c` is the categorical sample
    (:meth:`sample_coupled`), and y tends to its one-hot vector as :math:`\tau \to 0`. Its
    density w.r.t. Lebesgue measure on the first K - 1 coordinates of the simplex, with
    :math:`\alpha = e^{\text{logits}}`,

    .. math:: p_\tau(y) = (K-1)!\,\tau^{K-1} \prod_{c=1}^{K}
              \frac{\alpha_c\,y_c^{-\tau-1}}{\sum_{c'} \alpha_{c'} y_{c'}^{-\tau}} .

    In float32, entries of y can underflow to 0 at small temperatures, where ``log_prob`` is
    not finite; the samples and the estimators do not need it.
    """

    logits: Float[Array, " K"]
    temperature: Float[Array, ""] | float

    def __check_init__(self):
        _check_vector(self.logits, "logits")
        _check_temperature(self.temperature)

    def sample_coupled(self, key: Key) -> tuple[Int[Array, ""], Float[Array, " K"]]:
        """``(z, y)``: the categorical sample of ``key`` and the relaxed sample of the same noise."""
        s = self.logits + _gumbel(key, self.logits)
        return jnp.argmax(s), jax.nn.softmax(s / self.temperature)

    def sample(self, key: Key) -> Float[Array, " K"]:
        return self.sample_coupled(key)[1]

    def log_prob(self, y: Float[Array, " K"]) -> Scalar:
        check_shape(y, self.logits.shape, "y")
        k, tau = self.logits.shape[0], self.temperature
        log_y = jnp.log(y)
        return (
            math.lgamma(k)
            + (k - 1) * jnp.log(tau)
            + jnp.sum(self.logits - (tau + 1.0) * log_y)
            - k * jax.nn.logsumexp(self.logits - tau * log_y)
        )

    def one_hot(self, z: Int[Array, ""]) -> Float[Array, " K"]:
        """A discrete sample in the relaxed sample's coordinates: its one-hot vector."""
        return jax.nn.one_hot(z, self.logits.shape[0], dtype=self.logits.dtype)

    def extend(self, fn, y: Float[Array, " K"]) -> Scalar:
        r"""``fn``'s one-hot linear extension :math:`\sum_c y_c\,\mathrm{fn}(c)` at the relaxed ``y``.

        A categorical model written in one-hot form, e.g. a mixture's
        :math:`\log p(x \mid z) = \sum_c z_c \log \mathcal N(x; \mu_c, \Sigma_c)`, is linear in
        z; this evaluates that form at y, with ``fn`` called on each of the K values.
        """
        values = jax.vmap(fn)(jnp.arange(self.logits.shape[0]))
        return jnp.dot(y, values.astype(y.dtype))


class WithBaseline(eqx.Module):
    r"""A proposal that carries the control variates of the score-function estimators.

    ``distribution`` is q(z|x) (sampled and scored as it is); ``baseline`` is a scalar
    :math:`b(x)` and ``log_scale`` an optional scalar :math:`s`, both computed by the
    model (an encoder's head, a learned constant) so that they are trained with it: the
    objective ``ELBO(k, gradient="reinforce", baseline="learned", normalize=True)`` subtracts
    ``baseline`` from its learning signal, divides by :math:`\max(1, e^s)`, and folds each
    one's training signal into its gradient (:mod:`lvm.estimators.discrete`). Every other
    estimator sees ``distribution`` only.
    """

    distribution: Distribution
    baseline: Float[Array, ""]
    log_scale: Float[Array, ""] | None = None

    def __check_init__(self):
        check_shape(self.baseline, (), "baseline")
        if self.log_scale is not None:
            check_shape(self.log_scale, (), "log_scale")

    def sample(self, key: Key) -> Latent:
        return self.distribution.sample(key)

    def log_prob(self, z: Latent) -> Scalar:
        return self.distribution.log_prob(z)

    def entropy(self) -> Scalar:
        return self.distribution.entropy()

    def relaxed(self, temperature):
        return self.distribution.relaxed(temperature)


class Mixture(eqx.Module):
    r"""A finite mixture :math:`p(z) = \sum_{k=1}^K \pi_k\, p_k(z)`, :math:`\pi = \mathrm{softmax}(\text{logits})`.

    ``components`` is ONE distribution module whose array leaves carry a leading axis of
    length K, component k being ``tree_map(lambda a: a[k], components)``; build it with
    ``jax.vmap``, e.g. ``jax.vmap(DiagonalNormal)(locs, scales)`` for (K, d) arrays (the
    shape checks then run per component). It is the lecture's Gaussian mixture as a
    distribution over z (a VAE's learned prior) and the marginal of
    :class:`lvm.GaussianMixture` (:meth:`~lvm.GaussianMixture.marginal`).

    .. math:: \log p(z) = \operatorname{logsumexp}_k\big[\log \pi_k + \log p_k(z)\big]

    Sampling draws the component with one half of ``split(key)`` and z from it with the
    other; the draw is not reparameterizable in the component index (the mixture weights get
    no pathwise gradient through a sample), which training objectives do not need: they
    score prior densities, never sample the prior.
    """

    logits: Float[Array, " K"]
    components: Distribution

    def __check_init__(self):
        _check_vector(self.logits, "logits")
        sizes = {jnp.shape(a)[0] for a in jax.tree.leaves(self.components) if jnp.ndim(a) > 0}
        if sizes != {self.logits.shape[0]}:
            raise ValueError(
                f"every array of the components must have a leading axis of {self.logits.shape[0]} "
                f"(one entry per component), got leading sizes {sorted(sizes)}"
            )

    @property
    def num_components(self) -> int:
        return self.logits.shape[0]

    def component(self, k) -> Distribution:
        """Component ``k`` as a distribution of its own."""
        return jax.tree.map(lambda a: a[k], self.components)

    def component_log_prob(self, z: Latent) -> Float[Array, " K"]:
        r""":math:`\log p_k(z)` for every component k."""
        return jax.vmap(lambda c: c.log_prob(z))(self.components)

    def log_prob(self, z: Latent) -> Scalar:
        return jax.nn.logsumexp(jax.nn.log_softmax(self.logits) + self.component_log_prob(z))

    def sample(self, key: Key) -> Latent:
        k_key, z_key = jax.random.split(key)
        return self.component(jax.random.categorical(k_key, self.logits)).sample(z_key)

    @property
    def mean(self) -> Latent:
        r""":math:`\sum_k \pi_k\, \mathbb E_k[z]` (components with a ``loc``)."""
        weights = jax.nn.softmax(self.logits)
        return jnp.tensordot(weights, self.components.loc, axes=1)


def sample_n(key: Key, dist: Distribution, num_samples: int) -> Latent:
    """Draw ``num_samples`` z from ``dist``, z_i with ``fold_in(key, i)``; leading axis is the sample axis."""
    num_samples = check_positive_int(num_samples)
    return jax.vmap(dist.sample)(particle_keys(key, num_samples))


def sample_and_log_prob(key: Key, dist: Distribution) -> tuple[Latent, Scalar]:
    r"""One draw :math:`z \sim` ``dist`` with ``key`` and its log-density :math:`\log q(z)`.

    Uses ``dist.sample_and_log_prob(key)`` when ``dist`` has it (a :class:`lvm.flows.Flow`
    scores its draw from the forward pass, without inverting), else ``dist.sample(key)`` then
    ``dist.log_prob(z)``. The z is the one ``dist.sample(key)`` draws.
    """
    if hasattr(dist, "sample_and_log_prob"):
        return dist.sample_and_log_prob(key)
    z = dist.sample(key)
    return z, dist.log_prob(z)


def sample_n_and_log_prob(
    key: Key, dist: Distribution, num_samples: int
) -> tuple[Latent, Float[Array, " k"]]:
    """:func:`sample_n` with the log-density of each draw (:func:`sample_and_log_prob` per particle key)."""
    num_samples = check_positive_int(num_samples)
    return jax.vmap(lambda k: sample_and_log_prob(k, dist))(particle_keys(key, num_samples))


def kl_divergence(q: Distribution, p: Distribution) -> Scalar:
    r"""Closed-form :math:`\mathrm{KL}(q \,\|\, p)` between two distributions of the same family.

    * two Gaussians (:class:`DiagonalNormal` or :class:`MultivariateNormal`, mixed freely):

      .. math:: \tfrac12\big[\mathrm{tr}(\Sigma_p^{-1}\Sigma_q)
                + (\mu_p-\mu_q)^\top\Sigma_p^{-1}(\mu_p-\mu_q) - d
                + \log\det\Sigma_p - \log\det\Sigma_q\big]

    * two :class:`Categorical`: :math:`\sum_c q_c (\log q_c - \log p_c)`;
    * two :class:`Bernoulli`: the same sum over both values of every coordinate.

    A :class:`WithBaseline` proposal is its distribution. Any other pair (a :class:`Mixture`
    prior, a flow) has no closed form here and raises ``TypeError``: estimate the KL by Monte
    Carlo instead (the sampled ELBO, ``lvm.ELBO``, does).
    """
    q = q.distribution if isinstance(q, WithBaseline) else q
    p = p.distribution if isinstance(p, WithBaseline) else p
    gaussian = (DiagonalNormal, MultivariateNormal)
    if isinstance(q, Categorical) and isinstance(p, Categorical):
        check_shape(p.logits, q.logits.shape, "logits of p")
        log_q, log_p = jax.nn.log_softmax(q.logits), jax.nn.log_softmax(p.logits)
        return jnp.sum(jnp.exp(log_q) * (log_q - log_p))
    if isinstance(q, Bernoulli) and isinstance(p, Bernoulli):
        check_shape(p.logits, q.logits.shape, "logits of p")
        # log sigma(l) = -softplus(-l), log(1 - sigma(l)) = -softplus(l)
        on = q.probs * (jax.nn.softplus(-p.logits) - jax.nn.softplus(-q.logits))
        off = (1.0 - q.probs) * (jax.nn.softplus(p.logits) - jax.nn.softplus(q.logits))
        return jnp.sum(on + off)
    if not (isinstance(q, gaussian) and isinstance(p, gaussian)):
        raise TypeError(
            f"kl_divergence has no closed form for q = {type(q).__name__}, p = "
            f"{type(p).__name__}: it knows two Gaussians (DiagonalNormal / MultivariateNormal), "
            "two Categorical or two Bernoulli; estimate KL(q || p) by Monte Carlo instead"
        )
    check_shape(p.loc, q.loc.shape, "loc of p")
    if isinstance(q, DiagonalNormal) and isinstance(p, DiagonalNormal):
        ratio = (q.scale / p.scale) ** 2
        mahal = ((q.loc - p.loc) / p.scale) ** 2
        return 0.5 * jnp.sum(ratio + mahal - 1.0 - jnp.log(ratio))
    l_p, l_q = p.scale_tril, q.scale_tril
    solve = jax.scipy.linalg.solve_triangular
    trace = jnp.sum(solve(l_p, l_q, lower=True) ** 2)
    mahal = jnp.sum(solve(l_p, q.loc - p.loc, lower=True) ** 2)
    log_det_p = 2.0 * jnp.sum(jnp.log(jnp.abs(jnp.diag(l_p))))
    log_det_q = 2.0 * jnp.sum(jnp.log(jnp.abs(jnp.diag(l_q))))
    return 0.5 * (trace + mahal - q.loc.size + log_det_p - log_det_q)
