"""The files beside a `.tflite` (mdnet_keras.export.side_files)."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from export_models import tiny  # noqa: E402
from export_models import tiny_images  # noqa: E402


def test_sidecar_paths():
    from mdnet_keras.export import sidecar_paths

    assert sidecar_paths("runs/x/m_int8.tflite") == {
        "labels": "runs/x/m_int8.labels.txt",
        "preprocessing": "runs/x/m_int8.preprocessing.json",
        "report": "runs/x/m_int8.report.json",
    }


def test_labels_round_trip_and_lookup(tmp_path):
    from mdnet_keras.export import find_labels_file
    from mdnet_keras.export import read_labels
    from mdnet_keras.export.side_files import write_labels

    model = tmp_path / "best.keras"
    assert find_labels_file(model) is None
    write_labels(tmp_path / "labels.txt", ["cat", "dog"])
    assert find_labels_file(model) == str(tmp_path / "labels.txt")
    assert read_labels(tmp_path / "labels.txt") == ["cat", "dog"]
    # `<stem>.labels.txt` beside the model wins over the folder's labels.txt.
    write_labels(tmp_path / "best.labels.txt", ["a", "b"])
    assert find_labels_file(model) == str(tmp_path / "best.labels.txt")


def test_preprocessing_facts_of_int8_and_float():
    from mdnet_keras.export import convert_model
    from mdnet_keras.export.side_files import preprocessing_facts

    int8 = convert_model(tiny(), "int8", rep_images=tiny_images(), num_calibration=10)
    facts = preprocessing_facts(int8, (16, 16, 3))
    assert facts["input_dtype"] == "int8" and facts["input_zero_point"] == -128
    assert facts["pixel_to_input"].startswith("q = round(pixel / 1 + -128)")
    assert facts["resize"] == {"height": 16, "width": 16, "method": "bilinear"}
    float32 = preprocessing_facts(convert_model(tiny(), "float32"), (16, 16, 3))
    assert float32["input_dtype"] == "float32"
    assert "normalises inside" in float32["pixel_to_input"]
