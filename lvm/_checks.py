"""Input validation at the boundary: fail loudly, naming the argument.

The generic checks of every layer: counts, shapes, dtypes, finiteness of arrays and of
parameter trees, data sets, choices and intervals. A rule that belongs to one layer lives
beside its owner (the EM data rules in ``lvm.fit._data``, AIS's continuous latent in
``lvm.estimators.ais``). Checks of shapes and dtypes run at trace time. Finiteness is a check of concrete data at
the boundary, where a user hands arrays in (an eager call, ``lvm.train``,
``lvm.evaluate``): under ``jit``/``vmap`` the values are traced, finiteness is not checked
and no host callback is compiled into the kernel (as in blackjax and numpyro), so a NaN in
the data gives a NaN result there.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from lvm.sharding import host_value


def check_positive_int(value, name: str = "num_samples") -> int:
    """Return ``value`` as an int, or raise if it is not a whole number >= 1."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be a Python int >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def check_shape(x, shape: tuple[int, ...], name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x.shape == shape`` (checked at trace time)."""
    if tuple(jnp.shape(x)) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(jnp.shape(x))}")


def check_floating(x, name: str = "x") -> None:
    """Raise ``TypeError`` unless ``x`` has a floating dtype."""
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {jnp.result_type(x)}")


def check_finite(x, name: str = "x"):
    """Return ``x``, raising ``ValueError`` (naming it) if a concrete ``x`` holds NaN or Inf.

    A traced ``x`` (inside ``jit``, ``vmap`` or ``grad``) is returned untouched: no host
    callback is compiled into the caller's program. Validate data sets where they enter,
    before tracing; every estimator calls this once, at its entry.
    """
    if isinstance(x, jax.core.Tracer):
        return x
    if not np.all(np.isfinite(np.asarray(x))):
        raise ValueError(f"{name} contains NaN or Inf")
    return x


def check_finite_tree(tree, name: str, hint: str = "") -> None:
    """Raise ``ValueError`` naming the first floating-point leaf of ``tree`` that holds NaN or Inf.

    Checked on the host (concrete arrays only): for parameters before they are saved or
    evaluated, e.g. ``check_finite_tree(model, "model")``.
    """
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if eqx.is_inexact_array(leaf) and not np.all(np.isfinite(host_value(leaf))):
            raise ValueError(f"{name}{jax.tree_util.keystr(path)} contains NaN or Inf{hint}")


def check_data(
    x,
    *,
    data_dim: int | None = None,
    name: str = "x",
    datum_ndim: int | None = 1,
):
    """A data set as a finite floating NumPy array whose first axis runs over N >= 1 datapoints.

    Integer and boolean arrays are converted to the default float type; any other
    non-floating dtype raises ``TypeError``. ``datum_ndim`` fixes the rank of one datapoint
    (1 by default: an (N, D) table; None: any rank, e.g. (N, 28, 28) images), ``data_dim``
    the size D of a vector datapoint. A traced ``x`` (inside ``jit``) is checked for shape
    and dtype only. What a likelihood can score (e.g. [0, 1] for Bernoulli pixels) is the
    model's rule, checked by its ``validate_data``.
    """
    traced = isinstance(x, jax.core.Tracer)
    if not traced:
        x = np.asarray(x)
    kind = np.dtype(x.dtype).kind
    if kind in "biu":
        x = x.astype(jnp.result_type(float))
    elif kind != "f":
        raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")
    if datum_ndim is None:
        if x.ndim < 1 or x.shape[0] < 1:
            raise ValueError(
                f"{name} must have shape (N, ...) with N >= 1 datapoints, got {x.shape}"
            )
    else:
        want = f"(N, {data_dim})" if data_dim is not None else "(N, D)"
        if datum_ndim != 1:
            want = "(N, " + ", ".join(["..."] * datum_ndim) + ")"
        if (
            x.ndim != datum_ndim + 1
            or x.shape[0] < 1
            or (data_dim is not None and x.shape[1:] != (data_dim,))
        ):
            raise ValueError(f"{name} must have shape {want} with N >= 1, got {x.shape}")
    if not traced and not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or Inf")
    return x


def check_choice(value, choices, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def check_non_negative(value, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is a number >= 0 (NaN included in the refusal)."""
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def check_not_nan(value, name: str) -> None:
    """Raise ``ValueError`` if ``value`` is NaN."""
    if value is not None and math.isnan(value):
        raise ValueError(f"{name} must not be NaN")


def check_in_interval(value, name: str, low: float, high: float, *, closed_low=False) -> None:
    """Raise ``ValueError`` unless ``low < value < high`` (``low <= value`` if ``closed_low``)."""
    above = value >= low if closed_low else value > low
    if not (above and value < high):
        bracket = "[" if closed_low else "("
        raise ValueError(f"{name} must be in {bracket}{low}, {high}), got {value}")


def check_positive(value, name: str) -> None:
    """Raise ``ValueError`` unless every entry of ``value`` is > 0."""
    if not np.all(np.asarray(value) > 0):
        raise ValueError(f"{name} must be > 0, got {value}")


def check_enough_samples(num_samples: int, minimum: int, why: str) -> None:
    """Raise ``ValueError`` unless ``num_samples >= minimum``; ``why`` says what needs them."""
    if num_samples < minimum:
        raise ValueError(f"{why}: num_samples must be >= {minimum}, got {num_samples}")


def check_has_arrays(tree, name: str, why: str) -> None:
    """Raise ``TypeError`` unless the pytree ``tree`` holds at least one JAX or NumPy array."""
    if not any(eqx.is_array(leaf) for leaf in jax.tree.leaves(tree)):
        raise TypeError(
            f"{why}: {name} must be a pytree holding its parameters as arrays (an equinox "
            f"Module such as lvm.DiagonalNormal), got {type(tree).__name__} with no array leaves"
        )


#: The gradient estimators each training objective offers (``ELBO(gradient=...)``, ``IWAE(...)``).
GRADIENT_ESTIMATORS = {"ELBO": ("reparam", "stl"), "IWAE": ("reparam", "stl", "dreg")}


def check_gradient_estimator(objective: str, gradient, *, chunk_size=None) -> None:
    """Raise ``ValueError`` unless ``gradient`` is an estimator ``objective`` offers.

    DReG (Tucker et al., 2019) is defined for the IWAE bound, and needs all k normalised
    weights at once, so not with ``chunk_size``.
    """
    allowed = GRADIENT_ESTIMATORS[objective]
    if gradient not in allowed:
        hint = (
            "; 'dreg' is the doubly reparameterized gradient of the IWAE bound: use IWAE(k, gradient='dreg')"
            if gradient == "dreg"
            else ""
        )
        raise ValueError(f"{objective} gradient must be one of {allowed}, got {gradient!r}{hint}")
    if gradient == "dreg" and chunk_size is not None:
        raise ValueError(
            "IWAE(gradient='dreg') weighs each particle's gradient by its normalised weight, "
            f"which needs all k weights at once: use chunk_size=None, got chunk_size={chunk_size}"
        )
