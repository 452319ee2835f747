"""BatchNorm statistics re-estimated for the averaged (EMA) weights: the
function against a direct computation, the callback inside `fit`
(validation, checkpoints, backup), the option's values, and resume."""

import json

import keras
import numpy as np
import pytest

from mdnet_keras.training import batchnorm
from mdnet_keras.training import callbacks as run_callbacks
from mdnet_keras.training import config as train_config
from mdnet_keras.training import run
from training_util import TINY
from training_util import read_rows


def small_model():
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(5, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.99, name="norm")(x)
    x = keras.layers.ReLU()(x)
    frozen = keras.layers.BatchNormalization(name="frozen")
    frozen.trainable = False
    x = frozen(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def test_statistics_are_the_average_of_the_batch_statistics():
    model = small_model()
    images = np.random.default_rng(0).normal(
        3.0, 2.0, size=(12, 4, 4, 3)).astype("float32")
    batches = [images[i:i + 4] for i in range(0, 12, 4)]
    norm, frozen = model.get_layer("norm"), model.get_layer("frozen")
    weights = [w.numpy().copy() for w in model.trainable_weights]
    frozen_before = [v.numpy().copy() for v in frozen.non_trainable_variables]

    assert batchnorm.reestimate_batchnorm(model, batches, 2) == 1
    # Direct: the conv outputs' per-channel moments of each of the first two
    # batches, averaged (the statistics before do not enter).
    conv = keras.Model(model.input, model.get_layer("conv").output)
    outputs = [conv(batch).numpy().reshape(-1, 5) for batch in batches[:2]]
    np.testing.assert_allclose(norm.moving_mean.numpy(),
                               np.mean([o.mean(0) for o in outputs], 0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm.moving_variance.numpy(),
                               np.mean([o.var(0) for o in outputs], 0),
                               rtol=1e-5, atol=1e-6)
    assert norm.momentum == 0.99
    for before, after in zip(weights, model.trainable_weights):
        np.testing.assert_array_equal(before, after.numpy())
    for before, after in zip(frozen_before, frozen.non_trainable_variables):
        np.testing.assert_array_equal(before, after.numpy())
    # The result depends on the weights and batches only.
    first = norm.moving_mean.numpy().copy()
    norm.moving_mean.assign(np.full(5, 100.0, "float32"))
    batchnorm.reestimate_batchnorm(model, batches, 2)
    np.testing.assert_allclose(norm.moving_mean.numpy(), first, rtol=1e-6)


def test_compiled_forward_gives_the_eager_calls_statistics():
    # The re-estimation runs one compiled training-mode forward pass per
    # batch (op by op it cost several times a training step); its
    # statistics are the eager call's, also when one compiled function
    # serves several calls, as in the callback.
    model = small_model()
    eager = keras.models.clone_model(model)
    eager.set_weights(model.get_weights())
    images = np.random.default_rng(1).normal(
        1.0, 3.0, size=(12, 4, 4, 3)).astype("float32")
    batches = [images[i:i + 4] for i in range(0, 12, 4)]
    batchnorm.reestimate_batchnorm(
        eager, batches, forward=lambda b: eager(b, training=True))
    forward = batchnorm.training_forward(model)
    for _ in range(2):
        batchnorm.reestimate_batchnorm(model, batches, forward=forward)
        assert_stats_equal(stats_of(model), stats_of(eager), rtol=1e-5,
                           atol=1e-6)


def test_calibration_batches_are_fixed_and_augmented_like_training():
    from mdnet_keras.data import ImageBatches

    x = np.random.default_rng(0).integers(1, 255, (50, 8, 8, 3), "uint8")
    train = ImageBatches(x, np.arange(50) % 10, 10, batch_size=8, seed=3,
                         crop_padding=2)
    first = batchnorm.calibration_batches(train, 3)
    train.epoch = 5  # the training data moves on; the calibration set not
    again = batchnorm.calibration_batches(train, 3)
    assert len(first) == 3 and first[0][0].shape == (8, 8, 8, 3)
    for index in range(3):
        np.testing.assert_array_equal(first[index][0], again[index][0])
    # Cropped with the training padding (zero borders appear).
    seen = np.concatenate([first[i][0] for i in range(3)])
    assert (seen == 0).any() and not (x == 0).any()
    assert len(batchnorm.calibration_batches(train, 100)) == 7  # all 50


@pytest.mark.parametrize("value", [-1, 1.5, True, "3"])
def test_bad_values_are_refused_naming_the_flag(value):
    with pytest.raises(ValueError, match="--bn_recalibration_batches must be "
                                         "a whole number"):
        train_config.resolve_config(bn_recalibration_batches=value)


def stats_of(model):
    return batchnorm.statistics(batchnorm.batchnorm_layers(model))


def assert_stats_equal(a, b, **tolerance):
    for layer_a, layer_b in zip(a, b):
        for x, y in zip(layer_a, layer_b):
            np.testing.assert_allclose(x, y, **tolerance)


def stats_differ(a, b):
    return any(not np.allclose(x, y) for la, lb in zip(a, b)
               for x, y in zip(la, lb))


class Recorder(keras.callbacks.Callback):
    """Runs after all the run's callbacks at every hook."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches
        self.epochs = []

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.params["steps"] - 1:
            self.epochs.append({
                "raw_stats": stats_of(self.model),
                "raw": [w.numpy().copy() for w in self.model.trainable_weights],
                "average": [v.numpy().copy() for v in
                            self.model.optimizer._model_variables_moving_average],
            })

    def on_test_begin(self, logs=None):
        epoch = self.epochs[-1]
        epoch["val_weights"] = [w.numpy().copy()
                                for w in self.model.trainable_weights]
        epoch["val_stats"] = stats_of(self.model)
        if self.batches is not None:
            # Re-estimated directly on a copy holding the same weights.
            copy = keras.models.clone_model(self.model)
            copy.set_weights(self.model.get_weights())
            batchnorm.reestimate_batchnorm(copy, self.batches[0])
            epoch["direct_stats"] = stats_of(copy)

    def on_epoch_end(self, epoch, logs=None):
        self.epochs[-1]["backup_stats"] = stats_of(self.model)
        self.epochs[-1]["backup_weights"] = [
            w.numpy().copy() for w in self.model.trainable_weights]


def train_recorded(small_npz, out, monkeypatch, bn_batches, epochs=2):
    made = []
    make = batchnorm.calibration_batches
    monkeypatch.setattr(batchnorm, "calibration_batches",
                        lambda *a: made.append(make(*a)) or made[-1])
    recorder = Recorder(made if bn_batches else None)
    result = run.train(dataset="npz", data=small_npz, model="mdnet_micro",
                       model_config=TINY, epochs=epochs, recipe="fast",
                       warmup_epochs=1, ema_momentum=0.8, batch_size=64,
                       drop_path_rate=0.0, bn_recalibration_batches=bn_batches,
                       verbose=0,
                       out=str(out), callbacks=[recorder])
    return result, recorder.epochs, made


def test_averaged_weights_get_their_statistics_and_backup_the_raw_ones(
        small_npz, monkeypatch, tmp_path):
    out = tmp_path / "bn"
    result, epochs, made = train_recorded(small_npz, out, monkeypatch, 3)
    assert len(made) == 1 and len(made[0]) == 3
    for index, epoch in enumerate(epochs):
        # Validation sees the averaged weights with re-estimated statistics.
        # (SwapEMAWeights swaps by adding and subtracting: float rounding.)
        for w, a in zip(epoch["val_weights"], epoch["average"]):
            np.testing.assert_allclose(w, a, rtol=1e-6, atol=1e-7)
        assert stats_differ(epoch["val_stats"], epoch["raw_stats"])
        assert_stats_equal(epoch["val_stats"], epoch["direct_stats"],
                           rtol=1e-5, atol=1e-6)
        if index < len(epochs) - 1:
            # The backup holds the raw weights and their own statistics.
            for w, r in zip(epoch["backup_weights"], epoch["raw"]):
                np.testing.assert_allclose(w, r, rtol=1e-6, atol=1e-7)
            assert_stats_equal(epoch["backup_stats"], epoch["raw_stats"],
                               rtol=0, atol=0)
    last = epochs[-1]["val_stats"]
    for path in ("last.keras", "best.keras"):
        if path == "best.keras" and result["history"]["val_top1"][0] >= \
                result["history"]["val_top1"][1]:
            continue
        assert_stats_equal(stats_of(keras.saving.load_model(out / path)),
                           last, rtol=1e-6, atol=1e-7)
    from mdnet_keras.models import MDNet

    shipped = MDNet((32, 32, 3), num_classes=10, variant="mdnet_micro",
                    dropout_rate=0.2, **TINY)
    shipped.load_weights(out / "model.weights.h5")
    assert_stats_equal(stats_of(shipped), last, rtol=1e-6, atol=1e-7)
    # (test_callbacks.py checks that the last val_top1 is last.keras's.)


def test_zero_keeps_the_raw_statistics(small_npz, monkeypatch, tmp_path):
    out = tmp_path / "off"
    _, epochs, made = train_recorded(small_npz, out, monkeypatch, 0)
    assert made == []
    for epoch in epochs:
        assert_stats_equal(epoch["val_stats"], epoch["raw_stats"],
                           rtol=0, atol=0)
    callbacks = run_callbacks.make_callbacks(str(tmp_path), None, 0, "b",
                                             ema=True)
    assert not any(isinstance(c, batchnorm.AveragedBatchNormStatistics)
                   for c in callbacks)


class Kill(keras.callbacks.Callback):
    """Stops the process's run mid-epoch `epoch`, as a kill would."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch, self.current = epoch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == 2:
            raise KeyboardInterrupt("killed")


def test_a_killed_run_resumes_with_the_same_history(small_npz, tmp_path):
    config = dict(dataset="npz", data=small_npz, model="mdnet_micro",
                  model_config=TINY, epochs=3, recipe="fast",
                  warmup_epochs=1, ema_momentum=0.8, batch_size=64,
                  bn_recalibration_batches=3, verbose=0)
    reference = run.train(config, out=str(tmp_path / "reference"))
    killed = str(tmp_path / "killed")
    with pytest.raises(KeyboardInterrupt):
        run.train(config, out=killed, callbacks=[Kill(epoch=1)])
    assert read_rows(killed)["epoch"] == [0]
    resumed = run.train(config, out=killed)
    assert resumed["resumed"]
    want, got = reference["history"], resumed["history"]
    assert got["epoch"] == want["epoch"] == [0, 1, 2]
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5,
                                   err_msg=key)
    assert json.loads((tmp_path / "killed" / "best.json").read_text()) == \
        json.loads((tmp_path / "reference" / "best.json").read_text())
    assert resumed["metrics"]["top1"] == reference["metrics"]["top1"]
