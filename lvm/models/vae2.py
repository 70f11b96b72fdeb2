r"""A VAE with two stochastic layers (Burda et al., 2016, Sec. 5) for ONE datapoint.

.. math:: p(z_2) = \mathcal N(0, I), \qquad
          p(z_1 \mid z_2) = \mathcal N\big(\mu_\theta(z_2), \mathrm{diag}\,\sigma_\theta(z_2)^2\big),
          \qquad p(x \mid z_1) = \prod_j \mathrm{Bernoulli}\big(x_j;\ \sigma(f_\theta(z_1)_j)\big),

.. math:: q(z_1, z_2 \mid x) = \mathcal N\big(z_1;\ \mu_\phi(x), \mathrm{diag}\,\sigma_\phi(x)^2\big)\,
          \mathcal N\big(z_2;\ \mu_\phi(z_1), \mathrm{diag}\,\sigma_\phi(z_1)^2\big),

every mean and scale from a multilayer perceptron. The default is the IWAE paper's
architecture: latents (100, 50); q(z1|x) 784-200-200-(100, 100), q(z2|z1) 100-100-100-(50, 50),
p(z1|z2) 50-100-100-(100, 100), p(x|z1) 100-200-200-784; tanh.

The latent of the library's protocol is ONE vector, :math:`z = (z_1, z_2)` concatenated
(150 numbers by default), so every estimator, objective, IS and AIS apply unchanged:
``encode(x)`` is a distribution over that vector (:class:`TwoLayerPosterior`: it draws z1,
then z2 given z1) and ``log_joint`` an :class:`lvm.Joint` whose prior is the hierarchical
p(z1, z2) (:class:`TwoLayerPrior`) and whose likelihood reads z1 only.
"""

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from lvm._checks import check_shape
from lvm.distributions import DiagonalNormal
from lvm.joint import Joint
from lvm.models.vae import _ACTIVATIONS, _MLP, _SCALES, bernoulli_log_likelihood, validate_pixels
from lvm.types import Key, Scalar


@dataclass(frozen=True)
class TwoLayerVAEConfig:
    """Architecture of a :class:`TwoLayerVAE`; hashable, a static field of the model.

    * ``latent_dims``: ``(d1, d2)``, the sizes of z1 (next to x) and z2 (the top layer).
    * ``hidden_sizes``: ``(h1, h2)``, tuples of hidden-layer sizes: h1 for the networks
      between x and z1 (q(z1|x), and reversed for p(x|z1)), h2 for those between z1 and z2
      (q(z2|z1), and reversed for p(z1|z2)).
    * ``scale`` maps raw outputs to the Gaussians' standard deviations: ``"softplus"``
      (default) or ``"exp"``, as in :class:`lvm.VAEConfig`. Bernoulli likelihood only.
    """

    data_dim: int = 784
    latent_dims: tuple[int, ...] = (100, 50)
    hidden_sizes: tuple[tuple[int, ...], ...] = ((200, 200), (100, 100))
    activation: str = "tanh"
    scale: str = "softplus"

    def __post_init__(self):
        if len(self.latent_dims) != 2 or len(self.hidden_sizes) != 2:
            raise ValueError(
                "latent_dims and hidden_sizes must have two entries each (z1, z2), got "
                f"{self.latent_dims} and {self.hidden_sizes}"
            )
        object.__setattr__(self, "latent_dims", tuple(self.latent_dims))
        object.__setattr__(self, "hidden_sizes", tuple(tuple(h) for h in self.hidden_sizes))
        sizes = (self.data_dim, *self.latent_dims, *self.hidden_sizes[0], *self.hidden_sizes[1])
        if any(isinstance(n, bool) or not isinstance(n, int | np.integer) for n in sizes):
            raise TypeError(f"layer sizes must be ints, got {self}")
        if min(sizes) < 1:
            raise ValueError(f"all layer sizes must be >= 1, got {self}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {tuple(sorted(_ACTIVATIONS))}, got {self.activation!r}"
            )
        if self.scale not in _SCALES:
            raise ValueError(f"scale must be one of {_SCALES}, got {self.scale!r}")

    @property
    def latent_dim(self) -> int:
        """Size of the concatenated latent (z1, z2)."""
        return sum(self.latent_dims)


