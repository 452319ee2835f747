"""`fine_tune`: quantization-aware fine-tuning of a trained model with `fit`."""

import os

import keras
import numpy as np

from mdnet_keras.quantization.twin import is_quantization_aware
from mdnet_keras.quantization.twin import quantize_model
from mdnet_keras.quantization.twin import quantizers
from mdnet_keras.training import recipe

# Small, because fine-tuning starts from a trained float model: a fresh
# AdamW moves every weight by about the learning rate in its first steps,
# and at 1e-4 that moved converged models off their optimum, in float as
# well as quantization-aware (benchmarks/results/qat/README.md).
DEFAULT_LEARNING_RATE = 1e-5
# Share of the fine-tuning steps after which the ranges stop moving, so the
# last steps train the weights against the ranges the int8 model will use.
DEFAULT_FREEZE_FRACTION = 0.5
DEFAULT_CALIBRATION_BATCHES = 8
BACKUP_NAME = "backup_qat"  # the training loop's backup of the QAT phase


class RangeFreezer(keras.callbacks.Callback):
    """Freezes every quantizer's range from optimizer step `freeze_step` on.

    The decision is read from `optimizer.iterations` at each batch, so a run
    resumed from a backup freezes at the same step as an unbroken one.

    Args:
        freeze_step: int, the first step that trains with frozen ranges.
    """

    def __init__(self, freeze_step):
        super().__init__()
        self.freeze_step = int(freeze_step)
        self.frozen = None

    def on_train_batch_begin(self, batch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        frozen = step >= self.freeze_step
        if frozen != self.frozen:
            for quantizer in quantizers(self.model):
                quantizer.freeze(frozen)
            self.frozen = frozen


def check_float32_policy():
    """Raises ValueError unless the global dtype policy is float32."""
    policy = keras.config.dtype_policy().name
    if policy != "float32":
        raise ValueError(
            f"Quantization-aware fine-tuning runs in float32, but the dtype "
            f"policy is {policy!r}: int8 ranges learned in 16-bit floats "
            "are not the ones the converter computes. Fine-tune without "
            "--mixed_precision (keras.config.set_dtype_policy('float32')); "
            "a model trained in mixed precision is rebuilt in float32 for it.")


def fine_tune(model, train_data, val_data=None, epochs=3, initial_epoch=0,
              learning_rate=DEFAULT_LEARNING_RATE, weight_decay=recipe.WEIGHT_DECAY,
              label_smoothing=recipe.LABEL_SMOOTHING,
              freeze_fraction=DEFAULT_FREEZE_FRACTION,
              calibration_batches=DEFAULT_CALIBRATION_BATCHES, callbacks=(),
              verbose="auto", jit_compile=False, ema_momentum=0.0):
    """Quantization-aware fine-tuning: the twin of `model`, trained by `fit`.

    The twin (`quantize_model`) starts from `model`'s weights with ranges
    from `calibration_batches` training batches, then trains for `epochs`
    with AdamW (weight decay kept off norms and biases) and a cosine decay
    from `learning_rate` to 0; its ranges follow a moving average for the
    first `freeze_fraction` of the steps and stay fixed after. With
    `ema_momentum`, the optimizer keeps a moving average of the weights and
    the returned twin holds it (Keras' `use_ema`, put into the model at the
    end of `fit`).

    Args:
        model: a trained float model, or a quantization-aware twin (resumed
            or fine-tuned further: used as it is).
        train_data: a `keras.utils.PyDataset` (or indexable) of
            `(images, one-hot labels)` batches, e.g. `mdnet_keras.data.ImageBatches`.
        val_data: optional validation batches.
        epochs: int, epochs of fine-tuning.
        initial_epoch: int, epoch numbering offset (the float epochs before),
            so that logs and a training loop's backups continue.
        learning_rate: float, the starting learning rate.
        weight_decay: float, AdamW weight decay.
        label_smoothing: float, of the cross-entropy.
        freeze_fraction: float in [0, 1], share of steps before the ranges
            are frozen.
        calibration_batches: int, training batches that set initial ranges.
        callbacks: extra Keras callbacks (a loop's checkpoint and backup).
        verbose: `fit` verbosity.
        jit_compile: bool, XLA compilation.
        ema_momentum: float in [0, 1), the weight average's momentum; 0 for
            none.

    Returns:
        A tuple `(qat_model, history)`.

    Raises:
        ValueError: a mixed-precision dtype policy (see
            `check_float32_policy`), bad arguments, or a layer without a
            twin.
    """
    check_float32_policy()
    if int(epochs) < 1:
        raise ValueError(f"`epochs` must be >= 1. Received: {epochs}")
    if not 0 <= freeze_fraction <= 1:
        raise ValueError(f"`freeze_fraction` must be in [0, 1]. Received: {freeze_fraction}")
    steps = len(train_data)
    if is_quantization_aware(model):
        qat = model
    else:
        images = [np.asarray(train_data[i][0])
                  for i in range(min(calibration_batches, steps))]
        qat = quantize_model(model, np.concatenate(images) if images else None,
                             batch_size=len(images[0]) if images else 32)
    total = steps * int(epochs)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, max(total, 1))
    optimizer = recipe.make_optimizer(qat, schedule, weight_decay,
                                      ema_momentum=ema_momentum)
    num_classes = int(qat.outputs[0].shape[-1])
    recipe.compile_model(qat, optimizer, num_classes, label_smoothing, jit_compile)
    freezer = RangeFreezer(int(round(freeze_fraction * total)))
    history = qat.fit(train_data, validation_data=val_data,
                      epochs=initial_epoch + int(epochs), initial_epoch=initial_epoch,
                      callbacks=[freezer, *callbacks], shuffle=False, verbose=verbose)
    return qat, history


