r"""A training run's settings, and how they are written to and read from files.

:class:`TrainConfig` holds the settings of a run, never the model: the running code builds
the model (any :class:`lvm.types.AmortizedModel`) and hands it to :func:`lvm.train.train`.

**What a file may contain, and what reading it does.** Configs and checkpoint headers are
JSON. Reading one never imports a module, resolves a name or calls anything named in it:

* a library objective (a class of :data:`lvm.estimators.objectives.OBJECTIVES`) is written
  as ``{"type": "IWAE", "num_samples": 50, ...}`` and read back by constructing that
  registered dataclass from JSON values;
* a user's objective is written by its name, ``{"function": "mypkg.bounds:renyi",
  "keywords": {"alpha": 0.5}}`` or ``{"type": "mypkg.bounds:MyBound", ...fields}``, for the
  record and for the resume comparison only: :func:`objective_from_dict` refuses it, and a
  resume compares the JSON of the running code's objective with the file's;
* the library's own model (:class:`lvm.VAE`) is written as plain data, ``{"type": "VAE",
  "config": {...}}``, and rebuilt from the registry :data:`MODELS`; any other model is
  recorded by its class name only, and loaded into a template the running code builds
  (``lvm.train.load_model(path, like=template)``).
"""

import dataclasses
import functools
import json
import math
import sys
from dataclasses import dataclass, field
from typing import Any

from lvm._checks import check_choice, check_positive_int
from lvm.estimators import ELBO
from lvm.estimators.objectives import OBJECTIVES, objective_fields
from lvm.models.vae import VAE, VAEConfig
from lvm.types import Objective

#: Fields that may change when a run is resumed (to extend it or checkpoint more often).
RESUMABLE_FIELDS = ("num_epochs", "checkpoint_every", "eval_every")

#: The library's models that a checkpoint can rebuild from plain data in its header, by name:
#: (model class, its config dataclass). Nothing else is ever constructed from a file.
MODELS = {"VAE": (VAE, VAEConfig)}


class SpecError(ValueError):
    """A JSON description that this code does not construct (malformed, or not the library's)."""


@dataclass(frozen=True)
class TrainConfig:
    """The settings of a training run (not the model). Defaults: the IWAE paper's optimizer.

    ``objective``: any function of ``(key, log_joint, proposal, x)`` for one datapoint
    (:class:`lvm.ELBO`, :class:`lvm.IWAE`, ..., or a user's, see
    :func:`objective_to_dict`). Adam with ``learning_rate``, ``b1``, ``b2``, ``eps`` and
    ``schedule`` (``"constant"``, or ``"iwae"``: the paper's 3^i-epoch stages, which with
    ``num_epochs=3280`` is its full budget) unless :func:`lvm.train.train` is given another
    optax optimizer. ``eval_objective`` (default: the training objective) gives the
    validation bound every ``eval_every`` epochs (0: never). ``nonfinite``: ``"raise"``
    stops at the first non-finite loss or gradient, ``"skip"`` drops such updates, at most
    ``max_consecutive_skips`` in a row.
    """

    objective: Objective = field(default_factory=ELBO)
    num_epochs: int = 10
    batch_size: int = 100
    learning_rate: float = 1e-3
    schedule: str = "constant"
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-4
    seed: int = 0
    checkpoint_every: int = 5
    eval_every: int = 1
    eval_objective: Objective | None = None
    nonfinite: str = "raise"
    max_consecutive_skips: int = 10

    def __post_init__(self):
        check_positive_int(self.num_epochs, "num_epochs")
        check_positive_int(self.batch_size, "batch_size")
        check_positive_int(self.checkpoint_every, "checkpoint_every")
        check_positive_int(self.max_consecutive_skips, "max_consecutive_skips")
        if isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int):
            raise TypeError(f"eval_every must be an int >= 0, got {self.eval_every!r}")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0, got {self.eval_every}")
        check_choice(self.schedule, ("constant", "iwae"), "schedule")
        check_choice(self.nonfinite, ("raise", "skip"), "nonfinite")
        for name in ("objective", "eval_objective"):
            value = getattr(self, name)
            if (value is not None or name == "objective") and not callable(value):
                raise TypeError(
                    f"{name} must be callable as objective(key, log_joint, proposal, x), "
                    f"got {value!r}"
                )
        for name in ("learning_rate", "b1", "b2", "eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be finite and >= 0, got {value}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; objectives as :func:`objective_to_dict` writes them."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["objective"] = objective_to_dict(self.objective)
        if self.eval_objective is not None:
            out["eval_objective"] = objective_to_dict(self.eval_objective)
        return out

    @classmethod
    def from_dict(cls, spec: dict[str, Any], *, objective: Objective | None = None):
        """Read a config back. Library objectives are rebuilt from the registry; a user's
        cannot be (nothing named in a file is imported): pass it as ``objective`` (and the
        config's ``eval_objective`` must then be the library's or absent), and its JSON must
        equal the file's record. Raises :class:`SpecError` otherwise."""
        spec = _require_dict(spec, "a training config")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(spec) - names)
        if unknown:
            raise SpecError(f"unknown training-config fields {unknown}")
        values = dict(spec)
        if "objective" in values:
            if objective is not None:
                if objective_to_dict(objective) != values["objective"]:
                    raise SpecError(
                        f"the objective given, {objective_to_dict(objective)}, is not the "
                        f"recorded one, {values['objective']}"
                    )
                values["objective"] = objective
            else:
                values["objective"] = objective_from_dict(values["objective"])
        if values.get("eval_objective") is not None:
            values["eval_objective"] = objective_from_dict(values["eval_objective"])
        try:
            return cls(**values)
        except (TypeError, ValueError) as err:
            raise SpecError(f"invalid training config: {err}") from err


