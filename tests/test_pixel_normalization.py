import numpy as np
import pytest

from layer_test_util import run_layer_test
from mdnet_keras.layers import PixelNormalization


def test_normalises_per_channel():
    layer = PixelNormalization(mean=[0.5, 0.25, 0.0], std=[0.5, 0.25, 1.0])
    x = np.full((1, 2, 2, 3), 127.5, "float32")
    np.testing.assert_allclose(layer(x)[0, 0, 0], [0.0, 1.0, 0.5], rtol=1e-6)


def test_wrong_channel_count_is_an_error():
    layer = PixelNormalization(mean=[0.5] * 3, std=[0.2] * 3)
    with pytest.raises(ValueError, match="axis -1 of input shape to have value 3"):
        layer(np.zeros((1, 4, 4, 1), "float32"))


def test_bad_arguments():
    with pytest.raises(ValueError, match="std=\\[0.0\\]"):
        PixelNormalization(mean=[0.5], std=[0.0])


@pytest.mark.parametrize("channels", [1, 3])
def test_layer_checks(channels):
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, channels))
    run_layer_test(PixelNormalization,
                   {"mean": [0.1] * channels, "std": [0.2] * channels},
                   pixels.shape, pixels.shape, input_data=pixels)
