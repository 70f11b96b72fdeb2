"""The rules of EM's data: sample weights, data split over devices (and processes), the
checks of a fitted mixture.

The generic checks (shapes, dtypes, finiteness of a host array) live in :mod:`lvm._checks`;
these are the ones only mixture fitting has: weights per point, an array whose rows stay
on their devices (checked there, never gathered), values read back from several
processes, and the finiteness of EM's results.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from lvm._checks import check_data
from lvm.sharding import host_value


def check_sample_weight(sample_weight, num_points: int, dtype) -> np.ndarray:
    """Non-negative, finite weights of shape (N,) with a positive sum; all ones when None."""
    if sample_weight is None:
        return np.ones(num_points, dtype)
    w = np.asarray(sample_weight, dtype)
    if w.shape != (num_points,):
        raise ValueError(f"sample_weight must have shape ({num_points},), got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("sample_weight contains NaN or Inf")
    if np.any(w < 0) or not w.sum() > 0:
        raise ValueError("sample_weight must be non-negative with a positive sum")
    return w


# ---------------------------------------------------------------- data that stays on its devices


def on_several_devices(x) -> bool:
    """Whether ``x`` is a ``jax.Array`` split (not replicated) over several devices: it stays there."""
    return isinstance(x, jax.Array) and not x.sharding.is_fully_replicated


def check_row_split(x, name: str = "x"):
    """(mesh, axis name) of an array whose rows are split over one mesh axis; else ``ValueError``."""
    spec = getattr(x.sharding, "spec", None)
    if (
        not isinstance(x.sharding, jax.sharding.NamedSharding)
        or not spec
        or not isinstance(spec[0], str)
        or any(s is not None for s in spec[1:])
    ):
        raise ValueError(
            f"{name} is split over devices as {x.sharding}; EM needs its rows (first axis) split "
            "over one mesh axis and its columns whole, as lvm.sharding.global_batch makes it"
        )
    return x.sharding.mesh, spec[0]


def _device_all_finite(x) -> bool:
    return bool(host_value(jnp.all(jnp.isfinite(x))))


def check_device_data(x, *, data_dim: int | None = None, name: str = "x"):
    """:func:`check_data` for an array split over devices: checked where it lies, never gathered."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")
    want = f"(N, {data_dim})" if data_dim is not None else "(N, D)"
    if x.ndim != 2 or x.shape[0] < 1 or (data_dim is not None and x.shape[1] != data_dim):
        raise ValueError(f"{name} must have shape {want} with N >= 1, got {x.shape}")
    if not _device_all_finite(x):
        raise ValueError(f"{name} contains NaN or Inf")
    return x


def check_device_sample_weight(sample_weight, num_points: int, dtype):
    """:func:`check_sample_weight` for weights split over devices; None stays None (all ones)."""
    if sample_weight is None or not on_several_devices(sample_weight):
        return (
            None if sample_weight is None else check_sample_weight(sample_weight, num_points, dtype)
        )
    w = sample_weight.astype(dtype)
    if w.shape != (num_points,):
        raise ValueError(f"sample_weight must have shape ({num_points},), got {w.shape}")
    if not _device_all_finite(w):
        raise ValueError("sample_weight contains NaN or Inf")
    if not bool(host_value(jnp.all(w >= 0) & (jnp.sum(w) > 0))):
        raise ValueError("sample_weight must be non-negative with a positive sum")
    return w


def check_mixture_data(
    x, sample_weight, *, num_components: int | None = None, data_dim: int | None = None
):
    """(x, weights) for fitting a mixture: checked data, weights, and K <= N.

    An ``x`` split over several devices (or processes) is checked on its devices and
    returned as it is, with its weights (None meaning all ones); any other ``x`` becomes a
    checked NumPy array with a weight vector.
    """
    if on_several_devices(x):
        x = check_device_data(x, data_dim=data_dim)
        w = check_device_sample_weight(sample_weight, x.shape[0], x.dtype)
    else:
        x = check_data(x, data_dim=data_dim)
        w = check_sample_weight(sample_weight, x.shape[0], x.dtype)
    if num_components is not None and num_components > x.shape[0]:
        raise ValueError(
            f"num_components={num_components} exceeds the number of data points N={x.shape[0]}"
        )
    return x, w


def check_finite_result(tree, message: str):
    """Return ``tree``, raising ``ValueError(message)`` if any leaf holds NaN or Inf.

    Under ``jit`` the check is compiled in with :func:`equinox.error_if`. Arrays split over
    processes are checked on their devices.
    """
    leaves = [leaf for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.inexact)]
    ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))
    if isinstance(ok, jax.core.Tracer):
        return eqx.error_if(tree, ~ok, message)
    if not bool(host_value(ok)):
        raise ValueError(message)
    return tree
