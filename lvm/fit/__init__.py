"""Fitting Gaussian mixtures: EM, k-means++ initialisation, gradient ascent, model selection."""

from lvm.fit.em import EMResult, em_step, fit, fit_from, initialize
from lvm.fit.kmeans import kmeans, kmeans_plusplus

__all__ = ["EMResult", "em_step", "fit", "fit_from", "initialize", "kmeans", "kmeans_plusplus"]
