"""`train(config)`: one training run in one run folder, that survives a kill.

The run folder (`config.out`) holds:

- `config.json`: the resolved configuration and facts of the run (classes,
  replicas, global batch, peak learning rate, steps, backend);
- `labels.txt`: one class name per line, in class-index order;
- `history.csv`: one row per finished epoch (`CSVLogger(append=True)`),
  with the learning rate at the end of the epoch;
- `best.keras` (highest `val_top1`, with `best.json`), `last.keras` (written
  atomically each epoch) and `model.weights.h5` (the final weights without
  optimizer state: what gets shipped);
- `logs/`: TensorBoard logs (TensorFlow installed only);
- `metrics.json`: top-1, top-5, per-class precision / recall / F1 and the
  confusion matrix of the final model on the test split;
- `history.png`, `confusion_matrix.png`;
- `status.json`: `running`, `finished` or `diverged`;
- `backup/`: `BackupAndRestore(double_checkpoint=True)` state while the run
  is unfinished.

Resume: re-running the same configuration on an unfinished folder (killed,
even mid-epoch) restores the weights, the optimizer (so `iterations`, hence
the learning-rate schedule) and the epoch from `backup/`, drops rows of
`history.csv` from epochs that will be re-run, restores the best
`val_top1` as `ModelCheckpoint`'s `initial_value_threshold`, and puts the
input pipeline on the same epoch's shuffle and augmentation. The backup is
written last at each epoch end, after every other artefact.

A non-finite loss (or non-finite weights at an epoch end) raises
`TrainingDivergedError` before anything of that epoch is written, so
`last.keras`, `best.keras` and the backup keep the last good epoch.

Distributed training uses the existing engines: `tf.distribute`
(`MirroredStrategy`, `MultiWorkerMirroredStrategy` from `TF_CONFIG`) under
TensorFlow, `keras.distribution.DataParallel` under JAX. `batch_size` is the
global batch (split over replicas); the peak learning rate is
`learning_rate * batch_size / 128` unless `scale_learning_rate=False`.
"""

import contextlib
import csv
import dataclasses
import importlib.util
import json
import logging
import os
import shutil
import sys
import time

import keras
import numpy as np

from mdnet_keras.training import evaluation
from mdnet_keras.training import recipe

logger = logging.getLogger(__name__)

STRATEGIES = ("none", "mirrored", "multi_worker")
PRECISION_DTYPES = ("bfloat16", "float16")
HEAD_LAYERS = ("predictions",)
MONITOR = "val_top1"
# Length and batch defaults per data set: the embedded sample trains in a
# minute or two on a laptop CPU; the rest follow the CIFAR recipe.
CIFAR_RECIPE = {"model": "mdnet", "epochs": 200, "batch_size": 128,
                "warmup_epochs": 5, "learning_rate": recipe.LEARNING_RATE,
                "drop_path_rate": 0.1}
DATASET_DEFAULTS = {
    "sample": {"model": "mdnet_micro", "epochs": 10, "batch_size": 64,
               "warmup_epochs": 1, "learning_rate": 2e-3,
               "drop_path_rate": 0.0},
    "cifar10": CIFAR_RECIPE,
    "cifar100": CIFAR_RECIPE,
    "npz": CIFAR_RECIPE,
    "folder": {"model": "mdnet_small", "epochs": 50, "batch_size": 32,
               "warmup_epochs": 2, "learning_rate": recipe.LEARNING_RATE,
               "drop_path_rate": 0.1},
}
# Keys that may differ between the run on disk and a resuming call.
RESUME_FREE_KEYS = ("overwrite", "verbose", "out", "workers")


class TrainingDivergedError(RuntimeError):
    """The loss (or a weight) became NaN or infinite; the run was stopped."""


