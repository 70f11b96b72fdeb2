"""Models: log_joint(x, z), sample(key), and where tractable log_marginal and posterior."""

from lvm.models.gmm import GaussianMixture
from lvm.models.linear_gaussian import LinearGaussian
from lvm.models.sbn import BernoulliVAE, BernoulliVAEConfig
from lvm.models.vae import VAE, VAEConfig

__all__ = [
    "VAE",
    "BernoulliVAE",
    "BernoulliVAEConfig",
    "GaussianMixture",
    "LinearGaussian",
    "VAEConfig",
]
