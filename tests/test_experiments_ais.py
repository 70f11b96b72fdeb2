"""Smoke test: ``experiments/estimators_ais_vs_is.py --quick`` runs and its claims hold on the quick run.

The quick run trains the two tiny models on 500 binarized MNIST images for one epoch
(as the ``vae_*`` smoke tests do), then compares the ELBO, IS and AIS on 6 test images and
runs BDMC on 6 images simulated from each decoder.
"""

import importlib
import json
import math
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
NAME = "estimators_ais_vs_is"


def _numbers(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _numbers(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _numbers(value)
    elif isinstance(tree, int | float) and not isinstance(tree, bool):
        yield float(tree)


def test_ais_vs_is_quick(tmp_path):
    if str(EXPERIMENTS) not in sys.path:
        sys.path.insert(0, str(EXPERIMENTS))
    script = importlib.import_module(NAME)
    argv = ["--quick", "--out-dir", str(tmp_path), "--runs-dir", str(tmp_path / "runs")]
    returned = script.main(argv)
    for suffix in ("png", "pdf", "json"):
        assert (tmp_path / f"{NAME}.{suffix}").stat().st_size > 0
    results = json.loads((tmp_path / f"{NAME}.json").read_text())
    numbers = list(_numbers(results))
    assert numbers and all(math.isfinite(v) for v in numbers)
    assert results["results"].keys() == returned["results"].keys() == {"vae_k1", "iwae_k50"}

    config = results["config"]
    for r in results["results"].values():
        test, simulated = r["test"], r["simulated"]
        # The cost model: (T - 1) L + 1 gradient evaluations per chain; IS k costs k.
        for row in test["ais"]:
            assert row["cost"] == (row["num_steps"] - 1) * config["num_leapfrog_steps"] + 1
        assert [row["cost"] for row in test["is"]] == config["is_num_samples"]
        # Binary images: every estimate is below 0; the longest AIS beats the ELBO.
        assert all(row["mean"] < 0 for row in test["is"] + test["ais"])
        assert test["ais"][-1]["mean"] > test["elbo"]["mean"]
        # The reference column is IS with the largest k, so its paired difference is 0.
        assert test["is"][-1]["minus_reference"] == pytest.approx(0.0, abs=1e-9)
        assert r["is_below_best_ais"] == pytest.approx(
            test["ais"][-1]["mean"] - test["is"][-1]["mean"], abs=1e-4
        )
        # BDMC: lower below upper on average, at every T.
        for row in simulated["bdmc"]:
            assert row["lower"]["mean"] < row["upper"]["mean"]
            assert row["gap"] == pytest.approx(
                row["upper"]["mean"] - row["lower"]["mean"], abs=1e-4
            )
