r"""The one place an amortized model meets an objective value, and objectives as JSON.

The values themselves live in :mod:`lvm.estimators.objectives`: ``lvm.ELBO(k)`` and
``lvm.IWAE(k)`` take ``(key, log_joint, proposal, x)``; :class:`lvm.ELBOAnalyticKL` takes
``(key, log_likelihood, prior, proposal, x)``. :func:`model_bound` feeds either kind from
a model with ``encode``/``log_joint``.
"""

import dataclasses
from collections.abc import Callable

from lvm.estimators import ELBO, IWAE, ELBOAnalyticKL
from lvm.types import Datum, Key, Scalar

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
