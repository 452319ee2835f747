"""`train()`: every artefact, checks before writing, resume after SIGKILL,
seed, fine-tuning and the JAX backend. Tiny models on the embedded CIFAR-10
sample."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from mdnet_keras.data import load_dataset
from mdnet_keras.training import callbacks as run_callbacks
from mdnet_keras.training import inputs
from mdnet_keras.training import recipe
from mdnet_keras.training import run
from mdnet_keras.training import run_folder
from training_util import ARTEFACTS
from training_util import TINY
from training_util import kill_in_epoch_after
from training_util import read_rows
from training_util import subprocess_env
from training_util import subset_npz
from training_util import train_command


def test_train_writes_every_artefact_and_learns(finished_run):
    config, result = finished_run
    out = config["out"]
    for name in ARTEFACTS:
        assert os.path.isfile(os.path.join(out, name)), name
    saved = json.load(open(os.path.join(out, "config.json")))
    assert saved["config"]["model"] == "mdnet_micro"  # the sample's default
    assert saved["config"]["epochs"] == 4
    assert saved["run"]["num_classes"] == 10
    assert saved["run"]["peak_learning_rate"] == pytest.approx(1e-3)
    labels = open(os.path.join(out, "labels.txt")).read().split()
    assert labels[:2] == ["airplane", "automobile"]

    history = read_rows(out)
    assert history["epoch"] == [0, 1, 2, 3]
    assert history["loss"][-1] < history["loss"][0]
    assert history["learning_rate"][-1] == pytest.approx(0.0, abs=1e-9)

    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["num_examples"] == 200
    assert sum(map(sum, metrics["confusion_matrix"])) == 200
    assert set(metrics["per_class"]["cat"]) == {"precision", "recall", "f1",
                                               "support"}
    assert metrics["top5"] >= metrics["top1"]
    # Above chance (10%) on 200 held-out real CIFAR-10 images.
    assert metrics["top1"] >= 0.15, metrics["top1"]
    assert metrics == result["metrics"]
    assert json.load(open(os.path.join(out, "status.json")))["state"] == "finished"
    assert not any(name.startswith("backup") for name in os.listdir(out))
    for name in ("history.png", "confusion_matrix.png"):
        assert open(os.path.join(out, name), "rb").read(4) == b"\x89PNG"
    if run_callbacks.module_available("tensorboard"):
        events = [f for _, _, files in os.walk(os.path.join(out, "logs"))
                  for f in files if "tfevents" in f]
        assert events

    # The shipped weights: no optimizer state, loadable into a fresh MDNet.
    weights = os.path.join(out, "model.weights.h5")
    assert os.path.getsize(weights) < 0.6 * os.path.getsize(
        os.path.join(out, "last.keras"))
    from mdnet_keras.models import MDNet

    fresh = MDNet((32, 32, 3), num_classes=10, variant="mdnet_micro",
                  dropout_rate=0.2, **TINY)
    fresh.load_weights(weights)
    last = keras.saving.load_model(os.path.join(out, "last.keras"))
    for a, b in zip(fresh.get_weights(), last.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_warmup_past_the_run_and_unfillable_ema_fail_before_writing(
        small_npz, tmp_path):
    out = tmp_path / "short"
    with pytest.raises(ValueError, match="warm-up .*does not end"):
        run.train(dataset="npz", data=small_npz, model="mdnet_micro",
                  model_config=TINY, epochs=1, warmup_epochs=2,
                  batch_size=64, verbose=0, out=str(out))
    with pytest.raises(ValueError, match="averages over about"):
        run.train(dataset="npz", data=small_npz, model="mdnet_micro",
                  model_config=TINY, epochs=1, warmup_epochs=0,
                  ema_momentum=0.99,
                  batch_size=64, verbose=0, out=str(out))
    assert not (out / "config.json").exists()


@pytest.fixture(scope="module")
def resumed_runs(small_npz, tmp_path_factory):
    """An uninterrupted run, and one SIGKILLed mid-epoch then re-run."""
    root = tmp_path_factory.mktemp("resume")
    reference_out, killed_out = root / "reference", root / "killed"
    env = subprocess_env()
    reference = subprocess.Popen(train_command(small_npz, reference_out),
                                 env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
    kill_in_epoch_after(train_command(small_npz, killed_out),
                        killed_out / "backup_full", 1, timeout=400)
    at_kill = {
        "history": read_rows(killed_out),
        "best": json.loads((killed_out / "best.json").read_text()),
        "backup_epoch": json.loads(
            (killed_out / "backup_full" / "training_metadata.json").read_text())["epoch"],
    }
    resumed = subprocess.run(train_command(small_npz, killed_out), env=env,
                             capture_output=True, text=True, timeout=600)
    reference_log = reference.communicate(timeout=600)[0]
    assert reference.returncode == 0, reference_log[-3000:]
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    return {"reference": reference_out, "killed": killed_out,
            "at_kill": at_kill, "resumed_log": resumed.stdout}


def test_resume_after_sigkill_mid_epoch(resumed_runs, small_npz):
    at_kill = resumed_runs["at_kill"]
    # Killed after one finished epoch and before the second one finished.
    assert at_kill["history"]["epoch"] == [0]
    assert at_kill["backup_epoch"] == 1
    assert "Resuming from epoch 2" in resumed_runs["resumed_log"]

    history = read_rows(resumed_runs["killed"])
    reference = read_rows(resumed_runs["reference"])
    assert history["epoch"] == [0, 1, 2]  # each epoch once
    np.testing.assert_allclose(history["learning_rate"],
                               reference["learning_rate"], rtol=1e-6)
    np.testing.assert_allclose(history["loss"], reference["loss"], rtol=1e-3)
    # With the weight EMA and its BatchNorm re-estimation (the defaults for
    # .npz data), validation follows the same curve too.
    np.testing.assert_allclose(history["val_top1"], reference["val_top1"],
                               atol=1e-6)

    best_before = at_kill["best"][run_folder.MONITOR]
    best_after = json.loads(
        (resumed_runs["killed"] / "best.json").read_text())[run_folder.MONITOR]
    assert best_after >= best_before
    # best.keras is the model that scored best_after on the validation split.
    dataset = load_dataset("npz", data=small_npz)
    _, _, x_val, y_val, _ = inputs.selection_split(dataset, 0.1, 0)
    best = keras.saving.load_model(resumed_runs["killed"] / "best.keras")
    probs = best.predict(x_val.astype("float32"), verbose=0)
    assert float(np.mean(np.argmax(probs, -1) == y_val)) == pytest.approx(
        best_after, abs=1e-6)


def test_seed_gives_same_first_epoch_loss(resumed_runs):
    # Two separate CPU processes with the same --seed (the killed run's
    # first epoch was trained before the kill).
    first = resumed_runs["at_kill"]["history"]["loss"][0]
    assert first == read_rows(resumed_runs["reference"])["loss"][0]


def test_fine_tune_from_trained_model_with_frozen_backbone(
        finished_run, monkeypatch, tmp_path):
    config, _ = finished_run
    source = keras.saving.load_model(os.path.join(config["out"], "best.keras"))
    data = subset_npz(tmp_path / "five.npz", 40, 10, classes=5)
    seen = []

    class Recorder(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append({layer: [w.copy() for w in
                                 self.model.get_layer(layer).get_weights()]
                         for layer in ("stem_conv", "stem_bn",
                                       "predictions")})

    make = run_callbacks.make_callbacks
    monkeypatch.setattr(run_callbacks, "make_callbacks",
                        lambda *a, **k: make(*a, **k) + [Recorder()])
    result = run.train(dataset="npz", data=data, model="mdnet_micro",
                       model_config=TINY, epochs=2, freeze_backbone_epochs=1,
                       init_from=os.path.join(config["out"], "best.keras"),
                       batch_size=64, warmup_epochs=0, verbose=0,
                       recipe="legacy", class_weight="balanced",
                       out=str(tmp_path / "fine"))
    stem = source.get_layer("stem_conv").get_weights()[0]
    bn = source.get_layer("stem_bn").get_weights()
    # Epoch 1: backbone frozen (weights and BatchNorm statistics), head trains.
    np.testing.assert_array_equal(seen[0]["stem_conv"][0], stem)
    for a, b in zip(seen[0]["stem_bn"], bn):
        np.testing.assert_array_equal(a, b)
    assert seen[0]["predictions"][0].shape[-1] == 5
    # Epoch 2: everything trains.
    assert not np.array_equal(seen[1]["stem_conv"][0], stem)
    # One schedule over both phases: the optimizer step carries over.
    steps = 4  # 200 images / 64
    schedule = recipe.learning_rate_schedule(
        recipe.scaled_learning_rate(1e-3, 64), 2 * steps, 0)
    expected = [float(keras.ops.convert_to_numpy(schedule(s)))
                for s in (steps, 2 * steps)]
    np.testing.assert_allclose(result["history"]["learning_rate"], expected,
                               rtol=1e-5, atol=1e-9)
    assert result["metrics"]["num_examples"] == 50
    facts = json.loads((tmp_path / "fine" / "config.json").read_text())["run"]
    assert facts["class_weight"] == {str(c): 1.0 for c in range(5)}


def test_trains_under_jax_without_tensorflow(small_npz, tmp_path):
    out = tmp_path / "jax"
    # No attention blocks: XLA compiles faster on the CPU.
    conv_only = dict(TINY, stage_depths=[1, 1, 1, 1])
    args = train_command(small_npz, out, epochs=1,
                         model_config=conv_only)[3:] + ["--batch_size=20", "--warmup_epochs=0"]
    script = ("import sys; sys.modules['tensorflow'] = None\n"
              "from mdnet_keras.cli.main import run\n"
              f"run(['mdnet_keras'] + {args!r})\n")
    done = subprocess.run([sys.executable, "-c", script],
                          env=subprocess_env(KERAS_BACKEND="jax"),
                          capture_output=True, text=True, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "No TensorBoard logs: tensorflow" in log
    assert "Run folder:" in log
    facts = json.loads((out / "config.json").read_text())["run"]
    assert facts["backend"] == "jax"
    assert facts["jit_compile"] is True
    assert read_rows(out)["epoch"] == [0]
    assert (out / "best.keras").exists() and (out / "metrics.json").exists()


def test_metrics_report_best_and_last_epoch_on_test(finished_run):
    config, result = finished_run
    saved = json.load(open(os.path.join(config["out"], "config.json")))["run"]
    assert saved["num_validation"] == 100 and saved["num_train"] == 900
    metrics = result["metrics"]
    assert "training images" in metrics["selection"]
    assert metrics["num_examples"] == 200
    assert {"epoch", "val_top1", "test_top1", "test_top5"} <= set(
        metrics["best"])


def test_a_run_killed_in_its_second_phase_resumes_there(tmp_path):
    phases = [("frozen", 2, False), ("full", 5, True)]
    assert run.phases_left(phases, str(tmp_path)) == (phases, 0)
    (tmp_path / "backup_frozen").mkdir()
    (tmp_path / "backup_frozen" / "training_metadata.json").write_text("{}")
    assert run.phases_left(phases, str(tmp_path)) == (phases, 0)
    (tmp_path / "backup_full").mkdir()
    (tmp_path / "backup_full" / "training_metadata.json").write_text("{}")
    assert run.phases_left(phases, str(tmp_path)) == (phases[1:], 2)


def test_steps_per_execution_trains_the_same_steps(small_npz, tmp_path):
    # 540 training images (a tenth of 600 validates) in batches of 64: 9
    # steps an epoch, so 4 steps a call leaves a last call of 1.
    class BatchEnds(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.batches = []

        def on_train_batch_end(self, batch, logs=None):
            self.batches.append(batch)

    runs, calls = {}, {}
    # "auto" (the default) is one step a call on this CPU machine.
    for steps, value in ((1, "auto"), (4, 4)):
        calls[steps] = BatchEnds()
        runs[steps] = run.train(dict(
            dataset="npz", data=small_npz, model_config=TINY, epochs=2,
            batch_size=64, warmup_epochs=0, steps_per_execution=value,
            verbose=0, out=str(tmp_path / f"spe{steps}")),
            callbacks=[calls[steps]])
    # Keras calls batch hooks once per compiled call.
    assert calls[1].batches == list(range(9)) * 2
    assert len(calls[4].batches) == 3 * 2
    for steps, value in ((1, "auto"), (4, 4)):
        written = json.loads((tmp_path / f"spe{steps}" / "config.json").read_text())
        assert written["config"]["steps_per_execution"] == value
        assert written["run"]["steps_per_execution"] == steps
    np.testing.assert_allclose(runs[4]["history"]["loss"],
                               runs[1]["history"]["loss"], rtol=1e-4)
    # Validation and the test-split report run several steps a call too.
    np.testing.assert_allclose(runs[4]["history"]["val_loss"],
                               runs[1]["history"]["val_loss"], rtol=1e-4)
    assert runs[4]["metrics"]["num_examples"] == 100
    assert runs[4]["metrics"]["top1"] == pytest.approx(
        runs[1]["metrics"]["top1"], abs=0.011)
    one, four = (keras.saving.load_model(tmp_path / f"spe{s}" / "last.keras")
                 for s in (1, 4))
    for a, b in zip(one.weights, four.weights):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-3, atol=1e-5,
                                   err_msg=a.path)
