r"""A VAE with binary latents (a one-layer sigmoid belief net with an amortized encoder), for ONE datapoint.

.. math:: p(z) = \prod_{u=1}^{d} \mathrm{Bernoulli}\big(z_u;\ \sigma(a_u)\big), \qquad
          p(x \mid z) = \prod_{j=1}^{D} \mathrm{Bernoulli}\big(x_j;\ \sigma(f_\theta(z)_j)\big), \qquad
          q(z \mid x) = \prod_{u=1}^{d} \mathrm{Bernoulli}\big(z_u;\ \sigma(g_\phi(x)_u)\big),

:math:`z \in \{0, 1\}^d`, with :math:`f_\theta` (decoder) and :math:`g_\phi` (encoder)
multilayer perceptrons giving logits, and the prior's logits :math:`a` learned (initialised
at 0, Bernoulli(1/2)) or fixed at 0. The default is the "nonlinear" MNIST model of the
REBAR and RELAX papers (Tucker et al., 2017; Grathwohl et al., 2018): 200 binary latents,
encoder 784-200-200-200 and decoder 200-200-200-784, tanh.

The reparameterization trick does not apply to a binary z: train it with a gradient option
for discrete latents (:mod:`lvm.estimators.discrete`): ``lvm.IWAE(k, gradient="vimco")``,
``lvm.ELBO(1, gradient="concrete", temperature=t)``, or NVIL,
``lvm.ELBO(1, gradient="reinforce", baseline="learned", normalize=True)``, which needs the
model built with ``baseline_hidden`` (an input-dependent baseline network
:math:`C_\psi(x)`, a learned constant in its output bias, and a learned log-scale; ``encode``
then returns an :class:`lvm.WithBaseline`). A relaxed :math:`z \in (0, 1)^d` (the Concrete
estimator) goes through the decoder as it is and through the prior's ``log_prob`` by its
linear extension.
"""

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from lvm._checks import check_shape
from lvm.distributions import Bernoulli, WithBaseline
from lvm.joint import Joint
from lvm.models.vae import _ACTIVATIONS, _MLP, bernoulli_log_likelihood, validate_pixels
from lvm.types import Key, Scalar


@dataclass(frozen=True)
class BernoulliVAEConfig:
    """Architecture of a :class:`BernoulliVAE`; hashable, so it is a static field of the model.

    * ``prior``: ``"learned"`` (default; independent Bernoulli latents with learned logits,
      initialised at 0) or ``"uniform"`` (fixed Bernoulli(1/2) for every latent).
    * ``baseline_hidden``: ``None`` (default; ``encode`` returns a plain :class:`lvm.Bernoulli`)
      or the hidden width of NVIL's input-dependent baseline network, a one-hidden-layer
      MLP ``data_dim -> baseline_hidden -> 1`` (Mnih & Gregor, 2014, used 100 tanh units);
      ``encode`` then returns an :class:`lvm.WithBaseline` with that baseline and a learned
      log-scale for the variance normalization. The network's output is in nats per pixel
      (the baseline is ``data_dim`` times it): the bound is a sum over pixels, hundreds of
      nats, and Adam moves each parameter by about its learning rate per step, so a baseline
      in nats would need thousands of steps to reach the bound's scale and to follow it.
    """

    data_dim: int = 784
    latent_dim: int = 200
    hidden_sizes: tuple[int, ...] = (200, 200)
    activation: str = "tanh"
    prior: str = "learned"
    baseline_hidden: int | None = None

    def __post_init__(self):
        sizes = (self.data_dim, self.latent_dim, *self.hidden_sizes)
        if self.baseline_hidden is not None:
            sizes = (*sizes, self.baseline_hidden)
        if any(isinstance(n, bool) or not isinstance(n, int | np.integer) for n in sizes):
            raise TypeError(f"layer sizes and baseline_hidden must be ints, got {self}")
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        if min(sizes) < 1 or not self.hidden_sizes:
            raise ValueError(
                f"all layer sizes must be >= 1 (and at least one hidden layer), got {self}"
            )
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {tuple(sorted(_ACTIVATIONS))}, got {self.activation!r}"
            )
        if self.prior not in ("learned", "uniform"):
            raise ValueError(f"prior must be 'learned' or 'uniform', got {self.prior!r}")