class RunFolderError(ValueError):
    """The output folder cannot be used for this run (the message says why)."""


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run depends on; every field is a `train` flag.

    Fields left `None` are filled by `resolve_config` from
    `DATASET_DEFAULTS` (the sample: a short run of `mdnet_micro`; CIFAR:
    the documented recipe, 200 epochs of `mdnet` at batch 128).
    """

    # Data.
    dataset: str = "sample"
    data: str = None
    data_dir: str = None
    download: bool = False
    image_size: int = None
    channels: int = None
    validation_split: float = 0.1
    skip_bad_files: bool = False
    # Model.
    model: str = None
    model_config: dict = None
    attention: str = "differential"
    drop_path_rate: float = None
    dropout_rate: float = 0.2
    stem_strides: int = 1
    init_from: str = None
    freeze_backbone_epochs: int = 0
    qat_epochs: int = 0  # QAT hook (issue 16)
    # Optimisation.
    epochs: int = None
    batch_size: int = None
    learning_rate: float = None
    scale_learning_rate: bool = True
    weight_decay: float = recipe.WEIGHT_DECAY
    warmup_epochs: float = None
    min_lr_ratio: float = 0.0
    label_smoothing: float = recipe.LABEL_SMOOTHING
    clipnorm: float = None
    class_weight: str = "none"
    # Augmentation.
    crop_padding: int = None
    flip: bool = True
    randaugment: bool = False
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    # Runtime.
    seed: int = 0
    mixed_precision: bool = False
    mixed_precision_dtype: str = "bfloat16"
    jit_compile: str = "auto"
    strategy: str = "none"
    workers: int = 1
    out: str = None
    overwrite: bool = False
    verbose: str = "auto"


def resolve_config(config=None, **overrides):
    """Fills defaults and checks names and values; returns a `TrainConfig`.

    Args:
        config: a `TrainConfig`, a dict of its fields, or None.
        **overrides: fields to set on top.

    Raises:
        ValueError: an unknown data set, model, strategy or field, or a bad
            value (the message names it).
    """
    from mdnet_keras.data import DATASET_NAMES
    from mdnet_keras.models import MDNET_VARIANTS

    if config is None:
        config = {}
    if isinstance(config, TrainConfig):
        config = dataclasses.asdict(config)
    config = dict(config, **overrides)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"Unknown training options {unknown}.")
    config = TrainConfig(**config)
    if config.dataset not in DATASET_NAMES:
        raise ValueError(
            f"Unknown dataset {config.dataset!r}; choose one of "
            f"{', '.join(DATASET_NAMES)}."
        )
    for key, value in DATASET_DEFAULTS[config.dataset].items():
        if getattr(config, key) is None:
            setattr(config, key, value)
    if config.model not in MDNET_VARIANTS:
        raise ValueError(
            f"Unknown model {config.model!r}; choose one of "
            f"{', '.join(sorted(MDNET_VARIANTS))}."
        )
    if config.strategy not in STRATEGIES:
        raise ValueError(
            f"Unknown strategy {config.strategy!r}; choose one of "
            f"{', '.join(STRATEGIES)}."
        )
    if config.mixed_precision_dtype not in PRECISION_DTYPES:
        raise ValueError(
            f"`mixed_precision_dtype` must be one of {PRECISION_DTYPES}. "
            f"Received: {config.mixed_precision_dtype!r}"
        )
    if str(config.jit_compile).lower() not in ("auto", "true", "false"):
        raise ValueError(
            "`jit_compile` must be 'auto', 'true' or 'false'. Received: "
            f"{config.jit_compile!r}"
        )
    config.jit_compile = str(config.jit_compile).lower()
    if isinstance(config.model_config, str):
        config.model_config = json.loads(config.model_config or "{}")
    config.model_config = dict(config.model_config or {})
    for key in ("epochs", "batch_size"):
        # QAT hook (issue 16): --epochs=0 --qat_epochs=N fine-tunes --init_from.
        if int(getattr(config, key)) < (0 if key == "epochs" and config.qat_epochs else 1):
            raise ValueError(f"`{key}` must be >= 1. Received: "
                             f"{getattr(config, key)}")
    if not 0 <= config.freeze_backbone_epochs <= config.epochs:
        raise ValueError(
            "`freeze_backbone_epochs` must be in [0, epochs]. Received: "
            f"{config.freeze_backbone_epochs} with epochs={config.epochs}"
        )
    if config.freeze_backbone_epochs and not config.init_from:
        logger.warning("Freezing the backbone of a randomly initialised "
                       "model: pass --init_from to fine-tune trained weights.")
    if config.init_from and not os.path.exists(config.init_from):
        raise ValueError(f"`init_from` file not found: {config.init_from}")
    if config.qat_epochs or config.epochs == 0:  # QAT hook (issue 16)
        from mdnet_keras.quantization import check_train_options
        check_train_options(config)
    if config.out is None:
        config.out = default_out_dir(config)
    return config


def default_out_dir(config, root="runs"):
    """`runs/<dataset>-<model>`, or the first `-2`, `-3`... not finished."""
    base = os.path.join(root, f"{config.dataset}-{config.model}")
    candidate, number = base, 1
    while run_state(candidate) == "finished" and not config.overwrite:
        number += 1
        candidate = f"{base}-{number}"
    return candidate


def run_state(out):
    """`None` (no run), `"running"` (unfinished), `"finished"`, `"diverged"`."""
    path = os.path.join(out, "status.json")
    if not os.path.exists(path):
        if os.path.exists(os.path.join(out, "config.json")):
            return "running"
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("state", "running")
    except (OSError, ValueError):
        return "running"


def write_status(out, state, **extra):
    evaluation.write_json(os.path.join(out, "status.json"),
                          dict(state=state, time=time.time(), **extra))


def prepare_run_folder(config):
    """Checks `config.out` and says whether the run resumes.

    Returns:
        bool, True when an unfinished run of the same configuration is there.

    Raises:
        RunFolderError: a finished run without `overwrite`, another run's
            configuration, or a non-empty folder that is not a run folder.
    """
    out = config.out
    if not os.path.exists(out):
        os.makedirs(out)
        return False
    if not os.path.isdir(out):
        raise RunFolderError(f"--out={out} exists and is not a folder.")
    entries = os.listdir(out)
    if not entries:
        return False
    config_path = os.path.join(out, "config.json")
    if not os.path.exists(config_path):
        raise RunFolderError(
            f"--out={out} is not empty and holds no training run "
            "(no config.json); nothing there is deleted. Choose a new or "
            "empty folder."
        )
    state = run_state(out)
    if config.overwrite:
        logger.warning("--overwrite: deleting the run in %s", out)
        shutil.rmtree(out)
        os.makedirs(out)
        return False
    if state == "finished":
        raise RunFolderError(
            f"--out={out} already holds a finished run (see "
            f"{os.path.join(out, 'metrics.json')}). Pass --overwrite to "
            "replace it, or choose another --out."
        )
    with open(config_path, encoding="utf-8") as f:
        previous = json.load(f).get("config", {})
    current = json.loads(json.dumps(dataclasses.asdict(config)))
    differing = sorted(
        key for key in set(previous) | set(current)
        if key not in RESUME_FREE_KEYS and previous.get(key) != current.get(key)
    )
    if differing:
        details = ", ".join(
            f"{k}: {previous.get(k)!r} -> {current.get(k)!r}" for k in differing
        )
        raise RunFolderError(
            f"--out={out} holds an unfinished run with another configuration "
            f"({details}). Re-run with the same flags to resume it, pass "
            "--overwrite to replace it, or choose another --out."
        )
    return True


# ---------------------------------------------------------------------------
# Backend and distribution set-up
# ---------------------------------------------------------------------------


def set_up_distribution(strategy):
    """Returns `(make_scope, num_replicas, is_chief)` for `strategy`.

    `make_scope()` returns a fresh context manager each time (a strategy's
    scope can be entered once per object).

    TensorFlow: `tf.distribute.MirroredStrategy` over the GPUs (else over
    every logical CPU device, e.g. the CPU split in two), or
    `MultiWorkerMirroredStrategy` from `TF_CONFIG`. JAX:
    `keras.distribution.DataParallel` over all devices (`multi_worker`
    first calls `keras.distribution.initialize()` from the
    `KERAS_DISTRIBUTION_*` variables).
    """
    backend = keras.backend.backend()
    if strategy == "none":
        return contextlib.nullcontext, 1, True
    if strategy == "multi_worker":
        check_multi_worker_environment(backend)
    if backend == "tensorflow":
        import tensorflow as tf

        if strategy == "mirrored":
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in
                       (gpus or tf.config.list_logical_devices("CPU"))]
            dist = tf.distribute.MirroredStrategy(devices=devices)
            return dist.scope, dist.num_replicas_in_sync, True
        dist = tf.distribute.MultiWorkerMirroredStrategy()
        resolver = dist.cluster_resolver
        task_type, task_id = resolver.task_type, resolver.task_id
        chief = task_type == "chief" or (
            task_type == "worker" and task_id == 0
            and "chief" not in resolver.cluster_spec().as_dict())
        return dist.scope, dist.num_replicas_in_sync, chief
    if backend == "jax":
        if strategy == "multi_worker":
            keras.distribution.initialize()
        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices))
        import jax

        return contextlib.nullcontext, len(devices), jax.process_index() == 0
    raise ValueError(
        f"--strategy={strategy} needs the TensorFlow or JAX backend; this "
        f"is {backend}. Use --strategy=none."
    )


def check_multi_worker_environment(backend):
    """Raises a clear error when the cluster description is missing."""
    if backend == "tensorflow":
        raw = os.environ.get("TF_CONFIG")
        if not raw:
            raise ValueError(
                "--strategy=multi_worker needs the TF_CONFIG environment "
                "variable on every worker, e.g. TF_CONFIG='{\"cluster\": "
                "{\"worker\": [\"host1:12345\", \"host2:12345\"]}, \"task\": "
                "{\"type\": \"worker\", \"index\": 0}}'. Without it "
                "MultiWorkerMirroredStrategy silently trains one replica. "
                "Use --strategy=mirrored for the devices of one machine."
            )
        try:
            spec = json.loads(raw)
            spec["cluster"], spec["task"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(
                "TF_CONFIG must be JSON with 'cluster' and 'task' keys. "
                f"Received: {raw!r}"
            ) from e
    elif backend == "jax":
        needed = ("KERAS_DISTRIBUTION_JOB_ADDRESSES",
                  "KERAS_DISTRIBUTION_NUM_PROCESSES",
                  "KERAS_DISTRIBUTION_PROCESS_ID")
        missing = [name for name in needed if not os.environ.get(name)]
        if missing:
            raise ValueError(
                "--strategy=multi_worker under JAX needs "
                f"{', '.join(needed)} on every process (see "
                "keras.distribution.initialize); missing: "
                f"{', '.join(missing)}. Use --strategy=mirrored for the "
                "devices of one machine."
            )


def resolve_jit_compile(value):
    if value == "auto":
        return recipe.default_jit_compile()
    return value == "true"


# ---------------------------------------------------------------------------
# Callbacks
# ---------------------------------------------------------------------------


class DivergenceGuard(keras.callbacks.Callback):
    """Raises `TrainingDivergedError` on a NaN/inf loss or weight.

    Placed first, it runs before anything of the failing epoch is saved;
    raising (rather than `stop_training`) also skips `on_train_end`, so the
    backup is not deleted.
    """

    def __init__(self, out):
        super().__init__()
        self.out = out
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.fail(f"the loss became {loss} at epoch {self.epoch + 1}, "
                      f"batch {batch + 1}")

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


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` whose epoch-end save is done by `BackupWriter`.

    It restores first (placed early) and saves last (its writer is placed at
    the end), so a kill between the two never leaves a backup ahead of
    `history.csv` or the checkpoints.
    """

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1

    def save(self):
        self._last_batch_seen = 0
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
        rows = trim_history(os.path.join(self.out, "history.csv"),
                            self.start_epoch)
        self.train_data.epoch = self.start_epoch
        best = best_so_far(self.out, rows)
        if best is not None:
            self.best_checkpoint.best = best
        if self.start_epoch:
            print(f"Resuming from epoch {self.start_epoch + 1} "
                  f"(best {MONITOR} so far: {best}).")


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
                                  {"epoch": epoch, MONITOR: float(best)})
            self.recorded = best


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


