"""Estimators as values: pick one, pass it around, call it like the function it wraps.

A training loop or an experiment takes an ``Objective`` instead of a string flag.
Each is a frozen dataclass validated when built, and callable as
``objective(key, log_joint, proposal, x) -> scalar bound`` for one datapoint.
Adding an estimator is adding one such class (or any function of that signature).
"""

from dataclasses import dataclass

from lvm._checks import check_num_samples
from lvm.estimators.elbo import elbo, elbo_analytic_kl
from lvm.estimators.importance import importance_sampling
from lvm.types import Datum, Distribution, Key, LogJoint, LogLikelihood, Scalar


@dataclass(frozen=True)
class ELBO:
    """The k-sample ELBO (mean of log-weights); ``num_samples=1`` is the VAE objective."""

    num_samples: int = 1

    def __post_init__(self):
        check_num_samples(self.num_samples)

    def __call__(self, key: Key, log_joint: LogJoint, proposal: Distribution, x: Datum) -> Scalar:
        return elbo(key, log_joint, proposal, x, num_samples=self.num_samples)


@dataclass(frozen=True)
class IWAE:
    """The importance-weighted bound L_k (Burda et al., 2016); ``chunk_size`` streams large k."""

    num_samples: int = 5
    chunk_size: int | None = None

    def __post_init__(self):
        check_num_samples(self.num_samples)
        if self.chunk_size is not None:
            check_num_samples(self.chunk_size, "chunk_size")

    def __call__(self, key: Key, log_joint: LogJoint, proposal: Distribution, x: Datum) -> Scalar:
        return importance_sampling(
            key, log_joint, proposal, x, num_samples=self.num_samples, chunk_size=self.chunk_size
        )


@dataclass(frozen=True)
class ELBOAnalyticKL:
    r""":math:`\frac1k \sum_i \log p(x \mid z_i) - \mathrm{KL}(q(z \mid x) \,\|\, p(z))` (Kingma & Welling, 2014)."""

    num_samples: int = 1

    def __post_init__(self):
        check_num_samples(self.num_samples)

    def __call__(
        self,
        key: Key,
        log_likelihood: LogLikelihood,
        prior: Distribution,
        proposal: Distribution,
        x: Datum,
    ) -> Scalar:
        return elbo_analytic_kl(
            key, log_likelihood, prior, proposal, x, num_samples=self.num_samples
        )
