r"""Binarized MNIST (Larochelle & Murray, 2011) through tensorflow-datasets, loaded once into arrays.

The static binarization: 50,000 train, 10,000 validation and 10,000 test images of
28 x 28 pixels in {0, 1}, TFDS's ``binarized_mnist`` (version 1.0.0). The data set is
read from TFDS's ``array_record`` files with :func:`tfds.data_source` in one bulk
``__getitems__`` call per split.

Where it is looked for, first hit wins:

* TFDS data dir: ``data_dir=`` > ``$LVM_TFDS_DATA_DIR`` > ``~/tensorflow_datasets``.
* If the data set is not prepared there, it is prepared (about 25 s, once) from a *manual
  dir* holding ``binarized_mnist_{train,valid,test}.amat`` or their ``.amat.gz`` copies:
  ``manual_dir=`` > ``$LVM_MNIST_MANUAL_DIR`` > ``<repo>/../shared/data/binarized_mnist``
  (the layout of CI: a clean clone with ``shared/`` beside it). ``.gz`` copies are
  gunzipped once into ``<data_dir>/downloads/manual/binarized_mnist``.
* Without a manual dir, TFDS downloads the original files itself (needs internet).

A data set that cannot be found raises one :class:`FileNotFoundError` naming both ways.
"""

import contextlib
import gzip
import io
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

try:
    import fcntl
except ImportError:  # not on Windows: no lock, prepare once by hand there
    fcntl = None

NAME = "binarized_mnist"
SPLITS = ("train", "validation", "test")
NUM_PIXELS = 784
_AMAT_FILES = tuple(f"binarized_mnist_{s}.amat" for s in ("train", "valid", "test"))
MANUAL_DIR_ENV = "LVM_MNIST_MANUAL_DIR"
DATA_DIR_ENV = "LVM_TFDS_DATA_DIR"


class BinarizedMNIST(NamedTuple):
    """The three splits as float32 arrays of shape (N, 784) in {0, 1}; a split not loaded is None."""

    train: np.ndarray | None
    validation: np.ndarray | None
    test: np.ndarray | None


def default_manual_dir() -> Path | None:
    """``<repo>/../shared/data/binarized_mnist`` if it exists (a checkout beside ``shared/``), else None."""
    candidate = Path(__file__).resolve().parents[3] / "shared" / "data" / NAME
    return candidate if candidate.is_dir() else None


def default_data_dir() -> Path:
    """``$LVM_TFDS_DATA_DIR``, else TFDS's own default ``~/tensorflow_datasets``."""
    return Path(os.environ.get(DATA_DIR_ENV) or "~/tensorflow_datasets").expanduser()


def _resolve_manual_dir(manual_dir: str | os.PathLike | None) -> Path | None:
    if manual_dir is not None:
        return Path(manual_dir).expanduser()
    if os.environ.get(MANUAL_DIR_ENV):
        return Path(os.environ[MANUAL_DIR_ENV]).expanduser()
    return default_manual_dir()


