r"""Training objectives: one interface for the library's bounds and a user's own.

An objective is anything callable as

.. code-block:: python

    objective(key, log_joint, proposal, x) -> scalar bound on log p(x)

for ONE datapoint: the estimator signature. The library's are frozen dataclasses,
validated when built and hashable (so a jitted step can take them as static
arguments): :class:`ELBO`, :class:`IWAE` and :class:`ELBOAnalyticKL`. A plain function
(or a ``functools.partial`` of one) with that signature is an objective too.

:func:`model_bound` is where an amortized model meets an objective: it hands the
objective the model's :class:`lvm.Joint` and its encoder's q(z|x).
:func:`objective_to_dict` / :func:`objective_from_dict` describe an objective as JSON,
for configs and checkpoints: a dataclass by its class and fields, a function (or a
``functools.partial`` of one) by its importable ``module:qualname``.

:class:`ELBO` and :class:`IWAE` take a ``gradient`` option: the value of the bound is the
same, only the gradient w.r.t. the proposal's parameters differs
(:mod:`lvm.estimators.gradients`): ``"reparam"`` (default, the pathwise gradient of the
estimate), ``"stl"`` (sticking the landing; unbiased for the ELBO, biased for IWAE) and,
for IWAE, ``"dreg"`` (doubly reparameterized, unbiased). An option an objective does not
offer raises ``ValueError`` when the objective is built.
"""

import dataclasses
import functools
import importlib
import json
from dataclasses import dataclass

from lvm._checks import check_gradient_estimator, check_positive_int
from lvm.estimators.elbo import elbo, elbo_analytic_kl
from lvm.estimators.gradients import elbo_stl, iwae_dreg, iwae_stl
from lvm.estimators.importance import importance_sampling
from lvm.types import Datum, Distribution, Key, LogJoint, Objective, Scalar


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


#: The library's objectives by name, for :func:`objective_from_dict`.
OBJECTIVES = {cls.__name__: cls for cls in (ELBO, IWAE, ELBOAnalyticKL)}


def model_bound(objective: Objective, key: Key, model, x: Datum) -> Scalar:
    r"""The bound ``objective`` gives for one datapoint ``x`` with the amortized proposal q(z|x).

    ``model`` needs ``encode(x)`` (the proposal) and ``log_joint`` (an :class:`lvm.Joint`).
    """
    return objective(key, model.log_joint, model.encode(x), x)


def objective_to_dict(objective: Objective) -> dict:
    """A JSON-ready description of ``objective``, from which :func:`objective_from_dict` rebuilds it.

    * a dataclass: its class and fields, ``{"type": "IWAE", "num_samples": 5, "chunk_size":
      None}`` (the library's by their name, any other as ``"module:QualName"``);
    * a function, by its qualified name, ``{"function": "mypkg.bounds:renyi_bound"}``;
    * a :func:`functools.partial` of one, with its arguments:
      ``{"function": ..., "args": [...], "keywords": {"alpha": 0.5}}``.

    A lambda, a function defined inside another, or anything else that cannot be imported
    again by its name raises ``TypeError``, as do arguments that are not JSON values. (A
    function of a script run as ``python script.py`` is ``__main__:name``: only that script
    can read it back.)
    """
    if dataclasses.is_dataclass(objective) and not isinstance(objective, type):
        cls = type(objective)
        name = cls.__name__ if OBJECTIVES.get(cls.__name__) is cls else _import_name(cls)
        fields = {f.name: getattr(objective, f.name) for f in dataclasses.fields(objective)}
        return _json_ready({"type": name, **fields}, objective)
    if isinstance(objective, functools.partial):
        spec = {"function": _import_name(objective.func)}
        if objective.args:
            spec["args"] = list(objective.args)
        if objective.keywords:
            spec["keywords"] = dict(objective.keywords)
        return _json_ready(spec, objective)
    if callable(objective) and not isinstance(objective, type):
        return {"function": _import_name(objective)}
    raise TypeError(f"cannot describe objective {objective!r} as JSON: it is not callable")


def objective_from_dict(spec: dict) -> Objective:
    """Inverse of :func:`objective_to_dict` (imports a user's module where the spec names one)."""
    spec = dict(spec)
    if "function" in spec:
        function = _resolve(spec.pop("function"))
        args, keywords = spec.pop("args", []), spec.pop("keywords", {})
        if spec:
            raise ValueError(f"unknown keys {sorted(spec)} in objective spec")
        return functools.partial(function, *args, **keywords) if args or keywords else function
    name = spec.pop("type")
    if ":" in name:
        return _resolve(name)(**spec)
    if name not in OBJECTIVES:
        raise ValueError(
            f"unknown objective type {name!r}; known: {sorted(OBJECTIVES)}, or 'module:QualName'"
        )
    return OBJECTIVES[name](**spec)


def _import_name(obj) -> str:
    """``"module:qualname"`` of a module-level function or class, checked to import back to ``obj``."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if module is None or qualname is None:
        raise TypeError(f"cannot describe objective {obj!r} as JSON: it has no qualified name")
    name = f"{module}:{qualname}"
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise TypeError(
            f"cannot describe objective {name} as JSON: a lambda or a function defined inside "
            "another cannot be imported again when a run is resumed or a checkpoint loaded; "
            "define it at the top level of a module"
        )
    try:
        found = _resolve(name)
    except (ImportError, AttributeError) as err:
        raise TypeError(f"cannot describe objective {name} as JSON: {err}") from err
    if found is not obj:
        raise TypeError(
            f"cannot describe objective {name} as JSON: that name imports another object"
        )
    return name


def _resolve(name: str):
    """The object named ``"module:qualname"``."""
    module, sep, qualname = name.partition(":")
    if not sep or not module or not qualname:
        raise ValueError(f"expected 'module:qualname', got {name!r}")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _json_ready(spec: dict, objective) -> dict:
    try:
        json.dumps(spec, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"cannot describe objective {objective!r} as JSON: its arguments are not JSON values ({err})"
        ) from err
    return spec
