"""The training run's callbacks, and the order they run in.

`make_callbacks` puts them in the order resume needs: a multi-worker run's
peer watchdog and the divergence guard first (before anything of a failing
epoch is written), the backup's restore early and its save last, the
weight-average swap (and the BatchNorm statistics of the averaged weights,
`batchnorm.AveragedBatchNormStatistics`) before the checkpoints.

None of them has a batch-end hook: Keras runs batch-end hooks on the
training thread, after fetching the step's logs from the device, unless
every callback leaves them at the default, so one such hook makes the host
wait for every step (what a fast accelerator then idles on). Keras'
`BackupAndRestore` and `TensorBoard` define one even at epoch frequency;
`ResumableBackup` and `EpochTensorBoard` drop it.
"""

import importlib.util
import os
import sys
import time

import keras
import numpy as np

from mdnet_keras.training import batchnorm
from mdnet_keras.training import distribution
from mdnet_keras.training import evaluation
from mdnet_keras.training import run_folder


class TrainingDivergedError(RuntimeError):
    """The loss (or a weight) became NaN or infinite; the run was stopped."""


class DivergenceGuard(keras.callbacks.Callback):
    """Raises `TrainingDivergedError` on a NaN/inf loss or weight.

    Placed first, it runs before anything of the failing epoch is saved;
    raising (rather than `stop_training`) also skips `on_train_end`, so the
    backup is not deleted. It checks at epoch ends only: a NaN loss stays
    NaN in the epoch's running mean, and a per-batch hook would make every
    step wait for the device (Keras dispatches batch hooks asynchronously
    only when no callback implements them).
    """

    def __init__(self, out):
        super().__init__()
        self.out = out

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.fail(f"the loss of epoch {epoch + 1} is {loss}")
        for weight in self.model.weights:
            if not np.all(np.isfinite(keras.ops.convert_to_numpy(weight))):
                self.fail(f"weight {weight.path} is not finite after epoch "
                          f"{epoch + 1}")

    def fail(self, reason):
        raise TrainingDivergedError(reason)


class EmaWeightsRestorer(keras.callbacks.Callback):
    """Puts the raw weights back after the EMA weights were saved.

    `keras.callbacks.SwapEMAWeights(swap_on_epoch=True)` swaps the moving
    average into the model at each epoch end, so the checkpoints written
    after it hold the averaged weights; this callback, placed after them
    and before the backup writer, swaps back so that the backup holds the
    raw weights and their average as they were (a resumed run continues
    the same curve). At the last epoch the swapper has made both the same.
    With `statistics` (an `AveragedBatchNormStatistics`), the raw weights'
    BatchNorm statistics come back with them.
    """

    def __init__(self, swapper, statistics=None):
        super().__init__()
        self.swapper = swapper
        self.statistics = statistics

    def on_epoch_end(self, epoch, logs=None):
        self.swapper.on_epoch_begin(epoch)
        if self.statistics is not None:
            self.statistics.use_raw()


class TimeBudget(keras.callbacks.Callback):
    """Stops training before an epoch that would end past the budget.

    The expected epoch time is the median of the finished epochs after the
    first (which also compiles), or the first while it is the only one.
    The run then finishes as usual (weights, metrics) with fewer epochs.
    """

    def __init__(self, seconds, started=None):
        super().__init__()
        self.seconds = float(seconds)
        self.started = time.time() if started is None else started
        self.durations = []
        self.stopped_after = None
        self._epoch_started = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        self.durations.append(time.time() - self._epoch_started)
        if should_stop_for_budget(self.durations,
                                  self.seconds - (time.time() - self.started)):
            self.stopped_after = epoch + 1
            self.model.stop_training = True
            print(f"--time_budget_minutes: stopping after epoch {epoch + 1}; "
                  "another epoch would end past the budget.")