class _GaussianHead(eqx.Module):
    """An MLP whose outputs are the mean and the raw scale of a diagonal Gaussian."""

    mlp: _MLP
    scale: str = eqx.field(static=True)

    def __init__(self, sizes: tuple[int, ...], activation: str, scale: str, *, key: Key):
        self.mlp = _MLP((*sizes[:-1], 2 * sizes[-1]), activation, key=key)
        self.scale = scale

    def __call__(self, h: Float[Array, " n_in"]) -> DiagonalNormal:
        loc, raw = jnp.split(self.mlp(h), 2)
        return DiagonalNormal(loc, jnp.exp(raw) if self.scale == "exp" else jax.nn.softplus(raw))


class TwoLayerPosterior(eqx.Module):
    r""":math:`q(z_1, z_2 \mid x) = q(z_1 \mid x)\, q(z_2 \mid z_1)` over the vector :math:`z = (z_1, z_2)`.

    ``sample(key)`` draws :math:`z_1 \sim q(z_1 \mid x)` with the first half of
    ``split(key)`` and :math:`z_2 \sim q(z_2 \mid z_1)` with the second;
    ``log_prob(z) = log q(z1 | x) + log q(z2 | z1)``; ``sample_and_log_prob`` does both with
    one pass of the z1 -> z2 network. ``loc`` is a plug-in mean,
    :math:`(\mu_\phi(x), \mu_\phi(\mu_\phi(x)))`: the mean of z1 exactly and, for z2, the mean of
    q(z2 | z1) at z1's mean (the exact mean of z2 has no closed form); active units read it.
    """

    first: DiagonalNormal
    conditional: _GaussianHead
    loc: Float[Array, " d"]

    def __init__(self, first: DiagonalNormal, conditional: _GaussianHead):
        self.first = first
        self.conditional = conditional
        # An array, not a property, so that shape-only tracing (``eqx.filter_eval_shape``)
        # sees it; jit drops it where nothing reads it.
        self.loc = jnp.concatenate([first.loc, conditional(first.loc).loc])

    def sample_and_log_prob(self, key: Key) -> tuple[Float[Array, " d"], Scalar]:
        k1, k2 = jax.random.split(key)
        z1 = self.first.sample(k1)
        q2 = self.conditional(z1)
        z2 = q2.sample(k2)
        return jnp.concatenate([z1, z2]), self.first.log_prob(z1) + q2.log_prob(z2)

    def sample(self, key: Key) -> Float[Array, " d"]:
        return self.sample_and_log_prob(key)[0]

    def log_prob(self, z: Float[Array, " d"]) -> Scalar:
        d1 = self.first.loc.shape[0]
        z1, z2 = z[:d1], z[d1:]
        return self.first.log_prob(z1) + self.conditional(z1).log_prob(z2)


class TwoLayerPrior(eqx.Module):
    r""":math:`p(z_1, z_2) = \mathcal N(z_2; 0, I)\, p(z_1 \mid z_2)` over the vector :math:`z = (z_1, z_2)`.

    ``sample(key)`` draws z2 with the first half of ``split(key)``, then z1 given z2 with the
    second.
    """

    conditional: _GaussianHead
    latent_dims: tuple[int, int] = eqx.field(static=True)

    def _top(self) -> DiagonalNormal:
        d2 = self.latent_dims[1]
        return DiagonalNormal(jnp.zeros(d2), jnp.ones(d2))

    def sample(self, key: Key) -> Float[Array, " d"]:
        k2, k1 = jax.random.split(key)
        z2 = self._top().sample(k2)
        z1 = self.conditional(z2).sample(k1)
        return jnp.concatenate([z1, z2])

    def log_prob(self, z: Float[Array, " d"]) -> Scalar:
        check_shape(z, (sum(self.latent_dims),), "z")
        z1, z2 = z[: self.latent_dims[0]], z[self.latent_dims[0] :]
        return self._top().log_prob(z2) + self.conditional(z2).log_prob(z1)


