"""Smoke runs of the estimator figure scripts (``--quick``) and the facts each figure claims.

Each test runs one script's ``main`` once into a temporary directory, checks that the PNG,
PDF and JSON exist with finite numbers, then asserts the figure's claim on the quick run's
numbers, with tolerances of a few standard errors computed from the repetitions.
"""

import importlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
if str(EXPERIMENTS) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS))

testbeds = importlib.import_module("_testbeds")


def _run_quick(name: str, out_dir: Path) -> tuple[dict, dict]:
    """Run ``experiments/<name>.py --quick``; return its result dict and the JSON it wrote."""
    module = importlib.import_module(name)
    res = module.main(["--quick", "--seed", "0", "--out-dir", str(out_dir)])
    for ext in ("png", "pdf", "json"):
        path = out_dir / f"{name}.{ext}"
        assert path.exists() and path.stat().st_size > 0, path
    raw = json.loads((out_dir / f"{name}.json").read_text())
    numbers = _numbers(raw)
    assert numbers, "the JSON holds no numbers"
    assert all(math.isfinite(v) for v in numbers)
    return res, raw


def _numbers(obj) -> list[float]:
    if isinstance(obj, dict):
        return [v for item in obj.values() for v in _numbers(item)]
    if isinstance(obj, list):
        return [v for item in obj for v in _numbers(item)]
    if isinstance(obj, int | float) and not isinstance(obj, bool):
        return [float(obj)]
    return []


# --- the figures' own helpers ------------------------------------------------------------


def test_log_k_grid():
    assert testbeds.log_k_grid(1000, 3) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    assert testbeds.log_k_grid(100, 2) == [1, 3, 10, 30, 100]


# --- the figures ------------------------------------------------------------------------


def test_naive_vs_is(tmp_path):
    res, _ = _run_quick("estimators_naive_vs_is", tmp_path)
    pk, ks = res["per_k"], np.array(res["num_samples"], float)
    # IS with q = N(mu, 2 Sigma): Var(p-hat / p) = chi^2 / k exactly.
    for i in range(2):
        exact = np.sqrt(res["chi2"]["proposal"][i] / ks[-1])
        rel, se = pk["proposal"]["rel_rmse"][i, -1], pk["proposal"]["rel_rmse_se"][i, -1]
        assert abs(rel - exact) < 3 * se, (rel, exact, se)
    # Naive MC is worse than IS everywhere, and worse in the tail than at a typical point.
    assert np.all(pk["prior"]["log_rmse"] > pk["proposal"]["log_rmse"])
    assert np.all(pk["prior"]["log_rmse"][1] > pk["prior"]["log_rmse"][0])
    assert res["chi2"]["prior"][1] > 100 * res["chi2"]["prior"][0]
    # The exact posterior as proposal: zero variance.
    assert np.max(pk["posterior"]["max_abs_log_error"]) < 1e-10
    # Growing d: naive MC's error and exact chi^2 grow, IS stays accurate.
    pd = res["per_dim"]
    assert pd["prior"]["log_rmse"][-1] > 5 * pd["prior"]["log_rmse"][0]
    assert res["chi2_by_dim"]["prior"][-1] > 100 * res["chi2_by_dim"]["prior"][0]
    assert pd["proposal"]["log_rmse"][-1] < 0.2


def test_log_bias_matches_delta_method(tmp_path):
    res, _ = _run_quick("estimators_log_bias", tmp_path)
    bias, se, delta = res["bias"], res["bias_se"], res["delta_bias"]
    # Every measured bias is negative (Jensen).
    assert np.all(bias + 3 * se < 0)
    # Large k: within 3 standard errors of -chi^2 / (2k), for the q around the posterior.
    for i in range(1, len(res["labels"])):
        assert abs(bias[i, -1] - delta[i, -1]) < 3 * se[i, -1], (res["labels"][i], bias[i, -1])
        # and Var[log p-hat_k] ~ chi^2 / k
        assert abs(res["var"][i, -1] - res["delta_var"][i, -1]) < 3 * res["var_se"][i, -1]
    # k = 1: the bias is the ELBO gap -KL(q || p(z|x)).
    assert res["num_samples"][0] == 1
    np.testing.assert_array_less(np.abs(bias[:, 0] + res["kl_q_posterior"]), 3 * se[:, 0])
    # The jackknife, for the proposals around the posterior: smaller than IWAE's bias at the
    # largest k, and falling faster on log-log axes (slopes over the quick run's two k).
    jack = res["jackknife_bias"]
    cols = [res["num_samples"].index(k) for k in res["jackknife_num_samples"]]
    for i in range(1, len(res["labels"])):
        assert abs(jack[i, -1]) < abs(bias[i, cols[-1]])
        gap = res["iwae_slope"][i] - res["jackknife_slope"][i]
        assert gap > 3 * math.hypot(res["iwae_slope_se"][i], res["jackknife_slope_se"][i])
    # SUMO: zero within 4 s.e. for the proposals around the posterior (the prior's weights are
    # too heavy-tailed for a plain mean of a few thousand draws; see the script's docstring).
    assert np.all(np.abs(res["sumo_z"][1:]) < 4)


