"""Smoke-run every GMM experiment script with --quick: it writes its PNG, PDF and finite numbers."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SCRIPTS = sorted(EXPERIMENTS.glob("gmm_*.py"))
if str(EXPERIMENTS) not in sys.path:  # the scripts import their shared experiments/_common.py
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


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_script_quick_run(script, tmp_path):
    module = _load(script)
    module.main(["--quick", "--seed", "1", "--out-dir", str(tmp_path)])
    for ext in ("png", "pdf", "json"):
        assert (tmp_path / f"{script.stem}.{ext}").stat().st_size > 0
    numbers = list(_numbers(json.loads((tmp_path / f"{script.stem}.json").read_text())))
    assert numbers and all(math.isfinite(v) for v in numbers)
