"""`python -m mdnet_keras train`: train an MDNet with `model.fit`.

With no flags it trains `mdnet_micro` for 10 epochs on the CIFAR-10 sample
embedded in the package (1000 train / 200 test images; a minute or two on a
laptop CPU) and prints where the run folder is. The documented CIFAR recipe:

    python -m mdnet_keras train --dataset=cifar10 \
        --data=../shared/data/cifar10.npz --model=mdnet --out=runs/c10

(200 epochs at global batch 128 with the "long" recipe; `--recipe` and the
optimisation flags choose another, see `mdnet_keras.training.recipe`). Your
own images:

    python -m mdnet_keras train --dataset=folder --data=PATH/TO/IMAGES \
        --image_size=64 --batch_size=32 --model=mdnet_micro

Re-running the same command on an unfinished run folder resumes it (even
after a kill mid-epoch); a finished one is refused unless --overwrite.
"""

import sys

from absl import flags

from mdnet_keras.training.batchnorm import DEFAULT_BATCHES
from mdnet_keras.training.recipe import BASE_BATCH_SIZE
from mdnet_keras.training.recipe import LONG_BUDGET_EPOCHS
from mdnet_keras.training.recipe import OPTIMIZERS
from mdnet_keras.training.recipe import RECIPE_NAMES
from mdnet_keras.training.recipe import SCHEDULES
from mdnet_keras.cli import data_flags
from mdnet_keras.cli.flag_util import define as _define

FLAGS = flags.FLAGS


# Data.
data_flags.define_data_flags()
_define(flags.DEFINE_integer, "image_size", None,
        "Resize images to this height and width (default: the data's size).")
_define(flags.DEFINE_integer, "channels", None,
        "1 (grey) or 3 (RGB): convert images to this many channels "
        "(default: the data's; folders are read as RGB).")
_define(flags.DEFINE_enum, "streaming", "auto", ["auto", "always", "never"],
        "Image folders: decode into memory (never), decode batch by batch "
        "from disk in the input workers (always), or only when the decoded "
        "images would exceed --max_memory_mb (auto).")
_define(flags.DEFINE_float, "max_memory_mb", None,
        "Budget of --streaming=auto in MiB (default: half of this machine's "
        "memory).")
# Model.
_define(flags.DEFINE_string, "model", None,
        "MDNet variant: mdnet, mdnet_v1, mdnet_small or mdnet_micro (default: "
        "mdnet_micro for the sample, mdnet_small for folders, mdnet else).")
_define(flags.DEFINE_string, "model_config", None,
        "JSON of MDNet architecture overrides, e.g. "
        "'{\"stage_depths\": [1, 1, 1, 1], \"head_channels\": 128}'.")
_define(flags.DEFINE_enum, "attention", "differential",
        ["differential", "standard"], "Attention kind.")
_define(flags.DEFINE_float, "drop_path_rate", None,
        "Stochastic depth rate of the last block (default 0.1; 0 for the "
        "sample).")
_define(flags.DEFINE_float, "dropout_rate", 0.2,
        "Dropout before the classifier.")
_define(flags.DEFINE_integer, "stem_strides", 1,
        "Stride of the stem conv: 2 or 4 for large images (attention cost "
        "grows with the square of the token count).")
_define(flags.DEFINE_string, "init_from", None,
        "Fine-tune: start from the weights of this .keras or .weights.h5 "
        "file (layers of matching shape are loaded; a new head for other "
        "classes).")
_define(flags.DEFINE_integer, "freeze_backbone_epochs", 0,
        "Train only the classifier for this many first epochs, then all.")
_define(flags.DEFINE_integer, "qat_epochs", 0,
        "Quantization-aware fine-tuning epochs after the float ones (with "
        "--epochs=0: of the --init_from model); writes float.keras, and "
        "last.keras becomes the QAT model that convert --mode=int8 takes.")
