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
for IWAE, ``"dreg"`` (doubly reparameterized, unbiased). For discrete latents
(:mod:`lvm.estimators.discrete`): ``"reinforce"`` (the score function, with a ``baseline``
and NVIL's variance normalization, ``normalize``), for IWAE ``"vimco"`` (leave-one-out
baselines, unbiased), and ``"concrete"`` (the Concrete / Gumbel-softmax relaxation at
``temperature``, optionally ``straight_through``; biased). An option an objective does not
offer, or a setting its gradient does not use, raises ``ValueError`` when the objective
is built.

The settings of the discrete estimators are fields that keep their defaults for every
other option, and a field at its default is left out of the repr and of
:func:`objective_fields` (what ``lvm.train`` records): ``ELBO()`` and ``IWAE(5, gradient="dreg")`` read and serialize as
before those fields existed (so do the checkpoints and run folders named after them).
"""

import dataclasses
import math
from dataclasses import dataclass, field

from lvm._checks import GRADIENT_ESTIMATORS, check_gradient_estimator, check_positive_int
from lvm.estimators.ais import AIS
from lvm.estimators.discrete import (
    BASELINES,
    elbo_concrete,
    elbo_reinforce,
    iwae_concrete,
    iwae_reinforce,
    iwae_vimco,
)
from lvm.estimators.elbo import elbo, elbo_analytic_kl
from lvm.estimators.gradients import elbo_stl, iwae_dreg, iwae_stl
from lvm.estimators.importance import importance_sampling
from lvm.types import Datum, Distribution, Key, LogJoint, Scalar

#: The gradients for discrete latents each objective offers, beside ``GRADIENT_ESTIMATORS``.
DISCRETE_GRADIENTS = {"ELBO": ("reinforce", "concrete"), "IWAE": ("reinforce", "vimco", "concrete")}


def _setting(default):
    """A setting of the discrete estimators: left out of repr and JSON at its default."""
    return field(default=default, metadata={"omit_default": True})


def objective_fields(objective) -> dict:
    """The fields that describe a dataclass objective: all but the discrete estimators' settings at their defaults.

    What its repr shows and what a record of it (``lvm.train``'s JSON form) holds, so that
    ``ELBO()`` or ``IWAE(5, gradient="dreg")`` read and are recorded as before those settings
    existed.
    """
    return dict(_shown_fields(objective))


def _shown_fields(objective):
    for f in dataclasses.fields(objective):
        value = getattr(objective, f.name)
        if not (f.metadata.get("omit_default") and value == f.default):
            yield f.name, value


def _repr(objective) -> str:
    args = ", ".join(f"{name}={value!r}" for name, value in _shown_fields(objective))
    return f"{type(objective).__name__}({args})"


def _check_gradient(objective) -> None:
    """The option rules of ELBO and IWAE: which gradient, and which settings it takes."""
    name, gradient = type(objective).__name__, objective.gradient
    discrete = DISCRETE_GRADIENTS[name]
    chunk_size = getattr(objective, "chunk_size", None)
    if gradient not in discrete:
        if gradient not in GRADIENT_ESTIMATORS[name]:
            allowed = GRADIENT_ESTIMATORS[name] + discrete
            hint = ""
            if gradient in ("dreg", "vimco"):
                hint = f"; {gradient!r} is a gradient of the IWAE bound: use IWAE(k, gradient={gradient!r})"
            raise ValueError(f"{name} gradient must be one of {allowed}, got {gradient!r}{hint}")
        check_gradient_estimator(name, gradient, chunk_size=chunk_size)
    elif chunk_size is not None:
        raise ValueError(
            f"IWAE(gradient={gradient!r}) needs all k log-weights at once to form its "
            f"surrogate: use chunk_size=None, got chunk_size={chunk_size}"
        )
    k = objective.num_samples
    if objective.baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {objective.baseline!r}")
    if not isinstance(objective.normalize, bool) or not isinstance(
        objective.straight_through, bool
    ):
        raise TypeError("normalize and straight_through must be bools")
    if gradient != "reinforce" and (objective.baseline != "none" or objective.normalize):
        raise ValueError(
            f"baseline and normalize are settings of gradient='reinforce', got gradient={gradient!r} "
            f"with baseline={objective.baseline!r}, normalize={objective.normalize}"
            + ("; VIMCO brings its own leave-one-out baselines" if gradient == "vimco" else "")
        )
    if objective.baseline == "leave_one_out":
        if name == "IWAE":
            raise ValueError(
                "the leave-one-out baseline of the IWAE bound is VIMCO: use IWAE(k, gradient='vimco')"
            )
        if k < 2:
            raise ValueError(f"baseline='leave_one_out' needs num_samples >= 2, got {k}")
    if gradient == "vimco" and k < 2:
        raise ValueError(f"IWAE(gradient='vimco') needs num_samples >= 2, got {k}")
    if gradient == "concrete":
        t = objective.temperature
        if (
            isinstance(t, bool)
            or not isinstance(t, int | float)
            or not (math.isfinite(t) and t > 0)
        ):
            raise ValueError(
                f"gradient='concrete' needs a temperature, a finite number > 0, got {t!r}"
            )
        object.__setattr__(objective, "temperature", float(t))
    else:
        if objective.temperature is not None:
            raise ValueError(
                f"temperature is a setting of gradient='concrete', got gradient={gradient!r}"
            )
        if objective.straight_through:
            raise ValueError(
                f"straight_through is a setting of gradient='concrete', got gradient={gradient!r}"
            )


@dataclass(frozen=True, repr=False)
class ELBO:
    """The k-sample ELBO (mean of log-weights, :func:`lvm.elbo`); ``num_samples=1`` is the VAE objective.

    ``gradient``: ``"reparam"``, ``"stl"`` (:func:`lvm.estimators.elbo_stl`, Roeder et al., 2017),
    and for discrete latents ``"reinforce"`` (:func:`lvm.estimators.elbo_reinforce`: the score
    function with ``baseline`` ``"none"``, ``"leave_one_out"`` (k >= 2) or ``"learned"``
    (the proposal a :class:`lvm.WithBaseline`), and ``normalize`` for NVIL's variance
    normalization; NVIL is ``ELBO(1, gradient="reinforce", baseline="learned",
    normalize=True)``) or ``"concrete"`` (:func:`lvm.estimators.elbo_concrete`, biased, at
    ``temperature``; ``straight_through``).
    """

    num_samples: int = 1
    gradient: str = "reparam"
    baseline: str = _setting("none")
    normalize: bool = _setting(False)
    temperature: float | None = _setting(None)
    straight_through: bool = _setting(False)

    def __post_init__(self):
        check_positive_int(self.num_samples)
        _check_gradient(self)

    __repr__ = _repr

    def __call__(self, key: Key, log_joint: LogJoint, proposal: Distribution, x: Datum) -> Scalar:
        k = self.num_samples
        if self.gradient == "stl":
            return elbo_stl(key, log_joint, proposal, x, num_samples=k)
        if self.gradient == "reinforce":
            return elbo_reinforce(
                key,
                log_joint,
                proposal,
                x,
                num_samples=k,
                baseline=self.baseline,
                normalize=self.normalize,
            )
        if self.gradient == "concrete":
            return elbo_concrete(
                key,
                log_joint,
                proposal,
                x,
                num_samples=k,
                temperature=self.temperature,
                straight_through=self.straight_through,
            )
        return elbo(key, log_joint, proposal, x, num_samples=k)


@dataclass(frozen=True, repr=False)
class IWAE:
    """The importance-weighted bound L_k (:func:`lvm.iwae_bound`; Burda et al., 2016); ``chunk_size`` streams large k.

    ``gradient``: ``"reparam"``, ``"stl"`` (:func:`lvm.estimators.iwae_stl`: biased for
    k > 1, Tucker et al., 2019) or ``"dreg"`` (:func:`lvm.estimators.iwae_dreg`, Tucker et
    al., 2019; needs ``chunk_size=None``); for discrete latents (all with ``chunk_size=None``)
    ``"reinforce"`` (:func:`lvm.estimators.iwae_reinforce`, ``baseline`` ``"none"`` or
    ``"learned"``, ``normalize``), ``"vimco"`` (:func:`lvm.estimators.iwae_vimco`, Mnih &
    Rezende, 2016; k >= 2) or ``"concrete"`` (:func:`lvm.estimators.iwae_concrete`, biased,
    at ``temperature``; ``straight_through``).
    """

    num_samples: int = 5
    chunk_size: int | None = None
    gradient: str = "reparam"
    baseline: str = _setting("none")
    normalize: bool = _setting(False)
    temperature: float | None = _setting(None)
    straight_through: bool = _setting(False)

    def __post_init__(self):
        check_positive_int(self.num_samples)
        if self.chunk_size is not None:
            check_positive_int(self.chunk_size, "chunk_size")
        _check_gradient(self)

    __repr__ = _repr

    def __call__(self, key: Key, log_joint: LogJoint, proposal: Distribution, x: Datum) -> Scalar:
        k, chunk = self.num_samples, self.chunk_size
        if self.gradient == "dreg":
            return iwae_dreg(key, log_joint, proposal, x, num_samples=k)
        if self.gradient == "stl":
            return iwae_stl(key, log_joint, proposal, x, num_samples=k, chunk_size=chunk)
        if self.gradient == "reinforce":
            return iwae_reinforce(
                key,
                log_joint,
                proposal,
                x,
                num_samples=k,
                baseline=self.baseline,
                normalize=self.normalize,
            )
        if self.gradient == "vimco":
            return iwae_vimco(key, log_joint, proposal, x, num_samples=k)
        if self.gradient == "concrete":
            return iwae_concrete(
                key,
                log_joint,
                proposal,
                x,
                num_samples=k,
                temperature=self.temperature,
                straight_through=self.straight_through,
            )
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
