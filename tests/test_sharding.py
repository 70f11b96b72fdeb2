"""Data parallelism: on 4 forced host CPU devices the sharded step, epoch and evaluator equal one
device; 2 processes joined by JAX's distributed runtime train one epoch as one process does.

``--xla_force_host_platform_device_count`` must be set before jax is imported, so the
check runs in a fresh Python process and reports JSON back.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

SCRIPT = textwrap.dedent(
    """
    import json
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    jax.config.update("jax_numpy_rank_promotion", "raise")
    import lvm
    from lvm.evaluate import log_px
    from lvm.models.vae import VAE, VAEConfig
    from lvm.sharding import make_mesh
    from lvm.train import make_train_epoch, make_train_step

    assert jax.device_count() == 4, jax.devices()
    mesh4, mesh1 = make_mesh(), make_mesh(jax.devices()[:1])
    model = VAE(VAEConfig(data_dim=16, latent_dim=2, hidden_sizes=(8,)), key=jax.random.key(0))
    data = (jax.random.uniform(jax.random.key(1), (64, 16)) < 0.3).astype(jnp.float32)
    out = {}

    def run_step(mesh):
        init, step = make_train_step(lvm.IWAE(3), optax.adam(1e-2), mesh=mesh)
        state = init(model)
        step = eqx.filter_jit(step)
        for i in range(3):
            state, info = step(jax.random.key(i), state, data[:8])
        return state, info

    (s4, i4), (s1, i1) = run_step(mesh4), run_step(mesh1)
    out["step_devices"] = len(jax.tree.leaves(s4.params)[0].sharding.device_set)
    out["step_max_diff"] = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(jax.tree.leaves(s4), jax.tree.leaves(s1))
    )
    out["step_bound"] = [float(i4.bound), float(i1.bound)]

    def run_epoch(mesh):
        init, epoch = make_train_epoch(lvm.ELBO(2), optax.adam(1e-2), batch_size=8, mesh=mesh)
        state, infos = epoch(jax.random.key(7), init(model), data)
        return state, infos

    (e4, j4), (e1, j1) = run_epoch(mesh4), run_epoch(mesh1)
    out["epoch_max_diff"] = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(jax.tree.leaves(e4), jax.tree.leaves(e1))
    )
    out["epoch_bounds_max_diff"] = float(np.max(np.abs(np.asarray(j4.bound) - np.asarray(j1.bound))))

    x = np.asarray(data[:30])
    lp4 = log_px(jax.random.key(3), model, x, lvm.IWAE(40, chunk_size=8), batch_size=8, mesh=mesh4)
    lp1 = log_px(jax.random.key(3), model, x, lvm.IWAE(40, chunk_size=8), batch_size=8, mesh=mesh1)
    out["eval_max_diff"] = float(np.max(np.abs(lp4 - lp1)))
    try:
        make_train_epoch(lvm.ELBO(1), optax.adam(1e-2), batch_size=6, mesh=mesh4)
    except ValueError as err:
        out["indivisible_error"] = str(err)
    print("RESULT" + json.dumps(out))
    """
)


def _run_on_four_devices() -> dict:
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu"
    )
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


def test_sharded_step_epoch_and_evaluator_equal_one_device():
    """One test (one subprocess), so that pytest-xdist does not start the 4-device process twice."""
    result = _run_on_four_devices()
    assert result["step_devices"] == 4  # the state really lives on the 4-device mesh
    # Same particles (keys split per datapoint), same math; only the reduction order differs.
    assert result["step_max_diff"] < 1e-5
    assert abs(result["step_bound"][0] - result["step_bound"][1]) < 1e-4
    assert result["epoch_max_diff"] < 1e-5
    assert result["epoch_bounds_max_diff"] < 1e-3
    assert result["eval_max_diff"] < 1e-4
    assert "divisible by the number of devices 4" in result["indivisible_error"]


def test_two_processes_reproduce_the_one_process_epoch(tmp_path):
    """``examples/multiprocess_epoch.py`` in 2 processes joined by JAX's distributed runtime
    (localhost, gloo): each feeds only its half of every minibatch. Their replicated parameters
    are byte-identical to each other and equal, up to float32 round-off, to process 0's rerun of
    the same 6 steps alone on one device with the whole minibatches.

    Why not bytes: the all-reduce adds the two halves' gradient sums, one device sums all 20
    rows in one pass; float addition is not associative, so gradients differ by about 1e-7
    relative, and parameters after 6 Adam steps by about 1e-7 (measured 1.2e-7). The tolerance
    bounds what that can grow to: Adam (eps 1e-4) turns a gradient error dg into an update
    error of at most lr * dg / eps = 1e-2 * 1e-7 / 1e-4 = 1e-5 per step. A real fault (a process
    training on its half only, a sum instead of a mean) moves parameters by ~lr = 1e-2 per step.
    """
    sys.path.insert(0, str(Path(__file__).parent))
    from _multiprocess import REPO, run_processes

    outputs = run_processes(REPO / "examples" / "multiprocess_epoch.py", str(tmp_path))
    summaries = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    assert [s["process"] for s in summaries] == [0, 1]
    assert all(s["devices"] == 2 and s["processes"] == 2 for s in summaries)

    def load(name):
        with np.load(tmp_path / f"{name}.npz") as f:
            return [f[key] for key in sorted(f.files, key=lambda k: int(k.split("_")[1]))]

    p0, p1, one = load("params-P2-p0"), load("params-P2-p1"), load("params-reference")
    assert len(p0) == len(one) == 8  # 2 + 2 linear layers, weight and bias each
    for a, b, ref in zip(p0, p1, one, strict=True):
        assert a.tobytes() == b.tobytes()
        np.testing.assert_allclose(a, ref, rtol=0, atol=6 * 1e-5)
    # Training moved the parameters far beyond the tolerance, so the comparison can fail.
    assert summaries[0]["max_abs_change_in_training"] > 1e-2
