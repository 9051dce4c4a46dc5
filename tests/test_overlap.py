"""dsp.overlap: the cross-fade weights both overlap-adds use (their outputs are tested in test_engine/test_lite)."""

import numpy as np

from stemforge.dsp.overlap import triangle_weights


def test_weights_positive_and_symmetric() -> None:
    for n in (1, 2, 7, 100):
        w = triangle_weights(n)
        assert w.shape == (n,) and np.all(w > 0)
        np.testing.assert_allclose(w, w[::-1])