def check_train_options(config):
    """Checks a training configuration's QAT options (`train --qat_epochs`).

    Raises:
        ValueError: negative `qat_epochs`, QAT with mixed precision, or no
            epoch at all to train.
    """
    if config.qat_epochs < 0:
        raise ValueError(f"`qat_epochs` must be >= 0. Received: {config.qat_epochs}")
    if config.qat_epochs and config.mixed_precision:
        raise ValueError(
            "--qat_epochs cannot run with --mixed_precision: quantization-aware "
            "fine-tuning runs in float32 (int8 ranges learned in 16-bit floats "
            "are not the converter's). Train the float epochs in mixed "
            "precision, then fine-tune with --init_from=RUN/last.keras "
            "--epochs=0 --qat_epochs=N without --mixed_precision.")
    if config.epochs == 0 and not (config.qat_epochs and config.init_from):
        raise ValueError("--epochs=0 needs --qat_epochs and --init_from (a "
                         "trained model to fine-tune).")


def fine_tune_phase(model, out, train_data, val_data, epochs, initial_epoch,
                    callbacks, save, **options):
    """The training loop's QAT phase: keeps the float model, then `fine_tune`.

    Writes `<out>/float.keras` (the PTQ baseline that `convert` compares
    with) and runs `fine_tune` with the loop's callbacks, whose backup makes
    a killed QAT epoch resume like a float one. A run resumed in its QAT
    phase keeps the `float.keras` it wrote (the loop's `model` is then a
    fresh one; the backup restores the twin).

    Args:
        model: the trained float model.
        out: the run folder.
        train_data, val_data: the loop's batches.
        epochs: int, QAT epochs.
        initial_epoch: int, the float epochs before.
        callbacks: the loop's callbacks (checkpoints, backup, history).
        save: `save(model, path)`, the loop's atomic save.
        **options: more `fine_tune` arguments.

    Returns:
        `(qat_model, history)`.
    """
    from mdnet_keras.quantization.report import FLOAT_BASELINE_NAME

    if not os.path.isdir(os.path.join(out, BACKUP_NAME)):
        save(model, os.path.join(out, FLOAT_BASELINE_NAME))
    print(f"Phase 'qat': epochs {initial_epoch + 1}-{initial_epoch + epochs}, "
          "quantization-aware fine-tuning (ranges frozen after "
          f"{100 * DEFAULT_FREEZE_FRACTION:.0f}% of its steps).")
    return fine_tune(model, train_data, val_data, epochs, initial_epoch=initial_epoch,
                     callbacks=callbacks, **options)
