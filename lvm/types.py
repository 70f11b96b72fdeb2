"""Array and key aliases shared by the whole package (jaxtyping shapes)."""

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from jaxtyping import Array, Float, PRNGKeyArray, Shaped
from jaxtyping import Key as _KeyArray

Key = PRNGKeyArray
#: A stack of (new-style) keys, one per particle.
Keys = _KeyArray[Array, " k"]
Scalar = Float[Array, ""]
#: A latent value for one datapoint: a vector for continuous z, an integer for a categorical z.
Latent = Shaped[Array, "..."]
#: One datapoint.
Datum = Shaped[Array, "..."]
#: ``log_joint(x, z) = log p(x, z)`` for one datapoint and one latent value.
LogJoint = Callable[[Datum, Latent], Scalar]
#: ``log_likelihood(x, z) = log p(x | z)`` for one datapoint and one latent value.
LogLikelihood = Callable[[Datum, Latent], Scalar]
#: A training objective: ``objective(key, log_joint, proposal, x)``, a bound on log p(x) for
#: one datapoint (the estimator signature; see :mod:`lvm.estimators.objectives`).
Objective = Callable[..., Scalar]


@runtime_checkable
class Distribution(Protocol):
    """What the estimators need of a proposal q(z) (or of a prior p(z)).

    ``sample(key)`` draws ONE z; ``log_prob(z)`` scores one z. Many samples are
    drawn by vmapping ``sample`` over split keys (:func:`lvm.sample_n`), so that
    sample i depends only on key i: a chunked estimator then draws exactly the
    same z_i as the unchunked one.

    Optional: ``sample_and_log_prob(key) -> (z, log_q)``, the z of ``sample(key)`` and
    ``log_prob(z)`` (equal to round-off) from one computation. A normalizing flow
    (:class:`lvm.flows.Flow`) scores its own draw from the forward pass this way, while
    ``log_prob`` at any other z needs the inverse, which for an inverse autoregressive flow is
    sequential. The estimators draw every particle through :func:`lvm.sample_and_log_prob`,
    which calls it when present and ``sample`` then ``log_prob`` otherwise. (Not a member of
    this protocol, so that ``isinstance(q, Distribution)`` does not require it.)
    """

    def sample(self, key: Key) -> Latent: ...

    def log_prob(self, z: Latent) -> Scalar: ...
