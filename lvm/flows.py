r"""Normalizing-flow proposals: a base distribution pushed through a ``flowjax`` bijection.

.. math:: z = T_\phi(z_0; h), \quad z_0 \sim q_0, \qquad
          \log q(z) = \log q_0(z_0) - \log\left|\det \frac{\partial T_\phi(z_0; h)}{\partial z_0}\right|

:class:`Flow` is an :class:`lvm.types.Distribution` (``sample``, ``log_prob``) with the
optional ``sample_and_log_prob(key)``, which returns a draw and its log-density from ONE
forward pass of :math:`T`. The estimators use it whenever a proposal has it
(:func:`lvm.sample_and_log_prob`), so importance sampling, the ELBO and the IWAE bound never
invert a flow to score its own samples. ``log_prob(z)`` at an arbitrary z needs
:math:`T^{-1}`.

**Inverse autoregressive flows** (IAF; Kingma et al., 2016). Each layer is an affine
autoregressive map, :math:`z_i \leftarrow \mu_i(z_{<i}; h) + \sigma_i(z_{<i}; h)\, z_i`, with
:math:`\mu` and :math:`\sigma = \mathrm{softplus}(\cdot)` read from one masked network (MADE;
Germain et al., 2015) evaluated on the layer's input, and the order of the coordinates
reversed between layers. The forward pass (sampling, with its log-determinant
:math:`\sum_i \log\sigma_i`) is one network evaluation per layer; the inverse is sequential,
d evaluations per layer for a d-dimensional z. :func:`iaf_bijection` builds the layers from
``flowjax.bijections.MaskedAutoregressive`` (its fast direction is this one); with
``identity_init`` the last linear map of every network starts at zero, so that each layer is
the identity and the flow equals its base distribution at initialisation.

:func:`iaf` is an unconditional IAF around a given base (a proposal for
:func:`lvm.optimize_proposal` or a testbed); :class:`ConditionalIAF` maps features
:math:`h(x)` to q(z|x): a diagonal Gaussian base read from h by a linear head, then IAF layers
conditioned on h, the amortized posterior of an IAF VAE.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import paramax
from flowjax.bijections import (
    AbstractBijection,
    Affine,
    Chain,
    Flip,
    Identity,
    MaskedAutoregressive,
    Scan,
)
from jaxtyping import Array, Float

from lvm._checks import check_positive_int, check_shape
from lvm.distributions import DiagonalNormal, sample_and_log_prob
from lvm.types import Distribution, Key, Scalar

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu, "elu": jax.nn.elu}


class Flow(eqx.Module):
    r"""The distribution of :math:`z = T(z_0; h)`, :math:`z_0 \sim` ``base``, for a ``flowjax`` bijection T.

    Args:
        base: q_0, any :class:`lvm.types.Distribution` over vectors of the bijection's shape
            (e.g. an :class:`lvm.DiagonalNormal`, which may itself depend on x).
        bijection: a ``flowjax.bijections.AbstractBijection`` of shape ``(d,)``: its
            ``transform_and_log_det`` draws, its ``inverse_and_log_det`` scores. Any flowjax
            bijection qualifies, e.g. ``flowjax.flows.coupling_flow(...).bijection``; its
            ``paramax`` parameterizations (masks, positive scales) are applied on every call.
        condition: h, the conditioning features when the bijection has a ``cond_shape``,
            else None. (Any field may be a ``paramax`` wrapper, e.g. ``paramax.non_trainable(h)``
            to keep h fixed in :func:`lvm.optimize_proposal`; they are unwrapped on every call.)

    ``sample(key)`` and ``sample_and_log_prob(key)`` draw the same z for the same key.
    """

    base: Distribution
    bijection: AbstractBijection
    condition: Float[Array, " c"] | None = None

    def __check_init__(self):
        flow = paramax.unwrap(self)
        shape = tuple(flow.bijection.shape)
        if len(shape) != 1:
            raise ValueError(f"the bijection must act on vectors, got shape {shape}")
        cond_shape = flow.bijection.cond_shape
        if cond_shape is None and flow.condition is not None:
            raise ValueError("condition given, but the bijection is unconditional")
        if cond_shape is not None:
            if flow.condition is None:
                raise ValueError(
                    f"the bijection is conditional: give a condition of shape {cond_shape}"
                )
            check_shape(flow.condition, tuple(cond_shape), "condition")
        base_shape = jax.eval_shape(flow.base.sample, jax.random.key(0)).shape
        if tuple(base_shape) != shape:
            raise ValueError(
                f"base draws z of shape {tuple(base_shape)}, the bijection acts on {shape}"
            )

    def sample(self, key: Key) -> Float[Array, " d"]:
        flow = paramax.unwrap(self)
        return flow.bijection.transform(flow.base.sample(key), flow.condition)

    def sample_and_log_prob(self, key: Key) -> tuple[Float[Array, " d"], Scalar]:
        """One draw and its log-density from one forward pass: no inverse is computed."""
        flow = paramax.unwrap(self)
        z0, log_q0 = sample_and_log_prob(key, flow.base)
        z, log_det = flow.bijection.transform_and_log_det(z0, flow.condition)
        return z, log_q0 - log_det

    def log_prob(self, z: Float[Array, " d"]) -> Scalar:
        """:math:`\\log q_0(T^{-1}(z)) + \\log|\\det \\partial T^{-1}/\\partial z|`: the inverse pass (sequential for an IAF)."""
        flow = paramax.unwrap(self)
        check_shape(z, tuple(flow.bijection.shape), "z")
        z0, log_det = flow.bijection.inverse_and_log_det(z, flow.condition)
        return flow.base.log_prob(z0) + log_det


def iaf_bijection(
    key: Key,
    *,
    dim: int,
    cond_dim: int | None = None,
    flow_layers: int = 2,
    nn_width: int = 50,
    nn_depth: int = 1,
    nn_activation: str = "tanh",
    identity_init: bool = True,
) -> AbstractBijection:
    r"""``flow_layers`` affine IAF layers on :math:`\mathbb R^{dim}`, the coordinate order reversed between layers.

    Each layer's MADE has ``nn_depth`` hidden layers of ``nn_width`` units (``nn_activation``:
    ``"tanh"``, ``"relu"`` or ``"elu"``) and sees the ``cond_dim`` features h as inputs that
    every output may depend on. The layers are one ``lax.scan`` (compiled once whatever their
    number); an odd number of layers is followed by one more reversal, so that the
    composition of the reversals is the identity. With ``identity_init`` every layer starts
    as the identity map (zero last linear layer: :math:`\mu = 0`, :math:`\sigma = 1`).
    """
    dim = check_positive_int(dim, "dim")
    flow_layers = check_positive_int(flow_layers, "flow_layers")
    nn_width = check_positive_int(nn_width, "nn_width")
    nn_depth = check_positive_int(nn_depth, "nn_depth")
    if cond_dim is not None:
        cond_dim = check_positive_int(cond_dim, "cond_dim")
    if nn_activation not in _ACTIVATIONS:
        raise ValueError(
            f"nn_activation must be one of {sorted(_ACTIVATIONS)}, got {nn_activation!r}"
        )

    def layer(layer_key):
        made = MaskedAutoregressive(
            layer_key,
            transformer=Affine(),  # y = loc + softplus(raw) * x; raw = 0 gives scale 1
            dim=dim,
            cond_dim=cond_dim,
            nn_width=nn_width,
            nn_depth=nn_depth,
            nn_activation=_ACTIVATIONS[nn_activation],
        )
        if identity_init:
            made = eqx.tree_at(
                lambda m: m.masked_autoregressive_mlp.layers[-1], made, replace_fn=_zeros_like
            )
        return Chain([made, Flip((dim,)) if dim > 1 else Identity((dim,))])

    # flowjax builds the autoregressive masks by broadcasting ranks against each other.
    with jax.numpy_rank_promotion("allow"):
        layers = Scan(eqx.filter_vmap(layer)(jax.random.split(key, flow_layers)))
    if flow_layers % 2 and dim > 1:
        return Chain([layers, Flip((dim,))])
    return layers


def iaf(
    key: Key,
    base: Distribution,
    *,
    flow_layers: int = 2,
    nn_width: int = 50,
    nn_depth: int = 1,
    nn_activation: str = "tanh",
    identity_init: bool = True,
) -> Flow:
    """An unconditional IAF around ``base`` (:func:`iaf_bijection` of its dimension): equal to ``base`` at init with ``identity_init``."""
    dim = jax.eval_shape(base.sample, jax.random.key(0)).shape
    if len(dim) != 1:
        raise ValueError(f"base must draw vectors, got shape {dim}")
    bijection = iaf_bijection(
        key,
        dim=dim[0],
        flow_layers=flow_layers,
        nn_width=nn_width,
        nn_depth=nn_depth,
        nn_activation=nn_activation,
        identity_init=identity_init,
    )
    return Flow(base, bijection)


class ConditionalIAF(eqx.Module):
    r"""Features h(x) to :math:`q(z \mid x)`: a Gaussian base from a linear head, then IAF layers conditioned on h.

    .. math:: z_0 = \mu(h) + \sigma(h) \odot \epsilon, \quad (\mu, \sigma) = (a, \mathrm{softplus}(b)),
              \ (a, b) = W h + c, \qquad z = T_\phi(z_0; h)

    (the IAF posterior of Kingma et al., 2016, with h the encoder's last hidden layer).
    ``conditional_iaf(h)`` returns the :class:`Flow` for one datapoint's features; batch with
    ``jax.vmap``. With ``identity_init`` it is the diagonal Gaussian of the head at init.
    """

    head: eqx.nn.Linear
    bijection: AbstractBijection

    def __init__(
        self,
        key: Key,
        *,
        latent_dim: int,
        cond_dim: int,
        flow_layers: int = 2,
        nn_width: int = 50,
        nn_depth: int = 1,
        nn_activation: str = "tanh",
        identity_init: bool = True,
    ):
        head_key, flow_key = jax.random.split(key)
        latent_dim = check_positive_int(latent_dim, "latent_dim")
        cond_dim = check_positive_int(cond_dim, "cond_dim")
        self.head = eqx.nn.Linear(cond_dim, 2 * latent_dim, key=head_key)
        self.bijection = iaf_bijection(
            flow_key,
            dim=latent_dim,
            cond_dim=cond_dim,
            flow_layers=flow_layers,
            nn_width=nn_width,
            nn_depth=nn_depth,
            nn_activation=nn_activation,
            identity_init=identity_init,
        )

    def base(self, h: Float[Array, " c"]) -> DiagonalNormal:
        """The diagonal Gaussian q_0(z_0 | x) that the layers transform."""
        loc, raw_scale = jnp.split(h @ self.head.weight.T + self.head.bias, 2)
        return DiagonalNormal(loc, jax.nn.softplus(raw_scale))

    def __call__(self, h: Float[Array, " c"]) -> Flow:
        return Flow(self.base(h), self.bijection, h)


def _zeros_like(tree):
    return jax.tree.map(lambda a: jnp.zeros_like(a) if eqx.is_inexact_array(a) else a, tree)
