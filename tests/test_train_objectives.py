"""Any function with the estimator signature is a training objective: here the variational
Rényi bound (Li & Turner, 2016), written in this file and not in lvm, trains, checkpoints,
resumes and runs from the command line; configs of older checkpoints still resume."""

import dataclasses
import functools
import json

import jax
import numpy as np
import pytest
from test_train import SMALL, _prototype_images

import lvm
from lvm.train import (
    CheckpointError,
    TrainConfig,
    load_model,
    objective_from_dict,
    objective_to_dict,
    read_metadata,
    save_checkpoint,
    train_vae,
)
from lvm.train.config import SpecError


def renyi_bound(key, log_joint, proposal, x, *, alpha, num_samples=5):
    r"""The variational Rényi bound, :math:`\mathcal L_\alpha = \frac{1}{1-\alpha} \log \frac1k
    \sum_{i=1}^k w_i^{1-\alpha}` with :math:`w_i = p(x, z_i) / q(z_i)`, :math:`z_i \sim q`
    (``num_samples`` = k): the IWAE bound at α = 0, the ELBO as α → 1."""
    log_w = lvm.log_weights(key, log_joint, proposal, x, num_samples=num_samples)
    return lvm.log_mean_exp((1.0 - alpha) * log_w) / (1.0 - alpha)


def renyi_half(key, log_joint, proposal, x):
    """The Rényi bound with α = 0.5 and k = 5, as a plain function (for the command line)."""
    return renyi_bound(key, log_joint, proposal, x, alpha=0.5)


#: One object, so that every test training with it shares one compiled epoch.
RENYI_HALF = functools.partial(renyi_bound, alpha=0.5)


@dataclasses.dataclass(frozen=True)
class ScaledELBO:
    """A user's dataclass objective: ``scale`` times the ELBO."""

    scale: float = 1.0

    def __call__(self, key, log_joint, proposal, x):
        return self.scale * lvm.elbo(key, log_joint, proposal, x)


@pytest.fixture(scope="module")
def images():
    return _prototype_images(400)


def _config(**kwargs) -> TrainConfig:
    defaults = dict(objective=RENYI_HALF, num_epochs=2, checkpoint_every=1, eval_every=0)
    return TrainConfig(**(defaults | kwargs))


def _train(config, x, **kwargs):
    return train_vae(config, x, model_config=SMALL, **kwargs)


def _bytes(tree) -> list[bytes]:
    return [np.asarray(leaf).tobytes() for leaf in jax.tree.leaves(tree)]


def test_the_renyi_bound_lies_between_the_elbo_and_the_iwae_bound(images):
    """On the same particles, ELBO <= L_0.5 <= L_5 (the power mean is monotone): it is the
    bound its docstring says, not a typo that trains just as well."""

    @jax.jit
    def bounds(model, x):
        args = (jax.random.key(1), model.log_joint, model.encode(x), x)
        return (
            lvm.elbo(*args, num_samples=5),
            RENYI_HALF(*args),
            lvm.iwae_bound(*args, num_samples=5),
            renyi_bound(*args, alpha=0.0),
        )

    elbo, renyi, iwae, renyi_zero = bounds(lvm.VAE(SMALL, key=jax.random.key(0)), images[0])
    assert elbo < renyi < iwae
    np.testing.assert_allclose(renyi_zero, iwae, rtol=1e-6)


def test_a_user_bound_trains_checkpoints_and_resumes(images, tmp_path):
    uninterrupted = _train(_config(), images, progress=False)
    assert uninterrupted.history[1]["train_bound"] > uninterrupted.history[0]["train_bound"]

    _train(_config(num_epochs=1), images, out_dir=tmp_path, progress=False)
    header, _ = read_metadata(tmp_path / "checkpoint.eqx")
    recorded = {"function": "test_train_objectives:renyi_bound", "keywords": {"alpha": 0.5}}
    assert header["config"]["objective"] == recorded
    assert json.loads((tmp_path / "config.json").read_text())["config"]["objective"] == recorded
    resumed = _train(_config(), images, out_dir=tmp_path, resume=True, progress=False)
    assert _bytes(resumed.state) == _bytes(uninterrupted.state)
    assert _bytes(load_model(tmp_path / "checkpoint.eqx")) == _bytes(uninterrupted.model)