def trim_history(path, start_epoch):
    """Keeps the rows of epochs `< start_epoch`; returns them as dicts."""
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames
        rows = list(reader)
    kept = []
    for row in rows:
        try:
            if int(float(row["epoch"])) < start_epoch:
                kept.append(row)
        except (KeyError, TypeError, ValueError):
            continue
    if len(kept) != len(rows) or not start_epoch:
        tmp = f"{path}.tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            if kept and fields:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(kept)
        os.replace(tmp, path)
        if not kept:
            os.remove(path)
    return kept


def best_so_far(out, rows):
    values = []
    for row in rows:
        try:
            values.append(float(row[MONITOR]))
        except (KeyError, TypeError, ValueError):
            pass
    path = os.path.join(out, "best.json")
    if os.path.exists(path) and os.path.exists(os.path.join(out, "best.keras")):
        try:
            with open(path, encoding="utf-8") as f:
                values.append(float(json.load(f)[MONITOR]))
        except (OSError, ValueError, KeyError):
            pass
    values = [v for v in values if np.isfinite(v)]
    return max(values) if values else None


def module_available(name):
    """Whether `import name` can work, without importing it."""
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def tensorboard_callback(log_dir):
    """`keras.callbacks.TensorBoard`, or None (with a line) without TF."""
    missing = [name for name in ("tensorflow", "tensorboard")
               if not module_available(name)]
    if missing:
        print(f"No TensorBoard logs: {' and '.join(missing)} not installed "
              "(the callback writes through tf.summary).")
        return None
    return keras.callbacks.TensorBoard(log_dir=log_dir)


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


