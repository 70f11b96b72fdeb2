"""Small distributions for priors and proposals: one draw per key, one log-density per z.

Each is an :class:`equinox.Module` (a pytree), so a proposal can be built inside a
vmapped or jitted function, e.g. an amortized ``q(z|x)`` per datapoint.
"""

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

    Not reparameterizable: estimators built on it are unbiased in value, but
    their gradient w.r.t. the proposal's logits is not the pathwise one.
    """

    logits: Float[Array, " K"]

    def __check_init__(self):
        _check_vector(self.logits, "logits")

    def sample(self, key: Key) -> Int[Array, ""]:
        return jax.random.categorical(key, self.logits)

    def log_prob(self, z: Int[Array, ""]) -> Scalar:
        return jax.nn.log_softmax(self.logits)[z]

    def entropy(self) -> Scalar:
        log_p = jax.nn.log_softmax(self.logits)
        return -jnp.sum(jnp.exp(log_p) * log_p)

    @property
    def probs(self) -> Float[Array, " K"]:
        return jax.nn.softmax(self.logits)


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
    r"""Closed-form :math:`\mathrm{KL}(q \,\|\, p)` where one exists.

    Two Gaussians (:class:`DiagonalNormal`, :class:`MultivariateNormal`, in any pairing):

    .. math:: \tfrac12\big[\mathrm{tr}(\Sigma_p^{-1}\Sigma_q)
              + (\mu_p-\mu_q)^\top\Sigma_p^{-1}(\mu_p-\mu_q) - d
              + \log\det\Sigma_p - \log\det\Sigma_q\big]

    Two :class:`Categorical`: :math:`\sum_k q_k (\log q_k - \log p_k)`. Any other pair (a
    :class:`Mixture` prior, a flow) has no closed form here and raises ``TypeError``: estimate
    the KL by Monte Carlo instead (the sampled ELBO, ``lvm.ELBO``, does).
    """
    if isinstance(q, Categorical) and isinstance(p, Categorical):
        log_q, log_p = jax.nn.log_softmax(q.logits), jax.nn.log_softmax(p.logits)
        return jnp.sum(jnp.exp(log_q) * (log_q - log_p))
    gaussians = (DiagonalNormal, MultivariateNormal)
    if not (isinstance(q, gaussians) and isinstance(p, gaussians)):
        raise TypeError(
            f"kl_divergence has no closed form for KL({type(q).__name__} || "
            f"{type(p).__name__}): only two Gaussians or two Categoricals; estimate it by "
            "Monte Carlo instead (lvm.ELBO samples it)"
        )
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
