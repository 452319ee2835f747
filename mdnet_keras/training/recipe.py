"""The training recipe: loss, optimizer, schedule, metrics, class weights.

The documented CIFAR recipe (every value has a `train` flag):

- loss: `CategoricalCrossentropy(label_smoothing=0.1)` on one-hot labels
  (the paper's label smoothing; MixUp / CutMix mix the one-hot labels);
- optimizer: AdamW, weight decay 0.05, not applied to norms, biases, the
  `DifferentialAttention` lambda vectors (`lambda_q1`, `lambda_k1`,
  `lambda_q2`, `lambda_k2`) and its `norm_scale`;
- schedule: linear warm-up from 0 to the peak learning rate over the first
  5 epochs, then cosine decay to `min_lr_ratio * peak` (0 by default) at the
  last step (`keras.optimizers.schedules.CosineDecay` with warm-up);
- peak learning rate: `learning_rate * global_batch / BASE_BATCH_SIZE`
  (linear scaling; 1e-3 at a global batch of 128), where the global batch
  is the sum over all replicas;
- metrics: top-1 and top-5 accuracy (`top1`, `top5`);
- XLA (`jit_compile`) off on CPU, where XLA's depthwise convolutions are
  slow, on for GPUs and TPUs under TensorFlow, and always under JAX.

Nothing here imports TensorFlow: the recipe also runs under the JAX backend.
"""

import re

import keras
import numpy as np

BASE_BATCH_SIZE = 128
LABEL_SMOOTHING = 0.1
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 0.05
WARMUP_EPOCHS = 5
# Names (regular expressions on `variable.name`) kept out of weight decay,
# on top of every variable with fewer than 2 dimensions.
NO_DECAY_NAMES = (
    "bias",
    "gamma",
    "beta",
    "moving_mean",
    "moving_variance",
    "lambda_q1",
    "lambda_k1",
    "lambda_q2",
    "lambda_k2",
    "norm_scale",
    "scale",
)
NORM_LAYERS = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
    keras.layers.UnitNormalization,
)


def scaled_learning_rate(learning_rate, global_batch_size,
                         base_batch_size=BASE_BATCH_SIZE):
    """The linear scaling rule: `learning_rate * global / base` batch size.

    Args:
        learning_rate: float, the peak learning rate at `base_batch_size`.
        global_batch_size: int, images per optimizer step over all replicas.
        base_batch_size: int, the batch `learning_rate` is given for.
            Defaults to `BASE_BATCH_SIZE` (128).

    Returns:
        float, the peak learning rate for `global_batch_size`.
    """
    return float(learning_rate) * global_batch_size / base_batch_size


def learning_rate_schedule(peak_learning_rate, total_steps, warmup_steps,
                           min_lr_ratio=0.0):
    """Linear warm-up from 0 to the peak, then cosine decay.

    Args:
        peak_learning_rate: float, the learning rate at the end of warm-up.
        total_steps: int, optimizer steps of the whole run (warm-up included).
        warmup_steps: int, steps of linear warm-up (0 for none).
        min_lr_ratio: float, the final learning rate as a fraction of the
            peak. Defaults to 0.

    Returns:
        A `keras.optimizers.schedules.CosineDecay`: the rate at step `s` is
        `peak * s / warmup_steps` while `s < warmup_steps`, then
        `peak * (r + (1 - r) * (1 + cos(pi * t)) / 2)` with `t` the fraction
        of the decay steps done and `r = min_lr_ratio`.
    """
    total_steps = int(total_steps)
    warmup_steps = int(min(max(warmup_steps, 0), max(total_steps - 1, 0)))
    if total_steps < 1:
        raise ValueError(f"`total_steps` must be >= 1. Received: {total_steps}")
    if warmup_steps == 0:
        return keras.optimizers.schedules.CosineDecay(
            peak_learning_rate, total_steps, alpha=min_lr_ratio
        )
    return keras.optimizers.schedules.CosineDecay(
        0.0,
        total_steps - warmup_steps,
        alpha=min_lr_ratio,
        warmup_target=peak_learning_rate,
        warmup_steps=warmup_steps,
    )


