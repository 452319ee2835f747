"""The convert / predict / evaluate-tflite commands, end to end. SLOW-ish:
each subprocess imports TensorFlow (~5-10 s)."""

import json
import os
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from test_tflite import CIFAR  # noqa: E402
from test_tflite import ROOT  # noqa: E402
from test_tflite import cifar  # noqa: E402
from test_tflite import toy  # noqa: E402


def _run(args, timeout=300):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable] + args, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def toy_keras(tmp_path_factory):
    cifar()  # skips without the real data
    path = tmp_path_factory.mktemp("cli") / "toy.keras"
    toy()[0].save(path)
    return path


def test_convert_int8_with_micro_and_edgetpu(toy_keras):
    out = toy_keras.parent / "toy_int8.tflite"
    micro_dir = toy_keras.parent / "micro"
    r = _run(["-m", "mdnet_keras", "convert", f"--model={toy_keras}", "--mode=int8",
              "--dataset=cifar10", f"--data={CIFAR}", f"--out={out}",
              "--eval_images=200", "--num_calibration=50", f"--micro_out={micro_dir}",
              "--flash_kb=1024", "--ram_kb=256", "--edgetpu"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "float islands: 0" in r.stdout
    assert "TFLM: arena" in r.stdout and "Edge TPU:" in r.stdout
    # 200 images < 500: warns and says why instead of failing.
    assert "not enforced" in r.stderr
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["micro"]["arena_bytes"] > 0 and report["edgetpu"]["total_macs"] > 0
    assert (micro_dir / "model_data.cc").is_file()
    assert (toy_keras.parent / "toy_int8.labels.txt").read_text().split()[0] == "airplane"


def test_convert_gate_failure_exits_nonzero(toy_keras, tmp_path):
    out = tmp_path / "g.tflite"
    r = _run(["tflite/convert.py", f"--model={toy_keras}", "--mode=float32",
              "--dataset=cifar10", f"--data={CIFAR}", f"--out={out}",
              "--eval_images=100", "--max_drop=-101"])
    assert r.returncode == 1, r.stderr[-3000:]
    assert "Accuracy gate failed" in r.stderr


def test_convert_bad_model_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_text("hello")
    r = _run(["-m", "mdnet_keras", "convert", f"--model={bad}", "--mode=int8",
              "--dataset=sample"])
    assert r.returncode == 2
    assert "error:" in r.stderr and "not a Keras" in r.stderr
    r = _run(["-m", "mdnet_keras", "convert", f"--model={tmp_path}/missing.keras"])
    assert r.returncode == 2 and "not found" in r.stderr


def test_predict_tflite_and_keras(toy_keras, tmp_path):
    from PIL import Image

    from mdnet_keras.cli.predict import predict_images
    from mdnet_keras.export import tflite as tfl

    _, _, xt, yt, names = cifar()
    img = tmp_path / "photo.png"
    Image.fromarray(xt[0]).resize((96, 96)).save(img)  # resized back to 32x32
    tfl_path = tmp_path / "toy_float32.tflite"
    tfl.export_tflite(toy()[0], tfl_path, mode="float32", class_names=names,
                      verbose=False)
    results, labels = predict_images(str(tfl_path), [str(img)], top_k=3)
    assert labels.endswith("toy_float32.labels.txt")
    assert len(results[0]) == 3 and results[0][0][0] in names
    assert sum(p for _, p in results[0]) <= 1.0 + 1e-5
    keras_results, _ = predict_images(str(toy_keras), [str(img)],
                                      labels_path=labels, top_k=3)
    assert keras_results[0][0][0] == results[0][0][0]
    r = _run(["-m", "mdnet_keras", "predict", f"--model={tfl_path}", str(img)])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "%" in r.stdout and results[0][0][0] in r.stdout
    with pytest.raises(FileNotFoundError):
        predict_images(str(tfl_path), [str(tmp_path / "nope.png")])


def test_evaluate_tflite_on_test_set(tmp_path):
    from mdnet_keras.cli.evaluate_tflite import evaluate_tflite
    from mdnet_keras.export import tflite as tfl

    model, acc = toy()
    _, _, xt, yt, _ = cifar()
    path = tmp_path / "e.tflite"
    tfl.export_tflite(model, path, mode="float32", verbose=False)
    result = evaluate_tflite(str(path), xt, yt)
    assert result["num_images"] == len(xt)
    assert abs(result["top1"] - acc) < 0.01
    assert np.isfinite(result["ms_per_image"])