def set_backbone_trainable(model, trainable):
    """Sets `trainable` on every layer but the classifier (`HEAD_LAYERS`)."""
    for layer in model.layers:
        if layer.name not in HEAD_LAYERS:
            layer.trainable = trainable


def build_model(config, dataset):
    from mdnet_keras.models import MDNet

    return MDNet(
        input_shape=dataset.image_shape,
        num_classes=dataset.num_classes,
        variant=config.model,
        attention=config.attention,
        dropout_rate=config.dropout_rate,
        drop_path_rate=config.drop_path_rate,
        stem_strides=config.stem_strides,
        weights=config.init_from,
        **config.model_config,
    )


def load_data(config):
    from mdnet_keras.data import load_dataset

    dataset = load_dataset(
        config.dataset,
        data=config.data,
        image_size=config.image_size,
        channels=config.channels,
        data_dir=config.data_dir,
        download=config.download,
        validation_split=config.validation_split,
        seed=config.seed,
        skip_bad_files=config.skip_bad_files,
    )
    if dataset.skipped_files:
        print(f"Skipped {len(dataset.skipped_files)} unreadable image files.")
    return dataset


def make_batches(config, dataset, num_replicas, jit_compile=False):
    """Training and evaluation `ImageBatches`.

    Compiled (XLA) and multi-replica training drops the last incomplete
    batch of each (reshuffled) epoch: one batch shape, one compilation.
    """
    from mdnet_keras.data import ImageBatches

    common = dict(num_classes=dataset.num_classes,
                  batch_size=config.batch_size, seed=config.seed,
                  workers=config.workers)
    train_data = ImageBatches(
        dataset.x_train, dataset.y_train, shuffle=True, augment=True,
        crop_padding=config.crop_padding, flip=config.flip,
        randaugment=config.randaugment, mixup_alpha=config.mixup_alpha,
        cutmix_alpha=config.cutmix_alpha,
        drop_remainder=((num_replicas > 1 or jit_compile)
                        and len(dataset.x_train) >= config.batch_size),
        **common)
    val_data = ImageBatches(dataset.x_test, dataset.y_test, shuffle=False,
                            augment=False, **common)
    return train_data, val_data


