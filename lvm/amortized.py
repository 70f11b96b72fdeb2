r"""Where an amortized model meets an estimator: the bound of one datapoint, and the boundary checks.

.. math:: \mathcal L(x) = \mathrm{objective}\big(\mathrm{key},\ \log p_\theta(x, \cdot),\
          q_\phi(\cdot \mid x),\ x\big)

A model is anything with ``log_joint`` and ``encode`` (:class:`lvm.types.AmortizedModel`);
an objective anything with the estimator signature ``(key, log_joint, proposal, x)``.
:func:`model_bound` joins the two for ONE datapoint; training vmaps it over a minibatch,
evaluation over a data set. :func:`check_model` and :func:`check_dataset` are the checks
that run once, eagerly, where a user hands a model and data to ``train`` or ``evaluate``;
the kernels underneath stay pure.
"""

import numpy as np

from lvm._checks import check_data
from lvm.types import Datum, Key, Objective, Scalar


def model_bound(key: Key, model, x: Datum, objective: Objective) -> Scalar:
    r"""``objective(key, model.log_joint, model.encode(x), x)``: the bound of ONE datapoint ``x``.

    ``model`` is an amortized model (``log_joint`` and ``encode``), ``objective`` any
    function with the estimator signature (``lvm.ELBO(1)``, ``lvm.IWAE(5000,
    chunk_size=100)``, ``lvm.AIS(1000)``, a user's bound).
    """
    return objective(key, model.log_joint, model.encode(x), x)


def check_model(model, who: str) -> None:
    """Raise ``TypeError`` unless ``model`` has ``log_joint`` and a callable ``encode``."""
    missing = [
        name
        for name, ok in (
            ("log_joint", hasattr(model, "log_joint")),
            ("encode", callable(getattr(model, "encode", None))),
        )
        if not ok
    ]
    if missing:
        raise TypeError(
            f"{who} needs an amortized model: an eqx.Module with `log_joint` (an lvm.Joint or a "
            f"function (x, z) -> log p(x, z)) and `encode(x)` (the proposal q(z|x)); "
            f"{type(model).__name__} has no {' or '.join(missing)}"
        )


def check_dataset(model, x, name: str = "x") -> np.ndarray:
    """A data set for ``model``: finite, floating, datapoints along the first axis, then the
    model's own rule (``model.validate_data``, if it has one: shapes, the likelihood's range)."""
    x = check_data(x, name=name, datum_ndim=None)
    validate = getattr(model, "validate_data", None)
    if validate is not None:
        x = validate(x, name=name)
    return x
