"""The run's callbacks: weight EMA in validation and checkpoints, the
wall-clock budget, NaN detection keeping the last good model."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from mdnet_keras.training import callbacks as run_callbacks
from mdnet_keras.training import inputs
from mdnet_keras.training import run
from training_util import TINY
from training_util import read_rows
from training_util import subprocess_env


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

    make = run_callbacks.make_callbacks
    monkeypatch.setattr(run_callbacks, "make_callbacks",
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
    # Validation of the last epoch saw the same (averaged) weights.
    from mdnet_keras.data import load_dataset

    dataset = load_dataset("npz", data=small_npz)
    _, _, x_val, y_val, _ = inputs.selection_split(dataset, 0.1, 0)
    probs = keras.saving.load_model(out / "last.keras").predict(
        x_val.astype("float32"), verbose=0)
    assert result["history"]["val_top1"][-1] == pytest.approx(
        float(np.mean(np.argmax(probs, -1) == y_val)), abs=1e-6)


def test_time_budget_stops_before_an_epoch_that_would_not_fit():
    assert not run_callbacks.should_stop_for_budget([30.0], 31.0)
    assert run_callbacks.should_stop_for_budget([30.0], 29.0)
    # The first epoch compiles: later epochs set the expected time.
    assert not run_callbacks.should_stop_for_budget([300.0, 10.0, 12.0], 20.0)
    assert run_callbacks.should_stop_for_budget([300.0, 10.0, 12.0], 10.5)


def test_time_budget_finishes_the_run_early(small_npz, monkeypatch, tmp_path):
    monkeypatch.setattr(run_callbacks, "should_stop_for_budget",
                        lambda durations, left: len(durations) >= 2)
    out = tmp_path / "budget"
    result = run.train(dataset="npz", data=small_npz, model="mdnet_micro",
                       model_config=TINY, epochs=4, recipe="legacy",
                       warmup_epochs=1, batch_size=64, verbose=0,
                       time_budget_minutes=60, out=str(out))
    assert result["history"]["epoch"] == [0, 1]
    assert (out / "model.weights.h5").exists()
    assert json.loads((out / "status.json").read_text())["state"] == "finished"


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
    make = run_callbacks.make_callbacks

    def with_poison(*args, **kwargs):
        callbacks = make(*args, **kwargs)
        return callbacks[:-1] + [Poison(epoch=1), callbacks[-1]]

    monkeypatch.setattr(run_callbacks, "make_callbacks", with_poison)
    out = str(tmp_path / "nan")
    with pytest.raises(run_callbacks.TrainingDivergedError) as info:
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


def test_best_model_is_written_atomically(tmp_path, monkeypatch):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = str(tmp_path / "best.keras")
    saver = run_callbacks.BestModelSaver(path)
    saver.set_model(model)
    saver.on_epoch_end(0, {"val_top1": 0.5})
    assert saver.best == 0.5
    first = open(path, "rb").read()
    saver.on_epoch_end(1, {"val_top1": 0.4})  # not better: not written
    assert open(path, "rb").read() == first

    def killed(self, filepath, *args, **kwargs):
        open(filepath, "wb").write(b"half a zip")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(keras.Model, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        saver.on_epoch_end(2, {"val_top1": 0.9})
    assert open(path, "rb").read() == first
    monkeypatch.undo()
    keras.saving.load_model(path)


def test_read_only_backup_restores_another_folder_and_writes_nothing(
        tmp_path):
    """A non-chief worker's backup: the chief's state, never written."""
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)

    def model():
        net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        net.compile("sgd", "mse")
        return net

    def backup(read_only):
        return run_callbacks.ResumableBackup(
            str(tmp_path / "chief" / "backup_full"), read_only=read_only,
            double_checkpoint=True, delete_checkpoint=False)

    chief = model()
    writer = backup(False)
    chief.fit(x, y, epochs=2, verbose=0,
              callbacks=[writer, run_callbacks.BackupWriter(writer)])
    metadata = tmp_path / "chief" / "backup_full" / "training_metadata.json"
    saved = metadata.read_text()
    assert json.loads(saved)["epoch"] == 2

    worker = model()
    reader = backup(True)
    seen, restored = [], []
    worker.fit(x, y, epochs=3, verbose=0, callbacks=[
        reader, run_callbacks.BackupWriter(reader),
        keras.callbacks.LambdaCallback(
            on_train_begin=lambda logs: restored.append(worker.get_weights()),
            on_epoch_begin=lambda epoch, logs: seen.append(epoch))])
    assert seen == [2]  # Resumed at the chief's epoch and weights...
    for got, want in zip(restored[0], chief.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert metadata.read_text() == saved  # ...and wrote nothing there.
    assert sorted(os.listdir(tmp_path)) == ["chief"]


def test_the_runs_callbacks_let_keras_dispatch_batch_ends_asynchronously(
        small_npz, tmp_path):
    # A batch-end hook on any callback makes fit wait for every step's logs
    # on the training thread (issue 11: what a fast accelerator idles on).
    # Keras dispatches them from another thread on JAX (not on TensorFlow).
    script = f"""
import threading
import keras
from mdnet_keras.training import callbacks as run_callbacks
from mdnet_keras.training import run

threads, made = set(), []

class Probe(keras.callbacks.Callback):
    async_safe = True  # Not counted when Keras decides.

    def on_train_batch_end(self, batch, logs=None):
        threads.add(threading.current_thread() is threading.main_thread())

make = run_callbacks.make_callbacks
def with_probe(*args, **kwargs):
    made.extend(make(*args, **kwargs))
    return made + [Probe()]

run_callbacks.make_callbacks = with_probe
run.train(dataset="npz", data={small_npz!r}, model="mdnet_micro",
          model_config={dict(TINY, stage_depths=[1, 1, 1, 1])!r}, epochs=1,
          recipe="fast", warmup_epochs=0, batch_size=64, verbose=0,
          out={str(tmp_path / "run")!r})
print("ON_MAIN_THREAD", sorted(threads))
print("TENSORBOARD", any(isinstance(c, run_callbacks.EpochTensorBoard)
                         for c in made))
"""
    done = subprocess.run([sys.executable, "-c", script],
                          env=subprocess_env(KERAS_BACKEND="jax"),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "ON_MAIN_THREAD [False]" in done.stdout
    assert "TENSORBOARD True" in done.stdout
    assert (tmp_path / "run" / "logs" / "train").is_dir()


def test_epoch_only_callbacks_refuse_batch_frequencies(tmp_path):
    with pytest.raises(ValueError, match="epoch ends only; got save_freq=5"):
        run_callbacks.ResumableBackup(str(tmp_path / "b"), save_freq=5)
    for option in ({"update_freq": 5}, {"profile_batch": 2}):
        (name, value), = option.items()
        with pytest.raises(ValueError, match=f"for {name}={value}"):
            run_callbacks.EpochTensorBoard(str(tmp_path / "l"), **option)
