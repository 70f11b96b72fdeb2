"""Smoke run of ``experiments/estimators_discrete_gradients.py --quick`` and the claims its docstring makes.

One quick run (300 keys, k = 5; VIMCO alone for 10 epochs on Old Faithful) into a temporary
directory; the tolerances come from the run's own standard errors: the norm of an unbiased
estimator's mean error is about the noise floor (the norm of the per-parameter standard
errors), so "unbiased" is a relative bias below 2.5 noise floors and "biased" one above 4.
"""

import importlib
import json
import math
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
if str(EXPERIMENTS) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS))

NAME = "estimators_discrete_gradients"
UNBIASED = (
    "REINFORCE (ELBO)",
    "REINFORCE + running average",
    "REINFORCE + leave-one-out",
    "NVIL (ELBO)",
    "REINFORCE (IWAE)",
    "VIMCO (IWAE)",
)


def _numbers(obj):
    if isinstance(obj, dict):
        return [v for item in obj.values() for v in _numbers(item)]
    if isinstance(obj, list):
        return [v for item in obj for v in _numbers(item)]
    if isinstance(obj, int | float) and not isinstance(obj, bool):
        return [float(obj)]
    return []


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp(NAME)
    res = importlib.import_module(NAME).main(["--quick", "--seed", "0", "--out-dir", str(out_dir)])
    for ext in ("png", "pdf", "json"):
        path = out_dir / f"{NAME}.{ext}"
        assert path.exists() and path.stat().st_size > 0, path
    raw = json.loads((out_dir / f"{NAME}.json").read_text())
    assert all(math.isfinite(v) for v in _numbers(raw)) and _numbers(raw)
    return res


def test_score_function_estimators_are_unbiased_and_concrete_is_not(quick):
    est = quick["testbed"]["estimators"]
    for label in UNBIASED:
        s = est[label]
        for k, bias, floor in zip(s["k"], s["relative_bias"], s["noise_floor"], strict=True):
            assert bias < 2.5 * floor, (label, k, bias, floor)
    s = est["Concrete (ELBO)"]
    assert s["relative_bias"][-1] > 4 * s["noise_floor"][-1], s


def test_vimco_variance_below_reinforce_and_the_baselines_cut_it(quick):
    est = quick["testbed"]["estimators"]
    at = {label: dict(zip(s["k"], range(len(s["k"])), strict=True)) for label, s in est.items()}

    def var(label, k):
        j = at[label][k]
        return est[label]["total_variance"][j], est[label]["total_variance_se"][j]

    v, v_se = var("VIMCO (IWAE)", 5)
    for other in ("REINFORCE (IWAE)", "REINFORCE (ELBO)"):
        w, w_se = var(other, 5)
        assert w - v > 4 * (v_se + w_se), (other, v, w)
    plain, plain_se = var("REINFORCE (ELBO)", 5)
    for label in ("REINFORCE + running average", "REINFORCE + leave-one-out", "NVIL (ELBO)"):
        w, w_se = var(label, 5)
        assert plain - w > 4 * (plain_se + w_se), label


def test_concrete_bias_falls_and_variance_grows_as_the_temperature_falls(quick):
    c = quick["testbed"]["concrete"]
    hot, cold = (
        c["temperatures"].index(max(c["temperatures"])),
        c["temperatures"].index(min(c["temperatures"])),
    )
    se = c["relative_bias_se"][hot] + c["relative_bias_se"][cold]
    assert c["relative_bias"][hot] - c["relative_bias"][cold] > 4 * se
    var_se = c["total_variance_se"][hot] + c["total_variance_se"][cold]
    assert c["total_variance"][cold] - c["total_variance"][hot] > 4 * var_se


def test_old_faithful_fits_climb_towards_the_em_optimum(quick):
    fa = quick["faithful"]
    assert fa["em_from_start"] == pytest.approx(fa["em_optimum"], abs=1e-3)
    for label, fit in fa["fits"].items():
        curve = fit["log_likelihood"]
        assert curve[-1] > curve[0] + 0.5, label  # from -3.38 nats/point
        assert max(curve) < fa["em_optimum"] + 1e-3, label  # EM's optimum is the maximum
