"""Checkpoints: one self-describing file of numbers, written atomically, verified when read.

Layout: the magic line ``LVMCKPT\\n``, an 8-byte little-endian header length, a UTF-8 JSON
header, then the payload: the model's arrays (:func:`equinox.tree_serialise_leaves` of the
model, ``model_bytes`` long), then the rest of the training state (optimizer state, step).
The header holds ``format_version``, ``payload_sha256``, ``payload_bytes``,
``model_bytes`` and the caller's metadata (the training config, the model's record, the
epoch).

**What reading a checkpoint can never do**: import a module, resolve a name or call
anything named in the file. The header is parsed as JSON and checked field by field; the
payload is read as ``.npy`` arrays with ``allow_pickle=False`` (an object array is refused)
into a template that the running code builds (``like``), whose structure, shapes and dtypes
must match. The SHA-256 detects corruption (a truncated or altered file), not tampering:
it sits in the header it protects. A malformed file raises :class:`CheckpointError` with the
path and the reason.

Writing is atomic: the bytes go to a temporary file ``.<name>.tmp<pid>`` beside ``path``,
which is flushed to disk and renamed over ``path``; a process killed at any moment leaves
either the old checkpoint or the new one, never a mix. Temporary files left by processes
that died before the rename are removed by the next save in that folder
(:func:`remove_stale_temporaries`). A state holding NaN or Inf is refused: a diverged run
never replaces a good checkpoint.
"""

import hashlib
import io
import json
import os
import re
import struct
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from lvm._checks import check_finite_tree
from lvm.sharding import host_value

