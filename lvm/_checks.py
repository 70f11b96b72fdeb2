"""Input validation shared by models and estimators: fail loudly, never a silent NaN."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def check_num_samples(num_samples, name: str = "num_samples") -> int:
    """Return ``num_samples`` as an int, or raise if it is not a whole number >= 1."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int | np.integer):
        raise TypeError(f"{name} must be a Python int >= 1, got {num_samples!r}")
    if num_samples < 1:
        raise ValueError(f"{name} must be >= 1, got {num_samples}")
    return int(num_samples)


def check_shape(x, shape: tuple[int, ...], name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x.shape == shape`` (checked at trace time)."""
    if tuple(jnp.shape(x)) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(jnp.shape(x))}")


def check_floating(x, name: str = "x") -> None:
    """Raise ``TypeError`` unless ``x`` has a floating dtype."""
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {jnp.result_type(x)}")


def check_finite(x, name: str = "x"):
    """Return ``x``, raising if it holds NaN or Inf.

    Concrete arrays raise ``ValueError`` at once. Under ``jit``/``vmap`` the check
    is compiled in with :func:`equinox.error_if` and raises at run time.
    """
    if isinstance(x, jax.core.Tracer):
        return eqx.error_if(x, ~jnp.all(jnp.isfinite(x)), f"{name} contains NaN or Inf")
    if not np.all(np.isfinite(np.asarray(x))):
        raise ValueError(f"{name} contains NaN or Inf")
    return x
