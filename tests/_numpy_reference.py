"""Float64 NumPy re-implementations of library layers, as independent references in tests."""

import numpy as np


def np_mlp(mlp, h: np.ndarray) -> np.ndarray:
    """The library's ``_MLP`` (tanh between affine layers) in float64 NumPy."""
    layers = mlp.layers
    for layer in layers:
        h = h @ np.asarray(layer.weight, np.float64).T + np.asarray(layer.bias, np.float64)
        if layer is not layers[-1]:
            h = np.tanh(h)
    return h
