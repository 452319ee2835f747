"""Models and data shared by the export tests (test_converter, test_validation,
test_micro, test_edgetpu, test_cli_convert, ...): not a test module itself.

Real data: CIFAR-10 (JPEG copy) from ../shared/data. Two small trained models
are built once per session (cached helpers):

- `toy()`: conv stem + MDNet's `StandardAttention` + classifier, trained 3
  epochs on 5,000 CIFAR-10 images (~10 s); ~43% test top-1 (chance 10%).
- `mdnet_micro()`: `MDNet(variant="mdnet_micro")`, trained 1 epoch on 3,000
  images (SLOW: ~30-40 s on 2 shared cores); its top-1 after so short a fit
  can be near chance (BatchNorm statistics barely move), so it serves the
  integer-only, TFLM, template and Edge TPU checks, not accuracy ones.

`tiny()` is an untrained model for the fast checks that need no accuracy.
"""

import functools
import os
import pathlib

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10.npz"

# Agreement thresholds (Keras argmax vs .tflite argmax on real test images).
# Float modes compute the same function (float16 weights/int8-weight dynamic
# ranges change outputs by ~1e-3), so nearly every image agrees. Full-int8
# quantizes the softmax output to 1/256 steps: images whose top-2
# probabilities are within a few steps flip; a briefly trained model has many
# such near-ties (measured 97.5% for the toy at ~50% top-1), a converged one
# agrees > 98%. 0.95 catches a broken conversion (wrong input scale, lost
# normalisation: agreement falls to ~chance) without flaking.
# int8_xnnpack (ai-edge-quantizer) also quantizes softmax probabilities
# symmetrically where a matmul reads them (one bit less): measured 95.2%
# against 96.8% for int8 on the toy.
AGREEMENT = {"float32": 0.995, "float16": 0.99, "dynamic": 0.97,
             "int16x8": 0.97, "int8": 0.95, "int8_xnnpack": 0.93}
# MDNet-micro after 1 short epoch: ~140 int8 ops and near-uniform outputs;
# measured 89% at 46% top-1. The check guards against a broken conversion.
MDNET_INT8_AGREEMENT = 0.80


def need_data():
    if not CIFAR.is_file():
        pytest.skip(f"real data not found at {CIFAR}")


@functools.lru_cache(maxsize=None)
def cifar():
    """(x_train, y_train, x_test, y_test, class_names): shuffled subsets."""
    need_data()
    from mdnet_keras.data.datasets import load_dataset

    ds = load_dataset("cifar10", data=str(CIFAR))
    rng = np.random.default_rng(0)
    tr = rng.permutation(len(ds.x_train))[:6000]
    te = rng.permutation(len(ds.x_test))[:1000]
    return (ds.x_train[tr], ds.y_train[tr], ds.x_test[te], ds.y_test[te],
            tuple(ds.class_names))


def build_toy(num_classes=10, input_shape=(32, 32, 3)):
    import keras
    from keras import layers

    from mdnet_keras import StandardAttention

    inp = keras.Input(input_shape)
    x = layers.Rescaling(1 / 127.5, offset=-1)(inp)
    x = layers.Conv2D(24, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(48, 3, strides=2, padding="same", activation="relu")(x)
    t = layers.Reshape((-1, 48))(x)
    t = layers.Add()([t, StandardAttention(num_heads=2)(t)])
    x = layers.GlobalAveragePooling1D()(t)
    out = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inp, out, name="toy")


def train_small(build, seed, num_images, epochs):
    """Trains `build()` briefly on real CIFAR-10; returns (model, top-1)."""
    import keras

    x, y, xt, yt, _ = cifar()
    keras.utils.set_random_seed(seed)
    model = build()
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x[:num_images].astype("float32"), y[:num_images], epochs=epochs,
              batch_size=32, verbose=0)
    acc = model.evaluate(xt.astype("float32"), yt, verbose=0)[1]
    return model, float(acc)


@functools.lru_cache(maxsize=None)
def toy():
    return train_small(build_toy, seed=1, num_images=5000, epochs=3)


@functools.lru_cache(maxsize=None)
def toy_path(tmp_root):
    model, _ = toy()
    path = os.path.join(tmp_root, "toy.keras")
    model.save(path)
    return path


@functools.lru_cache(maxsize=None)
def mdnet_micro():
    import mdnet_keras

    def build():
        return mdnet_keras.MDNet(input_shape=(32, 32, 3), num_classes=10,
                                 variant="mdnet_micro")

    return train_small(build, seed=2, num_images=3000, epochs=1)


@functools.lru_cache(maxsize=None)
def converted(which, mode, io_type="int8", max_depthwise_taps=25):
    """`.tflite` bytes of `toy` or `mdnet_micro` (calibrated on real images).

    `max_depthwise_taps=None` keeps the large kernels whole, as the convert
    command does for TFLite Micro (`--micro_out`)."""
    from mdnet_keras.export import convert_model

    model = toy()[0] if which == "toy" else mdnet_micro()[0]
    x = cifar()[0]
    return convert_model(model, mode, rep_images=x[5000:], num_calibration=100,
                             io_type=io_type, max_depthwise_taps=max_depthwise_taps)




def tiny(num_classes=4, input_shape=(16, 16, 3), seed=0):
    """An untrained conv classifier that converts in seconds (no data)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape)
    x = layers.Rescaling(1 / 127.5, offset=-1)(inp)
    x = layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(num_classes, activation="softmax")(x))


def tiny_images(n=20, input_shape=(16, 16, 3), seed=0):
    """Random uint8 pixels for the tiny model (calibration, runner checks)."""
    return np.random.default_rng(seed).integers(0, 256, (n,) + input_shape,
                                                dtype=np.uint8)


NEU = ROOT.parent / "shared" / "data" / "neu-surface-defects"


@functools.lru_cache(maxsize=None)
def folder_run():
    """A run folder of `train --dataset=folder` on the NEU images (SLOW:
    one short epoch at 32x32 greyscale); returns its path."""
    import subprocess
    import sys
    import tempfile

    if not NEU.is_dir():
        pytest.skip(f"real data not found at {NEU}")
    out = pathlib.Path(tempfile.mkdtemp(prefix="folder_run_")) / "run"
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    r = subprocess.run(
        [sys.executable, "-m", "mdnet_keras", "train", "--dataset=folder",
         f"--data={NEU}", "--image_size=32", "--channels=1",
         "--model=mdnet_micro", "--epochs=1", "--batch_size=64",
         "--verbose=0", f"--out={out}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def run_cli(args, timeout=300):
    """Runs `python ARGS` from the checkout; returns the CompletedProcess."""
    import subprocess
    import sys

    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    return subprocess.run([sys.executable] + list(args), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
