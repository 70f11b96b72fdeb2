"""The default VAE training step at two revisions of lvm, timed side by side.

What a refactor costs: epochs of ``make_train_epoch`` (the IWAE paper's 784-200-200-50 VAE,
Adam lr 1e-3 eps 1e-4, batch 100, random binary images, the same keys) in two warm worker
processes, one importing lvm from this checkout and one from ``--rev`` (exported with
``git archive`` into a temporary folder), driven in turns from this process: epoch i runs in
one worker, then in the other, the order flipping every pair, so that load drifting on a
shared machine hits both alike. Each worker times its own epochs (``block_until_ready``);
the JSON line gives the median and quartiles of the per-pair ratio now / rev.

    python bench/vae_train_revisions.py --rev 8fdf7de        # k = 1 and 5, a few minutes

Worker mode (internal): ``python bench/vae_train_revisions.py --worker K STEPS`` reads one
line per epoch on stdin and answers with the seconds it took.
"""

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def worker(k: int, steps: int) -> None:
    import jax
    import jax.numpy as jnp
    import optax

    import lvm
    from lvm.models.vae import VAE, VAEConfig
    from lvm.train import make_train_epoch

    images = (np.random.default_rng(0).random((steps * 100, 784)) < 0.13).astype(np.float32)
    images = jnp.asarray(images)
    objective = lvm.ELBO(1) if k == 1 else lvm.IWAE(k)
    init, epoch = make_train_epoch(objective, optax.adam(1e-3, eps=1e-4), batch_size=100)
    state = init(VAE(VAEConfig(), key=jax.random.key(0)))
    state, _ = jax.block_until_ready(epoch(jax.random.key(0), state, images))  # compile
    print(json.dumps({"ready": lvm.__file__}), flush=True)
    for i, _ in enumerate(sys.stdin, 1):
        start = time.perf_counter()
        state, _ = jax.block_until_ready(epoch(jax.random.key(i), state, images))
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


def _export(rev: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"lvm-{rev}-"))
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "lvm"], cwd=REPO, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def _start(tree: Path, k: int, steps: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", str(k), str(steps)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=tempfile.gettempdir(),  # so that `import lvm` finds PYTHONPATH's, not ./lvm
    )
    ready = json.loads(proc.stdout.readline())
    assert ready["ready"].startswith(str(tree)), ready
    return proc


def _epoch(proc: subprocess.Popen) -> float:
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())["seconds"]


def measure(rev_tree: Path, k: int, steps: int, pairs: int) -> dict:
    procs = {"rev": _start(rev_tree, k, steps), "now": _start(REPO, k, steps)}
    seconds = {"rev": [], "now": []}
    try:
        for p in range(pairs):
            for name in ("rev", "now") if p % 2 == 0 else ("now", "rev"):
                seconds[name].append(_epoch(procs[name]))
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait(timeout=60)
    ratios = np.asarray(seconds["now"]) / np.asarray(seconds["rev"])
    return {
        "bench": "vae_train_revisions",
        "num_samples": k,
        "steps_per_epoch": steps,
        "pairs": pairs,
        "median_ratio_now_over_rev": round(float(np.median(ratios)), 3),
        "ratio_quartiles": np.quantile(ratios, [0.25, 0.75]).round(3).tolist(),
        "median_ms_per_step_rev": round(1e3 * float(np.median(seconds["rev"])) / steps, 3),
        "median_ms_per_step_now": round(1e3 * float(np.median(seconds["now"])) / steps, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="8fdf7de", help="git revision to compare against")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--worker", nargs=2, type=int, metavar=("K", "STEPS"))
    args = parser.parse_args()
    if args.worker:
        return worker(*args.worker)
    tree = _export(args.rev)
    load = os.getloadavg()[0]
    print(json.dumps({"bench": "environment", "rev": args.rev, "load_1min": round(load, 2)}))
    for k, steps in ((1, 100), (5, 50)):
        print(json.dumps(measure(tree, k, steps, args.pairs)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
