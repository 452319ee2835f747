"""The validation report of a converted model, and its accuracy gate.

Size, op list, a float-island check read from the flatbuffer's tensor types
(the converter leaves float ops in an "integer" model silently), the XNNPACK
partitions, top-1 of the Keras model and of the `.tflite` on held-out images,
argmax agreement, the largest output difference, and the accuracy gate.
"""

import json

import numpy as np

from mdnet_keras.export.accuracy_gate import paired_gate
from mdnet_keras.export.converter import INTEGER_MODES
from mdnet_keras.export.errors import ConversionError
from mdnet_keras.export.flatbuffer import describe_ops
from mdnet_keras.export.flatbuffer import find_float_ops
from mdnet_keras.export.flatbuffer import io_details
from mdnet_keras.export.flatbuffer import read_model
from mdnet_keras.export.keras_model import check_images
from mdnet_keras.export.keras_model import model_image_shape
from mdnet_keras.export.litert_runner import LiteRTRunner
from mdnet_keras.export.selective import float_by_design
from mdnet_keras.export.xnnpack import xnnpack_partitions

DEFAULT_MAX_DROP = 1.0  # points of top-1


def validate_tflite(model, tflite_bytes, mode, x_eval, y_eval,
                    allow_float_ops=False, max_drop=DEFAULT_MAX_DROP,
                    batch_size=256, verbose=False):
    """Builds the validation report of a converted model.

    Args:
        model: the (float) Keras model it came from.
        tflite_bytes: the converted model.
        mode: conversion mode (decides whether float tensors are allowed).
        x_eval, y_eval: held-out images (raw 0..255) and integer labels.
        allow_float_ops: downgrade a float island in an integer model from an
            error to a note in the report.
        max_drop: float, the top-1 drop (points) the accuracy gate allows
            (`mdnet_keras.export.accuracy_gate.paired_gate`).
        batch_size: int, images per evaluation batch.
        verbose: progress bars over the evaluation images (Keras, then
            LiteRT).

    Returns:
        The report dict (JSON-serialisable).

    Raises:
        ConversionError: float island in an integer model (unless allowed), or
            Flex/custom ops.
    """
    ops = describe_ops(tflite_bytes)
    model_t = read_model(tflite_bytes)
    sub = model_t.subgraphs[0]
    graph_io = set(int(i) for i in list(sub.inputs) + list(sub.outputs))
    op_counts = {}
    for op in ops:
        op_counts[op["op"]] = op_counts.get(op["op"], 0) + 1
    custom = [op["op"] for op in ops if op["op"].startswith("CUSTOM")]
    report = {
        "mode": mode,
        "size_bytes": len(tflite_bytes),
        "num_ops": len(ops),
        "ops": [op["op"] for op in ops],
        "op_counts": op_counts,
        "io": io_details(tflite_bytes),
        "custom_or_flex_ops": custom,
    }
    if custom:
        raise ConversionError(
            f"{mode} model contains custom/Flex ops {custom}; they do not run "
            "on plain LiteRT builtins, TFLite Micro or the Edge TPU."
        )
    report["xnnpack"] = xnnpack_partitions(tflite_bytes)
    if mode in INTEGER_MODES:
        islands = find_float_ops(
            ops, allow_io_boundary=(mode == "int16x8"), graph_io=graph_io,
            skip=float_by_design(ops) if mode == "int8_xnnpack" else (),
        )
        report["float_ops"] = islands
        if islands and not allow_float_ops:
            desc = ", ".join(f"#{o['index']} {o['op']}" for o in islands[:10])
            raise ConversionError(
                f"The {mode} model has {len(islands)} op(s) that read or write "
                f"float tensors (float islands): {desc}. Replace the layers "
                "that produce them (e.g. LayerNormalization -> NEG/RSQRT, "
                "ops.square -> SQUARE, GELU) or pass allow_float_ops."
            )
    else:
        report["float_ops"] = None  # float models: not applicable

    if x_eval is not None and len(x_eval) > 0:
        shape = model_image_shape(model)
        x_eval = check_images(x_eval, shape, "evaluation images")
        y_eval = np.asarray(y_eval).reshape(-1).astype(int)
        if verbose:
            print(f"Validating on {x_eval.shape[0]} held-out images "
                  "(Keras, then LiteRT):")
        keras_out = np.asarray(model.predict(x_eval.astype("float32"),
                                             batch_size=batch_size,
                                             verbose=1 if verbose else 0))
        lite_out = LiteRTRunner(tflite_bytes).predict(x_eval, verbose=verbose)
        keras_pred = keras_out.argmax(-1)
        lite_pred = lite_out.argmax(-1)
        num_classes = keras_out.shape[-1]
        keras_top1 = float((keras_pred == y_eval).mean())
        lite_top1 = float((lite_pred == y_eval).mean())
        out_detail = report["io"]["outputs"][0]
        max_diff = float(np.max(np.abs(keras_out - lite_out)))
        report.update({
            "num_eval_images": int(x_eval.shape[0]),
            "num_classes": int(num_classes),
            "keras_top1": round(keras_top1, 5),
            "tflite_top1": round(lite_top1, 5),
            "argmax_agreement": round(float((keras_pred == lite_pred).mean()), 5),
            "max_abs_output_diff": max_diff,
            "max_abs_output_diff_lsb": (
                round(max_diff / out_detail["scale"], 3)
                if out_detail["scale"] > 0 else None
            ),
            "output_is_probability": bool(
                np.allclose(keras_out.sum(-1), 1.0, atol=1e-3)
            ),
        })
        report["gate"] = paired_gate(keras_pred == y_eval, lite_pred == y_eval,
                                     max_drop=max_drop)
    else:
        report["gate"] = {"status": "warn", "reason": "no evaluation images"}
    return report


def format_report(report):
    """A short human-readable summary of a validation report."""
    lines = [
        f"mode: {report['mode']}  size: {report['size_bytes']} bytes "
        f"({report['size_bytes'] / 1024:.1f} KiB)  ops: {report['num_ops']}",
        "op counts: " + ", ".join(f"{k}x{v}" for k, v in sorted(report["op_counts"].items())),
        "io: " + json.dumps(report["io"]),
    ]
    if report.get("float_ops") is not None:
        lines.append(f"float islands: {len(report['float_ops'])}")
    if "xnnpack" in report:
        left_out = report["xnnpack"]["left_out_by_type"]
        lines.append(
            f"XNNPACK (LiteRT's CPU delegate): {report['xnnpack']['partitions']}"
            " partition(s); ops left to TFLite's own kernels: "
            + (", ".join(f"{k}x{v}" for k, v in sorted(left_out.items()))
               or "none"))
    if "keras_top1" in report:
        lines.append(
            f"top-1 keras {100 * report['keras_top1']:.2f}%  tflite "
            f"{100 * report['tflite_top1']:.2f}%  agreement "
            f"{100 * report['argmax_agreement']:.2f}%  max |diff| "
            f"{report['max_abs_output_diff']:.4g} on {report['num_eval_images']} images"
        )
    gate = report.get("gate", {})
    lines.append(f"gate: {gate.get('status')} {gate.get('reason', '')}".rstrip())
    return "\n".join(lines)