def train(config=None, **overrides):
    """Trains an MDNet as `config` says, in the run folder `config.out`.

    Args:
        config: a `TrainConfig` or a dict of its fields (None: all defaults,
            i.e. a short run on the embedded CIFAR-10 sample).
        **overrides: fields to set on top of `config`.

    Returns:
        dict: `out` (the run folder), `metrics` (as in `metrics.json`),
        `history` (per-epoch values from `history.csv`), `resumed`.

    Raises:
        ValueError: bad configuration (unknown data set / model / strategy,
            missing `TF_CONFIG` for `multi_worker`, ...).
        RunFolderError: `out` holds a finished run (pass `overwrite=True`)
            or another configuration's run.
        TrainingDivergedError: the loss became NaN or infinite; the last
            good epoch's `last.keras`, `best.keras` and backup are kept.
    """
    started = time.time()
    config = resolve_config(config, **overrides)
    if config.strategy == "multi_worker":
        check_multi_worker_environment(keras.backend.backend())
    resumed = prepare_run_folder(config)
    out = config.out
    print(f"Run folder: {os.path.abspath(out)}"
          + (" (resuming)" if resumed else ""))

    keras.utils.set_random_seed(config.seed)
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(
        f"mixed_{config.mixed_precision_dtype}" if config.mixed_precision
        else "float32")
    try:
        return _train(config, out, resumed, started)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _train(config, out, resumed, started):
    make_scope, num_replicas, is_chief = set_up_distribution(config.strategy)
    if not is_chief:
        out = os.path.join(out, "workers", f"worker_{os.getpid()}")
        os.makedirs(out, exist_ok=True)
    if config.batch_size % num_replicas:
        raise ValueError(
            f"--batch_size={config.batch_size} (the global batch) must be a "
            f"multiple of the {num_replicas} replicas."
        )

    dataset = load_data(config)
    jit_compile = resolve_jit_compile(config.jit_compile)
    train_data, val_data = make_batches(config, dataset, num_replicas,
                                        jit_compile)
    steps_per_epoch = len(train_data)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
    peak_lr = (recipe.scaled_learning_rate(config.learning_rate,
                                           config.batch_size)
               if config.scale_learning_rate else config.learning_rate)
    class_weight = recipe.class_weights(dataset.y_train, dataset.num_classes,
                                        config.class_weight)
    facts = {
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "dataset_name": dataset.name,
        "class_names": list(dataset.class_names),
        "num_classes": dataset.num_classes,
        "image_shape": list(dataset.image_shape),
        "num_train": int(len(dataset.x_train)),
        "num_test": int(len(dataset.x_test)),
        "num_replicas": num_replicas,
        "global_batch_size": config.batch_size,
        "per_replica_batch_size": config.batch_size // num_replicas,
        "peak_learning_rate": peak_lr,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps,
        "warmup_steps": warmup_steps,
        "jit_compile": jit_compile,
        "class_weight": class_weight,
    }
    if is_chief and not resumed:
        evaluation.write_json(os.path.join(out, "config.json"), {
            "config": json.loads(json.dumps(dataclasses.asdict(config))),
            "run": facts,
        })
        with open(os.path.join(out, "labels.txt"), "w", encoding="utf-8") as f:
            f.write("".join(f"{name}\n" for name in dataset.class_names))
    write_status(out, "running")
    print(f"{dataset.name}: {facts['num_train']} train / {facts['num_test']} "
          f"test images {tuple(dataset.image_shape)}, {dataset.num_classes} "
          f"classes; {config.model}, {config.epochs} epochs of "
          f"{steps_per_epoch} steps, global batch {config.batch_size} on "
          f"{num_replicas} replica(s), peak LR {peak_lr:.3g}, "
          f"backend {facts['backend']}, jit_compile={jit_compile}.")

    with make_scope():
        model = build_model(config, dataset)
    print(f"{model.name}: {model.count_params():,} parameters.")

    phases = []
    if config.freeze_backbone_epochs:
        phases.append(("frozen", config.freeze_backbone_epochs, False))
    if config.freeze_backbone_epochs < config.epochs:
        phases.append(("full", config.epochs, True))

    epochs_this_session = 0
    phase_start = 0
    optimizer = None
    # QAT hook (issue 16): killed in a QAT epoch, the run resumes there (the
    # float phases' resume would trim the QAT epochs from history.csv).
    if config.qat_epochs and os.path.isdir(os.path.join(out, "backup_qat")):
        phases, phase_start = [], config.epochs
    fit_started = time.time()
    try:
        for phase_name, phase_end, trainable in phases:
            with make_scope():
                set_backbone_trainable(model, trainable)
                schedule = recipe.learning_rate_schedule(
                    peak_lr, total_steps, warmup_steps, config.min_lr_ratio)
                new_optimizer = recipe.make_optimizer(
                    model, schedule, config.weight_decay, config.clipnorm)
                new_optimizer.build(model.trainable_variables)
                if optimizer is not None:
                    new_optimizer.iterations.assign(
                        int(keras.ops.convert_to_numpy(optimizer.iterations)))
                optimizer = new_optimizer
                recipe.compile_model(model, optimizer, dataset.num_classes,
                                     config.label_smoothing, jit_compile)
            if len(phases) > 1:
                print(f"Phase '{phase_name}': epochs {phase_start + 1}-"
                      f"{phase_end}, backbone "
                      f"{'trainable' if trainable else 'frozen'}.")
            callbacks = make_callbacks(out, train_data, phase_start,
                                       f"backup_{phase_name}")
            model._initial_epoch = None
            train_data.epoch = phase_start
            history = model.fit(
                train_data,
                validation_data=val_data,
                epochs=phase_end,
                initial_epoch=phase_start,
                callbacks=callbacks,
                class_weight=class_weight,
                shuffle=False,
                verbose=config.verbose,
            )
            epochs_this_session += len(history.history.get("loss", []))
            phase_start = phase_end
        # --- QAT hook (issue 16): quantization-aware fine-tuning ---
        if config.qat_epochs:
            from mdnet_keras import quantization

            model, history = quantization.fine_tune_phase(
                model, out, train_data, val_data, config.qat_epochs, phase_start,
                make_callbacks(out, train_data, phase_start, "backup_qat"),
                label_smoothing=config.label_smoothing, verbose=config.verbose,
                save=save_model_atomic)
            epochs_this_session += len(history.history.get("loss", []))
        # --- end QAT hook ---
    except TrainingDivergedError as e:
        last_epoch = last_history_epoch(out)
        kept = (f"kept the last good model of epoch {last_epoch}: "
                f"{os.path.join(out, 'last.keras')} (best: "
                f"{os.path.join(out, 'best.keras')}), and the backup in "
                f"{os.path.join(out, 'backup_*')}, so re-running resumes "
                f"from epoch {last_epoch + 1}"
                if last_epoch else "no epoch finished, so no model was kept")
        message = (f"Training stopped: {e}; {kept}. Try a lower "
                   f"--learning_rate (now {config.learning_rate}, peak "
                   f"{peak_lr:.3g}) or --clipnorm.")
        write_status(out, "diverged", message=message)
        raise TrainingDivergedError(message) from None
    fit_seconds = time.time() - fit_started

    metrics = finish_run(config, out, model, dataset, val_data, facts,
                         fit_seconds, epochs_this_session, started)
    shutil.rmtree(os.path.join(out, "backup_frozen"), ignore_errors=True)
    shutil.rmtree(os.path.join(out, "backup_full"), ignore_errors=True)
    shutil.rmtree(os.path.join(out, "backup_qat"), ignore_errors=True)  # QAT hook
    write_status(out, "finished")
    print(f"Top-1 {100 * metrics['top1']:.2f}%, top-5 "
          f"{100 * metrics['top5']:.2f}% on {metrics['num_examples']} test "
          f"images. Run folder: {os.path.abspath(out)}")
    return {"out": out, "metrics": metrics, "resumed": resumed,
            "history": evaluation.read_history(
                os.path.join(out, "history.csv"))}


