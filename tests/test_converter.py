"""The LiteRT converter per mode (mdnet_keras.export.converter), on real
CIFAR-10 images: each mode converts, runs and agrees with Keras."""

import json
import os
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from export_models import AGREEMENT  # noqa: E402
from export_models import CIFAR  # noqa: E402
from export_models import MDNET_INT8_AGREEMENT  # noqa: E402
from export_models import ROOT  # noqa: E402
from export_models import cifar  # noqa: E402
from export_models import converted  # noqa: E402
from export_models import mdnet_micro  # noqa: E402
from export_models import need_data  # noqa: E402
from export_models import tiny  # noqa: E402
from export_models import tiny_images  # noqa: E402
from export_models import toy  # noqa: E402


@pytest.mark.slow
def test_toy_is_trained():
    _, acc = toy()
    assert acc > 0.35, f"toy top-1 {acc:.3f} too close to chance (0.10)"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["float32", "float16", "dynamic", "int8", "int16x8"])
def test_each_mode_converts_runs_and_agrees(mode):
    from mdnet_keras.export import validate_tflite

    model, acc = toy()
    _, _, xt, yt, _ = cifar()
    data = converted("toy", mode)
    report = validate_tflite(model, data, mode, xt[:600], yt[:600])
    assert report["size_bytes"] == len(data) > 0
    assert report["custom_or_flex_ops"] == []
    assert "CONV_2D" in report["ops"] and "BATCH_MATMUL" in report["ops"]
    assert report["argmax_agreement"] >= AGREEMENT[mode], report
    assert abs(report["tflite_top1"] - report["keras_top1"]) < 0.03
    assert report["gate"]["status"] == "pass", report["gate"]
    if mode in ("int8", "int16x8"):
        assert report["float_ops"] == []
    expected_in = {"int8": "int8"}.get(mode, "float32")
    assert report["io"]["inputs"][0]["dtype"] == expected_in
    assert report["io"]["inputs"][0]["shape"] == [1, 32, 32, 3]


@pytest.mark.slow
def test_uint8_io():
    from mdnet_keras.export import io_details
    from mdnet_keras.export import validate_tflite

    data = converted("toy", "int8", "uint8")
    io = io_details(data)
    # MDNet takes raw pixels: calibrated input range 0..255 -> identity map.
    assert io["inputs"][0] == {"dtype": "uint8", "shape": [1, 32, 32, 3],
                               "scale": 1.0, "zero_point": 0}
    assert io["outputs"][0]["dtype"] == "uint8"
    model, _ = toy()
    _, _, xt, yt, _ = cifar()
    report = validate_tflite(model, data, "int8", xt[:300], yt[:300])
    assert report["argmax_agreement"] >= AGREEMENT["int8"]


@pytest.mark.slow
def test_mdnet_micro_int8_agreement_and_integer_only():
    from mdnet_keras.export import format_report
    from mdnet_keras.export import validate_tflite

    model, acc = mdnet_micro()
    _, _, xt, yt, _ = cifar()
    report = validate_tflite(model, converted("mdnet", "int8"), "int8",
                             xt[:500], yt[:500])
    print(json.dumps({k: report[k] for k in ("size_bytes", "num_ops", "keras_top1",
                                             "tflite_top1", "argmax_agreement")}))
    assert report["float_ops"] == []
    # Attention's matmuls run in XNNPACK; its SOFTMAX, RSQRT and the norm's
    # epsilon ADD do not take int8 there.
    left_out = report["xnnpack"]["left_out_by_type"]
    assert "BATCH_MATMUL" not in left_out and "DEPTHWISE_CONV_2D" not in left_out
    assert f"{report['xnnpack']['partitions']} partition(s)" in format_report(report)
    if acc < 0.2:
        # One short CPU epoch leaves BatchNorm's moving statistics mostly at
        # their initial values; agreement of a near-chance model means little.
        pytest.skip(f"mdnet_micro top-1 {acc:.3f} near chance after the short "
                    "fit: agreement not checked (float islands were)")
    assert report["argmax_agreement"] >= MDNET_INT8_AGREEMENT, report


def test_representative_dataset_draws_real_images_once():
    from mdnet_keras.export.converter import representative_dataset

    images = tiny_images(10)
    batches = [b[0] for b in representative_dataset(images, num_samples=4, seed=1)()]
    assert len(batches) == 4 and all(b.shape == (1, 16, 16, 3) for b in batches)
    assert all(b.dtype == np.float32 for b in batches)
    drawn = {tuple(b.reshape(-1)[:8]) for b in batches}
    assert len(drawn) == 4  # without replacement
    everyone = representative_dataset(images, num_samples=50)
    assert len(list(everyone())) == 10  # capped at what there is


def test_calibration_progress_bar(capsys):
    from mdnet_keras.export.converter import representative_dataset

    list(representative_dataset(tiny_images(5), num_samples=5, progress=True)())
    out = capsys.readouterr().out
    assert "Calibrating" in out and "5/5" in out


def test_tiny_int8_converts_without_float_tensors():
    from mdnet_keras.export import convert_model
    from mdnet_keras.export import describe_ops

    data = convert_model(tiny(), "int8", rep_images=tiny_images(), num_calibration=10)
    types = {t["type"] for op in describe_ops(data) for t in op["inputs"] + op["outputs"]}
    assert types <= {"INT8", "INT32"}, types


@pytest.mark.slow
def test_jax_trained_model_converts(tmp_path):
    """Trains under JAX in a subprocess, converts here (TF)."""
    pytest.importorskip("jax")
    need_data()
    from mdnet_keras.export import LiteRTRunner
    from mdnet_keras.export import convert_model
    from mdnet_keras.export import load_keras_model

    out, pred = tmp_path / "jax.keras", tmp_path / "pred.npy"
    script = JAX_SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests"),
                               cifar=str(CIFAR), out=str(out), pred=str(pred))
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=300)
    model = load_keras_model(out)
    x = np.load(CIFAR)["x_test"][:16]
    data = convert_model(model, "float32")
    lite = LiteRTRunner(data).predict(x)
    np.testing.assert_allclose(lite, np.load(pred), atol=1e-4)


JAX_SCRIPT = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
sys.path[:0] = [{root!r}, {tests!r}]
import keras, numpy as np
assert keras.backend.backend() == "jax"
from export_models import build_toy
m = build_toy()
m.compile("adam", "sparse_categorical_crossentropy")
d = np.load({cifar!r})
m.fit(d["x_test"][:256].astype("float32"), d["y_test"][:256], epochs=1, verbose=0)
m.save({out!r})
np.save({pred!r}, m.predict(d["x_test"][:16].astype("float32"), verbose=0))
"""


# --- bad input ---------------------------------------------------------------


def test_empty_representative_set():
    from mdnet_keras.export import convert_model

    model = tiny()
    with pytest.raises(ValueError, match="empty"):
        convert_model(model, "int8", rep_images=np.zeros((0, 16, 16, 3), "uint8"))
    with pytest.raises(ValueError, match="representative"):
        convert_model(model, "int8", rep_images=None)


def test_image_size_mismatch_and_unknown_mode():
    from mdnet_keras.export import convert_model

    model = tiny()
    wrong = np.zeros((4, 28, 28, 3), "uint8")
    with pytest.raises(ValueError, match=r"expects \(16, 16, 3\)"):
        convert_model(model, "int8", rep_images=wrong)
    with pytest.raises(ValueError, match="Unknown mode"):
        convert_model(model, "int4")
