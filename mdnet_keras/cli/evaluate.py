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

FLAGS = flags.FLAGS


def _define(definer, name, *args, **kwargs):
    """Defines a flag unless another command module in this process did.

    The flag is also made a key flag of the program (`sys.argv[0]`), so
    `python -m mdnet_keras COMMAND --help` lists it.
    """
    if name not in FLAGS:
        definer(name, *args, **kwargs)
    FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[name])


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
_define(flags.DEFINE_string, "out", None,
        "Folder for metrics.json and confusion_matrix.png (default: "
        "eval-<dataset>-<split> beside the model).")

try:  # The .tflite evaluation defines --tflite and its own flags.
    from mdnet_keras.cli import evaluate_tflite
except ImportError:  # pragma: no cover - the export module is optional.
    evaluate_tflite = None
for _name in ("tflite", "limit", "json_out"):
    if _name in FLAGS:
        FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[_name])


def evaluate_keras_model(model_path, dataset, data=None, split="test",
                         batch_size=128, out=None, data_dir=None,
                         download=False, validation_split=0.1, seed=0,
                         skip_bad_files=False):
    """Evaluates a `.keras` classifier; writes and returns the report.

    Args:
        model_path: path of the `.keras` model.
        dataset, data, data_dir, download, validation_split, seed,
            skip_bad_files: as `mdnet_keras.data.load_dataset` takes them.
        split: "test" or "train".
        batch_size: int, images per predict batch.
        out: folder for `metrics.json` and `confusion_matrix.png`; None for
            `eval-<dataset>-<split>` beside the model.

    Returns:
        The `classification_report` dict, with `model`, `dataset`, `split`
        and `out` added.
    """
    import keras
    import numpy as np

    import mdnet_keras  # noqa: F401  (registers the custom layers)
    from mdnet_keras.data import load_dataset
    from mdnet_keras.training import evaluation

    if not os.path.isfile(model_path) or not model_path.endswith(".keras"):
        raise ValueError(f"--model must be an existing .keras file. "
                         f"Received: {model_path!r}")
    model = keras.saving.load_model(model_path, compile=False)
    _, height, width, channels = model.input_shape
    data_set = load_dataset(dataset, data=data, image_size=(height, width),
                            channels=channels, data_dir=data_dir,
                            download=download,
                            validation_split=validation_split, seed=seed,
                            skip_bad_files=skip_bad_files)
    x, y = ((data_set.x_test, data_set.y_test) if split == "test"
            else (data_set.x_train, data_set.y_train))
    num_outputs = model.output_shape[-1]
    if num_outputs != data_set.num_classes:
        raise ValueError(
            f"{model_path} has {num_outputs} outputs but {data_set.name} has "
            f"{data_set.num_classes} classes.")
    probs = model.predict(x.astype(np.float32), batch_size=batch_size,
                          verbose=0)
    report = evaluation.classification_report(y, probs, data_set.class_names)
    if out is None:
        out = os.path.join(os.path.dirname(os.path.abspath(model_path)),
                           f"eval-{dataset}-{split}")
    os.makedirs(out, exist_ok=True)
    report.update({"model": model_path, "dataset": data_set.name,
                   "split": split, "out": out})
    evaluation.write_json(os.path.join(out, "metrics.json"), report)
    evaluation.plot_confusion_matrix(report["confusion_matrix"],
                                     data_set.class_names,
                                     os.path.join(out, "confusion_matrix.png"))
    return report


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
        report = evaluate_keras_model(
            FLAGS.model, FLAGS.dataset, data=FLAGS.data, split=FLAGS.split,
            batch_size=FLAGS.batch_size, out=FLAGS.out,
            data_dir=FLAGS.data_dir, download=FLAGS.download,
            validation_split=FLAGS.validation_split, seed=FLAGS.seed,
            skip_bad_files=FLAGS.skip_bad_files)
    except (ValueError, OSError, DatasetNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"{FLAGS.model} on {report['dataset']} ({report['split']}):")
    print(evaluation.format_report(report))
    print(f"Wrote {os.path.join(report['out'], 'metrics.json')}")