# Optimisation.
_define(flags.DEFINE_enum, "recipe", None, list(RECIPE_NAMES),
        "Named training recipe (see mdnet_keras.training.recipe): fast "
        "(SGD-Nesterov, one-cycle, label smoothing 0.2, weight EMA), long "
        "(SGD-Nesterov, cosine), legacy (AdamW, cosine), or auto (fast "
        f"below {LONG_BUDGET_EPOCHS} epochs, long from there). Default: auto "
        "for CIFAR and .npz data, legacy for the sample and folders. Flags "
        "below override single values of the recipe.")
_define(flags.DEFINE_integer, "epochs", None,
        "Epochs (default: 200; 50 for folders; 10 for the sample).")
_define(flags.DEFINE_integer, "batch_size", None,
        "Global batch size, split over replicas (default: 128; 32 for "
        "folders; 64 for the sample).")
_define(flags.DEFINE_enum, "optimizer", None, list(OPTIMIZERS),
        "Optimizer (default: the recipe's): sgd (Nesterov momentum) or "
        "adamw.")
_define(flags.DEFINE_float, "learning_rate", None,
        f"Peak learning rate at a global batch of {BASE_BATCH_SIZE} "
        "(default: the recipe's); the run uses "
        f"learning_rate * batch_size / {BASE_BATCH_SIZE} "
        "(see --scale_learning_rate).")
_define(flags.DEFINE_boolean, "scale_learning_rate", True,
        "Scale the learning rate linearly with the global batch size.")
_define(flags.DEFINE_float, "weight_decay", None,
        "Decoupled weight decay, not applied to norms, biases, lambdas "
        "(default: the recipe's).")
_define(flags.DEFINE_float, "momentum", None,
        "SGD momentum (default: the recipe's).")
_define(flags.DEFINE_enum, "schedule", None, list(SCHEDULES),
        "Learning-rate shape after the linear warm-up: one_cycle (linear "
        "decay) or cosine (default: the recipe's).")
_define(flags.DEFINE_float, "warmup_epochs", None,
        "Epochs of linear warm-up (default: the recipe's; 2 for folders; 1 "
        "for the sample).")
_define(flags.DEFINE_float, "min_lr_ratio", 0.0,
        "Final learning rate, as a share of the peak.")
_define(flags.DEFINE_float, "label_smoothing", None,
        "Label smoothing of the cross-entropy (default: the recipe's).")
_define(flags.DEFINE_float, "ema_momentum", None,
        "Momentum of the moving average of the weights that validation, "
        "best.keras and model.weights.h5 use; 0 turns it off (default: the "
        "recipe's).")
_define(flags.DEFINE_integer, "bn_recalibration_batches", DEFAULT_BATCHES,
        "With the weight EMA: each epoch, re-estimate BatchNorm statistics "
        "for the averaged weights that validation, best.keras, last.keras "
        "and model.weights.h5 use, on this many fixed training batches (crop "
        "and flip drawn once; at most all batches); training itself keeps the raw "
        "weights' statistics. 0 turns it off (the averaged weights then use "
        "the raw weights' statistics).")
_define(flags.DEFINE_float, "clipnorm", None,
        "Clip each gradient to this norm (default: no clipping).")
_define(flags.DEFINE_string, "class_weight", "none",
        "Class weights for imbalanced data: none, balanced, or one number "
        "per class, comma-separated.")
_define(flags.DEFINE_float, "time_budget_minutes", None,
        "Wall-clock budget: stop before an epoch that would end past it, "
        "then finish the run as usual (weights, metrics).")
# Augmentation.
_define(flags.DEFINE_integer, "crop_padding", None,
        "Random-crop padding in pixels (default: image height // 8; 0: off).")
_define(flags.DEFINE_boolean, "flip", True, "Random horizontal flips.")
_define(flags.DEFINE_boolean, "randaugment", None,
        "Apply keras.layers.RandAugment to training batches (default: the "
        "recipe's). It runs eagerly on the host and costs much more than a "
        "training step (benchmarks/pipeline.py).")
_define(flags.DEFINE_float, "mixup_alpha", 0.0, "MixUp Beta alpha (0: off).")
_define(flags.DEFINE_float, "cutmix_alpha", 0.0,
        "CutMix Beta alpha (0: off).")
