import numpy as np
import pytest

from layer_test_util import run_layer_test
from mdnet_keras.layers import DropPath


def test_identity_at_inference():
    x = np.random.default_rng(0).normal(size=(4, 3, 3, 2)).astype("float32")
    np.testing.assert_array_equal(DropPath(0.5)(x, training=False), x)


def test_drops_whole_samples_and_rescales_in_training():
    x = np.ones((256, 2, 2, 3), "float32")
    out = np.asarray(DropPath(0.25, seed=1)(x, training=True))
    per_sample = out.reshape(256, -1)
    np.testing.assert_allclose(np.unique(per_sample), [0.0, 1 / 0.75], rtol=1e-6)
    assert np.all(per_sample.min(axis=1) == per_sample.max(axis=1))
    assert 0.1 < np.mean(per_sample[:, 0] == 0) < 0.4


def test_bad_rate():
    with pytest.raises(ValueError, match="Received: 1.0"):
        DropPath(1.0)


def test_layer_checks():
    run_layer_test(DropPath, {"rate": 0.1, "seed": 3}, (4, 3, 3, 2),
                   (4, 3, 3, 2))