def normalized_config(spec: dict[str, Any]) -> dict[str, Any]:
    """A recorded config in today's form, for comparing two runs: fields added since it was
    written take their defaults, and library objectives are read back through the registry
    (so an older spelling compares equal). A user's objective stays as recorded. Constructs
    nothing but registered dataclasses; raises :class:`SpecError` on a malformed record."""
    spec = _require_dict(spec, "a training config")
    defaults = TrainConfig().to_dict()
    unknown = sorted(set(spec) - set(defaults))
    if unknown:
        raise SpecError(f"unknown training-config fields {unknown}")
    out = {**defaults, **spec}
    for name in ("objective", "eval_objective"):
        record = out[name]
        if record is not None and _is_library_objective(record):
            out[name] = objective_to_dict(objective_from_dict(record))
    return out


# ------------------------------------------------------------------ objectives as JSON


def objective_to_dict(objective: Objective) -> dict:
    """A JSON description of ``objective``.

    * a library objective (a class of :data:`~lvm.estimators.objectives.OBJECTIVES`):
      ``{"type": "IWAE", "num_samples": 5, "chunk_size": None, "gradient": "reparam"}``,
      which :func:`objective_from_dict` rebuilds;
    * a user's dataclass: ``{"type": "mypkg.bounds:MyBound", ...its fields}``; a function:
      ``{"function": "mypkg.bounds:renyi_bound"}``; a :func:`functools.partial` of one, with
      its arguments: ``{"function": ..., "args": [...], "keywords": {"alpha": 0.5}}``. These
      are records (for the run's files and the resume comparison), never read back.

    A lambda, a function defined inside another, or any object whose module-level name does
    not lead back to it raises ``TypeError`` (two different lambdas would be recorded
    alike), as do arguments that are not JSON values. The name is looked up in the modules
    the running program has already imported (``sys.modules``), never imported.
    """
    if dataclasses.is_dataclass(objective) and not isinstance(objective, type):
        cls = type(objective)
        name = cls.__name__ if OBJECTIVES.get(cls.__name__) is cls else _qualified_name(cls)
        # The discrete estimators' settings at their defaults are left out: ELBO() and IWAE(...)
        # are recorded as before those settings existed (lvm.estimators.objectives).
        return _json_ready({"type": name, **objective_fields(objective)}, objective)
    if isinstance(objective, functools.partial):
        spec = {"function": _qualified_name(objective.func)}
        if objective.args:
            spec["args"] = list(objective.args)
        if objective.keywords:
            spec["keywords"] = dict(objective.keywords)
        return _json_ready(spec, objective)
    if callable(objective) and not isinstance(objective, type):
        return {"function": _qualified_name(objective)}
    raise TypeError(f"cannot describe objective {objective!r} as JSON: it is not callable")


