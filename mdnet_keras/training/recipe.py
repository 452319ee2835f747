"""The training recipe: presets, loss, optimizer, schedule, metrics.

A recipe is a named set of optimisation and augmentation values
(`RECIPES`; every value also has its own `train` flag, which wins):

- `"fast"`: budgets up to `LONG_BUDGET_EPOCHS` epochs, in the style of the
  fastest public CIFAR recipes: SGD with Nesterov momentum, one-cycle
  schedule (linear warm-up, then linear decay to 0), label smoothing 0.2,
  an exponential moving average of the weights (the optimizer's `use_ema`),
  pad-crop + flip;
- `"long"`: 200-epoch budgets: SGD-Nesterov, warm-up then cosine decay,
  label smoothing 0.1, RandAugment on top of crop + flip;
- `"legacy"`: the first recipe of this package: AdamW (weight decay 0.05),
  5 warm-up epochs then cosine decay, label smoothing 0.1, crop + flip.

`"auto"` picks `"fast"` or `"long"` from the number of epochs. Which
recipe wins at which budget is measured in `benchmarks/results/recipe/`.

Common to all:

- loss: `CategoricalCrossentropy(label_smoothing=...)` on one-hot labels
  (the paper's label smoothing; MixUp / CutMix mix the one-hot labels);
- weight decay (decoupled, Keras' `weight_decay`) is not applied to norms,
  biases, the `DifferentialAttention` lambda vectors and its `norm_scale`;
- peak learning rate: `learning_rate * global_batch / BASE_BATCH_SIZE`
  (linear scaling), where the global batch is the sum over all replicas;
- metrics: top-1 and top-5 accuracy (`top1`, `top5`);
- XLA (`jit_compile`) off on CPU, where XLA's depthwise convolutions are
  slow, on for GPUs and TPUs under TensorFlow, and always under JAX;
- steps per compiled call of `fit` (`steps_per_execution="auto"`): several
  on GPUs and TPUs, one on CPU.

Nothing here imports TensorFlow: the recipe also runs under the JAX backend.
"""

import dataclasses
import re

import keras
import numpy as np

