"""`python -m mdnet_keras train`: train an MDNet with `model.fit`.

With no flags it trains `mdnet_micro` for 10 epochs on the CIFAR-10 sample
embedded in the package (1000 train / 200 test images; a minute or two on a
laptop CPU) and prints where the run folder is. The documented CIFAR recipe:

    python -m mdnet_keras train --dataset=cifar10 \
        --data=../shared/data/cifar10.npz --model=mdnet --out=runs/c10

(200 epochs, global batch 128, AdamW peak LR 1e-3 with 5 warm-up epochs and
cosine decay, weight decay 0.05, label smoothing 0.1). Your own images:

    python -m mdnet_keras train --dataset=folder --data=PATH/TO/IMAGES \
        --image_size=64 --batch_size=32 --model=mdnet_micro

Re-running the same command on an unfinished run folder resumes it (even
after a kill mid-epoch); a finished one is refused unless --overwrite.
"""

import sys

from absl import flags

from mdnet_keras.training.recipe import BASE_BATCH_SIZE
from mdnet_keras.cli.flag_util import define as _define

FLAGS = flags.FLAGS


# Data.
_define(flags.DEFINE_string, "dataset", "sample",
        "Data set: sample (CIFAR-10 images embedded in the package), "
        "cifar10, cifar100, npz or folder.")
_define(flags.DEFINE_string, "data", None,
        "The .npz file (npz; optional for cifar10/cifar100) or the image "
        "folder (folder: root/<class>/*.jpg|png, optionally with train/ and "
        "test/ or val/).")
_define(flags.DEFINE_string, "data_dir", None,
        "TensorFlow Datasets data folder for cifar10 / cifar100.")
_define(flags.DEFINE_boolean, "download", False,
        "Allow downloading CIFAR when it is not on this machine.")
_define(flags.DEFINE_integer, "image_size", None,
        "Resize images to this height and width (default: the data's size).")
_define(flags.DEFINE_integer, "channels", None,
        "1 (grey) or 3 (RGB): convert images to this many channels "
        "(default: the data's; folders are read as RGB).")
_define(flags.DEFINE_float, "validation_split", 0.1,
        "Share of each class held out for testing from a folder without "
        "test/ or val/.")
_define(flags.DEFINE_boolean, "skip_bad_files", False,
        "Skip (and count) image files that cannot be decoded instead of "
        "stopping.")
# Model.
_define(flags.DEFINE_string, "model", None,
        "MDNet variant: mdnet, mdnet_small or mdnet_micro (default: "
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
_define(flags.DEFINE_integer, "qat_epochs", 0,  # QAT hook (issue 16)
        "Quantization-aware fine-tuning epochs after the float ones (with "
        "--epochs=0: of the --init_from model); writes float.keras, and "
        "last.keras becomes the QAT model that convert --mode=int8 takes.")
# Optimisation.
_define(flags.DEFINE_integer, "epochs", None,
        "Epochs (default: 200; 50 for folders; 10 for the sample).")
_define(flags.DEFINE_integer, "batch_size", None,
        "Global batch size, split over replicas (default: 128; 32 for "
        "folders; 64 for the sample).")
_define(flags.DEFINE_float, "learning_rate", None,
        f"Peak AdamW learning rate at a global batch of {BASE_BATCH_SIZE} "
        "(default 1e-3; 2e-3 for the sample); the run uses "
        f"learning_rate * batch_size / {BASE_BATCH_SIZE} "
        "(see --scale_learning_rate).")
_define(flags.DEFINE_boolean, "scale_learning_rate", True,
        "Scale the learning rate linearly with the global batch size.")
_define(flags.DEFINE_float, "weight_decay", 0.05,
        "AdamW weight decay (not applied to norms, biases, lambdas).")
_define(flags.DEFINE_float, "warmup_epochs", None,
        "Epochs of linear warm-up before cosine decay (default 5; 2 for "
        "folders; 1 for the sample).")
_define(flags.DEFINE_float, "min_lr_ratio", 0.0,
        "Final learning rate of the cosine decay, as a share of the peak.")
_define(flags.DEFINE_float, "label_smoothing", 0.1,
        "Label smoothing of the cross-entropy.")
_define(flags.DEFINE_float, "clipnorm", None,
        "Clip each gradient to this norm (default: no clipping).")
_define(flags.DEFINE_string, "class_weight", "none",
        "Class weights for imbalanced data: none, balanced, or one number "
        "per class, comma-separated.")
# Augmentation.
_define(flags.DEFINE_integer, "crop_padding", None,
        "Random-crop padding in pixels (default: image height // 8; 0: off).")
_define(flags.DEFINE_boolean, "flip", True, "Random horizontal flips.")
_define(flags.DEFINE_boolean, "randaugment", False,
        "Apply keras.layers.RandAugment to training batches.")
_define(flags.DEFINE_float, "mixup_alpha", 0.0, "MixUp Beta alpha (0: off).")
_define(flags.DEFINE_float, "cutmix_alpha", 0.0,
        "CutMix Beta alpha (0: off).")
# Runtime.
_define(flags.DEFINE_integer, "seed", 0,
        "Seed of weights, shuffling and augmentation: two CPU runs with one "
        "seed give the same losses.")
_define(flags.DEFINE_boolean, "mixed_precision", False,
        "Mixed precision (see --mixed_precision_dtype), for GPUs and TPUs.")
_define(flags.DEFINE_enum, "mixed_precision_dtype", "bfloat16",
        ["bfloat16", "float16"],
        "Compute dtype of --mixed_precision (float16 adds loss scaling).")
_define(flags.DEFINE_enum, "jit_compile", "auto", ["auto", "true", "false"],
        "XLA compilation: auto = on for GPUs/TPUs and under JAX, off on CPU "
        "with TensorFlow (XLA's depthwise convolutions are slow on CPU).")
_define(flags.DEFINE_enum, "strategy", "none",
        ["none", "mirrored", "multi_worker"],
        "Distribution: mirrored = all GPUs (or logical CPUs) of this "
        "machine; multi_worker = tf.distribute from TF_CONFIG (TensorFlow) "
        "or keras.distribution.initialize() from KERAS_DISTRIBUTION_* (JAX).")
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
    from mdnet_keras.training.run import TrainConfig
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
    from mdnet_keras.data import DatasetNotFoundError
    from mdnet_keras.training import run

    try:
        run.train(config_from_flags())
    except run.TrainingDivergedError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
    except (ValueError, DatasetNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