def should_stop_for_budget(durations, seconds_left):
    """Whether one more epoch is expected to outrun `seconds_left`."""
    steady = durations[1:] or durations
    return float(np.median(steady)) > seconds_left


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` whose epoch-end save is done by `BackupWriter`.

    It restores first (placed early) and saves last (its writer is placed at
    the end), so a kill between the two never leaves a backup ahead of
    `history.csv` or the checkpoints. With `read_only=True` it restores and
    never writes: a non-chief worker resumes from the chief's backup, so
    every worker restarts at the same epoch with the same weights (its own
    backup could be an epoch behind the chief's when it was killed between
    the two writes).
    """

    # It saves at epoch ends only (`save_freq="epoch"`), so the batch hook
    # has nothing to do (module doc).
    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end

    def __init__(self, backup_dir, read_only=False, **kwargs):
        super().__init__(backup_dir, **kwargs)
        if self.save_freq != "epoch":
            raise ValueError("ResumableBackup saves at epoch ends only; got "
                             f"save_freq={self.save_freq!r}.")
        self.read_only = read_only

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1

    def save(self):
        self._last_batch_seen = 0
        if not self.read_only:
            self._save_model()


class BackupWriter(keras.callbacks.Callback):
    def __init__(self, backup):
        super().__init__()
        self.backup = backup

    def on_epoch_end(self, epoch, logs=None):
        self.backup.save()


class ResumeSync(keras.callbacks.Callback):
    """After the backup is restored: trims history, syncs data and best.

    Drops `history.csv` rows of epochs that will be re-run, puts the
    training data on the start epoch's shuffle, and sets the best
    `val_top1` seen so far as the checkpoint's threshold.
    """

    def __init__(self, out, train_data, best_checkpoint, phase_start):
        super().__init__()
        self.out = out
        self.train_data = train_data
        self.best_checkpoint = best_checkpoint
        self.phase_start = phase_start
        self.start_epoch = phase_start

    def on_train_begin(self, logs=None):
        self.start_epoch = self.model._initial_epoch or self.phase_start
        rows = run_folder.trim_history(os.path.join(self.out, "history.csv"),
                            self.start_epoch)
        self.train_data.epoch = self.start_epoch
        best = run_folder.best_so_far(self.out, rows)
        if best is not None:
            self.best_checkpoint.best = best
        if self.model._initial_epoch:  # restored from the backup
            print(f"Resuming from epoch {self.start_epoch + 1} "
                  f"(best {run_folder.MONITOR} so far: {best}).")


class EpochSeeds(keras.callbacks.Callback):
    """Puts every `SeedGenerator` of the model on a per-epoch state.

    Dropout and DropPath draw from seed generators whose state is not in
    the saved weights; resetting them to `[seed, epoch * 2**20]` at each
    epoch start makes an epoch's randomness the same whether the run was
    resumed or not.
    """

    def on_epoch_begin(self, epoch, logs=None):
        for generator in seed_generators(self.model):
            state = keras.ops.convert_to_numpy(generator.state)
            value = np.array([state[0], (epoch * 2**20) % 2**31],
                             dtype=state.dtype)
            generator.state.assign(value)


def seed_generators(model):
    found = {}
    for layer in model._flatten_layers(include_self=True):
        for generator in getattr(layer, "_seed_generators", []):
            found[id(generator)] = generator
    return list(found.values())


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the learning rate at the end of each epoch to the logs."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = current_learning_rate(self.model.optimizer)


class BestRecorder(keras.callbacks.Callback):
    """Writes `best.json` when `best.keras` was just replaced."""

    def __init__(self, out, checkpoint):
        super().__init__()
        self.out = out
        self.checkpoint = checkpoint
        self.recorded = None

    def on_train_begin(self, logs=None):
        self.recorded = self.checkpoint.best

    def on_epoch_end(self, epoch, logs=None):
        best = self.checkpoint.best
        if best is not None and best != self.recorded:
            evaluation.write_json(os.path.join(self.out, "best.json"),
                                  {"epoch": epoch, run_folder.MONITOR: float(best)})
            self.recorded = best


class BestModelSaver(keras.callbacks.Callback):
    """Saves the model to `path` when `monitor` beats `best`, atomically.

    `keras.callbacks.ModelCheckpoint` writes in place, so a kill during the
    write leaves an unreadable file; this one writes a temporary file and
    renames it. `best` (None before the first epoch) is what resume sets.
    """

    def __init__(self, path, monitor=run_folder.MONITOR):
        super().__init__()
        self.path, self.monitor, self.best = path, monitor, None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not np.isfinite(value):
            return
        if self.best is None or value > self.best:
            self.best = float(value)
            save_model_atomic(self.model, self.path)


class AtomicModelSaver(keras.callbacks.Callback):
    """Saves the whole model to `path` each epoch via a temp file + rename."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        save_model_atomic(self.model, self.path)


def save_model_atomic(model, path):
    tmp = path[: -len(".keras")] + ".tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)


def current_learning_rate(optimizer):
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return float(keras.ops.convert_to_numpy(inner.learning_rate))


def module_available(name):
    """Whether `import name` can work, without importing it."""
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """`keras.callbacks.TensorBoard` writing per epoch, with no batch hook.

    At `update_freq="epoch"` without profiling (`profile_batch=0`, the
    default), the parent's batch hook only writes the training graph once;
    that is done at the first epoch's end instead (module doc says why the
    hook goes).

    Args:
        log_dir: str, where the logs go.
        **kwargs: the other arguments of `keras.callbacks.TensorBoard`.
    """

    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end

    def __init__(self, log_dir, **kwargs):
        super().__init__(log_dir, **kwargs)
        for name, default in (("update_freq", "epoch"), ("profile_batch", 0)):
            value = kwargs.get(name, default)
            if value != default:
                raise ValueError("EpochTensorBoard writes per epoch without "
                                 "profiling; use keras.callbacks.TensorBoard "
                                 f"for {name}={value!r}.")

    def on_epoch_end(self, epoch, logs=None):
        if self._should_write_train_graph:
            self._write_keras_model_train_graph()
            self._should_write_train_graph = False
        super().on_epoch_end(epoch, logs)


def tensorboard_callback(log_dir):
    """`EpochTensorBoard`, or None (with a line) without TF."""
    missing = [name for name in ("tensorflow", "tensorboard")
               if not module_available(name)]
    if missing:
        print(f"No TensorBoard logs: {' and '.join(missing)} not installed "
              "(the callback writes through tf.summary).")
        return None
    return EpochTensorBoard(log_dir=log_dir)


def start_average_at_weights(optimizer, variables):
    """Starts a built optimizer's weight average at the current weights.

    Keras starts the average at the weights only when `iterations` is 0; a
    later phase continues the step count, so its new average would
    otherwise start from zeros.
    """
    for average, variable in zip(optimizer._model_variables_moving_average,
                                 variables):
        average.assign(variable)


def make_callbacks(out, train_data, phase_start, backup_name, ema=False,
                   time_budget=None, restore_from=None, peers_of=None,
                   batchnorm_batches=None):
    """The run's callbacks, in the order the docstring of this module needs.

    Args:
        out: the run folder.
        train_data: the training `ImageBatches` (its epoch is synced).
        phase_start: int, the first epoch of this phase.
        backup_name: str, the backup folder of this phase.
        ema: bool, the optimizer keeps a moving average of the weights:
            validation and the checkpoints use it.
        time_budget: optional `TimeBudget`, placed before the checkpoints.
        restore_from: optional run folder whose backup this run restores
            and never writes (a non-chief worker's: the chief's run folder).
        peers_of: optional run folder (the chief's) of a multi-worker
            TensorFlow run: a `distribution.PeerWatchdog` comes first.
        batchnorm_batches: optional batches (`batchnorm.calibration_batches`)
            on which the averaged weights get their own BatchNorm
            statistics (with `ema` only).
    """
    guard = DivergenceGuard(out)
    backup = ResumableBackup(os.path.join(restore_from or out, backup_name),
                             read_only=restore_from is not None,
                             double_checkpoint=True, delete_checkpoint=False)
    best = BestModelSaver(os.path.join(out, "best.keras"))
    swapper = keras.callbacks.SwapEMAWeights(swap_on_epoch=True) if ema else None
    statistics = (batchnorm.AveragedBatchNormStatistics(batchnorm_batches)
                  if ema and batchnorm_batches is not None else None)
    callbacks = [
        distribution.PeerWatchdog(peers_of) if peers_of else None,
        guard,
        backup,
        ResumeSync(out, train_data, best, phase_start),
        EpochSeeds(),
        LearningRateLogger(),
        swapper,
        statistics,
        time_budget,
        keras.callbacks.CSVLogger(os.path.join(out, "history.csv"),
                                  append=True),
        best,
        BestRecorder(out, best),
        AtomicModelSaver(os.path.join(out, "last.keras")),
        tensorboard_callback(os.path.join(out, "logs")),
        EmaWeightsRestorer(swapper, statistics) if ema else None,
        BackupWriter(backup),
    ]
    return [callback for callback in callbacks if callback is not None]