MAGIC = b"LVMCKPT\n"
FORMAT_VERSION = 2
#: Header fields every checkpoint has, with their JSON types.
_REQUIRED = {
    "format_version": int,
    "payload_sha256": str,
    "payload_bytes": int,
    "model_bytes": int,
}
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>\d+)$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, truncated, malformed, of another format or
    incompatible with the template or the run."""


def _serialise(tree) -> bytes:
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, jax.tree.map(_to_host, tree))
    return buffer.getvalue()


def _to_host(leaf):
    # Replicated arrays of a multi-process run are not fully addressable: read this
    # host's copy (every copy is the same).
    return host_value(leaf) if isinstance(leaf, jax.Array) else leaf


def save_checkpoint(path: str | os.PathLike, state, *, metadata: dict) -> None:
    """Write ``state`` (a :class:`~lvm.train.step.TrainState`) and JSON-ready ``metadata``
    to ``path`` atomically (temporary file, fsync, rename).

    Raises ``ValueError`` (and leaves ``path`` as it was) if a floating leaf of ``state``
    holds NaN or Inf.
    """
    path = Path(path)
    check_finite_tree(state, f"refusing to write {path}: the state")
    model_part = _serialise(state.params)
    rest = _serialise((state.opt_state, state.step))
    payload = model_part + rest
    header = {
        **metadata,
        "format_version": FORMAT_VERSION,
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "payload_bytes": len(payload),
        "model_bytes": len(model_part),
    }
    header_bytes = json.dumps(header, sort_keys=True, allow_nan=False).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + struct.pack("<Q", len(header_bytes)) + header_bytes + payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the ``.<name>.tmp<pid>`` files in ``folder`` whose process is dead (a write
    killed before its rename); returns what was removed. Files of live processes stay."""
    removed = []
    for entry in Path(folder).iterdir():
        match = _TEMPORARY.match(entry.name)
        if not match or not entry.is_file():
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and not _pid_alive(pid):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def read_metadata(path: str | os.PathLike) -> tuple[dict, bytes]:
    """The verified header of a checkpoint (a dict of JSON values) and its payload bytes.

    Checks the magic line, the header's JSON and required fields, the format version, the
    payload's length and SHA-256. Raises :class:`CheckpointError` naming ``path``.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    if not data.startswith(MAGIC):
        raise CheckpointError(f"{path} is not an lvm checkpoint (bad magic bytes)")
    start = len(MAGIC) + 8
    if len(data) < start:
        raise CheckpointError(f"{path} is corrupt: truncated inside the header")
    (header_len,) = struct.unpack("<Q", data[len(MAGIC) : start])
    if start + header_len > len(data):
        raise CheckpointError(f"{path} is corrupt: truncated inside the header")
    try:
        header = json.loads(data[start : start + header_len])
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise CheckpointError(f"{path} is corrupt: unreadable header ({err})") from err
    if not isinstance(header, dict):
        raise CheckpointError(
            f"{path} is malformed: its header is a JSON {type(header).__name__}, not an object"
        )
    for name, kind in _REQUIRED.items():
        value = header.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(
                f"{path} is malformed: header field {name!r} must be a JSON "
                f"{kind.__name__}, got {value!r}"
            )
    if header["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {header['format_version']}, this code "
            f"reads version {FORMAT_VERSION}"
            + (
                " (written by an older lvm: train the run again)"
                if header["format_version"] < 2
                else ""
            )
        )
    payload = data[start + header_len :]
    if len(payload) != header["payload_bytes"]:
        raise CheckpointError(
            f"{path} is corrupt: payload has {len(payload)} bytes, header says "
            f"{header['payload_bytes']} (truncated write?)"
        )
    if not 0 <= header["model_bytes"] <= len(payload):
        raise CheckpointError(f"{path} is malformed: model_bytes={header['model_bytes']}")
    if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
        raise CheckpointError(f"{path} is corrupt: payload checksum mismatch")
    return header, payload


def _load_leaf(f, like_leaf):
    """One leaf from ``.npy`` bytes, never unpickling (an object array raises)."""
    if isinstance(like_leaf, jax.Array | jax.ShapeDtypeStruct):
        return jnp.asarray(np.load(f, allow_pickle=False))
    if isinstance(like_leaf, np.ndarray):
        return np.load(f, allow_pickle=False)
    if isinstance(like_leaf, bool | int | float | complex | np.generic):
        return type(like_leaf)(np.load(f, allow_pickle=False).item())
    return like_leaf


def _deserialise(path: Path, data: bytes, like, what: str):
    try:
        return eqx.tree_deserialise_leaves(io.BytesIO(data), like, filter_spec=_load_leaf)
    except Exception as err:
        raise CheckpointError(
            f"{path} does not match the {what} it is loaded into (another architecture, "
            f"optimizer or dtype?), or its arrays are unreadable: {type(err).__name__}: {err}"
        ) from err


def load_checkpoint(path: str | os.PathLike, like):
    """Read ``(state, header)`` from ``path``; ``like`` is a ``TrainState`` of the expected
    structure (its arrays may be ``jax.ShapeDtypeStruct``)."""
    path = Path(path)
    header, payload = read_metadata(path)
    split = header["model_bytes"]
    params = _deserialise(path, payload[:split], like.params, "model")
    opt_state, step = _deserialise(
        path, payload[split:], (like.opt_state, like.step), "optimizer state"
    )
    return type(like)(params, opt_state, step), header


def load_model_arrays(path: str | os.PathLike, like):
    """The model stored in ``path``, its arrays loaded into the template ``like``; and the header."""
    path = Path(path)
    header, payload = read_metadata(path)
    return _deserialise(path, payload[: header["model_bytes"]], like, "model"), header


def load_model(path: str | os.PathLike, like=None):
    """The trained model stored in the checkpoint ``path``.

    ``like``: a model of the same structure (the running code builds it, e.g. the same
    constructor call as for training, any key): its arrays are replaced by the file's,
    equinox's ``tree_deserialise_leaves(path, like)`` pattern. Without ``like``, only the
    library's own :class:`lvm.VAE` can be loaded, rebuilt from the plain architecture data in
    the header (:func:`lvm.train.config.model_template`); any other model raises
    :class:`CheckpointError` asking for ``like``. Never needs the objective, and never
    imports or calls anything named in the file.
    """
    # Imported here: the config module knows the models; this module is only the format.
    from lvm.train.config import SpecError, model_template

    path = Path(path)
    if like is None:
        header, _ = read_metadata(path)
        try:
            # Built for real, not under eqx.filter_eval_shape: flowjax's autoregressive layers
            # (an IAF posterior) keep their transformer's initial parameters in a closure,
            # where a trace would leave a leaked tracer. One initialisation costs milliseconds.
            like = model_template(header.get("model"), jax.random.key(0))
        except SpecError as err:
            raise CheckpointError(f"{path}: {err}") from err
    model, _ = load_model_arrays(path, like)
    return model
