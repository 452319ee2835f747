"""`python -m mdnet_keras evaluate`: metrics of a trained model on a data set.

    python -m mdnet_keras evaluate --model=runs/sample-mdnet_micro/best.keras
    python -m mdnet_keras evaluate --model=runs/c10/last.keras \
        --dataset=cifar10 --data=../shared/data/cifar10.npz

Images are resized (with the data module's one resize method) and converted
to the model's input size and channels. It prints top-1, top-5 and the
per-class precision / recall / F1, and writes `metrics.json` (with the
confusion matrix) and `confusion_matrix.png` to `--out` (default: a folder
`eval-<dataset>-<split>` beside the model). `--tflite=PATH` evaluates a
`.tflite` model instead (`mdnet_keras.cli.evaluate_tflite`).
"""

import os
import sys

from absl import flags
from mdnet_keras.cli.flag_util import define as _define

FLAGS = flags.FLAGS


_define(flags.DEFINE_string, "model", None,
        "The .keras model to evaluate (e.g. a run folder's best.keras).")
_define(flags.DEFINE_string, "dataset", "sample",
        "Data set: sample, cifar10, cifar100, npz or folder.")
_define(flags.DEFINE_string, "data", None,
        "The .npz file or image folder of --dataset.")
_define(flags.DEFINE_string, "data_dir", None,
        "TensorFlow Datasets data folder for cifar10 / cifar100.")
_define(flags.DEFINE_boolean, "download", False,
        "Allow downloading CIFAR when it is not on this machine.")
_define(flags.DEFINE_enum, "split", "test", ["test", "train"],
        "Which split to evaluate.")
_define(flags.DEFINE_float, "validation_split", 0.1,
        "Held-out share of a folder without test/ or val/ (use the value "
        "the model was trained with).")
_define(flags.DEFINE_integer, "seed", 0,
        "Seed of that folder split (use the training run's).")
_define(flags.DEFINE_boolean, "skip_bad_files", False,
        "Skip image files that cannot be decoded instead of stopping.")
_define(flags.DEFINE_integer, "batch_size", 128, "Images per predict batch.")
_define(flags.DEFINE_enum, "tta", "none", ["none", "flip"],
        "Test-time augmentation: flip also reports top-1 / top-5 averaged "
        "over each image and its mirror image, next to the plain figures.")
_define(flags.DEFINE_string, "out", None,
        "Folder for metrics.json and confusion_matrix.png (default: "
        "eval-<dataset>-<split> beside the model).")

# The .tflite evaluation defines --tflite and its own flags.
from mdnet_keras.cli import evaluate_tflite  # noqa: E402


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        sys.exit(2)
    if "tflite" in FLAGS and FLAGS.tflite:
        return evaluate_tflite.main(argv)
    if not FLAGS.model:
        print("error: --model=PATH.keras is required (or --tflite=PATH).",
              file=sys.stderr)
        sys.exit(2)
    from mdnet_keras.data import DatasetNotFoundError
    from mdnet_keras.training import evaluation

    try:
        report = evaluation.evaluate_keras_model(
            FLAGS.model, FLAGS.dataset, data=FLAGS.data, split=FLAGS.split,
            batch_size=FLAGS.batch_size, out=FLAGS.out,
            data_dir=FLAGS.data_dir, download=FLAGS.download,
            validation_split=FLAGS.validation_split, seed=FLAGS.seed,
            skip_bad_files=FLAGS.skip_bad_files, tta=FLAGS.tta)
    except (ValueError, OSError, DatasetNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"{FLAGS.model} on {report['dataset']} ({report['split']}):")
    print(evaluation.format_report(report))
    print(f"Wrote {os.path.join(report['out'], 'metrics.json')}")