def no_decay_variables(model):
    """The variables AdamW must not decay.

    Every weight of a normalization layer, every variable with fewer than two
    dimensions (biases, BatchNorm gamma / beta, the `DifferentialAttention`
    lambda vectors and `norm_scale`), and any variable whose name is in
    `NO_DECAY_NAMES`.

    Args:
        model: a `keras.Model` (built).

    Returns:
        list of trainable `keras.Variable`s.
    """
    pattern = re.compile(r"^(%s)" % "|".join(NO_DECAY_NAMES))
    excluded = {}
    for layer in model._flatten_layers(include_self=False):
        norm = isinstance(layer, NORM_LAYERS)
        for variable in layer.trainable_weights:
            name = variable.name.split("/")[-1]
            if norm or len(variable.shape) < 2 or pattern.match(name):
                excluded[id(variable)] = variable
    return list(excluded.values())


def make_optimizer(model, schedule, weight_decay=WEIGHT_DECAY,
                   clipnorm=None):
    """AdamW on `schedule`, with norms, biases and lambdas excluded from decay.

    Args:
        model: the built `keras.Model` whose variables will be trained.
        schedule: a learning rate (float) or `LearningRateSchedule`.
        weight_decay: float, AdamW's decoupled weight decay. Defaults to 0.05.
        clipnorm: optional float, clip each gradient to this norm.

    Returns:
        A `keras.optimizers.AdamW`, not yet built.
    """
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule, weight_decay=weight_decay, clipnorm=clipnorm
    )
    optimizer.exclude_from_weight_decay(var_list=no_decay_variables(model))
    return optimizer


def make_loss(label_smoothing=LABEL_SMOOTHING):
    """`CategoricalCrossentropy` with label smoothing, on probabilities."""
    return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)


def make_metrics(num_classes):
    """Top-1 and top-5 accuracy (top-k with k = min(5, num_classes))."""
    return [
        keras.metrics.CategoricalAccuracy(name="top1"),
        keras.metrics.TopKCategoricalAccuracy(k=min(5, num_classes),
                                              name="top5"),
    ]


def default_jit_compile(backend=None, accelerator=None):
    """XLA on accelerators (TensorFlow) and always under JAX; off on CPU.

    Args:
        backend: str, Keras backend. Defaults to `keras.backend.backend()`.
        accelerator: bool, whether a GPU/TPU is present. Defaults to asking
            the backend.

    Returns:
        bool.
    """
    backend = backend or keras.backend.backend()
    if backend == "jax":
        return True
    if backend != "tensorflow":
        return False
    if accelerator is None:
        accelerator = has_accelerator()
    return bool(accelerator)


def has_accelerator():
    """Whether the backend sees a GPU or TPU."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU")
                    or tf.config.list_physical_devices("TPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def compile_model(model, optimizer, num_classes,
                  label_smoothing=LABEL_SMOOTHING, jit_compile=False):
    """Compiles `model` with the recipe's loss and metrics."""
    model.compile(
        optimizer=optimizer,
        loss=make_loss(label_smoothing),
        metrics=make_metrics(num_classes),
        jit_compile=jit_compile,
    )
    return model


def class_weights(labels, num_classes, spec="none"):
    """Per-class loss weights for imbalanced data.

    Args:
        labels: int array (N,), the training labels.
        num_classes: int.
        spec: `"none"`, `"balanced"` (`N / (num_classes * count_c)`, as in
            scikit-learn; an absent class gets 1), or a comma-separated
            list of one float per class.

    Returns:
        `None` for `"none"`, else a dict `{class index: weight}` for
        `model.fit(class_weight=...)`.
    """
    if spec in (None, "", "none"):
        return None
    if spec == "balanced":
        counts = np.bincount(np.asarray(labels), minlength=num_classes)
        total = counts.sum()
        return {
            c: float(total / (num_classes * counts[c])) if counts[c] else 1.0
            for c in range(num_classes)
        }
    try:
        values = [float(v) for v in str(spec).split(",")]
    except ValueError:
        values = None
    if values is None or len(values) != num_classes or min(values) < 0:
        raise ValueError(
            "`class_weight` must be 'none', 'balanced' or one non-negative "
            f"number per class ({num_classes}), comma-separated. Received: "
            f"{spec!r}"
        )
    return dict(enumerate(values))