def test_a_resume_with_another_objective_is_refused_before_anything_is_written(images, tmp_path):
    _train(_config(num_epochs=1), images, out_dir=tmp_path, progress=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    others = [
        functools.partial(renyi_bound, alpha=0.7),
        renyi_half,
        lvm.IWAE(5),
        ScaledELBO(2.0),
    ]
    for other in others:
        with pytest.raises(CheckpointError, match=r"incompatible run: objective: checkpoint"):
            _train(_config(objective=other), images, out_dir=tmp_path, resume=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # config.json too


def test_objectives_as_json():
    specs = {
        lvm.IWAE(5, chunk_size=2): {
            "type": "IWAE",
            "num_samples": 5,
            "chunk_size": 2,
            "gradient": "reparam",
        },
        lvm.IWAE(5, gradient="dreg"): {
            "type": "IWAE",
            "num_samples": 5,
            "chunk_size": None,
            "gradient": "dreg",
        },
        ScaledELBO(3.0): {"type": "test_train_objectives:ScaledELBO", "scale": 3.0},
        renyi_half: {"function": "test_train_objectives:renyi_half"},
        functools.partial(renyi_bound, alpha=0.25, num_samples=3): {
            "function": "test_train_objectives:renyi_bound",
            "keywords": {"alpha": 0.25, "num_samples": 3},
        },
    }
    for objective, spec in specs.items():
        assert objective_to_dict(objective) == spec
    for objective in list(specs)[:2]:  # the library's are rebuilt, from the registry
        assert objective_from_dict(json.loads(json.dumps(specs[objective]))) == objective
    for objective in list(specs)[2:]:  # a user's is a record only: never imported again
        with pytest.raises(SpecError, match="never rebuilt from a file"):
            objective_from_dict(specs[objective])
    assert objective_from_dict({"type": "ELBO"}) == lvm.ELBO(1)  # fields take their defaults
    ais = lvm.AIS(2, schedule=(0.0, 0.5, 1.0))
    assert objective_from_dict(objective_to_dict(ais)) == ais  # a tuple field comes back a tuple


def test_objectives_that_cannot_be_imported_again_are_refused_clearly(images, tmp_path):
    def local_bound(key, log_joint, proposal, x):
        return lvm.elbo(key, log_joint, proposal, x)

    for objective in (lambda key, log_joint, proposal, x: 0.0, local_bound):
        with pytest.raises(TypeError, match="lambda or a function defined inside another"):
            objective_to_dict(objective)
        with pytest.raises(TypeError, match="lambda or a function defined inside another"):
            _train(_config(objective=objective), images, out_dir=tmp_path, progress=False)
    with pytest.raises(TypeError, match="not JSON values"):
        objective_to_dict(functools.partial(renyi_bound, alpha=np.float32(0.5)))
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_written_before_new_config_fields_still_resumes(images, tmp_path):
    """Configs are compared after reading both through TrainConfig: a field added since,
    at its default, does not make an old run incompatible."""
    config = _config(num_epochs=1)
    uninterrupted = _train(dataclasses.replace(config, num_epochs=2), images, progress=False)
    one_dir = tmp_path / "one"
    one = _train(config, images, out_dir=one_dir, progress=False)
    old = config.to_dict()
    for name in ("nonfinite", "max_consecutive_skips"):  # added by this change
        del old[name]
    header = dict(read_metadata(one_dir / "checkpoint.eqx")[0])
    save_checkpoint(tmp_path / "checkpoint.eqx", one.state, metadata={**header, "config": old})
    resumed = _train(
        dataclasses.replace(config, num_epochs=2),
        images,
        out_dir=tmp_path,
        resume=True,
        progress=False,
    )
    assert _bytes(resumed.state) == _bytes(uninterrupted.state)


def test_the_command_line_trains_an_importable_function(images, tmp_path, monkeypatch):
    import lvm.train.__main__ as cli
    from lvm.data.mnist import BinarizedMNIST

    monkeypatch.setattr(
        cli,
        "load_binarized_mnist",
        lambda **kw: BinarizedMNIST(images[:200], images[200:300], images[300:350]),
    )
    args = ["--latent-dim", "4", "--hidden-sizes", "16", "--epochs", "1"]
    args += ["--eval-num-samples", "0", "--out-dir", str(tmp_path)]
    summary = cli.main([*args, "--objective", "test_train_objectives:renyi_half"])
    assert summary["config"]["objective"] == {"function": "test_train_objectives:renyi_half"}
    assert np.isfinite(summary["final"]["train_bound"])
    header, _ = read_metadata(tmp_path / "checkpoint.eqx")
    assert header["config"]["objective"] == summary["config"]["objective"]
    with pytest.raises(SystemExit, match="cannot import"):
        cli.main([*args, "--objective", "test_train_objectives:no_such_bound"])
    with pytest.raises(SystemExit, match="--num-samples applies"):
        cli.main([*args, "--objective", "test_train_objectives:renyi_half", "--num-samples", "3"])
