"""Measures a `.tflite` classifier on a whole test set (LiteRT runtime).

    python -m mdnet_keras evaluate --tflite=model.tflite --dataset=cifar10 \
        --data=../shared/data/cifar10.npz

(`mdnet_keras.cli.evaluate` dispatches here for `--tflite`; this module also
runs on its own with `main`.) The data flags default to the run folder that
holds the `.tflite` (see `mdnet_keras.cli.data_flags`).
"""

import json
import sys
import time

from absl import flags

from mdnet_keras.cli import data_flags
from mdnet_keras.cli.flag_util import define

FLAGS = flags.FLAGS

data_flags.define_data_flags()
define(flags.DEFINE_string, "tflite", None, "The .tflite model to evaluate.")
define(flags.DEFINE_integer, "limit", 0,
       "Evaluate only the first N test images (0: all).")
define(flags.DEFINE_string, "json_out", None,
       "Also write the result to this JSON file.")


def evaluate_tflite(tflite_path, x_test, y_test, kernels="default",
                    verbose=False, num_classes=None):
    """Top-1 (and top-5 when there are more than 5 classes) of a `.tflite`.

    `verbose` shows a progress bar over the images.

    Raises:
        ValueError: the model's class count is not the data's
            `num_classes` (when given).
    """
    import numpy as np

    from mdnet_keras.export import LiteRTRunner

    with open(tflite_path, "rb") as f:
        runner = LiteRTRunner(f.read(), kernels=kernels)
    outputs = runner.predict(x_test[:1]).shape[-1]
    if num_classes is not None and outputs != num_classes:
        raise ValueError(
            f"{tflite_path} outputs {outputs} classes but the data has "
            f"{num_classes}: pass the --dataset / --data the model was "
            "trained on.")
    start = time.perf_counter()
    probs = runner.predict(x_test, verbose=verbose)
    seconds = time.perf_counter() - start
    y = np.asarray(y_test).reshape(-1)
    result = {
        "tflite": tflite_path,
        "num_images": int(len(y)),
        "top1": float((probs.argmax(-1) == y).mean()),
        "ms_per_image": 1000.0 * seconds / max(1, len(y)),
        "kernels": kernels,
    }
    if probs.shape[-1] > 5:
        top5 = np.argsort(-probs, axis=-1)[:, :5]
        result["top5"] = float((top5 == y[:, None]).any(-1).mean())
    return result


def main(argv):
    del argv
    if not FLAGS.tflite:
        print("error: --tflite=PATH is required", file=sys.stderr)
        sys.exit(2)
    from mdnet_keras.data import DatasetNotFoundError
    from mdnet_keras.data.datasets import load_dataset
    from mdnet_keras.export import LiteRTRunner

    try:
        data_flags.from_run_folder(FLAGS.tflite)
        with open(FLAGS.tflite, "rb") as f:
            shape = LiteRTRunner(f.read()).image_shape
        ds = load_dataset(FLAGS.dataset, image_size=shape[:2],
                          channels=shape[2], **data_flags.load_args())
        x, y = ds.x_test, ds.y_test
        if FLAGS.limit:
            x, y = x[: FLAGS.limit], y[: FLAGS.limit]
        result = evaluate_tflite(FLAGS.tflite, x, y, verbose=True,
                                 num_classes=ds.num_classes)
    except (OSError, ValueError, DatasetNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    line = (f"{FLAGS.tflite}: top-1 {100 * result['top1']:.2f}% on "
            f"{result['num_images']} images")
    if "top5" in result:
        line += f", top-5 {100 * result['top5']:.2f}%"
    print(line + f" ({result['ms_per_image']:.2f} ms/image, LiteRT CPU)")
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w") as f:
            json.dump(result, f, indent=2)
