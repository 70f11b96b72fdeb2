"""Estimators of log p(x) for ONE datapoint (bounds, debiased estimates, gradient estimators); vmap outside."""

from lvm.estimators.ais import (
    AIS,
    AISInfo,
    BDMCResult,
    ais,
    ais_log_weights,
    annealing_schedule,
    bdmc,
    linear_schedule,
    sigmoid_schedule,
)
from lvm.estimators.debiased import (
    jackknife_coefficients,
    jackknife_iwae,
    jackknife_log_mean_exp,
    sumo,
    sumo_num_terms,
    sumo_survival,
)
from lvm.estimators.discrete import (
    elbo_concrete,
    elbo_reinforce,
    iwae_concrete,
    iwae_reinforce,
    iwae_vimco,
    vimco_advantages,
)
from lvm.estimators.elbo import ELBOTerms, elbo, elbo_analytic_kl, elbo_decomposition
from lvm.estimators.gradients import elbo_stl, iwae_dreg, iwae_stl, stop_gradient_proposal
from lvm.estimators.importance import importance_sampling, iwae_bound
from lvm.estimators.naive_mc import naive_monte_carlo
from lvm.estimators.objectives import ELBO, IWAE, OBJECTIVES, ELBOAnalyticKL
from lvm.estimators.optimize import OptimizeInfo, optimize_proposal
from lvm.estimators.weights import log_weight, log_weights

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
    "ELBOAnalyticKL",
    "ELBOTerms",
    "OBJECTIVES",
    "elbo",
    "elbo_analytic_kl",
    "elbo_concrete",
    "elbo_reinforce",
    "elbo_decomposition",
    "elbo_stl",
    "importance_sampling",
    "iwae_bound",
    "iwae_concrete",
    "iwae_dreg",
    "iwae_reinforce",
    "iwae_stl",
    "iwae_vimco",
    "jackknife_coefficients",
    "jackknife_iwae",
    "jackknife_log_mean_exp",
    "log_weight",
    "log_weights",
    "naive_monte_carlo",
    "optimize_proposal",
    "OptimizeInfo",
    "stop_gradient_proposal",
    "sumo",
    "sumo_num_terms",
    "sumo_survival",
    "vimco_advantages",
]
