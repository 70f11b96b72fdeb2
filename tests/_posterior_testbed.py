"""The linear-Gaussian testbed of tests/test_flows.py and tests/test_optimize.py, with its closed forms by numpy/scipy.

d = 2, D = 5, sigma = 0.5; at its datapoint x the posterior correlation is 0.87, so the
best mean-field ELBO is 0.72 nats below log p(x).
"""

import jax
import numpy as np
from scipy.stats import multivariate_normal

import lvm

D_LATENT, D_DATA = 2, 5


def make_testbed():
    """(model, x): the model and its one datapoint."""
    model = lvm.LinearGaussian.random(
        jax.random.key(1), latent_dim=D_LATENT, data_dim=D_DATA, noise_std=0.5
    )
    return model, model.sample(jax.random.key(2))[1]


def closed_form(model, x) -> dict:
    """log p(x) = log N(x; b, W W^T + sigma^2 I), the posterior mean and precision
    Lambda = I + W^T W / sigma^2, and the best mean-field ELBO
    log p(x) - (sum_i log Lambda_ii - log det Lambda) / 2, all in float64, independent of lvm."""
    w, b = np.asarray(model.weight, np.float64), np.asarray(model.bias, np.float64)
    s2, xv = float(model.noise_std) ** 2, np.asarray(x, np.float64)
    log_px = multivariate_normal(b, w @ w.T + s2 * np.eye(D_DATA)).logpdf(xv)
    precision = np.eye(D_LATENT) + w.T @ w / s2
    mean = np.linalg.solve(precision, w.T @ (xv - b) / s2)
    mean_field_gap = 0.5 * (np.sum(np.log(np.diag(precision))) - np.linalg.slogdet(precision)[1])
    return {
        "log_px": float(log_px),
        "mean": mean,
        "precision": precision,
        "mean_field_elbo": float(log_px - mean_field_gap),
    }
