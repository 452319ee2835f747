"""The package as a user installs it: a wheel in a fresh virtual environment,
run outside the checkout (slow: builds the wheel, imports TensorFlow in
subprocesses).

The environment is made with `python -m venv --system-site-packages` from
this interpreter; a venv made from a venv's interpreter sees the base
Python's site-packages, not this environment's, so a `.pth` file adds this
environment's site-packages after the venv's own. The dependencies come from
here (nothing is downloaded: `pip install --no-deps`); `mdnet_keras` comes from
the wheel, which the first check proves.
"""

import os
import shutil
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

from export_models import ROOT

pytestmark = pytest.mark.slow

# The TFLite Micro app template, once it is package data (until then
# `convert --micro_out` only works from a source checkout).

NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.pyc", "build", "*.egg-info", "runs",
    ".pytest_cache", ".whl", ".device", "artifacts", "tmp")


def _check(cmd, cwd, env=None, timeout=600):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of the fresh venv, env without PYTHONPATH, a folder outside
    the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)  # builds leave no trace here
    dist = tmp / "dist"
    _check([sys.executable, "-m", "pip", "wheel", "--no-deps",
            "--no-build-isolation", "-w", str(dist), str(source)], cwd=tmp)
    wheels = list(dist.glob("mdnet_keras-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp / "venv"
    _check([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
           cwd=tmp)
    python = venv / "bin" / "python"
    purelib = _check([str(python), "-c", "import sysconfig; "
                      "print(sysconfig.get_paths()['purelib'])"], cwd=tmp).stdout.strip()
    parent = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    with open(os.path.join(purelib, "parent_environment.pth"), "w") as f:
        f.write("".join(f"{p}\n" for p in sorted(parent)))
    _check([str(python), "-m", "pip", "install", "--no-deps", "--no-index",
            str(wheels[0])], cwd=tmp)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["KERAS_BACKEND"] = "tensorflow"
    outside = tmp / "user"
    outside.mkdir()
    return python, env, outside, purelib


def _tiny_model(path, input_shape=(32, 32, 3), num_classes=10):
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input(input_shape)
    x = layers.Rescaling(1 / 127.5, offset=-1)(inp)
    x = layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    keras.Model(inp, layers.Dense(num_classes, activation="softmax")(x)).save(path)


def test_package_comes_from_the_wheel(installed):
    python, env, outside, purelib = installed
    r = _check([str(python), "-c", "import mdnet_keras; print(mdnet_keras.__file__)"],
               cwd=outside, env=env)
    assert r.stdout.strip().startswith(purelib), r.stdout


def test_predict_from_the_wheel(installed):
    from PIL import Image

    python, env, outside, _ = installed
    model = outside / "tiny.keras"
    _tiny_model(model)
    (outside / "labels.txt").write_text("".join(f"c{i}\n" for i in range(10)))
    image = outside / "photo.png"
    pixels = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    r = _check([str(python), "-m", "mdnet_keras", "predict", f"--model={model}",
                str(image)], cwd=outside, env=env)
    assert "photo.png" in r.stdout and "%" in r.stdout
    assert f"Class names from {outside / 'labels.txt'}." in r.stdout


def test_convert_micro_out_from_the_wheel(installed):
    pytest.importorskip("tflite_micro")
    python, env, outside, _ = installed
    # A folder of its own: the predict test's labels.txt names other classes.
    folder = outside / "micro"
    folder.mkdir()
    model = folder / "micro.keras"
    _tiny_model(model)
    micro = folder / "micro_app"
    r = _check([str(python), "-m", "mdnet_keras", "convert", f"--model={model}",
                "--mode=int8", "--dataset=sample", "--eval_images=50",
                "--num_calibration=20", f"--micro_out={micro}"],
               cwd=outside, env=env)
    assert "TFLM: arena" in r.stdout
    assert (micro / "model_data.cc").is_file()