# Runtime.
_define(flags.DEFINE_boolean, "mixed_precision", False,
        "Mixed precision (see --mixed_precision_dtype), for GPUs and TPUs.")
_define(flags.DEFINE_enum, "mixed_precision_dtype", "bfloat16",
        ["bfloat16", "float16"],
        "Compute dtype of --mixed_precision (float16 adds loss scaling).")
_define(flags.DEFINE_enum, "jit_compile", "auto", ["auto", "true", "false"],
        "XLA compilation: auto = on for GPUs/TPUs and under JAX, off on CPU "
        "with TensorFlow (XLA's depthwise convolutions are slow on CPU).")
_define(flags.DEFINE_string, "steps_per_execution", "auto",
        "Float training steps per compiled call of fit (an integer >= 1, or "
        "auto = 32 on a GPU or TPU under TensorFlow or JAX, 1 on CPU and "
        "torch): above 1, fit's per-step host work (logs, batch hooks) runs "
        "once per call, which a fast GPU or TPU otherwise waits for; the "
        "progress bar moves in such steps. Not above 1 on the torch "
        "backend. QAT epochs keep 1 (their ranges freeze at a given step).")
_define(flags.DEFINE_enum, "strategy", "none",
        ["none", "mirrored", "multi_worker"],
        "Distribution: mirrored = all GPUs (or logical CPUs) of this "
        "machine; multi_worker = tf.distribute from TF_CONFIG (TensorFlow) "
        "or keras.distribution.initialize() from KERAS_DISTRIBUTION_* (JAX, "
        "one process).")
_define(flags.DEFINE_enum, "input_pipeline", "auto", ["auto", "tf_data", "py_dataset"],
        "How fit reads the training and validation batches: tf_data = a "
        "tf.data pipeline of the same batches (TensorFlow; in-memory images "
        "whose copy, padded for the crop, takes at most a quarter of the "
        "memory, without RandAugment, MixUp or "
        "CutMix; not with multi_worker), "
        "py_dataset = the ImageBatches PyDataset (every backend), auto = "
        "tf_data where it applies.")
_define(flags.DEFINE_integer, "workers", 1,
        "Threads preparing input batches.")
_define(flags.DEFINE_string, "out", None,
        "Run folder (default: runs/<dataset>-<model>, or the first "
        "runs/<dataset>-<model>-N that holds no finished run).")
_define(flags.DEFINE_boolean, "overwrite", False,
        "Replace a run folder that holds a finished (or another) run.")
_define(flags.DEFINE_string, "verbose", "auto",
        "Keras fit verbosity: auto or 1 (progress bar), 2 (a line per "
        "epoch), 0 (silent).")


def config_from_flags():
    """The `TrainConfig` fields as the flags give them."""
    from mdnet_keras.training import TrainConfig
    import dataclasses

    config = {f.name: FLAGS[f.name].value
              for f in dataclasses.fields(TrainConfig)}
    if config["verbose"] != "auto":
        config["verbose"] = int(config["verbose"])
    return config


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        sys.exit(2)
    from mdnet_keras import tf_logs
    from mdnet_keras.data import DatasetNotFoundError
    from mdnet_keras.training import callbacks as run_callbacks
    from mdnet_keras.training import distribution
    from mdnet_keras.training import run

    try:
        run.train(config_from_flags())
    except run_callbacks.TrainingDivergedError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
    except distribution.WorkerLostError as e:
        # Not sys.exit: with its collectives aborted, TensorFlow can hang
        # destroying the input iterator of the failed step at exit. The run
        # folder is complete as it is.
        tf_logs.exit_now(4, f"error: {e}")
    except (ValueError, DatasetNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        print(f"error: {e.strerror or e} while writing "
              f"{e.filename or 'the run folder'}; the run folder keeps its "
              "last finished epoch, so re-running the same command resumes "
              "once the cause (e.g. a full disk) is fixed.", file=sys.stderr)
        sys.exit(2)
