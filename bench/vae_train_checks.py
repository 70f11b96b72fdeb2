"""What the training step's non-finite checks cost: epochs of ``make_train_epoch`` now against
the same function at a git revision from before them, interleaved in one process.

The checks: every step's ``finite`` flag (``isfinite`` of the loss and of the gradient norm
the step computes anyway), and, with ``--skip``, ``optax.apply_if_finite`` around Adam (the
``nonfinite="skip"`` policy, one more pass over the gradient). The reference is
``lvm/train/step.py`` as of ``--rev`` (default ``0913c01``, the commit before the checks),
read with ``git show`` and loaded beside the current module; both build the IWAE paper's
784-200-200-50 VAE with Adam (lr 1e-3, eps 1e-4), batch 100, on the same random binary
images with the same keys. Epochs of ``--steps`` minibatches alternate between the two
(the order flips every pair), so load that drifts on a shared machine hits both alike; the
JSON line gives the median and quartiles of the per-pair ratio now / before.

    python bench/vae_train_checks.py               # k = 1 and 5, ~2 minutes on 2 cores
    python bench/vae_train_checks.py --skip        # the skip policy instead
"""

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lvm
from lvm.models.vae import VAE, VAEConfig
from lvm.train import make_train_epoch

REPO = Path(__file__).resolve().parents[1]


def load_step_module(rev: str):
    """``lvm/train/step.py`` at git revision ``rev``, as a module beside the current one."""
    source = subprocess.run(
        ["git", "show", f"{rev}:lvm/train/step.py"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "step_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("step_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(k: int, steps: int, pairs: int, *, before, skip: bool) -> dict:
    images = (np.random.default_rng(0).random((steps * 100, 784)) < 0.13).astype(np.float32)
    images = jnp.asarray(images)
    objective = lvm.ELBO(1) if k == 1 else lvm.IWAE(k)
    runs = {}
    for name, factory, extra in (
        ("before", before.make_train_epoch, {}),
        ("now", make_train_epoch, {"max_consecutive_skips": 10} if skip else {}),
    ):
        init, epoch = factory(objective, optax.adam(1e-3, eps=1e-4), batch_size=100, **extra)
        state, _ = epoch(jax.random.key(0), init(VAE(VAEConfig(), key=jax.random.key(0))), images)
        runs[name] = [epoch, jax.block_until_ready(state)]
    seconds = {"before": [], "now": []}
    for p in range(pairs):
        for name in ("before", "now") if p % 2 == 0 else ("now", "before"):
            epoch, state = runs[name]
            start = time.perf_counter()
            state, info = jax.block_until_ready(epoch(jax.random.key(p + 1), state, images))
            seconds[name].append(time.perf_counter() - start)
            runs[name][1] = state
    ratios = np.asarray(seconds["now"]) / np.asarray(seconds["before"])
    return {
        "bench": "vae_train_checks",
        "policy": "skip" if skip else "raise",
        "num_samples": k,
        "steps_per_epoch": steps,
        "pairs": pairs,
        "median_ratio_now_over_before": round(float(np.median(ratios)), 3),
        "ratio_quartiles": np.quantile(ratios, [0.25, 0.75]).round(3).tolist(),
        "best_ms_per_step_before": round(1e3 * min(seconds["before"]) / steps, 3),
        "best_ms_per_step_now": round(1e3 * min(seconds["now"]) / steps, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="0913c01", help="git revision of the reference step")
    parser.add_argument("--skip", action="store_true", help="time the skip policy")
    parser.add_argument("--pairs", type=int, default=30)
    args = parser.parse_args()
    before = load_step_module(args.rev)
    print(json.dumps({"bench": "environment", "jax": jax.__version__, "rev": args.rev}))
    for k, steps in ((1, 100), (5, 50)):
        print(json.dumps(measure(k, steps, args.pairs, before=before, skip=args.skip)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
