"""Models with exact pieces: log_joint(x, z), sample(key), and where tractable log_marginal and posterior."""

from lvm.models.gmm import GaussianMixture
from lvm.models.linear_gaussian import LinearGaussian

__all__ = ["GaussianMixture", "LinearGaussian"]