def test_elbo_gap(tmp_path):
    res, _ = _run_quick("estimators_elbo_gap", tmp_path)
    t = res["t"]
    at_posterior = np.argmin(np.abs(t - 1.0))
    assert t[at_posterior] == pytest.approx(1.0)
    for name in ("linear_gaussian", "mixture"):
        r = res[name]
        # ELBO = log p(x) exactly at q = p(z|x), and KL vanishes there.
        assert abs(r["elbo_at_posterior"] - r["log_px"]) < 1e-5
        assert abs(r["elbo_mc"][at_posterior] - r["log_px"]) < 1e-5
        assert abs(r["kl"][at_posterior]) < 1e-8
        # ELBO <= log p(x) everywhere; the Monte-Carlo ELBO agrees with log p(x) - KL.
        assert np.all(r["kl"] > -1e-10)
        resolved = r["elbo_mc_se"] > 1e-8
        z = (r["elbo_mc"] - r["elbo_closed_form"])[resolved] / r["elbo_mc_se"][resolved]
        assert np.all(np.abs(z) < 4), z
        # The decomposition adds up.
        np.testing.assert_allclose(
            r["bar_expected_log_joint"] + r["bar_entropy"], r["bar_elbo"], atol=1e-10
        )


def test_iwae_bounds_tighten(tmp_path):
    res, _ = _run_quick("estimators_iwae_bounds", tmp_path)
    for name in ("linear_gaussian", "mixture"):
        r = res[name]
        bound, se = r["bound"], r["bound_se"]
        # Non-decreasing in k within Monte-Carlo error, and below log p(x).
        step_se = np.sqrt(se[:, 1:] ** 2 + se[:, :-1] ** 2)
        assert np.all(np.diff(bound, axis=1) > -3 * step_se), (name, bound)
        assert np.all(bound < r["log_px"] + 3 * se)
        # Strictly tighter from k = 1 to the largest k.
        total_se = np.sqrt(se[:, -1] ** 2 + se[:, 0] ** 2)
        assert np.all(bound[:, -1] - bound[:, 0] > 3 * total_se)
        # k = 1 is the ELBO: log p(x) - KL.
        assert np.all(np.abs(bound[:, 0] - np.array(r["elbo_closed_form"])) < 3 * se[:, 0])


def test_is_picture(tmp_path):
    res, _ = _run_quick("estimators_is_picture", tmp_path)
    prior, q = res["prior"], res["proposal"]
    for r in (prior, q):
        assert np.sum(r["normalised_w"]) == pytest.approx(1.0)
    assert prior["ess"] < 0.1 * q["ess"]
    # Relative s.e. of p-hat from the draws themselves: cv^2 = k / ESS - 1 (Kish), so the
    # s.e. of log p-hat is about sqrt((k / ESS - 1) / k).
    k = len(q["normalised_w"])
    assert abs(q["log_p_hat"] - res["log_px"]) < 4 * math.sqrt((k / q["ess"] - 1) / k)


def test_gradient_snr(tmp_path):
    res, _ = _run_quick("estimators_gradient_snr", tmp_path)
    for part in ("linear", "mnist"):
        est = res[part]["estimators"]
        iwae, dreg = est["IWAE"]["encoder"], est["DReG"]["encoder"]
        # At the largest k, DReG's encoder SNR is above IWAE's for most parameters.
        assert np.median(dreg["snr"][-1] / iwae["snr"][-1]) > 1.0
        # The decoder's gradient is the same for all three estimators (same keys).
        for label in ("DReG", "IWAE-STL"):
            np.testing.assert_allclose(
                est[label]["decoder"]["mean"], est["IWAE"]["decoder"]["mean"], rtol=1e-3, atol=1e-6
            )
    # Linear-Gaussian: IWAE's encoder SNR falls with k (Rainforth et al.), the decoder's rises.
    lin = res["linear"]["estimators"]["IWAE"]
    assert lin["encoder"]["slope_median"] < -0.25
    assert lin["decoder"]["slope_median"] > 0.0
