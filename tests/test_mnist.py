"""Binarized MNIST loader: TFDS's mocking (no network, no files), the error path, and the real files."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from lvm.data import mnist
from lvm.data.mnist import BinarizedMNIST, load_binarized_mnist

SHARED = mnist.default_manual_dir()


@pytest.fixture
def no_defaults(monkeypatch):
    """No env vars and no ../shared fallback: only explicit arguments count."""
    monkeypatch.delenv(mnist.MANUAL_DIR_ENV, raising=False)
    monkeypatch.delenv(mnist.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(mnist, "default_manual_dir", lambda: None)


class _FakeSource:
    """What ``tfds.data_source`` returns for one split: a sequence of {"image": uint8 (28, 28, 1)}."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitems__(self, keys):
        return [{"image": self.images[i]} for i in keys]


def test_mocked_splits_are_float32_binary_vectors(tmp_path, no_defaults):
    rng = np.random.default_rng(0)
    sizes = {"train": 7, "validation": 3, "test": 5}
    images = {s: (rng.random((n, 28, 28, 1)) < 0.3).astype(np.uint8) for s, n in sizes.items()}

    def as_data_source(builder, split, **kwargs):
        assert builder.name == "binarized_mnist"
        return [_FakeSource(images[s]) for s in split]

    with tfds.testing.mock_data(as_data_source_fn=as_data_source, data_dir=str(tmp_path)):
        data = load_binarized_mnist(data_dir=tmp_path, splits=("train", "test"))
    assert isinstance(data, BinarizedMNIST) and data.validation is None
    for name in ("train", "test"):
        split = getattr(data, name)
        assert split.shape == (sizes[name], 784) and split.dtype == np.float32
        np.testing.assert_array_equal(split, images[name].reshape(sizes[name], 784))


def test_unknown_split_raises(tmp_path):
    with pytest.raises(ValueError, match="unknown split"):
        load_binarized_mnist(data_dir=tmp_path, splits=("training",))


def test_missing_data_set_gives_one_clear_message(tmp_path, no_defaults):
    with pytest.raises(FileNotFoundError) as err:
        load_binarized_mnist(data_dir=tmp_path, download=False)
    message = str(err.value)
    assert "internet" in message and mnist.MANUAL_DIR_ENV in message and "manual_dir" in message


def test_manual_dir_without_the_files_names_them(tmp_path, no_defaults):
    (tmp_path / "manual").mkdir()
    with pytest.raises(FileNotFoundError, match="binarized_mnist_train.amat"):
        load_binarized_mnist(data_dir=tmp_path / "tfds", manual_dir=tmp_path / "manual")


def test_env_var_selects_the_manual_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(mnist.MANUAL_DIR_ENV, str(tmp_path / "from_env"))
    assert mnist._resolve_manual_dir(None) == tmp_path / "from_env"
    assert mnist._resolve_manual_dir(tmp_path / "arg") == tmp_path / "arg"


def test_gunzip_reproduces_the_checksummed_files(tmp_path):
    if SHARED is None:
        pytest.skip("../shared/data/binarized_mnist is absent beside the repository")
    target = mnist._gunzipped_manual_dir(SHARED, tmp_path)
    sums = dict(
        line.split()[::-1] for line in (SHARED / "SHA256SUMS").read_text().splitlines() if line
    )
    for name in ("binarized_mnist_valid.amat", "binarized_mnist_test.amat"):
        digest = hashlib.sha256((target / name).read_bytes()).hexdigest()
        assert digest == sums[name]


@pytest.fixture(scope="session")
def prepared_data_dir() -> Path:
    """The data dir the experiments use too ($LVM_TFDS_DATA_DIR, else ~/tensorflow_datasets):
    the ~25 s preparation then happens once per machine, not once per test session or file.
    Parallel workers wait on the loader's file lock instead of preparing twice."""
    return mnist.default_data_dir()


def test_real_files_from_shared(prepared_data_dir):
    if SHARED is None:
        pytest.skip("../shared/data/binarized_mnist is absent beside the repository")
    data = load_binarized_mnist(manual_dir=SHARED, data_dir=prepared_data_dir)
    assert [s.shape for s in data] == [(50_000, 784), (10_000, 784), (10_000, 784)]
    for split in data:
        assert split.dtype == np.float32 and set(np.unique(split)) == {0.0, 1.0}
        assert 0.12 < split.mean() < 0.14  # about 13% of binarized MNIST pixels are on
    # The test split is the test .amat file, row order aside (TFDS shuffles deterministically).
    import gzip

    with gzip.open(SHARED / "binarized_mnist_test.amat.gz", "rt") as f:
        rows = np.loadtxt(f, dtype=np.uint8)
    key = lambda a: np.sort(np.packbits(a.astype(np.uint8), axis=1).view(np.void).ravel())  # noqa: E731
    assert np.array_equal(key(rows), key(data.test))
