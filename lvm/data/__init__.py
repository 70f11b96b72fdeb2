"""Data sets: Old Faithful (shipped with the package) and binarized MNIST (through TFDS).

``lvm.data.mnist`` imports tensorflow-datasets only when called (``pip install -e ".[data]"``).
"""

from lvm.data.mnist import BinarizedMNIST, load_binarized_mnist
from lvm.data.old_faithful import load_old_faithful

__all__ = ["BinarizedMNIST", "load_binarized_mnist", "load_old_faithful"]
