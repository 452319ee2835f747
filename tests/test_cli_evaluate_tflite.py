"""The `evaluate --tflite` command (mdnet_keras.cli.evaluate_tflite)."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from export_models import cifar  # noqa: E402
from export_models import run_cli  # noqa: E402
from export_models import toy  # noqa: E402

pytestmark = pytest.mark.slow


def test_evaluate_tflite_on_test_set(tmp_path):
    from mdnet_keras.cli.evaluate_tflite import evaluate_tflite
    from mdnet_keras.export import export_tflite

    model, acc = toy()
    _, _, xt, yt, _ = cifar()
    path = tmp_path / "e.tflite"
    export_tflite(model, path, mode="float32", verbose=False)
    result = evaluate_tflite(str(path), xt, yt, num_classes=10)
    assert result["num_images"] == len(xt)
    assert abs(result["top1"] - acc) < 0.01
    assert np.isfinite(result["ms_per_image"])
    # A model of another class count is refused, not scored.
    with pytest.raises(ValueError, match="outputs 10 classes but the data "
                                         "has 3"):
        evaluate_tflite(str(path), xt, yt, num_classes=3)


def test_evaluate_tflite_takes_the_data_from_its_run_folder():
    from export_models import folder_run

    from mdnet_keras.export import export_tflite

    run = folder_run()
    path = run / "best_float32_eval.tflite"
    export_tflite(str(run / "best.keras"), path, mode="float32", verbose=False)
    r = run_cli(["-m", "mdnet_keras", "evaluate", f"--tflite={path}", "--limit=50"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "From the run folder" in r.stdout and "--dataset=folder" in r.stdout
    assert "top-1" in r.stdout and "on 50 images" in r.stdout
