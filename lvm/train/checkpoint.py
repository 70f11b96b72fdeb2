"""Checkpoints: one self-describing file, written atomically, verified when read.

Layout: the magic line ``LVMCKPT\\n``, an 8-byte little-endian header length, a UTF-8 JSON
header (``format_version``, ``payload_sha256``, ``payload_bytes`` and the caller's metadata:
the training config, the epoch), then the payload, :func:`equinox.tree_serialise_leaves` of
the whole :class:`~lvm.train.step.TrainState`. A truncated or altered file fails the length
or hash check; a state of another architecture fails the structure check. Both raise
:class:`CheckpointError` with the path and the reason.

Writing is atomic: the bytes go to a temporary file beside ``path``, which is flushed to
disk and then renamed over ``path``. A process killed at any moment leaves either the old
checkpoint or the new one, never a mix (at worst a stray ``.checkpoint.eqx.tmp<pid>``).
A state holding NaN or Inf is refused: a diverged run never replaces a good checkpoint.
"""

import hashlib
import io
import json
import os
import struct
from pathlib import Path

import equinox as eqx

from lvm._checks import check_finite_tree

MAGIC = b"LVMCKPT\n"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, truncated, of another format or incompatible."""


def save_checkpoint(path: str | os.PathLike, state, *, metadata: dict) -> None:
    """Write ``state`` and JSON-ready ``metadata`` to ``path`` atomically (temp file, fsync, rename).

    Raises ``ValueError`` (and leaves ``path`` as it was) if a floating leaf of ``state``
    holds NaN or Inf.
    """
    path = Path(path)
    check_finite_tree(state, f"refusing to write {path}: the state")
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, state)
    payload = buffer.getvalue()
    header = {
        "format_version": FORMAT_VERSION,
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "payload_bytes": len(payload),
        **metadata,
    }
    header_bytes = json.dumps(header, sort_keys=True).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
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


def read_metadata(path: str | os.PathLike) -> tuple[dict, bytes]:
    """The verified header of a checkpoint and its payload bytes."""
    path = Path(path)
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise CheckpointError(f"{path} is not an lvm checkpoint (bad magic bytes)")
    start = len(MAGIC) + 8
    if len(data) < start:
        raise CheckpointError(f"{path} is corrupt: truncated inside the header")
    (header_len,) = struct.unpack("<Q", data[len(MAGIC) : start])
    try:
        header = json.loads(data[start : start + header_len])
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is corrupt: unreadable header ({err})") from err
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {header.get('format_version')}, "
            f"this code reads version {FORMAT_VERSION}"
        )
    payload = data[start + header_len :]
    if len(payload) != header["payload_bytes"]:
        raise CheckpointError(
            f"{path} is corrupt: payload has {len(payload)} bytes, header says "
            f"{header['payload_bytes']} (truncated write?)"
        )
    if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
        raise CheckpointError(f"{path} is corrupt: payload checksum mismatch")
    return header, payload


def load_checkpoint(path: str | os.PathLike, like):
    """Read ``(state, metadata)`` from ``path``; ``like`` is a state of the expected structure."""
    header, payload = read_metadata(path)
    try:
        state = eqx.tree_deserialise_leaves(io.BytesIO(payload), like)
    except Exception as err:
        raise CheckpointError(
            f"{path} does not match the expected model/optimizer structure "
            f"(another architecture or optimizer?): {err}"
        ) from err
    return state, header
