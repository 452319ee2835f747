"""`python -m mdnet_keras evaluate`: metrics of a trained model on a data set.

    python -m mdnet_keras evaluate --model=runs/sample-mdnet_micro/best.keras
    python -m mdnet_keras evaluate --model=model.keras \
        --dataset=cifar10 --data=../shared/data/cifar10.npz

The data flags default to the model's run folder (`config.json`; see
`mdnet_keras.cli.data_flags`), so a model trained by `train` needs only
`--model`.

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

from mdnet_keras.cli import data_flags
from mdnet_keras.cli.flag_util import define

FLAGS = flags.FLAGS


data_flags.define_data_flags()
define(flags.DEFINE_string, "model", None,
       "The .keras model to evaluate (e.g. a run folder's best.keras).")
define(flags.DEFINE_enum, "split", "test", ["test", "train"],
       "Which split to evaluate.")
define(flags.DEFINE_integer, "batch_size", None,
       "Images per predict batch (default: 128).")
define(flags.DEFINE_enum, "tta", "none", ["none", "flip"],
       "Test-time augmentation: flip also reports top-1 / top-5 averaged "
       "over each image and its mirror image, next to the plain figures.")
define(flags.DEFINE_string, "out", None,
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
        data_flags.from_run_folder(FLAGS.model)
        report = evaluation.evaluate_keras_model(
            FLAGS.model, FLAGS.dataset, split=FLAGS.split,
            batch_size=FLAGS.batch_size or 128, out=FLAGS.out,
            tta=FLAGS.tta, **data_flags.load_args())
    except (ValueError, OSError, DatasetNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"{FLAGS.model} on {report['dataset']} ({report['split']}):")
    print(evaluation.format_report(report))
    print(f"Wrote {os.path.join(report['out'], 'metrics.json')}")
    # --json_out is defined with the .tflite evaluation; a .keras model's
    # report honours it too rather than ignoring it.
    if FLAGS.json_out:
        evaluation.write_json(FLAGS.json_out, report)
        print(f"Wrote {FLAGS.json_out}")
