"""Data sets: Old Faithful (shipped with the package) and binarized MNIST (through TFDS)."""
