"""The `predict` command: top classes of a .keras or .tflite model."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

from export_models import cifar  # noqa: E402
from export_models import folder_run  # noqa: E402
from export_models import run_cli  # noqa: E402
from export_models import toy  # noqa: E402
from export_models import toy_path  # noqa: E402

pytestmark = pytest.mark.slow


def test_predict_tflite_and_keras(tmp_path):
    from PIL import Image

    from mdnet_keras.cli.predict import predict_images
    from mdnet_keras.export import export_tflite

    _, _, xt, yt, names = cifar()  # skips without the real data
    toy_keras = toy_path(str(tmp_path))
    img = tmp_path / "photo.png"
    Image.fromarray(xt[0]).resize((96, 96)).save(img)  # resized back to 32x32
    tfl_path = tmp_path / "toy_float32.tflite"
    export_tflite(toy()[0], tfl_path, mode="float32", class_names=names,
                  verbose=False)
    results, labels = predict_images(str(tfl_path), [str(img)], top_k=3)
    assert labels.endswith("toy_float32.labels.txt")
    assert len(results[0]) == 3 and results[0][0][0] in names
    assert sum(p for _, p in results[0]) <= 1.0 + 1e-5
    keras_results, _ = predict_images(str(toy_keras), [str(img)],
                                      labels_path=labels, top_k=3)
    assert keras_results[0][0][0] == results[0][0][0]
    r = run_cli(["-m", "mdnet_keras", "predict", f"--model={tfl_path}", str(img)])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "%" in r.stdout and results[0][0][0] in r.stdout
    with pytest.raises(FileNotFoundError):
        predict_images(str(tfl_path), [str(tmp_path / "nope.png")])


def test_predict_names_the_run_folder_labels(tmp_path):
    from PIL import Image

    from export_models import NEU

    run = folder_run()
    image = sorted((NEU / "test" / "scratches").iterdir())[0]
    r = run_cli(["-m", "mdnet_keras", "predict", f"--model={run / 'best.keras'}",
                 str(image)])
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"Class names from {run / 'labels.txt'}." in r.stdout
    names = (run / "labels.txt").read_text().split()
    assert any(name in r.stdout for name in names)
    assert Image.open(image).size == (200, 200)  # resized to the model's 32x32
