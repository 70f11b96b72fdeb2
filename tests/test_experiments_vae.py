"""Smoke tests: every ``experiments/vae_*.py`` runs with ``--quick`` and writes finite numbers.

The quick runs read the real binarized MNIST (prepared once by ``lvm.data.mnist`` from
``../shared/data/binarized_mnist`` or ``$LVM_MNIST_MANUAL_DIR``) and train tiny models on
500 images for one epoch.
"""

import dataclasses
import importlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import scipy.stats

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SCRIPTS = sorted(path.stem for path in EXPERIMENTS.glob("vae_*.py"))


def _script(name: str):
    if str(EXPERIMENTS) not in sys.path:
        sys.path.insert(0, str(EXPERIMENTS))
    return importlib.import_module(name)


def _numbers(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _numbers(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _numbers(value)
    elif isinstance(tree, int | float) and not isinstance(tree, bool):
        yield float(tree)


def _run_quick(name: str, out_dir: Path) -> dict:
    runs_dir = out_dir / "vae_runs"
    _script(name).main(["--quick", "--out-dir", str(out_dir), "--runs-dir", str(runs_dir)])
    for suffix in ("png", "pdf", "json"):
        assert (out_dir / f"{name}.{suffix}").stat().st_size > 0
    return json.loads((out_dir / f"{name}.json").read_text())


def _assert_finite(results: dict) -> None:
    numbers = list(_numbers(results))
    assert numbers and all(math.isfinite(v) for v in numbers)


def test_every_script_is_smoke_tested():
    assert SCRIPTS == [
        "vae_faithful_infinite_mixture",
        "vae_inference_gap",
        "vae_latent2d",
        "vae_learning_curves",
        "vae_loglik_table",
        "vae_samples",
    ]


def test_faithful_infinite_mixture_quick(tmp_path):
    """``vae_faithful_infinite_mixture --quick`` (Old Faithful, no MNIST): the claims that hold
    after 30 epochs: two Gaussians beat one on the held-out points, and so does the VAE, each
    by more than 4 paired standard errors; the held-out split is the 72 points it says."""
    _script("vae_faithful_infinite_mixture").main(["--quick", "--out-dir", str(tmp_path)])
    results = json.loads((tmp_path / "vae_faithful_infinite_mixture.json").read_text())
    _assert_finite(results)
    assert (results["num_train"], results["num_test"]) == (200, 72)
    models = results["models"]
    gmm_gain = models["GMM, K=2"]["test_log_px"] - models["GMM, K=1"]["test_log_px"]
    assert gmm_gain > 0.2  # 0.43 nats/point measured: EM on a fixed split, deterministic
    vae_gain, vae_gain_se = models["GMM, K=1"]["vae_minus_this_paired"]  # VAE - GMM K=1
    assert vae_gain > 4 * vae_gain_se, (vae_gain, vae_gain_se)


def test_latent2d_quick(tmp_path):
    results = _run_quick("vae_latent2d", tmp_path)
    _assert_finite(results)
    assert len(results["encoded_mean"]) == 2
    assert 0.0 <= results["fraction_inside_grid"] <= 1.0
    assert all(-1.0 <= c <= 1.0 for c in results["corr_ink_z"])


def test_loglik_table_quick(tmp_path):
    results = _run_quick("vae_loglik_table", tmp_path)
    _assert_finite(results)
    runs = _script("_vae_runs")
    rows = results["rows"]
    assert list(rows) == [
        "vae_k1",
        "vae_k5",
        "vae_k50",
        "iwae_k5",
        "iwae_k50",
        "iwae_k5_dreg",
        "iwae_k50_dreg",
        "sbn_nvil",
        "sbn_vimco_k5",
        "sbn_concrete",
        "vae_iaf_k1",
        "vae_vamp_k1",
        "vae2l_k1",
        "iwae2l_k5",
    ]
    discrete = {"sbn_nvil", "sbn_vimco_k5", "sbn_concrete"}
    budget = results["config"]["budget"]
    assert rows["vae_vamp_k1"]["latent_dim"] == budget["latent_dim"]
    assert rows["vae2l_k1"]["latent_dim"] == sum(budget["two_layer_latent_dims"])
    for name in ("vae2l_k1", "iwae2l_k5"):
        # Active units of a two-layer model: z1 and z2 counted apart, "a+b" in the table.
        a, b = rows[name]["active_units_by_layer"]
        assert a + b == rows[name]["active_units"]
        assert 0 <= a <= budget["two_layer_latent_dims"][0]
        assert 0 <= b <= budget["two_layer_latent_dims"][1]
        assert f"| {a}+{b} |" in (tmp_path / "vae_loglik_table.md").read_text()
    per_image = {name: np.asarray(v) for name, v in results["log_px_per_image"].items()}
    for name, base in (("iwae_k5_dreg", "iwae_k5"), ("iwae_k50_dreg", "iwae_k50")):
        # DReG against plain IWAE of the same k, rechecked with scipy's paired t-test.
        row = rows[name]
        assert row["paired_with"] == base
        paired = scipy.stats.ttest_rel(per_image[name], per_image[base])
        np.testing.assert_allclose(
            row["log_px_minus_paired"] / row["log_px_minus_paired_sem"], paired.statistic, rtol=1e-9
        )
    for name, row in rows.items():
        if name in discrete:  # binary latents: no posterior mean, hence no active units
            assert row["active_units"] is None and row["ais_log_px"] is None
            assert math.isfinite(row["train_elbo"]) and math.isfinite(row["last_epoch_train_bound"])
        else:
            assert 0 <= row["active_units"] <= row["latent_dim"]
        assert per_image[name].shape == (results["num_test_images"],)
        np.testing.assert_allclose(row["log_px"], per_image[name].mean(), rtol=1e-12)
        np.testing.assert_allclose(row["log_px_sem"], scipy.stats.sem(per_image[name]), rtol=1e-9)
        if name == "vae_k1":
            continue
        # The paired difference, recomputed by scipy's paired t-test: t = mean(d) / sem(d).
        paired = scipy.stats.ttest_rel(per_image[name], per_image["vae_k1"])
        diff, diff_sem = row["log_px_minus_vae_k1"], row["log_px_minus_vae_k1_sem"]
        np.testing.assert_allclose(diff / diff_sem, paired.statistic, rtol=1e-9)
        np.testing.assert_allclose(
            diff, np.mean(per_image[name]) - np.mean(per_image["vae_k1"]), atol=1e-9
        )
    table = (tmp_path / "vae_loglik_table.md").read_text()
    # Every published number of the run registry is rendered, beside the caveat.
    published = [v for v, _ in runs.PUBLISHED.values() if v is not None]
    assert published and all(f"{v:.2f}" in table for v in published)
    assert "static binarization" in table
    # The AIS column and IS on the same images: the paired difference is their difference.
    assert "AIS T=10" in table and results["ais_num_images"] == 10
    assert set(results["ais_log_px_per_image"]) == set(rows) - discrete
    for name, row in rows.items():
        if name in discrete:
            continue
        ais = np.asarray(results["ais_log_px_per_image"][name])
        same_images = per_image[name][: len(ais)]
        assert ais.shape == (10,)
        paired = scipy.stats.ttest_rel(ais, same_images)
        np.testing.assert_allclose(
            row["ais_minus_is"] / row["ais_minus_is_sem"], paired.statistic, rtol=1e-9
        )
        np.testing.assert_allclose(row["is_subset_log_px"], same_images.mean(), rtol=1e-12)
    assert "IWAE, k=50, DReG − IWAE, k=50" in table
    # The published numbers of the binary-latent rows are training ELBOs: in the note under
    # the table, never in the published log p(x) column.
    assert "TRAINING ELBOs" in table and "NVIL -101.5" in table
    for line in table.splitlines():
        if line.startswith("| 200 binary z"):
            assert line.count("—") >= 4 and "-101.5" not in line and "-102.2" not in line


def test_inference_gap_quick(tmp_path):
    """``vae_inference_gap --quick``: the gaps add up to the inference gap, every paired s.e. is
    scipy's, the IAF run's own family is the flow, and AIS, IS and every bound score binary
    images below 0."""
    results = _run_quick("vae_inference_gap", tmp_path)
    _assert_finite(results)
    rows, per_image = results["rows"], results["per_image"]
    assert list(rows) == ["vae_k1", "vae_iaf_k1"]
    assert [rows[r]["own_family"] for r in rows] == ["gaussian", "flow"]
    n = results["num_images"]
    for run, row in rows.items():
        v = {k: np.asarray(a) for k, a in per_image[run].items()}
        assert all(a.shape == (n,) for a in v.values())
        assert all(np.all(a < 0) for a in v.values())  # binary images: p(x) <= 1
        best = v["best_flow"] if row["own_family"] == "flow" else v["best_gaussian"]
        for name, a, b in (
            ("approximation_gap", v["ais"], best),
            ("amortization_gap", best, v["amortized"]),
            ("inference_gap", v["ais"], v["amortized"]),
            ("ais_minus_is", v["ais"], v["is"]),
        ):
            np.testing.assert_allclose(row[name]["mean"], np.mean(a - b), rtol=1e-9)
            t = scipy.stats.ttest_rel(a, b).statistic
            np.testing.assert_allclose(row[name]["mean"] / row[name]["sem"], t, rtol=1e-9)
        total = row["approximation_gap"]["mean"] + row["amortization_gap"]["mean"]
        np.testing.assert_allclose(total, row["inference_gap"]["mean"], rtol=1e-9)
        traces = results["traces"][run]
        assert len(traces["flow"]) == len(traces["gaussian"]) == results["config"]["opt_num_steps"]
    table = (tmp_path / "vae_inference_gap.md").read_text()
    assert "approximation gap" in table and "VAE, k=1, IAF q (flow)" in table


def test_curves_and_samples_share_runs(tmp_path):
    """The samples script loads the runs the learning-curve script trained, without training."""
    curves = _run_quick("vae_learning_curves", tmp_path)
    _assert_finite(curves)
    assert curves["epochs"] == {"vae_k1": 1, "iwae_k5": 1, "iwae_k50": 1}
    runs = {p.name.split("-")[0]: p / "checkpoint.eqx" for p in (tmp_path / "vae_runs").iterdir()}
    assert set(runs) == {"vae_k1", "iwae_k5", "iwae_k50"}
    written = {name: path.stat().st_mtime_ns for name, path in runs.items()}

    samples = _run_quick("vae_samples", tmp_path)
    _assert_finite(samples)
    assert samples["epochs"] == {"vae_k1": 1, "iwae_k50": 1}
    assert {name: path.stat().st_mtime_ns for name, path in runs.items()} == written
    for value in samples["mean_sample_pixel_probability"].values():
        assert 0.0 < value < 1.0


def test_run_folder_ignores_only_the_epoch_settings(tmp_path):
    """Asking for more epochs extends a run; any other change of setting starts a new one."""
    from dataclasses import replace

    runs = _script("_vae_runs")
    budget = runs.Budget()
    base = runs.train_config("iwae_k50", budget, seed=0)
    model = runs.model_config("iwae_k50", budget)
    same = runs.run_dir(tmp_path, "iwae_k50", base, 50_000, model)
    longer = replace(base, num_epochs=3280, checkpoint_every=50)
    assert runs.run_dir(tmp_path, "iwae_k50", longer, 50_000, model) == same
    others = [
        replace(base, seed=1),
        replace(base, objective=runs.RUNS["vae_k50"]),
        replace(base, schedule="iwae"),
        replace(base, nonfinite="skip"),
    ]
    for config in others:
        assert runs.run_dir(tmp_path, "iwae_k50", config, 50_000, model) != same
    assert runs.run_dir(tmp_path, "iwae_k50", base, 500, model) != same
    other_model = replace(model, latent_dim=2)
    assert runs.run_dir(tmp_path, "iwae_k50", base, 50_000, other_model) != same

    # A new option with a default leaves existing runs' folders where they are.
    @dataclasses.dataclass(frozen=True)
    class Before:
        width: int = 200

    @dataclasses.dataclass(frozen=True)
    class After:
        width: int = 200
        depth: int = 2

    After.__name__ = "Before"
    before = runs.run_dir(tmp_path, "m", base, 500, Before())
    assert runs.run_dir(tmp_path, "m", base, 500, After()) == before
    assert runs.run_dir(tmp_path, "m", base, 500, After(depth=3)) != before


def test_ais_vs_is_quick(tmp_path):
    """``estimators_ais_vs_is --quick``: two tiny models, ELBO / IS / AIS on 6 test images, BDMC on
    6 simulated ones. Its claims that hold on a quick run: the longest AIS beats the ELBO, and
    BDMC's lower bound lies below its upper one. (The cost column restates the script's own
    formula, so it is not asserted here; tests/test_ais.py checks what AIS computes.)"""
    results = _run_quick("estimators_ais_vs_is", tmp_path)
    _assert_finite(results)
    assert results["results"].keys() == {"vae_k1", "iwae_k50"}
    config = results["config"]
    for r in results["results"].values():
        test, simulated = r["test"], r["simulated"]
        assert [row["num_samples"] for row in test["is"]] == config["is_num_samples"]
        assert test["ais"][-1]["mean"] > test["elbo"]["mean"]
        for row in simulated["bdmc"]:
            assert row["lower"]["mean"] < row["upper"]["mean"]
