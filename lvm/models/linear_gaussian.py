r"""The linear-Gaussian latent variable model: the exact testbed for every estimator.

.. math:: z \sim \mathcal N(0, I_d), \qquad x \mid z \sim \mathcal N(Wz + b, \sigma^2 I_D)

Everything is known in closed form (probabilistic PCA; Tipping & Bishop 1999):

.. math:: p(x) = \mathcal N(x;\, b,\, WW^\top + \sigma^2 I_D), \qquad
          p(z \mid x) = \mathcal N\big(M^{-1} W^\top (x-b)/\sigma^2,\; M^{-1}\big),
          \quad M = I_d + W^\top W / \sigma^2 .

``log_marginal`` uses the matrix determinant lemma and Woodbury's identity, so it
costs O(D d^2) and never forms the D x D covariance.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from lvm._checks import check_finite, check_shape
from lvm._math import gaussian_log_density
from lvm.distributions import DiagonalNormal, MultivariateNormal
from lvm.joint import Joint
from lvm.types import Key, Scalar


class LinearGaussian(eqx.Module):
    """Parameters ``weight`` W (D, d), ``bias`` b (D,), ``noise_std`` sigma > 0; methods act on ONE x."""

    weight: Float[Array, "D d"]
    bias: Float[Array, " D"]
    noise_std: Float[Array, ""]

    def __init__(self, weight, bias, noise_std):
        weight, bias = jnp.asarray(weight), jnp.asarray(bias)
        noise_std = jnp.asarray(noise_std, dtype=weight.dtype)
        if weight.ndim != 2:
            raise ValueError(f"weight must be (D, d), got shape {weight.shape}")
        check_shape(bias, (weight.shape[0],), "bias")
        check_shape(noise_std, (), "noise_std")
        self.weight, self.bias, self.noise_std = weight, bias, noise_std

    @classmethod
    def random(cls, key: Key, *, latent_dim: int, data_dim: int, noise_std: float = 0.5):
        """A model with W_ij ~ N(0, 1/d) and b_j ~ N(0, 1): a well-posed testbed of any size."""
        w_key, b_key = jax.random.split(key)
        weight = jax.random.normal(w_key, (data_dim, latent_dim)) / math.sqrt(latent_dim)
        return cls(weight, jax.random.normal(b_key, (data_dim,)), noise_std)

    @property
    def latent_dim(self) -> int:
        return self.weight.shape[1]

    @property
    def data_dim(self) -> int:
        return self.weight.shape[0]

    def prior(self) -> DiagonalNormal:
        """p(z) = N(0, I_d)."""
        d = self.latent_dim
        return DiagonalNormal(jnp.zeros(d, self.weight.dtype), jnp.ones(d, self.weight.dtype))

    def log_likelihood(self, x: Float[Array, " D"], z: Float[Array, " d"]) -> Scalar:
        r""":math:`\log \mathcal N(x; Wz + b, \sigma^2 I)`."""
        self._check(x, z)
        # z @ W^T keeps the sample axis leading under vmap (W @ z makes XLA transpose a D x k result).
        r = (x - z @ self.weight.T - self.bias) / self.noise_std
        return gaussian_log_density(jnp.sum(r**2), x.size * jnp.log(self.noise_std), x.size)

    @property
    def log_joint(self) -> Joint:
        """``log_joint(x, z) = log p(z) + log p(x | z)``, an :class:`lvm.Joint` (callable)."""
        return Joint(self.prior(), self.log_likelihood)

    def _precision_chol(self):
        """Cholesky factor of M = I + W^T W / sigma^2, the posterior precision."""
        d = self.latent_dim
        m = jnp.eye(d, dtype=self.weight.dtype) + self.weight.T @ self.weight / self.noise_std**2
        return jnp.linalg.cholesky(m)

    def log_marginal(self, x: Float[Array, " D"]) -> Scalar:
        r"""Exact :math:`\log p(x) = \log \mathcal N(x; b, WW^\top + \sigma^2 I)`."""
        check_shape(x, (self.data_dim,), "x")
        x = check_finite(x)
        chol_m = self._precision_chol()
        r = x - self.bias
        u = jax.scipy.linalg.solve_triangular(chol_m, self.weight.T @ r, lower=True)
        var = self.noise_std**2
        quad = jnp.sum(r**2) / var - jnp.sum(u**2) / var**2
        log_det = self.data_dim * jnp.log(var) + 2.0 * jnp.sum(jnp.log(jnp.diag(chol_m)))
        return gaussian_log_density(quad, 0.5 * log_det, self.data_dim)

    def posterior(self, x: Float[Array, " D"]) -> MultivariateNormal:
        """Exact p(z | x) as a :class:`MultivariateNormal` (usable as a perfect proposal)."""
        check_shape(x, (self.data_dim,), "x")
        chol_m = self._precision_chol()
        solve = jax.scipy.linalg.solve_triangular
        eye = jnp.eye(self.latent_dim, dtype=self.weight.dtype)
        # M = C C^T  =>  M^{-1} = C^{-T} C^{-1}; a Cholesky factor of M^{-1} is chol(C^{-T} C^{-1}).
        chol_inv = solve(chol_m, eye, lower=True)  # C^{-1}
        cov = chol_inv.T @ chol_inv
        loc = cov @ (self.weight.T @ (x - self.bias)) / self.noise_std**2
        return MultivariateNormal(loc, jnp.linalg.cholesky(cov))

    def sample(self, key: Key) -> tuple[Float[Array, " d"], Float[Array, " D"]]:
        """One draw (z, x) from the joint."""
        z_key, x_key = jax.random.split(key)
        z = self.prior().sample(z_key)
        noise = jax.random.normal(x_key, (self.data_dim,), self.weight.dtype)
        return z, self.weight @ z + self.bias + self.noise_std * noise

    def _check(self, x, z):
        check_shape(x, (self.data_dim,), "x")
        check_shape(z, (self.latent_dim,), "z")
