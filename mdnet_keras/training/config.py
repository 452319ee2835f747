"""`TrainConfig`: every option of a training run, and `resolve_config`.

Fields left `None` are filled from the data set's defaults
(`DATASET_DEFAULTS`), then from the named recipe
(`mdnet_keras.training.recipe.RECIPES`).
"""

import dataclasses
import json
import logging
import os


from mdnet_keras.training import batchnorm
from mdnet_keras.training import recipe
from mdnet_keras.training import run_folder

logger = logging.getLogger(__name__)


STRATEGIES = ("none", "mirrored", "multi_worker")


# How `fit` reads the training batches: "auto" is `tf.data` on TensorFlow
# where it serves the same batches (`mdnet_keras.data.tf_input`), else the
# `ImageBatches` PyDataset.
INPUT_PIPELINES = ("auto", "tf_data", "py_dataset")


PRECISION_DTYPES = ("bfloat16", "float16")


# Length and batch defaults per data set: the embedded sample trains in a
# minute or two on a laptop CPU; the rest follow the CIFAR recipe.
# CIFAR takes the recipe `recipe="auto"` chooses for its epochs. The
# sample and folders keep the legacy recipe, with the values under
# "recipe_values" unless --recipe names a recipe.
CIFAR_RECIPE = {"model": "mdnet", "epochs": 200, "batch_size": 128,
                "recipe": "auto", "drop_path_rate": 0.1}


DATASET_DEFAULTS = {
    "sample": {"model": "mdnet_micro", "epochs": 10, "batch_size": 64,
               "recipe": "legacy", "drop_path_rate": 0.0,
               "recipe_values": {"warmup_epochs": 1, "learning_rate": 2e-3}},
    "cifar10": CIFAR_RECIPE,
    "cifar100": CIFAR_RECIPE,
    "npz": CIFAR_RECIPE,
    "folder": {"model": "mdnet_small", "epochs": 50, "batch_size": 32,
               "recipe": "legacy", "drop_path_rate": 0.1,
               "recipe_values": {"warmup_epochs": 2}},
}


MAX_PRESET_WARMUP_SHARE = 0.2


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run depends on; every field is a `train` flag.

    Fields left `None` are filled by `resolve_config` from
    `DATASET_DEFAULTS` (the sample: a short run of `mdnet_micro`; CIFAR:
    200 epochs of `mdnet` at batch 128), then from the named recipe
    (`recipe.RECIPES`; `"auto"` chooses by the number of epochs).
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
    streaming: str = "auto"
    max_memory_mb: float = None
    # Model.
    model: str = None
    model_config: dict = None
    attention: str = "differential"
    drop_path_rate: float = None
    dropout_rate: float = 0.2
    stem_strides: int = 1
    init_from: str = None
    freeze_backbone_epochs: int = 0
    qat_epochs: int = 0
    # Optimisation: fields left None come from the recipe.
    recipe: str = None
    epochs: int = None
    batch_size: int = None
    optimizer: str = None
    learning_rate: float = None
    scale_learning_rate: bool = True
    weight_decay: float = None
    momentum: float = None
    schedule: str = None
    warmup_epochs: float = None
    min_lr_ratio: float = 0.0
    label_smoothing: float = None
    ema_momentum: float = None
    bn_recalibration_batches: int = batchnorm.DEFAULT_BATCHES
    clipnorm: float = None
    class_weight: str = "none"
    time_budget_minutes: float = None
    # Augmentation.
    crop_padding: int = None
    flip: bool = True
    randaugment: bool = None
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    # Runtime.
    seed: int = 0
    mixed_precision: bool = False
    mixed_precision_dtype: str = "bfloat16"
    jit_compile: str = "auto"
    steps_per_execution: str = "auto"
    strategy: str = "none"
    input_pipeline: str = "auto"
    workers: int = 1
    out: str = None
    overwrite: bool = False
    verbose: str = "auto"