BASE_BATCH_SIZE = 128
LABEL_SMOOTHING = 0.1
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 0.05
WARMUP_EPOCHS = 5
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("one_cycle", "cosine")
# `recipe="auto"` takes "long" from this many epochs on.
LONG_BUDGET_EPOCHS = 100
# Training steps per compiled call of `fit` that `steps_per_execution="auto"`
# takes on a GPU or TPU: the host work between calls is then paid once for
# this many steps (benchmarks/results/host_overhead/).
ACCELERATOR_STEPS_PER_EXECUTION = 32


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Optimisation and augmentation values of a named training recipe.

    Args:
        optimizer: `"sgd"` (Nesterov momentum) or `"adamw"`.
        learning_rate: peak learning rate at a global batch of
            `BASE_BATCH_SIZE`.
        weight_decay: decoupled weight decay (Keras' `weight_decay`: each
            step multiplies a weight by `1 - learning_rate * weight_decay`).
        momentum: SGD momentum (ignored by AdamW).
        schedule: `"one_cycle"` (linear warm-up, linear decay to the final
            rate) or `"cosine"` (linear warm-up, cosine decay).
        warmup_epochs: epochs of linear warm-up.
        label_smoothing: label smoothing of the cross-entropy.
        ema_fraction: share of the run's steps the weights' moving average
            spans (`ema_momentum_for`), 0 for no average.
        crop_padding: random-crop padding in pixels, None for height // 8.
        randaugment: whether `keras.layers.RandAugment` runs on batches.
    """

    optimizer: str
    learning_rate: float
    weight_decay: float
    momentum: float
    schedule: str
    warmup_epochs: float
    label_smoothing: float
    ema_fraction: float
    crop_padding: int
    randaugment: bool


# Keras' SGD decays weights decoupled from the momentum; 5e-3 here is what
# the usual coupled L2 of 5e-4 amounts to under momentum 0.9 (5e-4 / 0.1).
RECIPES = {
    "fast": Recipe(optimizer="sgd", learning_rate=0.1, weight_decay=5e-3,
                   momentum=0.9, schedule="one_cycle", warmup_epochs=2,
                   label_smoothing=0.2, ema_fraction=0.1, crop_padding=None,
                   randaugment=False),
    "long": Recipe(optimizer="sgd", learning_rate=0.05, weight_decay=5e-3,
                   momentum=0.9, schedule="cosine", warmup_epochs=5,
                   label_smoothing=0.1, ema_fraction=0.0,
                   crop_padding=None, randaugment=False),
    "legacy": Recipe(optimizer="adamw", learning_rate=LEARNING_RATE,
                     weight_decay=WEIGHT_DECAY, momentum=0.9,
                     schedule="cosine", warmup_epochs=WARMUP_EPOCHS,
                     label_smoothing=LABEL_SMOOTHING, ema_fraction=0.0,
                     crop_padding=None, randaugment=False),
}
RECIPE_NAMES = ("auto",) + tuple(RECIPES)


def check_choice(kind, value, choices):
    """Raises a clear error when `value` is not one of `choices`."""
    if value not in choices:
        raise ValueError(f"Unknown {kind} {value!r}; choose one of "
                         f"{', '.join(choices)}.")


def check_momentum(name, value):
    """Raises a clear error for a momentum outside [0, 1)."""
    if not 0.0 <= float(value) < 1.0:
        note = " (0: no weight averaging)" if name == "ema_momentum" else ""
        raise ValueError(f"`{name}` must be in [0, 1){note}. "
                         f"Received: {value}")


def get_recipe(name, epochs=None):
    """The `Recipe` called `name`; `"auto"` chooses by `epochs`.

    Args:
        name: one of `RECIPE_NAMES`.
        epochs: int, the run's epochs (needed for `"auto"`).

    Raises:
        ValueError: an unknown name.
    """
    if name == "auto":
        if epochs is None:
            raise ValueError("recipe='auto' needs the number of epochs.")
        name = "long" if epochs >= LONG_BUDGET_EPOCHS else "fast"
    check_choice("recipe", name, RECIPE_NAMES)
    return RECIPES[name]


def ema_momentum_for(ema_fraction, total_steps):
    """The EMA momentum whose average spans `ema_fraction` of the run.

    An exponential moving average with momentum `m` spans about
    `1 / (1 - m)` steps.

    Example:
    >>> ema_momentum_for(0.1, 5000)
    0.998
    """
    if not ema_fraction:
        return 0.0
    span = max(ema_fraction * total_steps, 1.0)
    return round(1.0 - 1.0 / span, 6)


def check_ema(ema_momentum, total_steps):
    """Raises a clear error for an EMA the run cannot fill.

    The average of `keras.optimizers.Optimizer(use_ema=True)` starts at the
    initial weights and forgets them with `ema_momentum ** steps`; it spans
    about `1 / (1 - ema_momentum)` steps. Over fewer than twice that many
    steps the averaged model is still mostly its random start.
    """
    check_momentum("ema_momentum", ema_momentum)
    if ema_momentum and 2.0 / (1.0 - ema_momentum) > total_steps:
        raise ValueError(
            f"`ema_momentum`={ema_momentum} averages over about "
            f"{1.0 / (1.0 - ema_momentum):.0f} steps, but the run has "
            f"{total_steps} steps: the averaged weights would still be "
            "mostly the random initial ones. Use ema_momentum <= "
            f"{max(0.0, 1.0 - 2.0 / total_steps):.4f}, or 0 to turn "
            "averaging off."
        )
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


@keras.saving.register_keras_serializable(package="mdnet_keras")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to the peak, then linear decay to the end rate.

    The triangular "one-cycle" shape of the fastest CIFAR recipes.

    Args:
        peak_learning_rate: float, the rate at the end of warm-up.
        total_steps: int, steps of the whole run (warm-up included).
        warmup_steps: int, steps of linear warm-up.
        final_ratio: float, the rate at the last step as a share of the
            peak. Defaults to 0.

    Example:
    >>> schedule = OneCycle(0.1, total_steps=100, warmup_steps=20)
    >>> [round(float(schedule(s)), 3) for s in (0, 10, 20, 60, 100)]
    [0.0, 0.05, 0.1, 0.05, 0.0]
    """

    def __init__(self, peak_learning_rate, total_steps, warmup_steps,
                 final_ratio=0.0):
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.final_ratio = float(final_ratio)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        peak = self.peak_learning_rate
        warmup = float(max(self.warmup_steps, 1))
        decay = float(max(self.total_steps - self.warmup_steps, 1))
        rising = peak * step / warmup
        done = keras.ops.clip((step - self.warmup_steps) / decay, 0.0, 1.0)
        falling = peak * (1.0 - (1.0 - self.final_ratio) * done)
        return keras.ops.where(step < self.warmup_steps, rising, falling)

    def get_config(self):
        return {"peak_learning_rate": self.peak_learning_rate,
                "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps,
                "final_ratio": self.final_ratio}