def objective_from_dict(spec) -> Objective:
    """The library objective a record describes, constructed from the registry only.

    Raises :class:`SpecError` for a record of a user's objective (the running code must
    supply it), an unknown type, unknown fields or values that are not JSON scalars.
    """
    spec = _require_dict(spec, "an objective")
    if not _is_library_objective(spec):
        raise SpecError(
            f"the objective {spec} is not one of the library's ({sorted(OBJECTIVES)}); a "
            "user's objective is never rebuilt from a file: the running code must supply it"
        )
    cls = OBJECTIVES[spec["type"]]
    return _construct(cls, {k: v for k, v in spec.items() if k != "type"}, "objective")


def _is_library_objective(spec: dict) -> bool:
    return isinstance(spec.get("type"), str) and spec["type"] in OBJECTIVES


def _qualified_name(obj) -> str:
    """``"module:qualname"`` of a module-level function or class, checked (in ``sys.modules``,
    without importing anything) to lead back to ``obj``."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise TypeError(f"cannot describe objective {obj!r} as JSON: it has no qualified name")
    name = f"{module}:{qualname}"
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise TypeError(
            f"cannot describe objective {name} as JSON: a lambda or a function defined inside "
            "another has no name that tells it apart from another one; define it at the top "
            "level of a module"
        )
    found = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is not obj:
        raise TypeError(
            f"cannot describe objective {name} as JSON: that name does not lead back to it"
        )
    return name


def _json_ready(spec: dict, objective) -> dict:
    try:
        json.dumps(spec, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"cannot describe objective {objective!r} as JSON: its arguments are not JSON "
            f"values ({err})"
        ) from err
    return json.loads(json.dumps(spec))  # tuples as lists, as they read back


# ------------------------------------------------------------------ models as JSON


def model_to_dict(model) -> dict:
    """The header record of a model: plain data for the library's own (rebuilt by
    :func:`model_template`), the class name only for any other (for the record)."""
    for name, (cls, config_cls) in MODELS.items():
        if type(model) is cls:
            config = model.config
            assert isinstance(config, config_cls)
            return {"type": name, "config": json.loads(json.dumps(dataclasses.asdict(config)))}
    cls = type(model)
    return {"type": "user", "class": f"{cls.__module__}:{cls.__qualname__}"}


def normalized_model(spec):
    """A model record with its library config's defaults filled in, so that a checkpoint written
    before a config field existed matches a run that leaves the field at its default; any
    other record (a user's model, one this code cannot read) as it is."""
    if not (isinstance(spec, dict) and spec.get("type") in MODELS):
        return spec
    _, config_cls = MODELS[spec["type"]]
    try:
        config = _construct(
            config_cls, _require_dict(spec.get("config"), "a model config"), "model"
        )
    except SpecError:
        return spec
    return {"type": spec["type"], "config": json.loads(json.dumps(dataclasses.asdict(config)))}


def model_template(spec, key):
    """A library model of the architecture ``spec`` describes (fresh parameters, from ``key``),
    to load a checkpoint's arrays into. Constructs only the classes of :data:`MODELS`."""
    spec = _require_dict(spec, "a model")
    if spec.get("type") not in MODELS:
        recorded = spec.get("class", spec.get("type"))
        raise SpecError(
            f"the model is a {recorded}, not one of the library's ({sorted(MODELS)}): build "
            "one of the same structure and pass it as like="
        )
    cls, config_cls = MODELS[spec["type"]]
    config = _construct(config_cls, _require_dict(spec.get("config"), "a model config"), "model")
    return cls(config, key=key)


def _construct(cls, fields: dict, what: str):
    """``cls(**fields)`` for a registered dataclass, from JSON values only (lists -> tuples)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise SpecError(f"unknown fields {unknown} for the {what} {cls.__name__}")
    values = {name: _plain(value, f"{what} field {name!r}") for name, value in fields.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise SpecError(f"invalid {what} {cls.__name__}{values}: {err}") from err


def _plain(value, what: str):
    """A JSON scalar, or a list of them as a tuple; anything else raises :class:`SpecError`."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list) and all(
        v is None or isinstance(v, bool | int | float | str) for v in value
    ):
        return tuple(value)
    raise SpecError(f"{what} must be a JSON scalar or a list of them, got {value!r}")


def _require_dict(spec, what: str) -> dict:
    if not isinstance(spec, dict):
        raise SpecError(f"expected {what} as a JSON object, got {type(spec).__name__}")
    return spec
