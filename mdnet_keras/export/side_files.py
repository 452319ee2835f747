"""The files written beside a `.tflite`: labels, preprocessing facts, report."""

import os

from mdnet_keras.export.flatbuffer import io_details


def sidecar_paths(tflite_path):
    stem = os.path.splitext(os.fspath(tflite_path))[0]
    return {
        "labels": stem + ".labels.txt",
        "preprocessing": stem + ".preprocessing.json",
        "report": stem + ".report.json",
    }


def find_labels_file(model_path):
    """`<stem>.labels.txt` beside the model, else `labels.txt` in its folder."""
    stem = os.path.splitext(os.fspath(model_path))[0]
    for cand in (stem + ".labels.txt",
                 os.path.join(os.path.dirname(os.fspath(model_path)) or ".", "labels.txt")):
        if os.path.isfile(cand):
            return cand
    return None


def read_labels(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def write_labels(path, class_names):
    with open(path, "w", encoding="utf-8") as f:
        for name in class_names:
            f.write(f"{name}\n")


def preprocessing_facts(tflite_bytes, image_shape, resize_method="bilinear"):
    """What an app must do to an image before feeding this model."""
    io = io_details(tflite_bytes)
    inp, out = io["inputs"][0], io["outputs"][0]
    return {
        "input_shape": inp["shape"],
        "input_dtype": inp["dtype"],
        "input_scale": inp["scale"],
        "input_zero_point": inp["zero_point"],
        "pixel_range": [0, 255],
        "pixel_to_input": (
            "raw RGB pixel values 0..255; the model normalises inside"
            if inp["dtype"] == "float32" else
            f"q = round(pixel / {inp['scale']:g} + {inp['zero_point']}) "
            f"(as {inp['dtype']})"
        ),
        "channels": int(image_shape[-1]),
        "resize": {"height": int(image_shape[0]), "width": int(image_shape[1]),
                   "method": resize_method},
        "output_dtype": out["dtype"],
        "output_scale": out["scale"],
        "output_zero_point": out["zero_point"],
        "output": "class probabilities (softmax) in labels-file order",
    }
