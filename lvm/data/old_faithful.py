"""Old Faithful: 272 eruptions of the Yellowstone geyser, (duration, waiting time) in minutes.

The classic two-cluster data set for Gaussian mixtures (Azzalini & Bowman, 1990;
R's ``datasets::faithful``). The CSV ships inside the package
(``lvm/data/faithful.csv``), so loading needs no download.
"""

from importlib import resources

import numpy as np

#: Column names, in order, with units.
COLUMNS = ("eruption duration (min)", "waiting time to next eruption (min)")
NUM_POINTS = 272


def load_old_faithful(dtype=np.float64) -> np.ndarray:
    """The data as a ``(272, 2)`` NumPy array: column 0 eruption duration, column 1 waiting time.

    Both in minutes (durations in the source are rounded to 1/60 min, i.e. seconds).
    """
    text = resources.files("lvm.data").joinpath("faithful.csv").read_text()
    lines = text.strip().splitlines()
    if lines[0].strip() != "eruptions,waiting":
        raise ValueError(f"unexpected header in faithful.csv: {lines[0]!r}")
    data = np.array([[float(v) for v in line.split(",")] for line in lines[1:]], dtype=dtype)
    if data.shape != (NUM_POINTS, 2):
        raise ValueError(
            f"faithful.csv should hold {NUM_POINTS} rows of 2 columns, got {data.shape}"
        )
    return data