def learning_rate_schedule(peak_learning_rate, total_steps, warmup_steps,
                           min_lr_ratio=0.0, shape="cosine"):
    """Linear warm-up from 0 to the peak, then cosine or linear decay.

    Args:
        peak_learning_rate: float, the learning rate at the end of warm-up.
        total_steps: int, optimizer steps of the whole run (warm-up included).
        warmup_steps: int, steps of linear warm-up (0 for none).
        min_lr_ratio: float, the final learning rate as a fraction of the
            peak. Defaults to 0.
        shape: `"cosine"` or `"one_cycle"` (linear decay). Defaults to
            `"cosine"`.

    Returns:
        A `LearningRateSchedule`. For `"cosine"`, a
        `keras.optimizers.schedules.CosineDecay`: the rate at step `s` is
        `peak * s / warmup_steps` while `s < warmup_steps`, then
        `peak * (r + (1 - r) * (1 + cos(pi * t)) / 2)` with `t` the fraction
        of the decay steps done and `r = min_lr_ratio`. For `"one_cycle"`,
        `OneCycle`: the same warm-up, then `peak * (1 - (1 - r) * t)`.

    Raises:
        ValueError: an unknown shape, or no step left after warm-up.
    """
    check_choice("schedule", shape, SCHEDULES)
    total_steps = int(total_steps)
    if total_steps < 1:
        raise ValueError(f"`total_steps` must be >= 1. Received: {total_steps}")
    warmup_steps = int(max(warmup_steps, 0))
    if warmup_steps and warmup_steps >= total_steps:
        raise ValueError(
            f"The warm-up ({warmup_steps} steps) does not end before the run "
            f"does ({total_steps} steps): lower --warmup_epochs or train "
            "for more epochs."
        )
    if shape == "one_cycle":
        return OneCycle(peak_learning_rate, total_steps, warmup_steps,
                        min_lr_ratio)
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
                   clipnorm=None, optimizer="adamw", momentum=0.9,
                   ema_momentum=0.0):
    """AdamW or SGD-Nesterov on `schedule`, norms and biases not decayed.

    Args:
        model: the built `keras.Model` whose variables will be trained.
        schedule: a learning rate (float) or `LearningRateSchedule`.
        weight_decay: float, decoupled weight decay. Defaults to 0.05.
        clipnorm: optional float, clip each gradient to this norm.
        optimizer: `"adamw"` or `"sgd"` (Nesterov momentum). Defaults to
            `"adamw"`.
        momentum: float, SGD's momentum. Defaults to 0.9.
        ema_momentum: float in [0, 1): keep an exponential moving average of
            the weights (`use_ema=True`) with this momentum; 0 for none.
            `finalize_variable_values` (called at the end of `fit`) puts the
            average into the model.

    Returns:
        A `keras.optimizers.AdamW` or `keras.optimizers.SGD`, not yet built.

    Raises:
        ValueError: an unknown optimizer or an out-of-range momentum.
    """
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_momentum("momentum", momentum)
    check_momentum("ema_momentum", ema_momentum)
    common = dict(learning_rate=schedule, weight_decay=weight_decay,
                  clipnorm=clipnorm, use_ema=bool(ema_momentum),
                  ema_momentum=ema_momentum or 0.99)
    if optimizer == "sgd":
        result = keras.optimizers.SGD(momentum=momentum, nesterov=True,
                                      **common)
    else:
        result = keras.optimizers.AdamW(**common)
    result.exclude_from_weight_decay(var_list=no_decay_variables(model))
    return result


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


def default_steps_per_execution(steps_per_epoch, backend=None,
                                accelerator=None):
    """`ACCELERATOR_STEPS_PER_EXECUTION` steps a compiled call on a GPU or
    TPU under TensorFlow or JAX (at most an epoch's steps), else 1.

    A fast accelerator idles while `fit` does its host work between calls
    (logs, batch hooks); on a CPU a step costs far more than that work, and
    one step a call keeps the progress bar moving step by step.

    Args:
        steps_per_epoch: int, the training steps of one epoch.
        backend: str, Keras backend. Defaults to `keras.backend.backend()`.
        accelerator: bool, whether a GPU/TPU is present. Defaults to asking
            the backend.

    Returns:
        int.
    """
    backend = backend or keras.backend.backend()
    if backend not in ("tensorflow", "jax"):
        return 1
    if accelerator is None:
        accelerator = has_accelerator()
    if not accelerator:
        return 1
    return max(1, min(ACCELERATOR_STEPS_PER_EXECUTION, int(steps_per_epoch)))


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
                  label_smoothing=LABEL_SMOOTHING, jit_compile=False,
                  steps_per_execution=1):
    """Compiles `model` with the recipe's loss and metrics.

    `steps_per_execution` > 1 runs that many training steps in one compiled
    call of `fit` (a `tf.while_loop` on TensorFlow, a loop over the jitted
    step on JAX), so the per-step host work of `fit` (logs, callbacks'
    batch hooks) happens once per call: what a fast accelerator waits for.
    """
    model.compile(
        optimizer=optimizer,
        loss=make_loss(label_smoothing),
        metrics=make_metrics(num_classes),
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
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
