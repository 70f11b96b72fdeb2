r"""Fit in standardised coordinates: an affine change of variables that EM is equivariant to.

With :math:`x' = (x - m) / s` (per dimension; one common s for spherical
covariances), a mixture with means :math:`\mu_k` and Cholesky factors
:math:`L_k` becomes :math:`\mu'_k = (\mu_k - m)/s`, :math:`L'_k = \mathrm{diag}(1/s) L_k`,
and :math:`\log p(x) = \log p'(x') - \sum_d \log s_d`. EM and gradient ascent
take the same path in either coordinate system (the covariance floor is mapped
too, :math:`\epsilon / s_d^2`), but in float32 the centred, unit-scale
coordinates keep the expanded quadratic forms of :mod:`lvm.fit._expfam` accurate.
"""

from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Float

from lvm.models.gmm import GaussianMixture
from lvm.types import Scalar


class Affine(NamedTuple):
    """x' = (x - shift) / scale."""

    shift: Float[Array, " D"]
    scale: Float[Array, " D"]

    def apply(self, x: Float[Array, "N D"]) -> Float[Array, "N D"]:
        return (x - self.shift[None, :]) / self.scale[None, :]

    @property
    def log_det(self) -> Scalar:
        """sum_d log s_d: subtract it from a standardised log-density to get the original one."""
        return jnp.sum(jnp.log(self.scale))


def data_affine(x: Float[Array, "N D"], weight: Float[Array, " N"], covariance_type: str) -> Affine:
    """Weighted mean and standard deviation of x (a scalar scale for spherical covariances)."""
    w = weight / jnp.sum(weight)
    shift = w @ x
    var = w @ (x - shift[None, :]) ** 2
    if covariance_type == "spherical":
        var = jnp.full_like(var, jnp.mean(var))
    scale = jnp.where(var > 0, jnp.sqrt(jnp.where(var > 0, var, 1.0)), 1.0)
    return Affine(shift, scale)


def _scale_factor(covariance_type: str, s: Float[Array, " D"]):
    """diag(s) acting on ``scale``'s rows, broadcast to its shape."""
    return {
        "full": s[None, :, None],
        "tied": s[:, None],
        "diag": s[None, :],
        "spherical": s[0],
    }[covariance_type]


def to_standard(params: GaussianMixture, a: Affine) -> GaussianMixture:
    means = (params.means - a.shift[None, :]) / a.scale[None, :]
    scale = params.scale / _scale_factor(params.covariance_type, a.scale)
    return GaussianMixture(params.logits, means, scale, params.covariance_type)


def from_standard(params: GaussianMixture, a: Affine) -> GaussianMixture:
    means = params.means * a.scale[None, :] + a.shift[None, :]
    scale = params.scale * _scale_factor(params.covariance_type, a.scale)
    return GaussianMixture(params.logits, means, scale, params.covariance_type)
