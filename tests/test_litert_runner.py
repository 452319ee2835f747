"""Running a `.tflite` with LiteRT (mdnet_keras.export.litert_runner)."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from export_models import tiny  # noqa: E402
from export_models import tiny_images  # noqa: E402


def test_quantize_and_dequantize_follow_scale_and_zero_point():
    from mdnet_keras.export.litert_runner import dequantize_output
    from mdnet_keras.export.litert_runner import quantize_input

    detail = {"dtype": np.int8, "quantization": (2.0, -128)}
    q = quantize_input(np.array([0.0, 1.0, 255.0, 1000.0]), detail)
    assert q.dtype == np.int8 and q.tolist() == [-128, -128, 0, 127]  # clipped
    assert dequantize_output(q, detail).tolist() == [0.0, 0.0, 256.0, 510.0]
    floats = {"dtype": np.float32, "quantization": (0.0, 0)}
    assert quantize_input([3.5], floats).tolist() == [3.5]


@pytest.mark.parametrize("kernels", ["default", "builtin", "reference"])
def test_float_runner_matches_keras(kernels):
    import keras

    from mdnet_keras.export import LiteRTRunner
    from mdnet_keras.export import convert_model

    model = tiny()
    x = tiny_images(6).astype("float32")
    runner = LiteRTRunner(convert_model(model, "float32"), kernels=kernels)
    assert runner.image_shape == (16, 16, 3)
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(runner.predict(x), expected, rtol=1e-4, atol=1e-6)


def test_int8_runner_progress_bar_and_bad_shape(capsys):
    from mdnet_keras.export import LiteRTRunner
    from mdnet_keras.export import convert_model

    images = tiny_images()
    runner = LiteRTRunner(convert_model(tiny(), "int8", rep_images=images,
                                        num_calibration=10))
    raw = runner.run_raw(images[:3], verbose=True)
    assert raw.dtype == np.int8 and raw.shape == (3, 4)
    assert "3/3" in capsys.readouterr().out
    probs = runner.predict(images[:3])
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=0.05)
    with pytest.raises(ValueError, match=r"expects \(16, 16, 3\)"):
        runner.predict(np.zeros((1, 32, 32, 3)))
