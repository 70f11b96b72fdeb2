"""The packaged Old Faithful data: shape, units and the published summary statistics."""

import numpy as np

from lvm.data.old_faithful import load_old_faithful


def test_old_faithful_shape_and_summary():
    x = load_old_faithful()
    assert x.shape == (272, 2) and x.dtype == np.float64
    np.testing.assert_allclose(x[0], [3.6, 79.0])
    np.testing.assert_allclose(x[-1], [4.467, 74.0])
    # R: summary(faithful): means 3.487783 and 70.897059; ranges [1.6, 5.1] and [43, 96].
    np.testing.assert_allclose(x.mean(0), [3.487783, 70.897059], atol=1e-6)
    np.testing.assert_allclose(x.min(0), [1.6, 43.0])
    np.testing.assert_allclose(x.max(0), [5.1, 96.0])
    assert load_old_faithful(np.float32).dtype == np.float32
