r"""Training objectives as values, and the one place a model meets an objective.

``lvm.ELBO(k)`` and ``lvm.IWAE(k)`` take ``(key, log_joint, proposal, x)``. The analytic-KL
ELBO needs the likelihood and the prior apart, so :class:`ELBOAnalyticKL` takes
``(key, log_likelihood, prior, proposal, x)`` like :func:`lvm.elbo_analytic_kl`.
:func:`model_bound` feeds either kind from a model with ``encode``/``log_joint``.
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from lvm._checks import check_num_samples
from lvm.estimators import ELBO, IWAE, elbo_analytic_kl
from lvm.types import Datum, Distribution, Key, LogLikelihood, Scalar


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


Objective = ELBO | IWAE | ELBOAnalyticKL
_BY_NAME = {cls.__name__: cls for cls in (ELBO, IWAE, ELBOAnalyticKL)}


def model_bound(objective: Objective | Callable, key: Key, model, x: Datum) -> Scalar:
    r"""The bound ``objective`` gives for one datapoint ``x`` with the amortized proposal q(z|x).

    ``model`` needs ``encode(x)`` (the proposal) and ``log_joint``; for
    :class:`ELBOAnalyticKL` also ``log_likelihood`` and ``prior()``.
    """
    proposal = model.encode(x)
    if isinstance(objective, ELBOAnalyticKL):
        return objective(key, model.log_likelihood, model.prior(), proposal, x)
    return objective(key, model.log_joint, proposal, x)


def objective_to_dict(objective: Objective) -> dict:
    """A JSON-ready description, e.g. ``{"type": "IWAE", "num_samples": 5, "chunk_size": None}``."""
    return {"type": type(objective).__name__, **dataclasses.asdict(objective)}


def objective_from_dict(spec: dict) -> Objective:
    """Inverse of :func:`objective_to_dict`."""
    spec = dict(spec)
    name = spec.pop("type")
    if name not in _BY_NAME:
        raise ValueError(f"unknown objective type {name!r}; known: {sorted(_BY_NAME)}")
    return _BY_NAME[name](**spec)
