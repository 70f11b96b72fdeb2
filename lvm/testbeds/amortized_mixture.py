r"""The Gaussian mixture with an amortized categorical encoder: the lecture's first model, trained like a VAE.

.. math:: p_\theta(x, z) = \pi_z\,\mathcal N(x; \mu_z, L_z L_z^\top), \qquad
          q_\phi(z \mid x) = \mathrm{Cat}\big(\mathrm{softmax}(W \varphi(x) + c)\big),

with quadratic features :math:`\varphi(x) = (x, \{x_i x_j\}_{i \le j})`. The log-posterior of a
full-covariance mixture, :math:`\log\pi_k - \tfrac12 (x-\mu_k)^\top\Sigma_k^{-1}(x-\mu_k) -
\tfrac12\log|\Sigma_k| + \text{const}`, is quadratic in x, so the encoder family contains
p(z|x) for every x (:func:`exact_encoder`): the ELBO's optimum over :math:`(\theta, \phi)`
is the maximum-likelihood mixture, which EM also finds. The encoder also computes a
baseline :math:`b(x) = v^\top\varphi(x) + b_0` and carries a learned log-scale s, for the
score-function estimators (:class:`lvm.WithBaseline`).

With K components and k particles every expectation is a sum over K^k tuples
(:mod:`lvm.testbeds.enumeration`), which makes this the exact testbed of the discrete
gradient estimators (:mod:`lvm.estimators.discrete`).
"""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from lvm.distributions import Categorical, WithBaseline
from lvm.fit.gradient import Unconstrained, constrain, unconstrain
from lvm.joint import Joint
from lvm.models.gmm import GaussianMixture


def quadratic_features(x: Float[Array, " D"]) -> Float[Array, " F"]:
    r""":math:`\varphi(x) = (x_1..x_D,\ x_i x_j \text{ for } i \le j)`: D + D(D+1)/2 features."""
    rows, cols = np.triu_indices(x.shape[0])
    return jnp.concatenate([x, x[rows] * x[cols]])


def num_features(data_dim: int) -> int:
    return data_dim + data_dim * (data_dim + 1) // 2


class CategoricalEncoder(eqx.Module):
    r"""x -> :class:`lvm.WithBaseline` (Categorical with logits :math:`W\varphi(x) + c`, baseline :math:`v^\top\varphi(x) + b_0`, log-scale s)."""

    weight: Float[Array, "K F"]
    bias: Float[Array, " K"]
    baseline_weight: Float[Array, " F"]
    baseline_bias: Float[Array, ""]
    log_scale: Float[Array, ""]

    @classmethod
    def zeros(cls, num_components: int, data_dim: int, dtype=jnp.float32) -> "CategoricalEncoder":
        """q(z|x) uniform for every x, baseline 0, scale 1."""
        f = num_features(data_dim)
        zero = jnp.zeros((), dtype)
        return cls(
            jnp.zeros((num_components, f), dtype),
            jnp.zeros(num_components, dtype),
            jnp.zeros(f, dtype),
            zero,
            zero,
        )

    def logits(self, x: Float[Array, " D"]) -> Float[Array, " K"]:
        return self.weight @ quadratic_features(x) + self.bias

    def __call__(self, x: Float[Array, " D"]) -> WithBaseline:
        baseline = self.baseline_weight @ quadratic_features(x) + self.baseline_bias
        return WithBaseline(Categorical(self.logits(x)), baseline, self.log_scale)


def exact_encoder(mixture: GaussianMixture) -> CategoricalEncoder:
    """The encoder whose q(z|x) is the mixture's p(z|x) for every x (baseline 0, scale 1)."""
    tril = mixture.scale_tril
    precision = jnp.linalg.inv(tril @ jnp.swapaxes(tril, -1, -2))  # (K, D, D)
    d = mixture.data_dim
    rows, cols = np.triu_indices(d)
    linear = jnp.einsum("kij,kj->ki", precision, mixture.means)
    # -1/2 x^T P x = sum_i -P_ii/2 x_i^2 + sum_{i<j} -P_ij x_i x_j
    quad = -jnp.where(rows == cols, 0.5, 1.0)[None, :] * precision[:, rows, cols]
    log_det = jnp.sum(jnp.log(jnp.diagonal(tril, axis1=-2, axis2=-1)), -1)
    bias = (
        mixture.log_mixture_weights - 0.5 * jnp.einsum("ki,ki->k", linear, mixture.means) - log_det
    )
    zeros = CategoricalEncoder.zeros(mixture.num_components, d, mixture.means.dtype)
    return eqx.tree_at(
        lambda e: (e.weight, e.bias), zeros, (jnp.concatenate([linear, quad], 1), bias)
    )


class AmortizedMixture(eqx.Module):
    """A :class:`lvm.GaussianMixture` (free parameters, :mod:`lvm.fit.gradient`) with a :class:`CategoricalEncoder`.

    A model in the library's sense: ``log_joint`` (an :class:`lvm.Joint`) and ``encode(x)``,
    for one datapoint x of shape (D,); train it with any objective of
    :mod:`lvm.estimators.objectives` whose gradient suits a categorical z.
    """

    params: Unconstrained
    encoder: CategoricalEncoder
    covariance_type: str = eqx.field(static=True, default="full")

    @classmethod
    def from_mixture(
        cls, mixture: GaussianMixture, encoder: CategoricalEncoder | None = None
    ) -> "AmortizedMixture":
        """``mixture`` with ``encoder`` (default: q(z|x) uniform, :meth:`CategoricalEncoder.zeros`)."""
        if encoder is None:
            encoder = CategoricalEncoder.zeros(
                mixture.num_components, mixture.data_dim, mixture.means.dtype
            )
        return cls(unconstrain(mixture), encoder, mixture.covariance_type)

    @property
    def mixture(self) -> GaussianMixture:
        return constrain(self.params, self.covariance_type)

    @property
    def log_joint(self) -> Joint:
        return self.mixture.log_joint

    def encode(self, x: Float[Array, " D"]) -> WithBaseline:
        return self.encoder(x)


def amortized_mixture_testbed() -> tuple[AmortizedMixture, Float[Array, "3 2"]]:
    r"""``(model, xs)``: the fixed K = 3, D = 2 testbed of the discrete gradient estimators, and 3 datapoints.

    The mixture has full covariances; the encoder is the exact one with its weights halved
    and its biases shifted by (1, -1, 0), so that q(z|x) is far from p(z|x) at every
    datapoint; the baseline head is 0 and the scale 1. The datapoints sit between the
    components, where the posterior is uncertain.
    """
    tril = jnp.array(
        [[[1.0, 0.0], [0.4, 0.8]], [[0.8, 0.0], [-0.3, 0.7]], [[0.6, 0.0], [0.0, 0.9]]]
    )
    mixture = GaussianMixture(
        jnp.array([0.0, -0.5, -1.0]),
        jnp.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]]),
        tril,
        covariance_type="full",
    )
    best = exact_encoder(mixture)
    encoder = eqx.tree_at(
        lambda e: (e.weight, e.bias),
        best,
        (0.5 * best.weight, best.bias + jnp.array([1.0, -1.0, 0.0])),
    )
    xs = jnp.array([[0.6, 1.2], [-0.5, 0.4], [1.0, -0.3]])
    return AmortizedMixture.from_mixture(mixture, encoder), xs
