r"""The variational autoencoder (Kingma & Welling, 2014; Burda et al., 2016) for ONE datapoint.

.. math:: p(z) = \mathcal N(0, I), \qquad
          p(x \mid z) = \prod_{j=1}^{D} \mathrm{Bernoulli}\big(x_j;\ \sigma(f_\theta(z)_j)\big), \qquad
          q(z \mid x) = \mathcal N\big(\mu_\phi(x), \mathrm{diag}\,\sigma_\phi(x)^2\big),

with :math:`f_\theta` (the decoder, Bernoulli logits) and :math:`(\mu_\phi, \sigma_\phi)` (the
encoder) multilayer perceptrons. The default is the IWAE paper's one-stochastic-layer
architecture: encoder 784-200-200-(50, 50), decoder 50-200-200-784, tanh.

The model exposes the same pieces as the exact testbeds (``prior``, ``log_likelihood``,
``log_joint``) plus the amortized proposal ``encode(x)``, so any estimator of the library
applies unchanged: ``lvm.iwae_bound(key, model.log_joint, model.encode(x), x, num_samples=k)``.
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
from lvm.types import Key, Scalar

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu, "softplus": jax.nn.softplus}
_SCALES = ("softplus", "exp")


def _softplus(x: Float[Array, "..."]) -> Float[Array, "..."]:
    r""":math:`\log(1 + e^x) = \max(x, 0) + \log(1 + e^{-|x|})`, stable for any x.

    Written out because ``jax.nn.softplus`` (a ``logaddexp`` with NaN/inf bookkeeping)
    is about 3x slower on CPU, and this term, one per pixel per particle, costs as much
    as the decoder's matrix products.
    """
    return jnp.maximum(x, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


@dataclass(frozen=True)
class VAEConfig:
    """Architecture of a :class:`VAE`; hashable, so it is a static field of the model.

    ``scale`` maps the encoder's raw output to :math:`\\sigma_\\phi(x) > 0`: ``"softplus"``
    (default, gentle for large inputs) or ``"exp"`` (the IWAE paper's log-sigma output).
    """

    data_dim: int = 784
    latent_dim: int = 50
    hidden_sizes: tuple[int, ...] = (200, 200)
    activation: str = "tanh"
    scale: str = "softplus"

    def __post_init__(self):
        sizes = (self.data_dim, self.latent_dim, *tuple(self.hidden_sizes))
        if any(isinstance(n, bool) or not isinstance(n, int | np.integer) for n in sizes):
            raise TypeError(f"layer sizes must be ints, got {self}")
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        if self.data_dim < 1 or self.latent_dim < 1 or any(h < 1 for h in self.hidden_sizes):
            raise ValueError(f"all layer sizes must be >= 1, got {self}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.scale not in _SCALES:
            raise ValueError(f"scale must be one of {_SCALES}, got {self.scale!r}")


class _MLP(eqx.Module):
    """Affine layers with a nonlinearity between them (none after the last)."""

    layers: tuple[eqx.nn.Linear, ...]
    activation: str = eqx.field(static=True)

    def __init__(self, sizes: tuple[int, ...], activation: str, *, key: Key):
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            eqx.nn.Linear(n_in, n_out, key=k)
            for n_in, n_out, k in zip(sizes[:-1], sizes[1:], keys, strict=True)
        )
        self.activation = activation

    def __call__(self, h: Float[Array, " n_in"]) -> Float[Array, " n_out"]:
        # ``h @ W.T`` rather than ``layer(h)`` (= ``W @ h``): vmapped over datapoints and
        # particles, the batch axis then stays leading in the products, and XLA does not
        # transpose the (B k, 784) logits before every elementwise op (k=50 steps ~1.5-2x faster).
        act = _ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            h = act(h @ layer.weight.T + layer.bias)
        last = self.layers[-1]
        return h @ last.weight.T + last.bias


class VAE(eqx.Module):
    """Encoder q(z|x) (diagonal Gaussian), decoder p(x|z) (Bernoulli logits), prior N(0, I).

    Every method acts on one datapoint ``x`` of shape ``(data_dim,)`` and one latent ``z`` of
    shape ``(latent_dim,)``; batch with :func:`jax.vmap` outside.
    """

    encoder: _MLP
    decoder: _MLP
    config: VAEConfig = eqx.field(static=True)

    def __init__(self, config: VAEConfig = VAEConfig(), *, key: Key):
        enc_key, dec_key = jax.random.split(key)
        c = config
        self.encoder = _MLP(
            (c.data_dim, *c.hidden_sizes, 2 * c.latent_dim), c.activation, key=enc_key
        )
        self.decoder = _MLP(
            (c.latent_dim, *c.hidden_sizes[::-1], c.data_dim), c.activation, key=dec_key
        )
        self.config = config

    def encode(self, x: Float[Array, " data_dim"]) -> DiagonalNormal:
        r""":math:`q(z \mid x) = \mathcal N(\mu_\phi(x), \mathrm{diag}\,\sigma_\phi(x)^2)`."""
        check_shape(x, (self.config.data_dim,), "x")
        loc, raw_scale = jnp.split(self.encoder(x), 2)
        scale = jnp.exp(raw_scale) if self.config.scale == "exp" else jax.nn.softplus(raw_scale)
        return DiagonalNormal(loc, scale)

    def validate_data(self, x: np.ndarray, name: str = "x") -> np.ndarray:
        """A data set this model can score: shape (N, data_dim), values in [0, 1] (Bernoulli pixels)."""
        if x.ndim != 2 or x.shape[1] != self.config.data_dim:
            raise ValueError(
                f"{name} must have shape (N, {self.config.data_dim}) for this VAE, got {x.shape}"
            )
        if x.min() < 0.0 or x.max() > 1.0:
            raise ValueError(
                f"{name} has values outside [0, 1] (min {x.min():g}, max {x.max():g}): a "
                "Bernoulli likelihood needs pixel intensities in [0, 1]; binarize or rescale "
                "the data"
            )
        return x

    def decode(self, z: Float[Array, " latent_dim"]) -> Float[Array, " data_dim"]:
        """Bernoulli logits of p(x|z); pixel probabilities are ``jax.nn.sigmoid`` of them."""
        check_shape(z, (self.config.latent_dim,), "z")
        return self.decoder(z)

    def prior(self) -> DiagonalNormal:
        """p(z) = N(0, I)."""
        dim = self.config.latent_dim
        return DiagonalNormal(jnp.zeros(dim), jnp.ones(dim))

    def log_likelihood(
        self, x: Float[Array, " data_dim"], z: Float[Array, " latent_dim"]
    ) -> Scalar:
        r""":math:`\log p(x \mid z) = \sum_j x_j \ell_j - \log(1 + e^{\ell_j})`, :math:`\ell = f_\theta(z)`.

        Valid for any x in [0, 1] (then it is the negative binary cross-entropy).
        """
        check_shape(x, (self.config.data_dim,), "x")
        logits = self.decode(z)
        return jnp.sum(x * logits - _softplus(logits))

    @property
    def log_joint(self) -> Joint:
        r"""``log_joint(x, z)`` :math:`= \log p(z) + \log p(x \mid z)`, an :class:`lvm.Joint` (callable)."""
        return Joint(self.prior(), self.log_likelihood)

    def sample(self, key: Key) -> tuple[Float[Array, " latent_dim"], Float[Array, " data_dim"]]:
        """Ancestral sample: z ~ p(z), then x ~ p(x|z) (float {0, 1} pixels)."""
        z_key, x_key = jax.random.split(key)
        z = self.prior().sample(z_key)
        x = jax.random.bernoulli(x_key, jax.nn.sigmoid(self.decode(z)))
        return z, x.astype(z.dtype)
