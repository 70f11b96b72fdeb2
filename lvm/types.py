"""Array and key aliases (jaxtyping shapes) and the two protocols the package is built on.

* :class:`Distribution`: what an estimator needs of a proposal q(z) or a prior p(z).
* :class:`AmortizedModel`: what training and evaluation need of a model: a joint density
  ``log_joint(x, z)`` and an encoder ``encode(x) -> q(z | x)``. The library's VAE is one
  such model; a user's ``eqx.Module`` with these two members is another, and trains,
  evaluates and checkpoints the same way.
"""

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
    """

    def sample(self, key: Key) -> Latent: ...

    def log_prob(self, z: Latent) -> Scalar: ...

    # Optional: ``sample_and_log_prob(key) -> (z, log q(z))``, one pass for both (a flow
    # whose inverse is slow); estimators use it when the proposal has it.


@runtime_checkable
class AmortizedModel(Protocol):
    r"""An amortized latent variable model: any ``eqx.Module`` with these two members.

    * ``log_joint``: :math:`\log p(x, z)` for ONE datapoint and ONE latent value, either an
      :class:`lvm.Joint` (its prior and likelihood reachable, which the analytic-KL ELBO and
      AIS from the prior need) or a plain callable ``(x, z) -> scalar``. A property
      returning one is the usual way to write it.
    * ``encode(x)``: the amortized proposal :math:`q(z \mid x)` of ONE datapoint, a
      :class:`Distribution`.

    A datapoint may have any shape (a vector, a 28 x 28 image); a data set is an array whose
    first axis runs over datapoints. Optionally:

    * ``validate_data(x, name="x") -> x``: checks a whole data set (a NumPy array, already
      finite and floating) eagerly, on the host, before training or evaluation: its shape
      per datapoint, the range its likelihood can score (e.g. [0, 1] for Bernoulli pixels),
      raising ``ValueError`` that names ``name``.

    The model must be a pytree whose parameters are its inexact array leaves
    (``eqx.is_inexact_array``): those are what the optimizer updates and what a checkpoint
    stores. Configuration belongs in static fields or in non-array leaves.
    """

    @property
    def log_joint(self) -> LogJoint: ...

    def encode(self, x: Datum) -> Distribution: ...
