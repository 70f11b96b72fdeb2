"""Models: log_joint(x, z), sample(key), and where tractable log_marginal and posterior."""

from lvm.models.gmm import GaussianMixture
from lvm.models.linear_gaussian import LinearGaussian
from lvm.models.sbn import BernoulliVAE, BernoulliVAEConfig
from lvm.models.vae import VAE, VAEConfig, init_pseudo_inputs
from lvm.models.vae2 import TwoLayerVAE, TwoLayerVAEConfig

__all__ = [
    "VAE",
    "BernoulliVAE",
    "BernoulliVAEConfig",
    "GaussianMixture",
    "LinearGaussian",
    "TwoLayerVAE",
    "TwoLayerVAEConfig",
    "VAEConfig",
    "init_pseudo_inputs",
]
