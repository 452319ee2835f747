"""Classification metrics and plots, with NumPy and matplotlib only.

`classification_report(y_true, probs, class_names)` is the one entry point
for any model that yields class scores (a `.keras` model's `predict`, a
`.tflite` interpreter's outputs): it returns a JSON-ready dict with top-1,
top-5, per-class precision / recall / F1 / support, their macro averages and
the confusion matrix. `evaluate_keras_model` runs a `.keras` model on a data
set and writes that report (it imports Keras only when called).
"""

import csv
import json
import os

import numpy as np


TTA_MODES = ("none", "flip")


def evaluation_jit_compile():
    """XLA for evaluation on accelerators only.

    On a CPU, compiling MDNet's inference with XLA takes longer than
    running it op by op, under JAX too.
    """
    from mdnet_keras.training import recipe

    return recipe.has_accelerator()


def confusion_matrix(y_true, y_pred, num_classes):
    """Counts: row = true class, column = predicted class.

    Args:
        y_true: int array (N,).
        y_pred: int array (N,).
        num_classes: int.

    Returns:
        int64 array (num_classes, num_classes).
    """
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def top_k_accuracy(y_true, probs, k):
    """Share of examples whose true class is among the `k` highest scores.

    Ties are broken by class index (as `np.argsort` with a stable sort).
    """
    probs = np.asarray(probs)
    k = min(k, probs.shape[-1])
    top = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    y_true = np.asarray(y_true).reshape(-1, 1)
    return float(np.mean(np.any(top == y_true, axis=-1)))


