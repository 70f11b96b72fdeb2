"""scikit-learn's GaussianMixture holding the same parameters as an lvm.GaussianMixture."""

import jax
import numpy as np
from sklearn.mixture import GaussianMixture as SkGMM


def sklearn_copy(gmm) -> SkGMM:
    """An sklearn mixture with ``gmm``'s weights, means and covariances (float64)."""
    sk = SkGMM(gmm.num_components, covariance_type=gmm.covariance_type)
    sk.weights_ = np.asarray(jax.nn.softmax(gmm.logits), np.float64)
    sk.means_ = np.asarray(gmm.means, np.float64)
    if gmm.covariance_type in ("full", "tied"):
        tril = np.asarray(gmm.scale, np.float64)  # (K, D, D) or, tied, (D, D)
        sk.covariances_ = tril @ np.swapaxes(tril, -1, -2)
        sk.precisions_cholesky_ = np.swapaxes(np.linalg.inv(tril), -1, -2)
    else:
        scale = np.asarray(gmm.scale, np.float64)
        sk.covariances_ = scale**2
        sk.precisions_cholesky_ = 1.0 / scale
    return sk
