"""MDNet under the PyTorch backend, in a subprocess (KERAS_BACKEND=torch).

The parent process runs TensorFlow; the child imports torch with TensorFlow
blocked, so it proves the model needs nothing of TensorFlow. Checked there:
build, predict (equal to TensorFlow's with the same weights), one `fit` step
on the project's `ImageBatches`, a `.keras` round trip, and the attention
maps; the parent then loads the torch-saved `.keras` under TensorFlow.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from mdnet_keras import MDNet

TINY = dict(variant="mdnet_micro", stem_channels=8,
            stage_channels=(8, 16, 16, 32), stage_depths=(1, 1, 2, 2),
            head_channels=32, expansion_ratio=2)
ATTENTION = "stage3_block1_attention"

TORCH_SCRIPT = """
import json, sys
sys.modules["tensorflow"] = None  # Fail on any TensorFlow import.
import numpy as np, keras
assert keras.backend.backend() == "torch", keras.backend.backend()
import mdnet_keras
from mdnet_keras.data import ImageBatches

weights, x_path, out = sys.argv[1:4]
model = mdnet_keras.MDNet(num_classes=5, **{kwargs})
model.load_weights(weights)
x = np.load(x_path)
np.save(out + "/predict.npy", model.predict(x, verbose=0))

layer = model.get_layer({attention!r})
features = keras.Model(model.input, layer.input)(x)
_, maps = layer(features, return_attention_scores=True)
np.savez(out + "/maps.npz",
         **{{k: keras.ops.convert_to_numpy(v) for k, v in maps.items()}})

model.compile("adamw", keras.losses.CategoricalCrossentropy(),
              jit_compile=False)
before = [w.copy() for w in model.get_weights()]
batches = ImageBatches(x.astype(np.uint8), np.arange(len(x)) % 5, 5,
                       batch_size=len(x), seed=0)
loss = model.fit(batches, epochs=1, shuffle=False,
                 verbose=0).history["loss"][0]
changed = sum(not np.array_equal(a, b)
              for a, b in zip(before, model.get_weights()))
model.save(out + "/torch.keras")
loaded = keras.saving.load_model(out + "/torch.keras")
np.save(out + "/trained.npy", model.predict(x, verbose=0))
np.save(out + "/loaded.npy", loaded.predict(x, verbose=0))
json.dump({{"loss": float(loss), "changed": changed,
           "weights": len(before)}}, open(out + "/fit.json", "w"))
"""


def attention_maps(model, x):
    layer = model.get_layer(ATTENTION)
    features = keras.Model(model.input, layer.input)(x)
    _, maps = layer(features, return_attention_scores=True)
    return {k: keras.ops.convert_to_numpy(v) for k, v in maps.items()}


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory):
    """Runs TORCH_SCRIPT once; returns (folder, TensorFlow model, images)."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("torch")
    model = MDNet(num_classes=5, **TINY)
    model.save_weights(out / "w.weights.h5")
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(
        "float32")
    np.save(out / "x.npy", x)
    script = TORCH_SCRIPT.format(kwargs=repr(TINY), attention=ATTENTION)
    env = dict(os.environ, KERAS_BACKEND="torch", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(
        [sys.executable, "-c", script, str(out / "w.weights.h5"),
         str(out / "x.npy"), str(out)],
        env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return out, model, x


def test_torch_predicts_as_tensorflow(torch_run):
    out, model, x = torch_run
    np.testing.assert_allclose(np.load(out / "predict.npy"),
                               model.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)


def test_torch_attention_maps_match_tensorflow(torch_run):
    out, model, x = torch_run
    expected = attention_maps(model, x)
    with np.load(out / "maps.npz") as got:
        assert set(got.files) == {"softmax_1", "softmax_2", "difference"}
        for key in got.files:
            assert got[key].shape == expected[key].shape
            np.testing.assert_allclose(got[key], expected[key], atol=1e-5)
        np.testing.assert_allclose(got["softmax_1"].sum(-1), 1.0, rtol=1e-5)


def test_torch_fit_step_changes_weights(torch_run):
    out, _, _ = torch_run
    fit = json.loads((out / "fit.json").read_text())
    assert np.isfinite(fit["loss"])
    # Most arrays are trained (the rest: BatchNorm statistics, lambdas' ...)
    assert fit["changed"] > fit["weights"] // 2


def test_torch_saved_model_loads_under_torch_and_tensorflow(torch_run):
    out, _, x = torch_run
    trained = np.load(out / "trained.npy")
    np.testing.assert_allclose(np.load(out / "loaded.npy"), trained,
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(trained, np.load(out / "predict.npy"))
    in_tf = keras.saving.load_model(out / "torch.keras")
    np.testing.assert_allclose(in_tf.predict(x, verbose=0), trained,
                               rtol=1e-4, atol=1e-5)
