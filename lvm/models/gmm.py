r"""The Gaussian mixture: a categorical latent z picks one of K Gaussians.

.. math:: z \sim \mathrm{Cat}(\pi), \quad \pi = \mathrm{softmax}(\text{logits}), \qquad
          x \mid z = k \sim \mathcal N(\mu_k, \Sigma_k), \quad \Sigma_k = L_k L_k^\top

.. math:: \log p(x) = \operatorname{logsumexp}_k \big[\log \pi_k + \log \mathcal N(x; \mu_k, \Sigma_k)\big],
          \qquad p(z = k \mid x) = \mathrm{softmax}_k\big[\log \pi_k + \log \mathcal N(x; \mu_k, \Sigma_k)\big]

Covariances come in four types (scikit-learn's), stored in ``scale``:

============  ==============  ==========================================
type          ``scale`` shape meaning
============  ==============  ==========================================
``full``      (K, D, D)       lower-triangular Cholesky factors L_k
``tied``      (D, D)          one Cholesky factor L shared by all k
``diag``      (K, D)          per-dimension standard deviations
``spherical`` (K,)            one standard deviation per component
============  ==============  ==========================================

The stored form is canonical: a Cholesky factor keeps a non-negative diagonal and a
standard deviation is non-negative. :math:`\Sigma = L L^\top` does not change when a
column of L changes sign, so the constructor flips every column whose diagonal entry is
negative (and takes |scale| for diag and spherical); every later formula may then use
:math:`\log L_{jj}` and :math:`\log` scale directly.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from lvm._checks import check_finite, check_shape
from lvm._math import gaussian_log_density
from lvm.distributions import Categorical, Mixture, MultivariateNormal
from lvm.joint import Joint
from lvm.types import Key, Scalar

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


class GaussianMixture(eqx.Module):
    """Mixture parameters as a pytree; every method acts on ONE datapoint x of shape (D,)."""

    logits: Float[Array, " K"]
    means: Float[Array, "K D"]
    scale: Float[Array, "K ..."]
    covariance_type: str = eqx.field(static=True, default="full")

    def __init__(self, logits, means, scale, covariance_type: str = "full"):
        logits, means, scale = jnp.asarray(logits), jnp.asarray(means), jnp.asarray(scale)
        if covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}"
            )
        if means.ndim != 2:
            raise ValueError(f"means must be (K, D), got shape {means.shape}")
        k, d = means.shape
        check_shape(logits, (k,), "logits")
        expected = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}
        check_shape(scale, expected[covariance_type], f"scale ({covariance_type})")
        self.logits, self.means, self.scale = logits, means, _canonical(scale, covariance_type)
        self.covariance_type = covariance_type

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def data_dim(self) -> int:
        return self.means.shape[1]

    @property
    def log_mixture_weights(self) -> Float[Array, " K"]:
        """log pi_k, normalised (the log prior probabilities of the components)."""
        return jax.nn.log_softmax(self.logits)

    @property
    def scale_tril(self) -> Float[Array, "K D D"]:
        """Cholesky factors L_k of every covariance type, as dense (K, D, D)."""
        if self.covariance_type == "full":
            return self.scale
        if self.covariance_type == "tied":
            return jnp.broadcast_to(self.scale, (self.num_components, *self.scale.shape))
        eye = jnp.eye(self.data_dim, dtype=self.means.dtype)[None]
        if self.covariance_type == "diag":
            return self.scale[:, :, None] * eye
        return self.scale[:, None, None] * eye

    @property
    def covariances(self) -> Float[Array, "K D D"]:
        tril = self.scale_tril
        return tril @ jnp.swapaxes(tril, -1, -2)

    def component_log_prob(self, x: Float[Array, " D"]) -> Float[Array, " K"]:
        r""":math:`\log \mathcal N(x; \mu_k, \Sigma_k)` for every component k."""
        check_shape(x, (self.data_dim,), "x")
        diff = x[None, :] - self.means  # (K, D)
        if self.covariance_type == "full":
            solve = jax.vmap(lambda l, r: jax.scipy.linalg.solve_triangular(l, r, lower=True))
            u = solve(self.scale, diff)
            log_det = jnp.sum(jnp.log(jnp.diagonal(self.scale, axis1=-2, axis2=-1)), -1)
        elif self.covariance_type == "tied":
            u = jax.scipy.linalg.solve_triangular(self.scale, diff.T, lower=True).T
            log_det = jnp.sum(jnp.log(jnp.diagonal(self.scale)))
        elif self.covariance_type == "diag":
            u = diff / self.scale
            log_det = jnp.sum(jnp.log(self.scale), -1)
        else:
            u = diff / self.scale[:, None]
            log_det = self.data_dim * jnp.log(self.scale)
        return gaussian_log_density(jnp.sum(u**2, -1), log_det, self.data_dim)

    def log_likelihood(self, x: Float[Array, " D"], z: Int[Array, ""]) -> Scalar:
        """log p(x | z) = log N(x; mu_z, Sigma_z)."""
        return self.component_log_prob(x)[z]

    @property
    def log_joint(self) -> Joint:
        """``log_joint(x, z) = log pi_z + log N(x; mu_z, Sigma_z)``, an :class:`lvm.Joint` (callable)."""
        return Joint(self.prior(), self.log_likelihood)

    def log_marginal(self, x: Float[Array, " D"]) -> Scalar:
        """Exact log p(x): log-sum-exp over components."""
        x = check_finite(x)
        return jax.nn.logsumexp(self.log_mixture_weights + self.component_log_prob(x))

    def marginal(self) -> Mixture:
        r"""p(x) as a :class:`lvm.distributions.Mixture` of :class:`~lvm.MultivariateNormal`
        components (any covariance type, through the Cholesky factors): ``log_prob`` is
        :meth:`log_marginal`, ``sample`` draws x (the component index discarded)."""
        components = jax.vmap(MultivariateNormal)(self.means, self.scale_tril)
        return Mixture(self.log_mixture_weights, components)

    def log_responsibilities(self, x: Float[Array, " D"]) -> Float[Array, " K"]:
        """log p(z = k | x) for every k."""
        return jax.nn.log_softmax(self.log_mixture_weights + self.component_log_prob(x))

    def responsibilities(self, x: Float[Array, " D"]) -> Float[Array, " K"]:
        """Posterior p(z = k | x): the soft assignment of x to the components."""
        return jnp.exp(self.log_responsibilities(x))

    def prior(self) -> Categorical:
        """p(z) = Cat(pi)."""
        return Categorical(self.log_mixture_weights)

    def posterior(self, x: Float[Array, " D"]) -> Categorical:
        """Exact p(z | x) as a :class:`Categorical` (usable as a perfect proposal)."""
        return Categorical(self.log_responsibilities(x))

    def sample(self, key: Key) -> tuple[Int[Array, ""], Float[Array, " D"]]:
        """One draw (z, x) from the joint."""
        z_key, x_key = jax.random.split(key)
        z = self.prior().sample(z_key)
        eps = jax.random.normal(x_key, (self.data_dim,), self.means.dtype)
        return z, self.means[z] + self.scale_tril[z] @ eps


def _canonical(scale, covariance_type: str):
    """``scale`` with a non-negative Cholesky diagonal (columns flipped) or |standard deviation|."""
    if covariance_type in ("full", "tied"):
        diag = jnp.diagonal(scale, axis1=-2, axis2=-1)
        sign = jnp.where(diag < 0, -1, 1).astype(scale.dtype)
        return scale * sign[..., None, :]  # L diag(s): (L diag(s))(L diag(s))^T = L L^T
    return jnp.abs(scale)
