"""The validation report and its accuracy gate (mdnet_keras.export.validation)."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from export_models import converted  # noqa: E402
from export_models import tiny  # noqa: E402
from export_models import tiny_images  # noqa: E402
from export_models import toy  # noqa: E402


def test_float_island_is_caught():
    import keras
    from keras import layers

    from mdnet_keras.export import ConversionError
    from mdnet_keras.export import convert_model
    from mdnet_keras.export import validate_tflite

    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same")(inp)
    x = layers.LayerNormalization()(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, layers.Dense(4, activation="softmax")(x))
    images = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 3)).astype("uint8")
    data = convert_model(model, "int8", rep_images=images, num_calibration=20)
    with pytest.raises(ConversionError, match="float islands"):
        validate_tflite(model, data, "int8", None, None)
    report = validate_tflite(model, data, "int8", None, None, allow_float_ops=True)
    assert report["float_ops"], "LayerNormalization should leave float ops"


def test_report_of_a_tiny_model_with_progress(capsys):
    from mdnet_keras.export import convert_model
    from mdnet_keras.export import format_report
    from mdnet_keras.export import validate_tflite

    model, images = tiny(), tiny_images(30)
    labels = np.zeros(30, int)
    data = convert_model(model, "float32")
    report = validate_tflite(model, data, "float32", images, labels, verbose=True)
    assert "Validating on 30 held-out images" in capsys.readouterr().out
    assert report["num_eval_images"] == 30 and report["num_classes"] == 4
    assert report["argmax_agreement"] == 1.0
    assert report["float_ops"] is None and report["custom_or_flex_ops"] == []
    # The paired gate: the same answers on the same images, no drop.
    assert report["gate"]["status"] == "pass"
    assert report["gate"]["interval_points"][0] <= 0 <= report["gate"][
        "interval_points"][1]
    text = format_report(report)
    assert "mode: float32" in text and "gate: pass" in text
    no_images = validate_tflite(model, data, "float32", None, None)
    assert no_images["gate"] == {"status": "warn", "reason": "no evaluation images"}


@pytest.mark.slow
def test_evaluation_images_of_the_wrong_size():
    from mdnet_keras.export import validate_tflite

    model, _ = toy()
    wrong = np.zeros((4, 28, 28, 3), "uint8")
    with pytest.raises(ValueError, match=r"expects \(32, 32, 3\)"):
        validate_tflite(model, converted("toy", "float32"), "float32",
                        wrong, np.zeros(4))
