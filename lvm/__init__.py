"""lvm: latent variable models as small, pure, jit-compiled JAX functions.

Layers, bottom up: ``_math`` (log-mean-exp, streaming log-sum-exp, ESS, Gaussian log-density) ->
``distributions`` (priors and proposals) -> ``models`` (linear-Gaussian, GMM, VAE) ->
``flows`` (normalizing-flow proposals on ``flowjax``) -> ``estimators`` (naive MC, importance
sampling / IWAE, ELBO, AIS / BDMC, the per-datapoint optimal proposal) -> ``fit`` (EM and gradient
fitting of mixtures) and ``train`` / ``evaluate`` / ``sharding`` (the VAE) -> ``data``.
The subpackages ``lvm.fit``, ``lvm.train``, ``lvm.evaluate``, ``lvm.data`` are imported
by name; the core math is re-exported here.
"""

from lvm._math import effective_sample_size, log_mean_exp, particle_log_mean_exp
from lvm.amortized import model_bound
from lvm.distributions import (
    Bernoulli,
    Categorical,
    DiagonalNormal,
    MultivariateNormal,
    RelaxedBernoulli,
    RelaxedCategorical,
    WithBaseline,
    kl_divergence,
    sample_and_log_prob,
    sample_n,
    sample_n_and_log_prob,
)
from lvm.estimators import (
    AIS,
    ELBO,
    IWAE,
    AISInfo,
    BDMCResult,
    ELBOAnalyticKL,
    ELBOTerms,
    OptimizeInfo,
    ais,
    ais_log_weights,
    annealing_schedule,
    bdmc,
    elbo,
    elbo_analytic_kl,
    elbo_decomposition,
    importance_sampling,
    iwae_bound,
    jackknife_iwae,
    linear_schedule,
    log_weight,
    log_weights,
    naive_monte_carlo,
    optimize_proposal,
    sigmoid_schedule,
    sumo,
)
from lvm.flows import ConditionalIAF, Flow, iaf, iaf_bijection
from lvm.joint import Joint
from lvm.models import (
    VAE,
    BernoulliVAE,
    BernoulliVAEConfig,
    GaussianMixture,
    LinearGaussian,
    TwoLayerVAE,
    TwoLayerVAEConfig,
    VAEConfig,
    init_pseudo_inputs,
)

__all__ = [
    "AIS",
    "AISInfo",
    "BDMCResult",
    "ais",
    "ais_log_weights",
    "annealing_schedule",
    "bdmc",
    "linear_schedule",
    "sigmoid_schedule",
    "ELBO",
    "IWAE",
    "VAE",
    "Bernoulli",
    "BernoulliVAE",
    "BernoulliVAEConfig",
    "Categorical",
    "DiagonalNormal",
    "ELBOAnalyticKL",
    "ELBOTerms",
    "GaussianMixture",
    "Joint",
    "LinearGaussian",
    "MultivariateNormal",
    "RelaxedBernoulli",
    "RelaxedCategorical",
    "TwoLayerVAE",
    "TwoLayerVAEConfig",
    "VAEConfig",
    "init_pseudo_inputs",
    "WithBaseline",
    "effective_sample_size",
    "elbo",
    "elbo_analytic_kl",
    "elbo_decomposition",
    "importance_sampling",
    "iwae_bound",
    "jackknife_iwae",
    "kl_divergence",
    "log_mean_exp",
    "log_weight",
    "log_weights",
    "model_bound",
    "naive_monte_carlo",
    "particle_log_mean_exp",
    "sample_and_log_prob",
    "sample_n",
    "sample_n_and_log_prob",
    "optimize_proposal",
    "OptimizeInfo",
    "Flow",
    "ConditionalIAF",
    "iaf",
    "iaf_bijection",
    "sumo",
]