def _gunzipped_manual_dir(manual_dir: Path, data_dir: Path) -> Path:
    """A dir with the three plain ``.amat`` files, gunzipping ``.amat.gz`` copies if needed."""
    if all((manual_dir / f).is_file() for f in _AMAT_FILES):
        return manual_dir
    if not all((manual_dir / f"{f}.gz").is_file() for f in _AMAT_FILES):
        raise FileNotFoundError(
            f"manual dir {manual_dir} must hold {', '.join(_AMAT_FILES)} (or their .gz copies)"
        )
    target = data_dir / "downloads" / "manual" / NAME
    target.mkdir(parents=True, exist_ok=True)
    for name in _AMAT_FILES:
        if (target / name).is_file():
            continue
        tmp = target / f"{name}.tmp{os.getpid()}"
        with gzip.open(manual_dir / f"{name}.gz", "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, target / name)
    return target


def _missing_message(data_dir: Path, manual_dir: Path | None, cause: BaseException) -> str:
    tried = f"manual dir {manual_dir}" if manual_dir else "no manual dir (none given or found)"
    return (
        f"binarized MNIST is not prepared in the TFDS data dir {data_dir} and could not be "
        f"prepared ({tried}; cause: {type(cause).__name__}: {cause}). Get it either way:\n"
        "  1. with internet, let tensorflow-datasets download it: call this loader (or "
        "`tfds.data_source('binarized_mnist', builder_kwargs={'file_format': 'array_record'})`) "
        "once on a machine online;\n"
        f"  2. offline, put binarized_mnist_{{train,valid,test}}.amat (or .amat.gz) in a folder "
        f"and pass manual_dir=... or set {MANUAL_DIR_ENV}=/that/folder "
        f"(TFDS data dir: data_dir=... or {DATA_DIR_ENV}, default ~/tensorflow_datasets)."
    )


@contextlib.contextmanager
def _prepare_lock(data_dir: Path):
    """An exclusive file lock, so that parallel processes (pytest-xdist, several scripts)
    prepare the data set once instead of racing on TFDS's final rename."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / f".{NAME}.lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _prepare(tfds, builder, data_dir: Path, manual: Path | None, download: bool) -> None:
    try:
        config = None
        if manual is not None:
            config = tfds.download.DownloadConfig(
                manual_dir=str(_gunzipped_manual_dir(manual, data_dir))
            )
        elif not download:
            raise FileNotFoundError("no manual dir and download=False")
        builder.download_and_prepare(download_config=config)
    except Exception as err:
        raise FileNotFoundError(_missing_message(data_dir, manual, err)) from err


def _decode(image) -> np.ndarray:
    """One image: PNG bytes (read with ``SkipDecoding``) or an already decoded array."""
    if isinstance(image, bytes):
        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(image)))
    return np.asarray(image)


def _to_array(source) -> np.ndarray:
    examples = source.__getitems__(range(len(source)))
    images = np.stack([_decode(e["image"]) for e in examples])
    return images.reshape(len(examples), NUM_PIXELS).astype(np.float32)


def load_binarized_mnist(
    *,
    manual_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    splits: Sequence[str] = SPLITS,
    download: bool = True,
) -> BinarizedMNIST:
    """Load the requested splits of binarized MNIST as float32 arrays (N, 784) in {0, 1}.

    Args:
        manual_dir: folder with the ``.amat`` (or ``.amat.gz``) files, used only when the
            data set is not prepared yet; default ``$LVM_MNIST_MANUAL_DIR``, then
            ``../shared/data/binarized_mnist`` beside the repository.
        data_dir: TFDS data dir; default ``$LVM_TFDS_DATA_DIR``, then ``~/tensorflow_datasets``.
        splits: any of ``"train"`` (50,000), ``"validation"`` (10,000), ``"test"`` (10,000).
        download: without a manual dir, let TFDS download the files (offline, its
            retries take minutes before the error; pass False to fail at once).

    Returns:
        :class:`BinarizedMNIST`; splits not requested are None. Within a split the order
        is TFDS's (deterministic), not the row order of the ``.amat`` files.
    """
    import tensorflow_datasets as tfds

    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; choose from {SPLITS}")
    data_dir = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    builder = tfds.builder(NAME, data_dir=str(data_dir), file_format="array_record")
    if not builder.is_prepared():
        with _prepare_lock(data_dir):
            # Another process may have prepared it while this one waited for the lock.
            builder = tfds.builder(NAME, data_dir=str(data_dir), file_format="array_record")
            if not builder.is_prepared():
                _prepare(tfds, builder, data_dir, _resolve_manual_dir(manual_dir), download)
    # Decoding the PNGs ourselves with PIL, in one pass, avoids TFDS's per-example decoder.
    skip = {"image": tfds.decode.SkipDecoding()}
    sources = builder.as_data_source(split=list(splits), decoders=skip)
    arrays = dict(zip(splits, (_to_array(s) for s in sources), strict=True))
    return BinarizedMNIST(*(arrays.get(s) for s in SPLITS))