class BernoulliVAE(eqx.Module):
    """Encoder q(z|x) and prior p(z) over d binary latents, decoder p(x|z) over binary pixels;
    see :class:`BernoulliVAEConfig`.

    Every method acts on one datapoint ``x`` of shape ``(data_dim,)`` and one latent ``z`` of
    shape ``(latent_dim,)`` (floats in {0, 1}, or in [0, 1] for a relaxed z); batch with
    :func:`jax.vmap` outside.
    """

    encoder: _MLP
    decoder: _MLP
    prior_logits: Float[Array, " d"] | None
    baseline_net: _MLP | None
    log_scale: Float[Array, ""] | None
    config: BernoulliVAEConfig = eqx.field(static=True)

    def __init__(self, config: BernoulliVAEConfig = BernoulliVAEConfig(), *, key: Key):
        enc_key, dec_key, base_key = jax.random.split(key, 3)
        c = config
        self.encoder = _MLP((c.data_dim, *c.hidden_sizes, c.latent_dim), c.activation, key=enc_key)
        self.decoder = _MLP(
            (c.latent_dim, *c.hidden_sizes[::-1], c.data_dim), c.activation, key=dec_key
        )
        self.prior_logits = jnp.zeros(c.latent_dim) if c.prior == "learned" else None
        if c.baseline_hidden is None:
            self.baseline_net, self.log_scale = None, None
        else:
            self.baseline_net = _MLP((c.data_dim, c.baseline_hidden, 1), c.activation, key=base_key)
            self.log_scale = jnp.zeros(())
        self.config = config

    def encode(self, x: Float[Array, " data_dim"]) -> Bernoulli | WithBaseline:
        r""":math:`q(z \mid x)`, independent Bernoulli latents with logits :math:`g_\phi(x)`;
        with ``baseline_hidden``, wrapped in :class:`lvm.WithBaseline` with NVIL's baseline
        :math:`C_\psi(x)` and the learned log-scale."""
        check_shape(x, (self.config.data_dim,), "x")
        q = Bernoulli(self.encoder(x))
        if self.baseline_net is None:
            return q
        baseline = self.config.data_dim * self.baseline_net(x)[0]
        return WithBaseline(q, baseline, self.log_scale)

    def validate_data(self, x: np.ndarray, name: str = "x") -> np.ndarray:
        """A data set this model can score: shape (N, data_dim), values in [0, 1]."""
        return validate_pixels(x, self.config.data_dim, name)

    def decode(self, z: Float[Array, " latent_dim"]) -> Float[Array, " data_dim"]:
        """The decoder's Bernoulli logits :math:`f_\\theta(z)`."""
        check_shape(z, (self.config.latent_dim,), "z")
        return self.decoder(z)

    def mean(self, z: Float[Array, " latent_dim"]) -> Float[Array, " data_dim"]:
        r""":math:`\mathbb E[x \mid z]`, the pixel probabilities :math:`\sigma(f_\theta(z))`."""
        return jax.nn.sigmoid(self.decode(z))

    def prior(self) -> Bernoulli:
        """p(z): independent Bernoulli latents, learned logits or Bernoulli(1/2)."""
        if self.prior_logits is None:
            return Bernoulli(jnp.zeros(self.config.latent_dim))
        return Bernoulli(self.prior_logits)

    def log_likelihood(
        self, x: Float[Array, " data_dim"], z: Float[Array, " latent_dim"]
    ) -> Scalar:
        r""":math:`\log p(x \mid z) = \sum_j x_j \ell_j - \log(1 + e^{\ell_j})`, :math:`\ell = f_\theta(z)`."""
        check_shape(x, (self.config.data_dim,), "x")
        return bernoulli_log_likelihood(x, self.decode(z))

    @property
    def log_joint(self) -> Joint:
        r"""``log_joint(x, z)`` :math:`= \log p(z) + \log p(x \mid z)`, an :class:`lvm.Joint` (callable)."""
        return Joint(self.prior(), self.log_likelihood)

    def sample(self, key: Key) -> tuple[Float[Array, " latent_dim"], Float[Array, " data_dim"]]:
        """Ancestral sample: z ~ p(z), then x ~ p(x|z) (float {0, 1} pixels)."""
        z_key, x_key = jax.random.split(key)
        z = self.prior().sample(z_key)
        x = jax.random.bernoulli(x_key, self.mean(z))
        return z, x.astype(z.dtype)
