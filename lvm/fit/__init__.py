"""Fitting Gaussian mixtures: EM, k-means++ initialisation, gradient ascent, model selection.

``em`` (the EM loop and its public API), ``_expfam`` (EM's algebra: two matrix products
per iteration, a compensated M-step, sums across devices), ``initialization`` and
``kmeans`` (k-means++ seeding, the hard first M-step), ``gradient`` (optax on the exact
log-marginal), ``selection`` (log-likelihood, BIC, AIC, responsibilities).
"""

from lvm.fit import selection
from lvm.fit.em import EMResult, em_step, fit_em, fit_em_from
from lvm.fit.gradient import GradientInfo, GradientState, fit_gradient, make_gradient_step
from lvm.fit.initialization import initialize
from lvm.fit.kmeans import kmeans, kmeans_objective, kmeans_plusplus
from lvm.fit.selection import (
    aic,
    bic,
    mean_log_likelihood,
    num_parameters,
    predict,
    responsibilities,
)

__all__ = [
    "EMResult",
    "GradientInfo",
    "GradientState",
    "aic",
    "bic",
    "em_step",
    "fit_em",
    "fit_em_from",
    "fit_gradient",
    "initialize",
    "kmeans",
    "kmeans_objective",
    "kmeans_plusplus",
    "make_gradient_step",
    "mean_log_likelihood",
    "num_parameters",
    "predict",
    "responsibilities",
    "selection",
]
