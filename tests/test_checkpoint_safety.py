"""Reading a checkpoint never imports, resolves or calls anything named in it (issue 17).

A checkpoint from someone else is data. Each entry point that reads one (``load_model``,
``train_vae(resume=True)``, the command line's ``--resume``, the experiments'
resume-or-train helper) is handed files whose header names a sentinel: a callable, a
module whose import leaves a mark, an attribute walk to ``os.system``, a class that is
not one of the library's dataclasses. Each raises ``CheckpointError``, and the sentinel
never fires (it would write a flag file, and it is importable: the test puts it on
``sys.path``, so only the library's restraint keeps it silent).
"""

import hashlib
import io
import json
import struct
import sys

import equinox as eqx
import jax
import numpy as np
import pytest
from test_train import SMALL, _prototype_images

import lvm
from lvm.train import CheckpointError, TrainConfig, load_model, read_metadata, train_vae
from lvm.train.checkpoint import FORMAT_VERSION, MAGIC

SENTINEL = """
import os, pathlib
pathlib.Path(os.environ["LVM_SENTINEL_FLAG"]).write_text("imported")

def fire(*args, **kwargs):
    pathlib.Path(os.environ["LVM_SENTINEL_FLAG"]).write_text("called")
    return 0.0

class Boom:
    def __init__(self, *args, **kwargs):
        fire()

class Reduce:
    def __reduce__(self):
        return (fire, ())
"""


@pytest.fixture
def sentinel(tmp_path, monkeypatch):
    """A module ``lvm_sentinel`` on sys.path and the flag file it would write."""
    folder = tmp_path / "importable"
    folder.mkdir()
    (folder / "lvm_sentinel.py").write_text(SENTINEL)
    flag = tmp_path / "FIRED"
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("LVM_SENTINEL_FLAG", str(flag))
    sys.modules.pop("lvm_sentinel", None)
    yield flag
    assert not flag.exists(), f"the sentinel fired: {flag.read_text()}"
    assert "lvm_sentinel" not in sys.modules, "the sentinel module was imported"


def _fire():
    """What the pickled object array of the last test would call when unpickled."""
    import os
    import pathlib

    pathlib.Path(os.environ["LVM_SENTINEL_FLAG"]).write_text("unpickled")


class _Reduce:
    def __reduce__(self):
        return (_fire, ())


def _hostile_objectives(flag) -> dict[str, dict]:
    return {
        "a sentinel callable": {"function": "lvm_sentinel:fire"},
        "a module whose import sets a flag": {"type": "lvm_sentinel:Boom"},
        "an attribute walk to os.system": {
            "type": "lvm.train.loop:os.system",
            "command": f"echo PWNED > {flag}",
        },
        "os.system by its module": {"type": "os:system", "command": f"echo PWNED > {flag}"},
        "a non-dataclass class with arguments": {
            "type": "subprocess:Popen",
            "args": ["touch", str(flag)],
        },
        "a partial of a sentinel": {"function": "lvm_sentinel:fire", "args": [1], "keywords": {}},
    }


def _write(path, header: dict, payload: bytes) -> None:
    header = {
        **header,
        "format_version": FORMAT_VERSION,
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "payload_bytes": len(payload),
        "model_bytes": header.get("model_bytes", len(payload)),
    }
    data = json.dumps(header).encode()
    path.write_bytes(MAGIC + struct.pack("<Q", len(data)) + data + payload)


def _with_objective(genuine, path, objective: dict) -> None:
    """``genuine``'s checkpoint, its payload intact, with ``objective`` in its header."""
    header, payload = read_metadata(genuine)
    header = {**header, "config": {**header["config"], "objective": objective}}
    _write(path, header, payload)


@pytest.fixture(scope="module")
def images():
    return _prototype_images(200)


@pytest.fixture(scope="module")
def genuine(images, tmp_path_factory):
    """A real one-epoch checkpoint of the small VAE."""
    out = tmp_path_factory.mktemp("genuine")
    config = TrainConfig(objective=lvm.ELBO(1), num_epochs=1, eval_every=0)
    train_vae(config, images, model_config=SMALL, out_dir=out, progress=False)
    return out / "checkpoint.eqx"


def test_load_model_never_runs_what_the_header_names(sentinel, genuine, tmp_path):
    path = tmp_path / "evil.eqx"
    for what, objective in _hostile_objectives(sentinel).items():
        # The attacker's file of the issue: the right magic line, a hostile config, no arrays.
        _write(path, {"config": {"objective": objective}, "model": {"type": "VAE"}}, b"")
        with pytest.raises(CheckpointError):
            load_model(path)
        # With real arrays the model loads: load_model never reads the objective at all.
        _with_objective(genuine, path, objective)
        loaded = load_model(path)
        assert isinstance(loaded, lvm.VAE), what
        # A model record naming a class of the attacker's is refused, not imported.
        header, payload = read_metadata(genuine)
        for record in (
            {"type": "lvm_sentinel:Boom", "config": {}},
            {"type": "user", "class": "lvm_sentinel:Boom"},
            {"type": "VAE", "config": {"latent_dim": {"function": "lvm_sentinel:fire"}}},
            ["VAE"],
        ):
            _write(path, {**header, "model": record}, payload)
            with pytest.raises(CheckpointError):
                load_model(path)


