"""Loading and preparing the Keras model (mdnet_keras.export.keras_model):
clear errors on bad files, the float32 rebuild of a mixed-precision model and
the depthwise-kernel pieces."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from export_models import build_toy  # noqa: E402
from export_models import cifar  # noqa: E402
from export_models import tiny  # noqa: E402
from export_models import tiny_images  # noqa: E402


def depthwise_taps(tflite_bytes):
    from mdnet_keras.export import describe_ops

    return [op["inputs"][1]["shape"][1] * op["inputs"][1]["shape"][2]
            for op in describe_ops(tflite_bytes)
            if op["op"] == "DEPTHWISE_CONV_2D"]


@pytest.mark.slow
def test_large_depthwise_kernels_are_pieced_by_default():
    import keras

    from mdnet_keras import MDNet
    from mdnet_keras.export import XNNPACK_DEPTHWISE_TAPS
    from mdnet_keras.export import LiteRTRunner
    from mdnet_keras.export import convert_model
    from mdnet_keras.export import with_small_depthwise_kernels

    keras.utils.set_random_seed(3)
    model = MDNet(num_classes=10, variant="mdnet_micro")  # kernels 3, 5, 7, 9
    pieced = convert_model(model, "float32")
    whole = convert_model(model, "float32", max_depthwise_taps=None)
    assert max(depthwise_taps(whole)) == 81
    assert max(depthwise_taps(pieced)) <= XNNPACK_DEPTHWISE_TAPS
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3))
    x = x.astype("float32")
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    for data in (pieced, whole):
        np.testing.assert_allclose(LiteRTRunner(data).predict(x), expected,
                                   rtol=1e-4, atol=1e-5)
    # The rebuild leaves models without large kernels alone.
    small = tiny()
    assert with_small_depthwise_kernels(small) is small


@pytest.mark.slow
def test_mixed_precision_model_is_rebuilt_and_converts(tmp_path):
    import keras

    from mdnet_keras.export import as_float32_model
    from mdnet_keras.export import convert_model
    from mdnet_keras.export import load_keras_model
    from mdnet_keras.export import validate_tflite

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build_toy()
    finally:
        keras.config.set_dtype_policy(previous)
    path = tmp_path / "mixed.keras"
    model.save(path)
    loaded = load_keras_model(path)
    rebuilt = as_float32_model(loaded)
    assert rebuilt is not loaded
    assert all(layer.dtype_policy.name == "float32" for layer in rebuilt._flatten_layers())
    x = cifar()[2][:8].astype("float32")
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0),
                               loaded.predict(x, verbose=0), atol=1e-2)
    data = convert_model(loaded, "int8", rep_images=cifar()[0][:50])
    assert validate_tflite(rebuilt, data, "int8", None, None)["float_ops"] == []


def test_float32_model_is_returned_as_is():
    from mdnet_keras.export import as_float32_model

    model = tiny()
    assert as_float32_model(model) is model


def test_model_image_shape_and_check_images():
    from mdnet_keras.export import model_image_shape
    from mdnet_keras.export.keras_model import check_images

    model = tiny(input_shape=(12, 10, 1))
    assert model_image_shape(model) == (12, 10, 1)
    grey = tiny_images(3, (12, 10, 1))[..., 0]  # (N, H, W): channel added
    assert check_images(grey, (12, 10, 1)).shape == (3, 12, 10, 1)
    with pytest.raises(ValueError, match="empty"):
        check_images(np.zeros((0, 12, 10, 1)), (12, 10, 1))
    with pytest.raises(ValueError, match=r"image_size=\(12, 10\) and channels=1"):
        check_images(tiny_images(2), (12, 10, 1), "test images")


# --- bad input ---------------------------------------------------------------


def test_missing_model_file(tmp_path):
    from mdnet_keras.export import ModelLoadError
    from mdnet_keras.export import load_keras_model

    with pytest.raises(ModelLoadError, match="not found"):
        load_keras_model(tmp_path / "nope.keras")


def test_not_a_keras_file(tmp_path):
    from mdnet_keras.export import ModelLoadError
    from mdnet_keras.export import load_keras_model

    bad = tmp_path / "bad.keras"
    bad.write_text("not a model")
    with pytest.raises(ModelLoadError, match="not a Keras"):
        load_keras_model(bad)
    h5 = tmp_path / "old.h5"
    h5.write_bytes(b"\x89HDF\r\n")
    with pytest.raises(ModelLoadError, match="'.keras'"):
        load_keras_model(h5)


def test_non_classifier_keras_model(tmp_path):
    import keras

    from mdnet_keras.export import ModelLoadError
    from mdnet_keras.export import load_keras_model

    inp = keras.Input((16,))
    model = keras.Model(inp, keras.layers.Dense(3)(inp))
    path = tmp_path / "dense.keras"
    model.save(path)
    with pytest.raises(ModelLoadError, match="image classifier"):
        load_keras_model(path)


def test_unknown_custom_objects(tmp_path):
    import keras

    from mdnet_keras.export import ModelLoadError
    from mdnet_keras.export import load_keras_model

    @keras.saving.register_keras_serializable(package="test_unregistered")
    class Twice(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inp = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(Twice()(inp))
    path = tmp_path / "custom.keras"
    keras.Model(inp, keras.layers.Dense(2)(x)).save(path)
    keras.saving.get_custom_objects().pop("test_unregistered>Twice")
    with pytest.raises(ModelLoadError, match="custom objects"):
        load_keras_model(path)