def classification_report(y_true, probs, class_names):
    """Top-1 / top-5, per-class precision / recall / F1 and the confusion matrix.

    Args:
        y_true: int array (N,), the true classes.
        probs: float array (N, num_classes), scores of each class
            (probabilities or logits: only their order matters).
        class_names: sequence of str, one per class.

    Returns:
        dict with `num_examples`, `top1`, `top5` (k = min(5, classes)),
        `macro_precision`, `macro_recall`, `macro_f1`, `per_class` (a dict
        by class name of `precision`, `recall`, `f1`, `support`),
        `class_names` and `confusion_matrix` (a list of rows: true class,
        columns: predicted class). A class never predicted has precision 0;
        one with no examples has recall 0 and is left out of the macro
        averages.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    class_names = [str(name) for name in class_names]
    num_classes = len(class_names)
    if probs.ndim != 2 or probs.shape != (len(y_true), num_classes):
        raise ValueError(
            f"`probs` must have shape ({len(y_true)}, {num_classes}) for "
            f"{len(y_true)} labels and {num_classes} class names. Received: "
            f"{probs.shape}"
        )
    if len(y_true) and (y_true.min() < 0 or y_true.max() >= num_classes):
        raise ValueError(
            f"Labels must be in [0, {num_classes}). Received range "
            f"[{y_true.min()}, {y_true.max()}]"
        )
    y_pred = np.argmax(probs, axis=-1)
    matrix = confusion_matrix(y_true, y_pred, num_classes)
    true_pos = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    precision = np.divide(true_pos, predicted, out=np.zeros(num_classes),
                          where=predicted > 0)
    recall = np.divide(true_pos, support, out=np.zeros(num_classes),
                       where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator,
                   out=np.zeros(num_classes), where=denominator > 0)
    present = support > 0
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }
    return {
        "num_examples": int(len(y_true)),
        "top1": top_k_accuracy(y_true, probs, 1),
        "top5": top_k_accuracy(y_true, probs, 5),
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": per_class,
        "class_names": class_names,
        "confusion_matrix": matrix.tolist(),
    }


def evaluate_keras_model(model_path, dataset, data=None, split="test",
                         batch_size=128, out=None, data_dir=None,
                         download=False, validation_split=0.1, seed=0,
                         skip_bad_files=False, tta="none"):
    """Evaluates a `.keras` classifier; writes and returns the report.

    Args:
        model_path: path of the `.keras` model.
        dataset, data, data_dir, download, validation_split, seed,
            skip_bad_files: as `mdnet_keras.data.load_dataset` takes them.
        split: "test" or "train".
        batch_size: int, images per predict batch.
        out: folder for `metrics.json` and `confusion_matrix.png`; None for
            `eval-<dataset>-<split>` beside the model.
        tta: `"none"`, or `"flip"` to also report top-1 / top-5 of the
            probabilities averaged over each image and its mirror image
            (`tta_flip`), next to the plain figures, which stay the report's.

    Returns:
        The `classification_report` dict, with `model`, `dataset`, `split`
        and `out` added (and `tta_flip` for `tta="flip"`).
    """
    if tta not in TTA_MODES:
        raise ValueError(f"Unknown test-time augmentation {tta!r}; choose "
                         f"one of {', '.join(TTA_MODES)}.")
    import keras  # Imported here: the rest of this module needs no Keras.

    import mdnet_keras  # noqa: F401  (registers the custom layers)
    from mdnet_keras.data import load_dataset

    model_path = os.fspath(model_path)
    if not os.path.isfile(model_path) or not model_path.endswith(".keras"):
        raise ValueError(f"--model must be an existing .keras file. "
                         f"Received: {model_path!r}")
    model = keras.saving.load_model(model_path, compile=False)
    model.jit_compile = evaluation_jit_compile()
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
    report = classification_report(y, probs, data_set.class_names)
    if tta == "flip":
        report["tta_flip"] = flip_tta_accuracy(model, x, y, probs, batch_size)
    if out is None:
        out = os.path.join(os.path.dirname(os.path.abspath(model_path)),
                           f"eval-{dataset}-{split}")
    os.makedirs(out, exist_ok=True)
    report.update({"model": model_path, "dataset": data_set.name,
                   "split": split, "out": out})
    write_json(os.path.join(out, "metrics.json"), report)
    plot_confusion_matrix(report["confusion_matrix"], data_set.class_names,
                          os.path.join(out, "confusion_matrix.png"))
    return report


def flip_tta_accuracy(model, x, y, probs, batch_size=128):
    """Top-1 / top-5 of `probs` averaged with those of the mirrored images.

    Args:
        model: the Keras classifier.
        x: uint8 or float images (N, H, W, C).
        y: int labels (N,).
        probs: (N, classes), the model's probabilities on `x`.
        batch_size: int, images per predict batch.

    Returns:
        dict with `top1`, `top5` (k = min(5, classes)).
    """
    mirrored = model.predict(np.ascontiguousarray(x[:, :, ::-1]).astype(
        np.float32), batch_size=batch_size, verbose=0)
    mean = (np.asarray(probs) + mirrored) / 2
    k = min(5, mean.shape[-1])
    return {"top1": top_k_accuracy(y, mean, 1), "top5": top_k_accuracy(y, mean, k)}


def format_report(report, max_classes=20):
    """A text table of a `classification_report` dict."""
    lines = [
        f"examples: {report['num_examples']}  top-1: "
        f"{100 * report['top1']:.2f}%  top-5: {100 * report['top5']:.2f}%  "
        f"macro F1: {report['macro_f1']:.3f}",
    ]
    if "tta_flip" in report:
        lines.append(f"with flip test-time augmentation: top-1 "
                     f"{100 * report['tta_flip']['top1']:.2f}%  top-5 "
                     f"{100 * report['tta_flip']['top5']:.2f}% (the figures "
                     "above are without it)")
    names = report["class_names"]
    if len(names) <= max_classes:
        width = max(12, max(len(n) for n in names) + 1)
        lines.append(f"{'class':<{width}} precision  recall     f1  support")
        for name in names:
            row = report["per_class"][name]
            lines.append(
                f"{name:<{width}} {row['precision']:9.3f} {row['recall']:7.3f} "
                f"{row['f1']:6.3f} {row['support']:8d}"
            )
    return "\n".join(lines)


def write_json(path, data):
    """Writes `data` as indented JSON atomically (temp file, then rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def read_history(path):
    """Reads a `CSVLogger` file into `{column: list of floats}`."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    columns = {}
    for row in rows:
        for key, value in row.items():
            try:
                columns.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                columns.setdefault(key, []).append(float("nan"))
    return columns


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(history, path):
    """Loss, top-1 and learning-rate curves per epoch, as one PNG.

    Args:
        history: dict `{column: values}` (e.g. `read_history`) with `epoch`
            and any of `loss`, `val_loss`, `top1`, `val_top1`, `top5`,
            `val_top5`, `learning_rate`.
        path: the PNG file to write.
    """
    plt = _pyplot()
    epochs = np.asarray(history.get("epoch", []), dtype=float) + 1
    panels = [("loss", "loss"), ("top1", "top-1 accuracy"),
              ("learning_rate", "learning rate")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for ax, (key, title) in zip(axes, panels):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + key)
            if values is not None and len(values) == len(epochs):
                label = "validation" if prefix else "train"
                if key == "learning_rate":
                    label = None
                ax.plot(epochs, values, style, marker=".", label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0] and key != "learning_rate":
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion_matrix(matrix, class_names, path, normalize=True):
    """The confusion matrix as a PNG (rows: true class, columns: predicted).

    Args:
        matrix: (K, K) counts.
        class_names: K names.
        path: the PNG file to write.
        normalize: bool, colour by the share of each true class (the counts
            are written in the cells when K <= 20).
    """
    plt = _pyplot()
    matrix = np.asarray(matrix, dtype=np.float64)
    num = len(class_names)
    shown = matrix
    if normalize:
        rows = matrix.sum(axis=1, keepdims=True)
        shown = np.divide(matrix, rows, out=np.zeros_like(matrix),
                          where=rows > 0)
    size = min(4 + 0.45 * num, 18)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(shown, cmap="Blues", vmin=0,
                      vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if num <= 20:
        ax.set_xticks(range(num))
        ax.set_yticks(range(num))
        ax.set_xticklabels(class_names, rotation=45, ha="right")
        ax.set_yticklabels(class_names)
        for i in range(num):
            for j in range(num):
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center",
                        fontsize=8,
                        color="white" if shown[i, j] > 0.5 * (shown.max() or 1)
                        else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (share of true class)"
                                       if normalize else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