def test_resume_refuses_a_checkpoint_naming_code(sentinel, genuine, images, tmp_path):
    config = TrainConfig(objective=lvm.ELBO(1), num_epochs=2, eval_every=0)
    for what, objective in _hostile_objectives(sentinel).items():
        out = tmp_path / what.replace(" ", "_")
        out.mkdir()
        _with_objective(genuine, out / "checkpoint.eqx", objective)
        before = (out / "checkpoint.eqx").read_bytes()
        with pytest.raises(CheckpointError, match="objective"):
            train_vae(config, images, model_config=SMALL, out_dir=out, resume=True, progress=False)
        assert (out / "checkpoint.eqx").read_bytes() == before
        assert not (out / "metrics.jsonl").exists()


def test_the_command_line_resume_refuses_a_checkpoint_naming_code(
    sentinel, genuine, images, tmp_path, monkeypatch
):
    import lvm.train.__main__ as cli
    from lvm.data.mnist import BinarizedMNIST

    monkeypatch.setattr(
        cli,
        "load_binarized_mnist",
        lambda **kw: BinarizedMNIST(images[:100], images[100:150], images[150:]),
    )
    args = ["--latent-dim", "4", "--hidden-sizes", "16", "--epochs", "2", "--resume"]
    for what, objective in _hostile_objectives(sentinel).items():
        out = tmp_path / what.replace(" ", "_")
        out.mkdir()
        _with_objective(genuine, out / "checkpoint.eqx", objective)
        with pytest.raises(SystemExit, match="CheckpointError"):
            cli.main([*args, "--eval-num-samples", "0", "--out-dir", str(out)])


def test_the_experiments_resume_or_train_helper_refuses_it(sentinel, genuine, tmp_path):
    sys.path.insert(0, "experiments")
    try:
        import _vae_runs as common
    finally:
        sys.path.remove("experiments")
    budget = common.Budget().quick()
    data = common.load_data(budget)
    config = common.train_config("vae_k1", budget, seed=0)
    model = common.model_config("vae_k1", budget)
    out = common.run_dir(tmp_path, "vae_k1", config, len(data.train), model)
    out.mkdir(parents=True)
    for objective in _hostile_objectives(sentinel).values():
        _with_objective(genuine, out / "checkpoint.eqx", objective)
        with pytest.raises(CheckpointError):
            common.trained("vae_k1", budget, data, seed=0, runs_dir=tmp_path)


def test_malformed_headers_raise_checkpoint_errors(genuine, tmp_path):
    header, payload = read_metadata(genuine)
    path = tmp_path / "bad.eqx"
    cases = {
        "a list": json.dumps([1, 2, 3]).encode(),
        "a string": b'"checkpoint"',
        "no payload_bytes": json.dumps({k: v for k, v in header.items() if k != "payload_bytes"}),
        "payload_bytes a string": json.dumps({**header, "payload_bytes": "12"}),
        "model_bytes past the payload": json.dumps({**header, "model_bytes": len(payload) + 1}),
        "format version as a bool": json.dumps({**header, "format_version": True}),
        "an old format": json.dumps({**header, "format_version": 1}),
        "deeply nested": b"[" * 100_000 + b"]" * 100_000,
    }
    for data in cases.values():
        data = data.encode() if isinstance(data, str) else data
        path.write_bytes(MAGIC + struct.pack("<Q", len(data)) + data + payload)
        with pytest.raises(CheckpointError):
            load_model(path)
    path.write_bytes(MAGIC + struct.pack("<Q", 10**9) + b"{}")
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(path)
    # A header that claims more epochs than were run, or none at all, is refused on resume.
    for epoch in (0, "1", None, 2.5):
        out = tmp_path / f"epoch_{epoch}"
        out.mkdir()
        _write(out / "checkpoint.eqx", {**header, "epoch": epoch}, payload)
        with pytest.raises(CheckpointError, match="epoch"):
            train_vae(
                TrainConfig(objective=lvm.ELBO(1), num_epochs=2, eval_every=0),
                _prototype_images(200),
                model_config=SMALL,
                out_dir=out,
                resume=True,
                progress=False,
            )


def test_an_object_array_in_the_payload_is_refused_unpickled(sentinel, genuine, tmp_path):
    """``tree_deserialise_leaves`` reads ``.npy`` bytes; one holding a pickled object array
    (here one whose unpickling calls the sentinel) must be refused, never unpickled."""
    hostile = np.empty(1, dtype=object)
    hostile[0] = _Reduce()
    buffer = io.BytesIO()
    np.save(buffer, hostile, allow_pickle=True)
    hostile_leaf = buffer.getvalue()
    assert b"_fire" in hostile_leaf  # unpickling these bytes would call _fire

    template = lvm.VAE(SMALL, key=jax.random.key(0))
    leaves = jax.tree.leaves(eqx.filter(template, eqx.is_array))
    parts = []
    for i, leaf in enumerate(leaves):
        one = io.BytesIO()
        np.save(one, np.asarray(leaf))
        parts.append(hostile_leaf if i == 1 else one.getvalue())
    model_part = b"".join(parts)
    header, payload = read_metadata(genuine)
    rest = payload[header["model_bytes"] :]
    path = tmp_path / "object.eqx"
    _write(path, {**header, "model_bytes": len(model_part)}, model_part + rest)
    for like in (None, template):
        with pytest.raises(CheckpointError, match="unreadable|does not match"):
            load_model(path, like=like)