class TwoLayerVAE(eqx.Module):
    """Two stochastic layers, Bernoulli pixels; see the module docstring and
    :class:`TwoLayerVAEConfig`. Every method acts on one datapoint ``x`` of shape
    ``(data_dim,)`` and one latent ``z = (z1, z2)`` of shape ``(d1 + d2,)``; batch with
    :func:`jax.vmap` outside.
    """

    encoder1: _GaussianHead  # x -> q(z1 | x)
    encoder2: _GaussianHead  # z1 -> q(z2 | z1)
    decoder2: _GaussianHead  # z2 -> p(z1 | z2)
    decoder1: _MLP  # z1 -> Bernoulli logits of p(x | z1)
    config: TwoLayerVAEConfig = eqx.field(static=True)

    def __init__(self, config: TwoLayerVAEConfig = TwoLayerVAEConfig(), *, key: Key):
        c = config
        (d1, d2), (h1, h2) = c.latent_dims, c.hidden_sizes
        k_e1, k_e2, k_d2, k_d1 = jax.random.split(key, 4)
        self.encoder1 = _GaussianHead((c.data_dim, *h1, d1), c.activation, c.scale, key=k_e1)
        self.encoder2 = _GaussianHead((d1, *h2, d2), c.activation, c.scale, key=k_e2)
        self.decoder2 = _GaussianHead((d2, *h2[::-1], d1), c.activation, c.scale, key=k_d2)
        self.decoder1 = _MLP((d1, *h1[::-1], c.data_dim), c.activation, key=k_d1)
        self.config = config

    def encode(self, x: Float[Array, " data_dim"]) -> TwoLayerPosterior:
        r""":math:`q(z_1, z_2 \mid x) = q(z_1 \mid x)\, q(z_2 \mid z_1)`."""
        check_shape(x, (self.config.data_dim,), "x")
        return TwoLayerPosterior(self.encoder1(x), self.encoder2)

    def prior(self) -> TwoLayerPrior:
        r""":math:`p(z_1, z_2) = p(z_2)\, p(z_1 \mid z_2)`."""
        return TwoLayerPrior(self.decoder2, self.config.latent_dims)

    def validate_data(self, x: np.ndarray, name: str = "x") -> np.ndarray:
        """A data set this model can score: shape (N, data_dim), values in [0, 1]."""
        return validate_pixels(x, self.config.data_dim, name)

    def decode(self, z: Float[Array, " latent_dim"]) -> Float[Array, " data_dim"]:
        """Bernoulli logits :math:`f_\\theta(z_1)` of :math:`p(x \\mid z_1)`; reads z1 of z."""
        check_shape(z, (self.config.latent_dim,), "z")
        return self.decoder1(z[: self.config.latent_dims[0]])

    def mean(self, z: Float[Array, " latent_dim"]) -> Float[Array, " data_dim"]:
        r""":math:`\mathbb E[x \mid z]`: pixel probabilities :math:`\sigma(f_\theta(z_1))`."""
        return jax.nn.sigmoid(self.decode(z))

    def log_likelihood(
        self, x: Float[Array, " data_dim"], z: Float[Array, " latent_dim"]
    ) -> Scalar:
        r""":math:`\log p(x \mid z_1) = \sum_j x_j \ell_j - \log(1 + e^{\ell_j})`, :math:`\ell = f_\theta(z_1)`."""
        check_shape(x, (self.config.data_dim,), "x")
        return bernoulli_log_likelihood(x, self.decode(z))

    @property
    def log_joint(self) -> Joint:
        r""":math:`\log p(z_2) + \log p(z_1 \mid z_2) + \log p(x \mid z_1)`, an :class:`lvm.Joint`."""
        return Joint(self.prior(), self.log_likelihood)

    def sample(self, key: Key) -> tuple[Float[Array, " latent_dim"], Float[Array, " data_dim"]]:
        """Ancestral sample: z2, then z1 | z2, then x | z1 (float {0, 1} pixels)."""
        z_key, x_key = jax.random.split(key)
        z = self.prior().sample(z_key)
        x = jax.random.bernoulli(x_key, jax.nn.sigmoid(self.decode(z)))
        return z, x.astype(z.dtype)
