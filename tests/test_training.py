"""`train()`: the run folder, resume after SIGKILL, NaN, seed, fine-tuning,
distribution (mirrored on two logical CPUs, multi-worker without TF_CONFIG)
and the JAX backend. Tiny models on the embedded CIFAR-10 sample."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from mdnet_keras.data import load_dataset
from mdnet_keras.training import evaluation
from mdnet_keras.training import recipe
from mdnet_keras.training import run

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = {"stem_channels": 8, "stage_channels": [8, 16, 24, 32],
        "stage_depths": [1, 1, 2, 1], "num_heads": [0, 0, 1, 1],
        "head_channels": 32}
ARTEFACTS = ("config.json", "labels.txt", "history.csv", "best.keras",
             "best.json", "last.keras", "model.weights.h5", "metrics.json",
             "history.png", "confusion_matrix.png", "status.json")


def subset_npz(path, per_class_train, per_class_test, classes=10):
    """A class-balanced subset of the embedded sample, as an .npz."""
    sample = load_dataset("sample")

    def pick(y, count):
        return np.concatenate([np.flatnonzero(y == c)[:count]
                               for c in range(classes)])

    train_idx = pick(sample.y_train, per_class_train)
    test_idx = pick(sample.y_test, per_class_test)
    np.savez(path, x_train=sample.x_train[train_idx],
             y_train=sample.y_train[train_idx],
             x_test=sample.x_test[test_idx], y_test=sample.y_test[test_idx])
    return str(path)


def subprocess_env(**extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    env.update(extra)
    return env


def read_rows(out):
    return evaluation.read_history(os.path.join(out, "history.csv"))


@pytest.fixture(scope="module")
def small_npz(tmp_path_factory):
    """600 train / 100 test images of the sample's 10 classes."""
    return subset_npz(tmp_path_factory.mktemp("data") / "small.npz", 60, 10)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "sample"
    config = dict(dataset="sample", model_config=TINY, epochs=4,
                  verbose=0, out=str(out))
    result = run.train(config)
    return config, result


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
    if run.module_available("tensorboard"):
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


def test_refuses_finished_run_folder(finished_run, tmp_path):
    config, _ = finished_run
    with pytest.raises(run.RunFolderError, match="finished run.*--overwrite"):
        run.train(config)
    # --overwrite replaces it (on a copy here).
    copy = tmp_path / "copy"
    shutil.copytree(config["out"], copy)
    resolved = run.resolve_config(dict(config, out=str(copy), overwrite=True))
    assert run.prepare_run_folder(resolved) is False
    assert os.listdir(copy) == []
    # The default folder moves on to the first unfinished one.
    root = tmp_path / "runs"
    shutil.copytree(config["out"], root / "sample-mdnet_micro")
    default = run.default_out_dir(run.resolve_config(out="x"), root=str(root))
    assert default == str(root / "sample-mdnet_micro-2")


