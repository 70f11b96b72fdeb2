"""Run every GMM experiment script with --quick: its files, finite numbers, and the README's claims.

The claims (README, GMM section, and each script's docstring) are deterministic numbers of
EM on Old Faithful, printed there to 3 or 4 decimals: each is asserted to half a unit of
its last printed digit. The quick runs use fewer restarts, which these claims survive.
"""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SCRIPTS = sorted(EXPERIMENTS.glob("gmm_*.py"))
if str(EXPERIMENTS) not in sys.path:  # the scripts import their helpers, experiments/_script.py
    sys.path.insert(0, str(EXPERIMENTS))


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _numbers(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _numbers(v)
    elif isinstance(tree, list | tuple):
        for v in tree:
            yield from _numbers(v)
    elif isinstance(tree, int | float) and not isinstance(tree, bool):
        yield float(tree)


def test_there_are_four_gmm_scripts():
    assert {p.stem for p in SCRIPTS} >= {
        "gmm_faithful_fit",
        "gmm_faithful_posterior",
        "gmm_1d_mixture",
        "gmm_bic",
    }


def test_gmm_scripts_import_neither_training_nor_tfds():
    """A GMM figure needs the EM code and the plotting helpers only: importing a script (in a
    fresh interpreter) loads neither ``lvm.train``, the VAE runs' helper, nor TFDS."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import importlib;"
        "[importlib.import_module(n) for n in sys.argv[2:]];"
        "print(sorted(m for m in ('lvm.train', '_vae_runs', 'tensorflow_datasets')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(EXPERIMENTS), *(p.stem for p in SCRIPTS)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]", out.stdout


def _bic_claims(out):
    # "BIC is lowest at K = 2 with full covariances" (2322.2; 2607.6 at K = 1).
    rows = out["results"]["full"]
    best = min(rows, key=lambda r: r["bic"])
    assert best["K"] == 2
    assert abs(best["bic"] - 2322.2) < 0.05
    assert abs(rows[0]["bic"] - 2607.6) < 0.05


def _posterior_claims(out):
    # "only 1 of 272 points has max p(z|x) < 0.9" (it gets 0.80); mean max posterior 0.999.
    assert out["num_points_below_confident"] == 1
    assert abs(out["min_max_posterior"] - 0.80) < 0.005
    assert abs(out["mean_max_posterior"] - 0.999) < 0.0005


def _fit_claims(out):
    # "the single Gaussian puts its peak density in the empty middle (-4.742 versus -4.155
    # nats/point)"; at the gap point its log-density is -3.86, the mixture's -8.43.
    single, mixture = out["models"]["single Gaussian"], out["models"]["mixture of 2"]
    assert abs(single["mean_log_likelihood_nats_per_point"] - (-4.742)) < 5e-4
    assert abs(mixture["mean_log_likelihood_nats_per_point"] - (-4.155)) < 5e-4
    assert abs(single["log_density_at_gap"] - (-3.86)) < 0.005
    assert abs(mixture["log_density_at_gap"] - (-8.43)) < 0.005


def _mixture_1d_claims(out):
    # "the components integrate to their weights (0.3, 0.5, 0.2) and p(x) to 1 (to 1e-6)".
    np.testing.assert_allclose(out["component_integrals"], [0.3, 0.5, 0.2], atol=1e-6)
    assert abs(out["marginal_integral"] - 1.0) < 1e-6


CLAIMS = {
    "gmm_bic": _bic_claims,
    "gmm_faithful_posterior": _posterior_claims,
    "gmm_faithful_fit": _fit_claims,
    "gmm_1d_mixture": _mixture_1d_claims,
}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_script_quick_run(script, tmp_path):
    module = _load(script)
    module.main(["--quick", "--seed", "1", "--out-dir", str(tmp_path)])
    for ext in ("png", "pdf", "json"):
        assert (tmp_path / f"{script.stem}.{ext}").stat().st_size > 0
    out = json.loads((tmp_path / f"{script.stem}.json").read_text())
    numbers = list(_numbers(out))
    assert numbers and all(math.isfinite(v) for v in numbers)
    CLAIMS[script.stem](out)