def resolve_config(config=None, custom_model=False, **overrides):
    """Fills defaults and checks names and values; returns a `TrainConfig`.

    Args:
        config: a `TrainConfig`, a dict of its fields, or None.
        custom_model: bool, `model` names a model the caller builds (see
            `train(build_model=...)`), not an MDNet variant.
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
    warmup_given = config.warmup_epochs is not None
    defaults = dict(DATASET_DEFAULTS[config.dataset])
    recipe_values = defaults.pop("recipe_values", {})
    if config.recipe is None:
        defaults.update(recipe_values)
    for key, value in defaults.items():
        if getattr(config, key) is None:
            setattr(config, key, value)
    try:
        chosen = recipe.get_recipe(config.recipe, int(config.epochs))
    except ValueError as e:
        raise ValueError(f"--recipe: {e}") from None
    if config.recipe == "auto":
        config.recipe = next(name for name, value in recipe.RECIPES.items()
                             if value == chosen)
    if not warmup_given:
        # A default warm-up takes at most a fifth of a short run.
        config.warmup_epochs = min(
            chosen.warmup_epochs if config.warmup_epochs is None
            else config.warmup_epochs,
            MAX_PRESET_WARMUP_SHARE * int(config.epochs))
    for key, value in dataclasses.asdict(chosen).items():
        if hasattr(config, key) and getattr(config, key) is None:
            setattr(config, key, value)
    recipe.check_choice("optimizer", config.optimizer, recipe.OPTIMIZERS)
    recipe.check_choice("schedule", config.schedule, recipe.SCHEDULES)
    for key in ("momentum", "ema_momentum"):
        if getattr(config, key) is not None:
            recipe.check_momentum(key, getattr(config, key))
    batchnorm.check_batches(config.bn_recalibration_batches)
    if config.time_budget_minutes is not None and config.time_budget_minutes <= 0:
        raise ValueError("`time_budget_minutes` must be > 0. Received: "
                         f"{config.time_budget_minutes}")
    if not custom_model and config.model not in MDNET_VARIANTS:
        raise ValueError(
            f"Unknown model {config.model!r}; choose one of "
            f"{', '.join(sorted(MDNET_VARIANTS))}."
        )
    if config.strategy not in STRATEGIES:
        raise ValueError(
            f"Unknown strategy {config.strategy!r}; choose one of "
            f"{', '.join(STRATEGIES)}."
        )
    if config.input_pipeline not in INPUT_PIPELINES:
        raise ValueError(
            f"Unknown input_pipeline {config.input_pipeline!r}; choose one of "
            f"{', '.join(INPUT_PIPELINES)}."
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
    config.steps_per_execution = check_steps_per_execution(
        config.steps_per_execution)
    if isinstance(config.model_config, str):
        try:
            config.model_config = json.loads(config.model_config or "{}")
        except json.JSONDecodeError as e:
            raise ValueError(f"--model_config is not valid JSON ({e}): "
                             f"{config.model_config!r}") from None
    if not isinstance(config.model_config or {}, dict):
        raise ValueError("--model_config must be a JSON object of MDNet "
                         f"arguments. Received: {config.model_config!r}")
    config.model_config = dict(config.model_config or {})
    if not custom_model:
        check_model_config(config.model_config)
    for key in ("epochs", "batch_size"):
        # --epochs=0 --qat_epochs=N fine-tunes --init_from.
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
    if config.qat_epochs or config.epochs == 0:
        from mdnet_keras.quantization import check_train_options
        check_train_options(config)
    if config.out is None:
        config.out = run_folder.default_out_dir(config)
    return config


def check_steps_per_execution(steps, backend=None):
    """Raises a clear error for a `steps_per_execution` Keras cannot run.

    Args:
        steps: `"auto"` or int, the training steps of one compiled call of
            `fit` (an integer given as text is read as one).
        backend: the Keras backend name (default: the current one).

    Returns:
        `"auto"` or the int.
    """
    import keras

    if str(steps).lower() == "auto":
        return "auto"
    try:
        number = int(str(steps))
    except ValueError:
        number = None
    if number is None or number < 1:
        raise ValueError("`steps_per_execution` must be 'auto' or an integer "
                         f">= 1. Received: {steps!r}")
    backend = backend or keras.backend.backend()
    if number > 1 and backend == "torch":
        raise ValueError(
            f"`steps_per_execution={number}` is not supported by Keras on the "
            "torch backend; use 1 there (or TensorFlow / JAX).")
    return number


# Set by `train` itself; a --model_config may not repeat them.
TRAIN_SET_MDNET_ARGS = ("input_shape", "num_classes", "variant", "attention",
                        "dropout_rate", "drop_path_rate", "stem_strides",
                        "weights")


def check_model_config(model_config):
    """Raises a clear error for a `--model_config` key MDNet does not take."""
    import inspect

    from mdnet_keras.models import MDNet

    accepted = set(inspect.signature(MDNet).parameters) - set(
        TRAIN_SET_MDNET_ARGS)
    unknown = sorted(set(model_config) - accepted)
    if unknown:
        raise ValueError(
            f"--model_config: unknown MDNet argument(s) {unknown}; it takes "
            f"{', '.join(sorted(accepted))} (the others have their own flags).")
