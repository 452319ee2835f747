"""The export pipeline (mdnet_keras.export.exporter): `export_tflite` writes
the model and its side files, `export_all` adds Edge TPU and TFLite Micro."""

import json
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

from export_models import cifar  # noqa: E402
from export_models import tiny  # noqa: E402
from export_models import tiny_images  # noqa: E402
from export_models import toy  # noqa: E402


def tiny_eval():
    """The tiny model, images, and labels it gets right (top-1 100%, so the
    gate is not waived as near chance)."""
    model, images = tiny(), tiny_images(40)
    labels = model.predict(images.astype("float32"), verbose=0).argmax(-1)
    return model, images, labels


@pytest.mark.slow
def test_export_writes_report_labels_and_preprocessing(tmp_path):
    from mdnet_keras.export import export_tflite
    from mdnet_keras.export import read_labels
    from mdnet_keras.export import sidecar_paths

    model, _ = toy()
    x, _, xt, yt, names = cifar()
    out = tmp_path / "m.tflite"
    report = export_tflite(model, out, mode="int8", x_train=x, x_eval=xt[:100],
                           y_eval=yt[:100], class_names=names,
                           num_calibration=50, verbose=False)
    side = sidecar_paths(out)
    assert out.is_file()
    assert json.load(open(side["report"]))["mode"] == "int8"
    assert read_labels(side["labels"]) == list(names)
    pre = json.load(open(side["preprocessing"]))
    assert pre["input_dtype"] == "int8" and pre["input_zero_point"] == -128
    assert pre["resize"] == {"height": 32, "width": 32, "method": "bilinear"}
    # The paired gate's verdict comes with its evidence.
    gate = report["gate"]
    assert gate["num_images"] == 100 and "of 100" in gate["reason"]
    low, high = gate["interval_points"]
    assert low <= gate["drop_points"] <= high


def test_gate_failure_raises_after_writing(tmp_path):
    from mdnet_keras.export import AccuracyGateError
    from mdnet_keras.export import export_tflite
    from mdnet_keras.export import sidecar_paths

    model, images, labels = tiny_eval()
    out = tmp_path / "f.tflite"
    with pytest.raises(AccuracyGateError, match="fell") as info:
        # A drop of more than -101 points is impossible to avoid: must fail.
        export_tflite(model, out, mode="float32", x_eval=images, y_eval=labels,
                      max_drop=-101, verbose=False)
    assert info.value.report["gate"]["status"] == "fail"
    assert out.is_file() and os.path.isfile(sidecar_paths(out)["report"])


def test_export_all_records_a_gate_failure_and_the_edgetpu_estimate(tmp_path, capsys):
    from mdnet_keras.export import export_all
    from mdnet_keras.export import sidecar_paths

    model, images, labels = tiny_eval()
    out = tmp_path / "a.tflite"
    report = export_all(model, out, mode="float32", x_eval=images, y_eval=labels,
                        max_drop=-101, edgetpu=True,
                        source="runs/x/best.keras")
    assert len(report["failures"]) == 1 and "fell" in report["failures"][0]
    assert report["source"] == "runs/x/best.keras"
    assert report["max_depthwise_taps"] == 25  # "auto" without micro_out
    # A float model does not map to the Edge TPU.
    assert report["edgetpu"]["compatible"] is False
    written = json.load(open(sidecar_paths(out)["report"]))
    assert written["failures"] == report["failures"] and "edgetpu" in written
    assert "Edge TPU:" in capsys.readouterr().out


def test_export_all_refuses_micro_out_for_a_float_mode(tmp_path):
    from mdnet_keras.export import export_all

    with pytest.raises(ValueError, match="micro_out needs mode='int8'"):
        export_all(tiny(), tmp_path / "m.tflite", mode="float32",
                   micro_out=tmp_path / "micro")
    assert not (tmp_path / "m.tflite").exists()


def test_export_all_writes_the_micro_app(tmp_path):
    pytest.importorskip("tflite_micro")
    from mdnet_keras.export import export_all

    model, images, labels = tiny_eval()
    out, micro_out = tmp_path / "i.tflite", tmp_path / "micro"
    report = export_all(model, out, x_train=images, x_eval=images[:5],
                        y_eval=labels[:5], num_calibration=20,
                        class_names=["a", "b", "c", "d"], micro_out=str(micro_out),
                        ram_kb=0, verbose=False)
    assert report["max_depthwise_taps"] is None  # "auto" with micro_out
    assert report["micro"]["arena_bytes"] > 0
    assert report["micro"]["vs_litert"]["num_images"] == 5
    assert (micro_out / "model_data.cc").is_file()
    # The app compiles in the micro form, the .tflite stays as converted.
    from mdnet_keras.export import micro_app
    from mdnet_keras.export import micro_model

    assert micro_app.read_c_array(micro_out / "model_data.cc") == micro_model(
        out.read_bytes())[0]
    assert report["micro"]["flash_bytes"] < report["micro"]["converted_bytes"] == (
        out.stat().st_size)
    # Any arena is over a 0 KiB budget: a failure recorded, not raised.
    assert report["failures"] == [report["micro"]["targets"]["problems"][0]]
    assert "tensor arena needs" in report["failures"][0]