def make_callbacks(out, train_data, phase_start, backup_name):
    guard = DivergenceGuard(out)
    backup = ResumableBackup(os.path.join(out, backup_name),
                             double_checkpoint=True, delete_checkpoint=False)
    best = keras.callbacks.ModelCheckpoint(
        os.path.join(out, "best.keras"), monitor=MONITOR, mode="max",
        save_best_only=True)
    callbacks = [
        guard,
        backup,
        ResumeSync(out, train_data, best, phase_start),
        EpochSeeds(),
        LearningRateLogger(),
        keras.callbacks.CSVLogger(os.path.join(out, "history.csv"),
                                  append=True),
        best,
        BestRecorder(out, best),
        AtomicModelSaver(os.path.join(out, "last.keras")),
    ]
    board = tensorboard_callback(os.path.join(out, "logs"))
    if board is not None:
        callbacks.append(board)
    callbacks.append(BackupWriter(backup))
    return callbacks


def last_history_epoch(out):
    path = os.path.join(out, "history.csv")
    if not os.path.exists(path):
        return 0
    epochs = evaluation.read_history(path).get("epoch", [])
    return int(max(epochs)) + 1 if epochs else 0


def save_shipping_weights(model, path):
    """Saves the weights without optimizer state (a fresh, uncompiled copy)."""
    copy = keras.Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    copy.save_weights(path)