def test_refuses_foreign_or_other_config_folder(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(run.RunFolderError, match="holds no training run"):
        run.prepare_run_folder(run.resolve_config(out=str(foreign),
                                                  overwrite=True))
    assert (foreign / "notes.txt").exists()
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    config = run.resolve_config(out=str(unfinished), epochs=3)
    evaluation.write_json(unfinished / "config.json",
                          {"config": run.dataclasses.asdict(config)})
    assert run.prepare_run_folder(config) is True  # same config: resume
    with pytest.raises(run.RunFolderError, match="another configuration.*epochs"):
        run.prepare_run_folder(run.resolve_config(out=str(unfinished),
                                                  epochs=5))


def test_unknown_names_error():
    with pytest.raises(ValueError, match="Unknown dataset 'imagenet'"):
        run.resolve_config(dataset="imagenet")
    with pytest.raises(ValueError, match="Unknown model 'mdnet_huge'"):
        run.resolve_config(model="mdnet_huge")
    with pytest.raises(ValueError, match="Unknown strategy"):
        run.resolve_config(strategy="parameter_server")
    with pytest.raises(ValueError, match="Unknown training options"):
        run.resolve_config(epoch=3)


def test_recipe_errors_name_the_value():
    with pytest.raises(ValueError, match="--recipe: Unknown recipe 'turbo'"):
        run.resolve_config(recipe="turbo")
    with pytest.raises(ValueError, match="Unknown optimizer 'rmsprop'"):
        run.resolve_config(optimizer="rmsprop")
    with pytest.raises(ValueError, match="`ema_momentum` must be in"):
        run.resolve_config(ema_momentum=1.0)
    with pytest.raises(ValueError, match="`time_budget_minutes` must be > 0"):
        run.resolve_config(time_budget_minutes=0)
    cifar = run.resolve_config(dataset="cifar10", epochs=15)
    assert (cifar.recipe, cifar.optimizer, cifar.schedule) == (
        "fast", "sgd", "one_cycle")
    assert run.resolve_config(dataset="cifar10").recipe == "long"
    # A flag wins over its recipe; the sample's own values only go with
    # the sample's own recipe.
    assert run.resolve_config(recipe="fast", label_smoothing=0.0
                              ).label_smoothing == 0.0
    assert run.resolve_config().learning_rate == 2e-3
    assert run.resolve_config(recipe="fast").learning_rate == (
        recipe.RECIPES["fast"].learning_rate)


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


def test_ema_weights_are_validated_and_saved(small_npz, monkeypatch,
                                             tmp_path):
    seen = []

    class AfterEverything(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            optimizer = self.model.optimizer
            seen.append({
                "raw": [keras.ops.convert_to_numpy(v).copy()
                        for v in self.model.trainable_variables],
                "average": [keras.ops.convert_to_numpy(v).copy() for v in
                            optimizer._model_variables_moving_average],
            })

    make = run.make_callbacks
    monkeypatch.setattr(run, "make_callbacks",
                        lambda *a, **k: make(*a, **k) + [AfterEverything()])
    out = tmp_path / "ema"
    result = run.train(dataset="npz", data=small_npz, model="mdnet_micro",
                       model_config=TINY, epochs=2, recipe="fast",
                       warmup_epochs=1, ema_momentum=0.8, batch_size=64,
                       verbose=0, out=str(out))
    facts = json.loads((out / "config.json").read_text())["run"]
    assert facts["ema_momentum"] == 0.8
    # After epoch 1 the backup holds the raw weights beside their average.
    assert any(not np.allclose(r, a) for r, a in
               zip(seen[0]["raw"], seen[0]["average"]))
    # The saved models are the average of the last epoch.
    final = seen[-1]["average"]
    for path in ("last.keras", "best.keras"):
        saved = keras.saving.load_model(out / path)
        if path == "best.keras" and result["history"]["val_top1"][0] >= \
                result["history"]["val_top1"][1]:
            continue
        for a, b in zip(saved.trainable_variables, final):
            np.testing.assert_allclose(keras.ops.convert_to_numpy(a), b,
                                       rtol=1e-6, atol=1e-6)
    # Validation of the last epoch saw the same (averaged) weights as the
    # final test report.
    assert result["history"]["val_top1"][-1] == pytest.approx(
        result["metrics"]["top1"])


def test_time_budget_stops_before_an_epoch_that_would_not_fit():
    assert not run.should_stop_for_budget([30.0], 31.0)
    assert run.should_stop_for_budget([30.0], 29.0)
    # The first epoch compiles: later epochs set the expected time.
    assert not run.should_stop_for_budget([300.0, 10.0, 12.0], 20.0)
    assert run.should_stop_for_budget([300.0, 10.0, 12.0], 10.5)


def test_time_budget_finishes_the_run_early(small_npz, monkeypatch, tmp_path):
    monkeypatch.setattr(run, "should_stop_for_budget",
                        lambda durations, left: len(durations) >= 2)
    out = tmp_path / "budget"
    result = run.train(dataset="npz", data=small_npz, model="mdnet_micro",
                       model_config=TINY, epochs=4, recipe="legacy",
                       warmup_epochs=1, batch_size=64, verbose=0,
                       time_budget_minutes=60, out=str(out))
    assert result["history"]["epoch"] == [0, 1]
    assert (out / "model.weights.h5").exists()
    assert json.loads((out / "status.json").read_text())["state"] == "finished"


def test_multi_worker_without_tf_config_errors(monkeypatch, tmp_path):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    out = tmp_path / "mw"
    with pytest.raises(ValueError, match="TF_CONFIG"):
        run.train(strategy="multi_worker", out=str(out))
    assert not out.exists()


class Poison(keras.callbacks.Callback):
    """Makes a weight NaN after the last step of epoch `epoch`."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch
        self.current = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == self.params["steps"] - 1:
            variable = self.model.trainable_variables[0]
            variable.assign(np.full(variable.shape, np.nan, "float32"))


def test_nan_stops_and_keeps_last_good_model(monkeypatch, small_npz,
                                             tmp_path):
    make = run.make_callbacks

    def with_poison(*args, **kwargs):
        callbacks = make(*args, **kwargs)
        return callbacks[:-1] + [Poison(epoch=1), callbacks[-1]]

    monkeypatch.setattr(run, "make_callbacks", with_poison)
    out = str(tmp_path / "nan")
    with pytest.raises(run.TrainingDivergedError) as info:
        run.train(dataset="npz", data=small_npz, model="mdnet_micro",
                  model_config=TINY, epochs=3, batch_size=64, verbose=0,
                  out=out)
    message = str(info.value)
    assert "not finite after epoch 2" in message
    assert "last good model of epoch 1" in message
    assert "--learning_rate" in message
    assert read_rows(out)["epoch"] == [0]
    last = keras.saving.load_model(os.path.join(out, "last.keras"))
    assert all(np.isfinite(w).all() for w in last.get_weights())
    assert os.path.exists(os.path.join(out, "backup_full",
                                       "latest.weights.h5"))
    meta = json.load(open(os.path.join(out, "backup_full",
                                       "training_metadata.json")))
    assert meta["epoch"] == 1
    assert json.load(open(os.path.join(out, "status.json")))["state"] == "diverged"
    assert not os.path.exists(os.path.join(out, "metrics.json"))


def train_command(data, out, epochs=3, model_config=TINY):
    return [sys.executable, "-m", "mdnet_keras", "train", "--dataset=npz",
            f"--data={data}", "--model=mdnet_micro",
            f"--model_config={json.dumps(model_config)}", f"--epochs={epochs}",
            "--batch_size=32", "--warmup_epochs=1", "--verbose=2",
            f"--out={out}"]


@pytest.fixture(scope="module")
def resumed_runs(small_npz, tmp_path_factory):
    """An uninterrupted run, and one SIGKILLed mid-epoch then re-run."""
    root = tmp_path_factory.mktemp("resume")
    reference_out, killed_out = root / "reference", root / "killed"
    env = subprocess_env()
    reference = subprocess.Popen(train_command(small_npz, reference_out),
                                 env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
    victim = subprocess.Popen(train_command(small_npz, killed_out), env=env,
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    meta = killed_out / "backup_full" / "training_metadata.json"
    deadline = time.time() + 400
    while time.time() < deadline and victim.poll() is None:
        try:
            if json.loads(meta.read_text())["epoch"] >= 1:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    time.sleep(0.5)  # Into the second epoch's steps.
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    at_kill = {
        "history": read_rows(killed_out),
        "best": json.loads((killed_out / "best.json").read_text()),
        "backup_epoch": json.loads(meta.read_text())["epoch"],
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

    best_before = at_kill["best"][run.MONITOR]
    best_after = json.loads(
        (resumed_runs["killed"] / "best.json").read_text())[run.MONITOR]
    assert best_after >= best_before
    report = evaluation.evaluate_keras_model(str(resumed_runs["killed"] / "best.keras"),
                                  "npz", data=small_npz)
    assert report["top1"] >= best_before - 1e-6
    assert report["top1"] == pytest.approx(best_after, abs=1e-6)


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

    make = run.make_callbacks
    monkeypatch.setattr(run, "make_callbacks",
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


def test_mirrored_strategy_on_two_logical_cpus(small_npz, tmp_path):
    out = tmp_path / "mirrored"
    script = f"""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from mdnet_keras.training import train
train(dataset="npz", data={small_npz!r}, model="mdnet_micro",
      model_config={TINY!r}, epochs=1, batch_size=64, strategy="mirrored",
      verbose=0, out={str(out)!r})
"""
    done = subprocess.run([sys.executable, "-c", script], env=subprocess_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    facts = json.loads((out / "config.json").read_text())["run"]
    assert facts["num_replicas"] == 2
    assert facts["per_replica_batch_size"] == 32
    assert read_rows(out)["epoch"] == [0]
    assert (out / "metrics.json").exists()


def test_trains_under_jax_without_tensorflow(small_npz, tmp_path):
    out = tmp_path / "jax"
    # No attention blocks: XLA compiles faster on the CPU.
    conv_only = dict(TINY, stage_depths=[1, 1, 1, 1])
    args = train_command(small_npz, out, epochs=1,
                         model_config=conv_only)[3:] + ["--batch_size=20"]
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
