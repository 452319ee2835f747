"""`python -m mdnet_keras predict --model=M IMAGE...`: top classes per image.

M is a `.keras` or a `.tflite` model. Images are read and resized exactly as
in training (`mdnet_keras.data.datasets.load_image`, Pillow bilinear) to the
model's input size. Class names come from `--labels`, else the labels file
saved next to the model (`<stem>.labels.txt`, else `labels.txt` in its folder).
"""

import os
import sys

from absl import flags

from mdnet_keras.cli.flag_util import define

FLAGS = flags.FLAGS

define(flags.DEFINE_string, "model", None, "A .keras or .tflite model.")
define(flags.DEFINE_string, "labels", None,
       "Labels file, one class name a line. Default: the one beside the "
       "model (<stem>.labels.txt, else the run folder's labels.txt).")
define(flags.DEFINE_integer, "top_k", 3, "How many classes to print per image.")


def _softmax_if_needed(p):
    import numpy as np

    p = np.asarray(p, dtype=np.float64)
    if np.all(p >= 0) and np.allclose(p.sum(-1), 1.0, atol=2e-2):
        return p
    e = np.exp(p - p.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def load_predictor(model_path):
    """Returns (predict_fn(images) -> probabilities, (H, W, C))."""
    from mdnet_keras.export import LiteRTRunner
    from mdnet_keras.export import ModelLoadError
    from mdnet_keras.export import load_keras_model
    from mdnet_keras.export import model_image_shape

    if not os.path.isfile(model_path):
        raise ModelLoadError(f"Model file not found: {model_path!r}")
    if model_path.endswith(".tflite"):
        with open(model_path, "rb") as f:
            data = f.read()
        try:
            runner = LiteRTRunner(data)
        except Exception as e:
            raise ModelLoadError(
                f"{model_path!r} is not a loadable .tflite model: {e}") from e
        return runner.predict, runner.image_shape
    model = load_keras_model(model_path)

    def predict(images):
        return model.predict(images.astype("float32"), verbose=0)

    return predict, model_image_shape(model)


def predict_images(model_path, image_paths, labels_path=None, top_k=3):
    """Returns, per image, a list of (class name, probability), best first."""
    import numpy as np

    from mdnet_keras.data.datasets import load_image
    from mdnet_keras.export import find_labels_file
    from mdnet_keras.export import read_labels

    predict, (h, w, c) = load_predictor(model_path)
    labels_path = labels_path or find_labels_file(model_path)
    labels = read_labels(labels_path) if labels_path else None
    missing = [p for p in image_paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"Image file(s) not found: {missing}")
    images = np.stack([load_image(p, image_size=(h, w), channels=c)
                       for p in image_paths])
    probs = _softmax_if_needed(predict(images))
    if labels is not None and len(labels) != probs.shape[-1]:
        raise ValueError(f"{labels_path} has {len(labels)} labels but the "
                         f"model outputs {probs.shape[-1]} classes.")
    results = []
    for p in probs:
        order = np.argsort(-p)[:top_k]
        results.append([(labels[i] if labels else f"class_{i}", float(p[i]))
                        for i in order])
    return results, labels_path


def main(argv):
    images = argv[1:]
    if not FLAGS.model or not images:
        print("usage: python -m mdnet_keras predict --model=MODEL.(keras|tflite) "
              "IMAGE...", file=sys.stderr)
        sys.exit(2)
    from mdnet_keras.export import ModelLoadError

    try:
        results, labels_path = predict_images(FLAGS.model, images, FLAGS.labels,
                                              FLAGS.top_k)
    except (ModelLoadError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if labels_path is None:
        print("warning: no labels file next to the model; printing class indices",
              file=sys.stderr)
    elif not FLAGS.labels:
        print(f"Class names from {labels_path}.")
    for path, top in zip(images, results):
        print(path)
        for name, p in top:
            print(f"  {name:<24} {100 * p:6.2f}%")