def finish_run(config, out, model, dataset, val_data, facts, fit_seconds,
               epochs_this_session, started):
    """Writes the weights, metrics.json and plots of a finished run."""
    save_shipping_weights(model, os.path.join(out, "model.weights.h5"))
    probs = model.predict(val_data, verbose=0)
    report = evaluation.classification_report(dataset.y_test, probs,
                                              dataset.class_names)
    history = evaluation.read_history(os.path.join(out, "history.csv"))
    best = None
    if os.path.exists(os.path.join(out, "best.json")):
        with open(os.path.join(out, "best.json"), encoding="utf-8") as f:
            best = json.load(f)
    report.update({
        "model": "last.keras (the final epoch)",
        "split": "test",
        "best": best,
        "epochs": len(history.get("epoch", [])),
        "train_seconds_this_session": round(fit_seconds, 1),
        "epochs_this_session": epochs_this_session,
        "train_images_per_second_this_session": round(
            facts["num_train"] * epochs_this_session / max(fit_seconds, 1e-9),
            1),
        "total_seconds_this_session": round(time.time() - started, 1),
        "parameters": int(model.count_params()),
        "backend": facts["backend"],
    })
    evaluation.write_json(os.path.join(out, "metrics.json"), report)
    evaluation.plot_history(history, os.path.join(out, "history.png"))
    evaluation.plot_confusion_matrix(report["confusion_matrix"],
                                     dataset.class_names,
                                     os.path.join(out, "confusion_matrix.png"))
    print(evaluation.format_report(report))
    return report
