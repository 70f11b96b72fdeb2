r"""Training objectives: one interface for the library's bounds and a user's own.

An objective is anything callable as

.. code-block:: python

    objective(key, log_joint, proposal, x) -> scalar bound on log p(x)

for ONE datapoint: the estimator signature. The library's are frozen dataclasses,
validated when built and hashable (so a jitted step can take them as static
arguments): :class:`ELBO`, :class:`IWAE`, :class:`ELBOAnalyticKL` and
:class:`~lvm.estimators.ais.AIS`, listed by name in :data:`OBJECTIVES`, the one registry
from which a checkpoint's record of an objective is read back (:mod:`lvm.train.config`).
A plain function (or a ``functools.partial`` of one) with that signature is an objective
too. :func:`lvm.model_bound` hands an objective an amortized model's joint and its q(z|x).

:class:`ELBO` and :class:`IWAE` take a ``gradient`` option: the value of the bound is the
same, only the gradient w.r.t. the proposal's parameters differs
(:mod:`lvm.estimators.gradients`): ``"reparam"`` (default, the pathwise gradient of the
estimate), ``"stl"`` (sticking the landing; unbiased for the ELBO, biased for IWAE) and,
for IWAE, ``"dreg"`` (doubly reparameterized, unbiased). An option an objective does not
offer raises ``ValueError`` when the objective is built.
"""

from dataclasses import dataclass

from lvm._checks import check_gradient_estimator, check_positive_int
from lvm.estimators.ais import AIS
from lvm.estimators.elbo import elbo, elbo_analytic_kl
from lvm.estimators.gradients import elbo_stl, iwae_dreg, iwae_stl
from lvm.estimators.importance import importance_sampling
from lvm.types import Datum, Distribution, Key, LogJoint, Scalar


@dataclass(frozen=True)
class ELBO:
    """The k-sample ELBO (mean of log-weights, :func:`lvm.elbo`); ``num_samples=1`` is the VAE objective.

    ``gradient``: ``"reparam"`` or ``"stl"`` (:func:`lvm.estimators.elbo_stl`, Roeder et al., 2017).
    """

    num_samples: int = 1
    gradient: str = "reparam"

    def __post_init__(self):
        check_positive_int(self.num_samples)
        check_gradient_estimator("ELBO", self.gradient)

    def __call__(self, key: Key, log_joint: LogJoint, proposal: Distribution, x: Datum) -> Scalar:
        if self.gradient == "stl":
            return elbo_stl(key, log_joint, proposal, x, num_samples=self.num_samples)
        return elbo(key, log_joint, proposal, x, num_samples=self.num_samples)


@dataclass(frozen=True)
class IWAE:
    """The importance-weighted bound L_k (:func:`lvm.iwae_bound`; Burda et al., 2016); ``chunk_size`` streams large k.

    ``gradient``: ``"reparam"``, ``"stl"`` (:func:`lvm.estimators.iwae_stl`: biased for
    k > 1, Tucker et al., 2019) or ``"dreg"`` (:func:`lvm.estimators.iwae_dreg`, Tucker et
    al., 2019; needs ``chunk_size=None``).
    """

    num_samples: int = 5
    chunk_size: int | None = None
    gradient: str = "reparam"

    def __post_init__(self):
        check_positive_int(self.num_samples)
        if self.chunk_size is not None:
            check_positive_int(self.chunk_size, "chunk_size")
        check_gradient_estimator("IWAE", self.gradient, chunk_size=self.chunk_size)

    def __call__(self, key: Key, log_joint: LogJoint, proposal: Distribution, x: Datum) -> Scalar:
        k, chunk = self.num_samples, self.chunk_size
        if self.gradient == "dreg":
            return iwae_dreg(key, log_joint, proposal, x, num_samples=k)
        if self.gradient == "stl":
            return iwae_stl(key, log_joint, proposal, x, num_samples=k, chunk_size=chunk)
        return importance_sampling(key, log_joint, proposal, x, num_samples=k, chunk_size=chunk)


@dataclass(frozen=True)
class ELBOAnalyticKL:
    r""":math:`\frac1k \sum_i \log p(x \mid z_i) - \mathrm{KL}(q(z \mid x) \,\|\, p(z))` (:func:`lvm.elbo_analytic_kl`; Kingma & Welling, 2014).

    Needs ``log_joint`` to be an :class:`lvm.Joint` with a Gaussian prior (every
    model's ``log_joint`` is one).
    """

    num_samples: int = 1

    def __post_init__(self):
        check_positive_int(self.num_samples)

    def __call__(self, key: Key, log_joint: LogJoint, proposal: Distribution, x: Datum) -> Scalar:
        return elbo_analytic_kl(key, log_joint, proposal, x, num_samples=self.num_samples)


#: The library's objectives by name: the only classes a checkpoint's record of an objective
#: can construct (:func:`lvm.train.config.objective_from_dict`). A new objective class of the
#: library is added here; its fields must be JSON values.
OBJECTIVES = {cls.__name__: cls for cls in (ELBO, IWAE, ELBOAnalyticKL, AIS)}
