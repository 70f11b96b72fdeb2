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
from lvm.distributions import DiagonalNormal, Mixture
from lvm.flows import ConditionalIAF, Flow
from lvm.joint import Joint
from lvm.types import Key, Scalar

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu, "softplus": jax.nn.softplus}
_SCALES = ("softplus", "exp")


def _softplus(x: Float[Array, "..."]) -> Float[Array, "..."]:
    r""":math:`\log(1 + e^x) = \max(x, 0) + \log(1 + e^{-|x|})`, stable for any x.

    Written out because ``jax.nn.softplus`` is a ``logaddexp`` with NaN/inf bookkeeping,
    slower on CPU, and this term, one per pixel per particle, costs as much as the
    decoder's matrix products (``bench/README.md``, "Targets and what the profile shows").
    """
    return jnp.maximum(x, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


def validate_pixels(
    x: np.ndarray, data_dim: int, name: str = "x", *, bernoulli: bool = True, hint: str = ""
) -> np.ndarray:
    """A data set a pixel model can score: shape (N, data_dim), and for a Bernoulli likelihood
    values in [0, 1]; ``ValueError`` naming ``name`` otherwise (``hint`` ends the message)."""
    if x.ndim != 2 or x.shape[1] != data_dim:
        raise ValueError(f"{name} must have shape (N, {data_dim}) for this model, got {x.shape}")
    if bernoulli and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError(
            f"{name} has values outside [0, 1] (min {x.min():g}, max {x.max():g}): a "
            f"Bernoulli likelihood needs pixel intensities in [0, 1]{hint}"
        )
    return x


def bernoulli_log_likelihood(
    x: Float[Array, " data_dim"], logits: Float[Array, " data_dim"]
) -> Scalar:
    r""":math:`\sum_j x_j \ell_j - \log(1 + e^{\ell_j})`: the log-probability of pixels ``x`` in
    [0, 1] under independent Bernoullis with logits :math:`\ell` (the decoders' likelihood)."""
    return jnp.sum(x * logits - _softplus(logits))


@dataclass(frozen=True)
class VAEConfig:
    """Architecture of a :class:`VAE`; hashable, so it is a static field of the model.

    * ``likelihood``: ``"bernoulli"`` (default; pixels in [0, 1], the decoder gives logits)
      or ``"gaussian"``, :math:`p(x \\mid z) = \\mathcal N(\\mu_\theta(z),
      \\mathrm{diag}\\,\\sigma_\theta(z)^2)` with the mean and the standard deviation from the
      decoder, :math:`\\sigma_\theta = \\sigma_{\\min} + \\mathrm{softplus}(\\cdot)`. The floor
      ``min_scale`` (:math:`\\sigma_{\\min}`, in the data's units) caps each dimension's density
      at :math:`1/(\\sqrt{2\\pi}\\sigma_{\\min})`: without it the likelihood is unbounded, a
      decoder can shrink :math:`\\sigma` onto single training points and the bound diverges
      (the known failure of Gaussian decoders; the README gives the measurement).
    * ``prior``: ``"standard"`` (default, N(0, I)) or ``"mixture"``, a learned mixture of
      ``num_prior_components`` diagonal Gaussians (logits, means and log-scales trained with
      the rest): the lecture's Gaussian mixture as the VAE's prior; or ``"vamp"``, the
      VampPrior (Tomczak & Welling, 2018), :math:`p(z) = \\frac1K \\sum_{k=1}^K q(z \\mid u_k)`,
      the encoder's posterior at ``num_pseudo_inputs`` (K) learned pseudo-inputs
      :math:`u_k` (:class:`VampPrior`).
    * ``architecture``: ``"mlp"`` (default, ``hidden_sizes`` each way) or ``"conv"``, a
      convolutional encoder and decoder for 28 x 28 images (``data_dim`` 784, the image stored
      flat): two stride-2 3 x 3 convolutions (32, 64 channels) to 7 x 7 and ``hidden_sizes[0]``
      units, mirrored by transposed convolutions.
    * ``scale`` maps the encoder's raw output to :math:`\\sigma_\\phi(x) > 0`: ``"softplus"``
      (default, gentle for large inputs) or ``"exp"`` (the IWAE paper's log-sigma output).
    * ``posterior``: ``"gaussian"`` (default, the diagonal Gaussian above) or ``"iaf"``, an
      inverse autoregressive flow on top of it (Kingma et al., 2016): the encoder's last hidden
      layer gives the features h(x), a linear head of h the diagonal Gaussian
      :math:`q_0(z_0 \\mid x)` (the Gaussian encoder's last layer), and ``num_flow_layers``
      affine IAF layers conditioned on h, each a MADE with one hidden layer of ``flow_width``
      units, push :math:`z_0` to z (:class:`lvm.flows.ConditionalIAF`, identity at
      initialisation). ``encode(x)`` is then an :class:`lvm.flows.Flow`, whose
      ``sample_and_log_prob`` scores a draw without inverting the flow. Needs
      ``architecture="mlp"`` and ``scale="softplus"``.
    """

    data_dim: int = 784
    latent_dim: int = 50
    hidden_sizes: tuple[int, ...] = (200, 200)
    activation: str = "tanh"
    scale: str = "softplus"
    likelihood: str = "bernoulli"
    min_scale: float = 1e-2
    prior: str = "standard"
    num_prior_components: int = 10
    architecture: str = "mlp"
    posterior: str = "gaussian"
    num_flow_layers: int = 2
    flow_width: int = 200
    num_pseudo_inputs: int = 500

    def __post_init__(self):
        sizes = (
            self.data_dim,
            self.latent_dim,
            self.num_prior_components,
            self.num_flow_layers,
            self.flow_width,
            self.num_pseudo_inputs,
            *self.hidden_sizes,
        )
        if any(isinstance(n, bool) or not isinstance(n, int | np.integer) for n in sizes):
            raise TypeError(
                "layer sizes, num_prior_components, num_pseudo_inputs, num_flow_layers and "
                f"flow_width must be ints, got {self}"
            )
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        if min(sizes) < 1 or not self.hidden_sizes:
            raise ValueError(
                f"all layer sizes must be >= 1 (and at least one hidden layer), got {self}"
            )
        choices = {
            "activation": tuple(sorted(_ACTIVATIONS)),
            "scale": _SCALES,
            "likelihood": ("bernoulli", "gaussian"),
            "prior": ("standard", "mixture", "vamp"),
            "architecture": ("mlp", "conv"),
            "posterior": ("gaussian", "iaf"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if isinstance(self.min_scale, bool) or not isinstance(self.min_scale, int | float):
            raise TypeError(f"min_scale must be a number, got {self.min_scale!r}")
        if not 0 < self.min_scale < float("inf"):
            raise ValueError(f"min_scale must be > 0 and finite, got {self.min_scale}")
        if self.architecture == "conv" and self.data_dim != 28 * 28:
            raise ValueError(
                f"architecture='conv' is for 28 x 28 images: data_dim must be 784, got {self.data_dim}"
            )

        if self.posterior == "iaf" and (self.architecture, self.scale) != ("mlp", "softplus"):
            raise ValueError(
                "posterior='iaf' needs architecture='mlp' and scale='softplus', got "
                f"architecture={self.architecture!r}, scale={self.scale!r}"
            )

    @property
    def decoder_outputs(self) -> int:
        """Numbers the decoder gives per datapoint: logits, or a mean and a raw scale."""
        return self.data_dim * (2 if self.likelihood == "gaussian" else 1)


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
        # transpose the (B k, 784) logits before every elementwise op (bench/README.md, the
        # history of the importance-sampling benchmark).
        act = _ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            h = act(h @ layer.weight.T + layer.bias)
        last = self.layers[-1]
        return h @ last.weight.T + last.bias


class _ConvEncoder(eqx.Module):
    """28 x 28 image (stored flat) -> two stride-2 convolutions -> a hidden layer -> outputs."""

    convs: tuple[eqx.nn.Conv2d, eqx.nn.Conv2d]
    head: _MLP
    activation: str = eqx.field(static=True)

    def __init__(self, hidden: int, num_outputs: int, activation: str, *, key: Key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.convs = (
            eqx.nn.Conv2d(1, 32, 3, stride=2, padding=1, key=k1),
            eqx.nn.Conv2d(32, 64, 3, stride=2, padding=1, key=k2),
        )
        self.head = _MLP((64 * 7 * 7, hidden, num_outputs), activation, key=k3)
        self.activation = activation

    def __call__(self, x: Float[Array, " 784"]) -> Float[Array, " n_out"]:
        act = _ACTIVATIONS[self.activation]
        h = x.reshape(1, 28, 28)
        for conv in self.convs:
            h = act(conv(h))
        return self.head(act(h.reshape(-1)))


class _ConvDecoder(eqx.Module):
    """z -> a hidden layer -> 64 x 7 x 7 -> two stride-2 transposed convolutions -> 28 x 28 maps."""

    head: _MLP
    deconvs: tuple[eqx.nn.ConvTranspose2d, eqx.nn.ConvTranspose2d]
    activation: str = eqx.field(static=True)

    def __init__(self, latent_dim: int, hidden: int, channels: int, activation: str, *, key: Key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.head = _MLP((latent_dim, hidden, 64 * 7 * 7), activation, key=k1)
        up = dict(kernel_size=3, stride=2, padding=1, output_padding=1)
        self.deconvs = (
            eqx.nn.ConvTranspose2d(64, 32, **up, key=k2),
            eqx.nn.ConvTranspose2d(32, channels, **up, key=k3),
        )
        self.activation = activation

    def __call__(self, z: Float[Array, " d"]) -> Float[Array, " n_out"]:
        act = _ACTIVATIONS[self.activation]
        h = act(self.head(z)).reshape(64, 7, 7)
        h = act(self.deconvs[0](h))
        return self.deconvs[1](h).reshape(-1)  # channel-major: all of channel 0, then 1


class _IAFEncoder(eqx.Module):
    """x -> the last hidden layer h(x) -> :class:`lvm.flows.ConditionalIAF` q(z|x) (a Flow)."""

    features: _MLP  # ends in the last hidden layer's affine map; the activation is applied here
    posterior: ConditionalIAF
    activation: str = eqx.field(static=True)

    def __init__(self, config: VAEConfig, *, key: Key, flow_key: Key):
        c = config
        self.features = _MLP((c.data_dim, *c.hidden_sizes), c.activation, key=key)
        self.posterior = ConditionalIAF(
            flow_key,
            latent_dim=c.latent_dim,
            cond_dim=c.hidden_sizes[-1],
            flow_layers=c.num_flow_layers,
            nn_width=c.flow_width,
        )
        self.activation = c.activation

    def __call__(self, x: Float[Array, " data_dim"]) -> Flow:
        return self.posterior(_ACTIVATIONS[self.activation](self.features(x)))


class MixturePrior(eqx.Module):
    r"""A learned mixture of diagonal Gaussians over z, :math:`\sum_k \pi_k\,\mathcal N(m_k, \mathrm{diag}\,s_k^2)`."""

    logits: Float[Array, " K"]
    loc: Float[Array, "K d"]
    log_scale: Float[Array, "K d"]

    def __init__(self, num_components: int, latent_dim: int, *, key: Key):
        # Spread the means like draws from N(0, I), so that the components start apart and
        # the mixture starts close to the standard prior's overall scale.
        self.logits = jnp.zeros(num_components)
        self.loc = jax.random.normal(key, (num_components, latent_dim))
        self.log_scale = jnp.zeros((num_components, latent_dim))

    def distribution(self) -> Mixture:
        return Mixture(self.logits, jax.vmap(DiagonalNormal)(self.loc, jnp.exp(self.log_scale)))


class VampPrior(eqx.Module):
    r"""The VampPrior's learned pseudo-inputs (Tomczak & Welling, 2018):
    :math:`p(z) = \frac1K \sum_{k=1}^K q_\phi(z \mid u_k)`, the encoder at K points of data space.

    ``raw`` holds the unconstrained parameters, one row per pseudo-input. For a Bernoulli
    likelihood the pseudo-inputs live in [0, 1] through a hardtanh,
    :math:`u_k = \mathrm{clip}(\text{raw}_k, 0, 1)`, so that binary training images are
    pseudo-inputs exactly (:func:`init_pseudo_inputs`; the sigmoid of the authors' code,
    ``models/Model.py``, cannot reach 0 or 1); for a Gaussian likelihood
    :math:`u_k = \text{raw}_k`.
    The default initialisation is small noise, :math:`\text{raw} \sim \mathcal N(0.05,
    0.01^2)` per pixel (faint grey images; the authors' code draws its pre-sigmoid weights
    from :math:`\mathcal N(-0.05, 0.01^2)`). Outside [0, 1] the clip passes no gradient
    (at exactly 0 or 1, as a binary image starts, JAX passes half of it).
    """

    raw: Float[Array, "K data_dim"]
    bounded: bool = eqx.field(static=True)

    def __init__(self, num_pseudo_inputs: int, data_dim: int, *, bounded: bool, key: Key):
        self.raw = 0.05 + 0.01 * jax.random.normal(key, (num_pseudo_inputs, data_dim))
        self.bounded = bounded

    @property
    def pseudo_inputs(self) -> Float[Array, "K data_dim"]:
        """The pseudo-inputs :math:`u_k`, in the data's space (the encoder's input)."""
        return jnp.clip(self.raw, 0.0, 1.0) if self.bounded else self.raw

    def distribution(self, encode) -> Mixture:
        r""":math:`\frac1K \sum_k` ``encode(u_k)``, a uniform :class:`Mixture`: the K encodings
        do not depend on x or z, so under ``vmap`` over datapoints and particles they are
        computed once per evaluation of the prior."""
        components = jax.vmap(encode)(self.pseudo_inputs)
        return Mixture(jnp.zeros(self.raw.shape[0], self.raw.dtype), components)


def init_pseudo_inputs(model: "VAE", x: Float[Array | np.ndarray, "K data_dim"]) -> "VAE":
    """``model`` (a VAE with ``prior="vamp"``) with its pseudo-inputs set to the K datapoints
    ``x`` (e.g. K training images), the VampPrior paper's initialisation from data."""
    if model.config.prior != "vamp":
        raise ValueError(f"model must have prior='vamp', got prior={model.config.prior!r}")
    shape = model.prior_params.raw.shape
    x = jnp.asarray(x, model.prior_params.raw.dtype)
    if x.shape != shape:
        raise ValueError(f"x must have shape {shape} (num_pseudo_inputs, data_dim), got {x.shape}")
    if model.prior_params.bounded and bool(jnp.any((x < 0.0) | (x > 1.0))):
        raise ValueError("x must lie in [0, 1]: a Bernoulli VAE's pseudo-inputs are clipped to it")
    return eqx.tree_at(lambda m: m.prior_params.raw, model, x)


class VAE(eqx.Module):
    """Encoder q(z|x) (diagonal Gaussian, or an IAF on top of it), decoder p(x|z) (Bernoulli or
    Gaussian), prior p(z) (N(0, I), a learned mixture or a VampPrior); see :class:`VAEConfig`.

    Every method acts on one datapoint ``x`` of shape ``(data_dim,)`` and one latent ``z`` of
    shape ``(latent_dim,)``; batch with :func:`jax.vmap` outside.
    """

    encoder: _MLP | _ConvEncoder | _IAFEncoder
    decoder: _MLP | _ConvDecoder
    prior_params: MixturePrior | VampPrior | None
    config: VAEConfig = eqx.field(static=True)

    def __init__(self, config: VAEConfig = VAEConfig(), *, key: Key):
        enc_key, dec_key = jax.random.split(key)
        c = config
        if c.architecture == "conv":
            channels = 2 if c.likelihood == "gaussian" else 1
            self.encoder = _ConvEncoder(
                c.hidden_sizes[0], 2 * c.latent_dim, c.activation, key=enc_key
            )
            self.decoder = _ConvDecoder(
                c.latent_dim, c.hidden_sizes[0], channels, c.activation, key=dec_key
            )
        elif c.posterior == "iaf":
            # The flow's own key: the default model's key splits stay as they are.
            self.encoder = _IAFEncoder(c, key=enc_key, flow_key=jax.random.fold_in(key, 4))
            self.decoder = _MLP(
                (c.latent_dim, *c.hidden_sizes[::-1], c.decoder_outputs), c.activation, key=dec_key
            )
        else:
            self.encoder = _MLP(
                (c.data_dim, *c.hidden_sizes, 2 * c.latent_dim), c.activation, key=enc_key
            )
            self.decoder = _MLP(
                (c.latent_dim, *c.hidden_sizes[::-1], c.decoder_outputs), c.activation, key=dec_key
            )
        prior_key = jax.random.fold_in(key, 2)
        self.prior_params = None
        if c.prior == "mixture":
            self.prior_params = MixturePrior(c.num_prior_components, c.latent_dim, key=prior_key)
        elif c.prior == "vamp":
            bounded = c.likelihood == "bernoulli"
            self.prior_params = VampPrior(
                c.num_pseudo_inputs, c.data_dim, bounded=bounded, key=prior_key
            )
        self.config = config

    def encode(self, x: Float[Array, " data_dim"]) -> DiagonalNormal | Flow:
        r""":math:`q(z \mid x) = \mathcal N(\mu_\phi(x), \mathrm{diag}\,\sigma_\phi(x)^2)`, or for
        ``posterior="iaf"`` the IAF of that Gaussian conditioned on h(x) (a :class:`lvm.flows.Flow`)."""
        check_shape(x, (self.config.data_dim,), "x")
        if isinstance(self.encoder, _IAFEncoder):
            return self.encoder(x)
        loc, raw_scale = jnp.split(self.encoder(x), 2)
        scale = jnp.exp(raw_scale) if self.config.scale == "exp" else jax.nn.softplus(raw_scale)
        return DiagonalNormal(loc, scale)

    def validate_data(self, x: np.ndarray, name: str = "x") -> np.ndarray:
        """A data set this model can score: shape (N, data_dim); for Bernoulli pixels, values in [0, 1]."""
        return validate_pixels(
            x,
            self.config.data_dim,
            name,
            bernoulli=self.config.likelihood == "bernoulli",
            hint="; binarize or rescale the data, or use VAEConfig(likelihood='gaussian') for "
            "real-valued data",
        )

    def decode(self, z: Float[Array, " latent_dim"]) -> Float[Array, " outputs"]:
        """The decoder's raw output: Bernoulli logits (``data_dim``), or for a Gaussian
        likelihood the mean then the pre-softplus scale (``2 data_dim``)."""
        check_shape(z, (self.config.latent_dim,), "z")
        return self.decoder(z)

    def observation(self, z: Float[Array, " latent_dim"]) -> DiagonalNormal | None:
        r""":math:`p(x \mid z)` as a :class:`DiagonalNormal` for a Gaussian likelihood (None for Bernoulli)."""
        if self.config.likelihood != "gaussian":
            return None
        loc, raw = jnp.split(self.decode(z), 2)
        return DiagonalNormal(loc, self.config.min_scale + _softplus(raw))

    def mean(self, z: Float[Array, " latent_dim"]) -> Float[Array, " data_dim"]:
        r""":math:`\mathbb E[x \mid z]`: pixel probabilities :math:`\sigma(f_\theta(z))`, or the Gaussian mean."""
        if self.config.likelihood == "gaussian":
            return self.observation(z).loc
        return jax.nn.sigmoid(self.decode(z))

    def prior(self) -> DiagonalNormal | Mixture:
        """p(z): N(0, I), the learned mixture, or the VampPrior's mixture of encodings."""
        if isinstance(self.prior_params, VampPrior):
            return self.prior_params.distribution(self.encode)
        if self.prior_params is not None:
            return self.prior_params.distribution()
        dim = self.config.latent_dim
        return DiagonalNormal(jnp.zeros(dim), jnp.ones(dim))

    def log_likelihood(
        self, x: Float[Array, " data_dim"], z: Float[Array, " latent_dim"]
    ) -> Scalar:
        r""":math:`\log p(x \mid z)`.

        Bernoulli: :math:`\sum_j x_j \ell_j - \log(1 + e^{\ell_j})`, :math:`\ell = f_\theta(z)`,
        valid for any x in [0, 1] (then it is the negative binary cross-entropy). Gaussian:
        :math:`\sum_j \log \mathcal N(x_j; \mu_j, \sigma_j^2)`.
        """
        check_shape(x, (self.config.data_dim,), "x")
        if self.config.likelihood == "gaussian":
            return self.observation(z).log_prob(x)
        return bernoulli_log_likelihood(x, self.decode(z))

    @property
    def log_joint(self) -> Joint:
        r"""``log_joint(x, z)`` :math:`= \log p(z) + \log p(x \mid z)`, an :class:`lvm.Joint` (callable)."""
        return Joint(self.prior(), self.log_likelihood)

    def sample(self, key: Key) -> tuple[Float[Array, " latent_dim"], Float[Array, " data_dim"]]:
        """Ancestral sample: z ~ p(z), then x ~ p(x|z) (float {0, 1} pixels for Bernoulli)."""
        z_key, x_key = jax.random.split(key)
        z = self.prior().sample(z_key)
        if self.config.likelihood == "gaussian":
            return z, self.observation(z).sample(x_key)
        x = jax.random.bernoulli(x_key, jax.nn.sigmoid(self.decode(z)))
        return z, x.astype(z.dtype)
