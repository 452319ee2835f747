"""The export pipeline: convert, validate and write a `.tflite` with its side
files (`export_tflite`), then optionally the Edge TPU estimate and the TFLite
Micro app (`export_all`, what `python -m mdnet_keras convert` runs).
"""

import json
import os
import sys

from mdnet_keras.export.converter import DEFAULT_NUM_CALIBRATION
from mdnet_keras.export.converter import convert_model
from mdnet_keras.export.errors import AccuracyGateError
from mdnet_keras.export.keras_model import as_float32_model
from mdnet_keras.export.keras_model import check_image_classifier
from mdnet_keras.export.keras_model import check_images
from mdnet_keras.export.keras_model import load_keras_model
from mdnet_keras.export.keras_model import model_image_shape
from mdnet_keras.export.side_files import preprocessing_facts
from mdnet_keras.export.side_files import sidecar_paths
from mdnet_keras.export.side_files import write_labels
from mdnet_keras.export.validation import DEFAULT_MAX_DROP
from mdnet_keras.export.validation import format_report
from mdnet_keras.export.validation import validate_tflite
from mdnet_keras.export.xnnpack import XNNPACK_DEPTHWISE_TAPS

# Images of the evaluation set run through TFLite Micro to compare it with
# LiteRT (the TFLM interpreter is slow: a few hundred are enough to see a
# kernel that differs).
NUM_MICRO_IMAGES = 100


def export_tflite(model, out_path, mode="int8", x_train=None, x_eval=None,
                  y_eval=None, class_names=None, num_calibration=DEFAULT_NUM_CALIBRATION,
                  io_type="int8", allow_float_ops=False, max_drop=DEFAULT_MAX_DROP,
                  seed=0, verbose=True,
                  max_depthwise_taps=XNNPACK_DEPTHWISE_TAPS,
                  symmetric_matmul=True, micro_graph=False):
    """Converts, validates and writes a model with its side files.

    Args:
        model: a `keras.Model` or the path of a `.keras` file.
        out_path: the `.tflite` path to write.
        mode: one of `MODES`.
        x_train: real training images (uint8, raw pixels) for calibration.
        x_eval, y_eval: held-out images and labels for the report.
        class_names: written as `<stem>.labels.txt`.
        num_calibration: calibration images drawn from `x_train`.
        io_type: "int8" or "uint8" model input/output (mode int8).
        allow_float_ops: accept float islands in an integer model.
        max_drop: the top-1 drop (points) the accuracy gate allows (see
            `mdnet_keras.export.accuracy_gate.paired_gate`).
        max_depthwise_taps: large multi-scale depthwise kernels are split
            into pieces of at most this many taps (see `convert_model`);
            `None` keeps them whole.
        symmetric_matmul: int8 only: zero-point-0 matmul operands, so that
            XNNPACK runs attention's matmuls (see `convert_model`).
        micro_graph: convert MDNet in the graph form for TFLite Micro (see
            `convert_model`).
        verbose: print the report, and progress bars over calibration and
            validation.

    Returns:
        The report dict (also written as `<stem>.report.json`).

    Raises:
        ModelLoadError, ValueError, ConversionError: bad input or conversion.
        AccuracyGateError: the gate failed (files are still written, so the
            report can be inspected).
    """
    out_path = os.fspath(out_path)
    if not out_path.endswith(".tflite"):
        raise ValueError(f"out_path must end with .tflite, got {out_path!r}")
    source = None
    if not hasattr(model, "predict"):
        source = os.fspath(model)
        model = load_keras_model(source)
    check_image_classifier(model)
    shape = model_image_shape(model)
    if x_eval is not None:
        x_eval = check_images(x_eval, shape, "evaluation images")
    model = as_float32_model(model)
    tflite_bytes = convert_model(model, mode, rep_images=x_train,
                                 num_calibration=num_calibration,
                                 io_type=io_type, seed=seed,
                                 max_depthwise_taps=max_depthwise_taps,
                                 symmetric_matmul=symmetric_matmul,
                                 micro_graph=micro_graph, verbose=verbose)
    report = validate_tflite(model, tflite_bytes, mode, x_eval, y_eval,
                             allow_float_ops=allow_float_ops,
                             max_drop=max_drop,
                             verbose=verbose)
    report["source"] = source
    report["tflite_path"] = out_path
    report["max_depthwise_taps"] = max_depthwise_taps
    report["micro_graph"] = bool(micro_graph)
    if mode == "int8":
        report["symmetric_matmul"] = bool(symmetric_matmul)
        report["io_type"] = io_type
    if mode in ("int8", "int8_xnnpack"):
        report["num_calibration"] = int(min(num_calibration, len(x_train)))
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    with open(out_path, "wb") as f:
        f.write(tflite_bytes)
    side = sidecar_paths(out_path)
    if class_names is not None:
        write_labels(side["labels"], [str(c) for c in class_names])
        report["labels_path"] = side["labels"]
    with open(side["preprocessing"], "w") as f:
        json.dump(preprocessing_facts(tflite_bytes, shape), f, indent=2)
    with open(side["report"], "w") as f:
        json.dump(report, f, indent=2)
    if verbose:
        print(format_report(report))
        print(f"wrote {out_path} and {side['report']}")
    if report.get("gate", {}).get("status") == "fail":
        raise AccuracyGateError(
            f"Accuracy gate failed for {out_path}: {report['gate']['reason']}",
            report,
        )
    return report


def export_all(model, out_path, *, mode="int8", x_train=None, x_eval=None,
               y_eval=None, class_names=None,
               num_calibration=DEFAULT_NUM_CALIBRATION, io_type="int8",
               allow_float_ops=False, max_drop=DEFAULT_MAX_DROP,
               seed=0,
               max_depthwise_taps="auto", symmetric_matmul=True,
               edgetpu=False, micro_out=None, flash_kb=None, ram_kb=None,
               arena_margin=0, source=None, verbose=True):
    """`.tflite` -> Edge TPU estimate -> TFLite Micro app, in one call.

    Runs `export_tflite`; a failed accuracy gate is recorded, not raised, so
    that the Edge TPU and TFLite Micro steps still run and their results land
    in the same report. With `edgetpu`, adds the Edge TPU compatibility
    estimate (`edgetpu_report`); with `micro_out` (mode int8 only), converts
    MDNet in its graph form for TFLite Micro (`convert_model`'s
    `micro_graph`: the same float function in less arena), runs the
    model in TFLite Micro on the first `NUM_MICRO_IMAGES` evaluation images,
    measures its arena, checks the flash / RAM budgets and writes the C++ app
    there (`mdnet_keras.export.micro.export_micro`). The report, with every
    step's results, is written as `<stem>.report.json`.

    Args:
        model, out_path, mode, x_train, x_eval, y_eval, class_names,
            num_calibration, io_type, allow_float_ops, max_drop,
            seed, symmetric_matmul, verbose: as in `export_tflite`.
        max_depthwise_taps: as in `export_tflite`, or "auto":
            `XNNPACK_DEPTHWISE_TAPS`, but `None` (kernels whole) with
            `micro_out`, as TFLite Micro gains nothing from the pieces and
            they cost arena (see `benchmarks/results/`).
        edgetpu: bool, add the Edge TPU estimate (printed when `verbose`).
        micro_out: str or None, the folder of the TFLite Micro app.
        flash_kb, ram_kb: int or None, the TFLite Micro budgets (KiB).
        arena_margin: int, bytes added to the measured arena.
        source: str or None, the model's file, recorded in the report when
            `model` is passed in memory.

    Returns:
        The report dict. `report["failures"]` lists what failed (the gate,
        the TFLite Micro budgets); empty when all passed.

    Raises:
        ModelLoadError, ValueError, ConversionError: bad input or conversion.

    Example:

    ```python
    report = export_all("runs/x/best.keras", "runs/x/model_int8.tflite",
                        x_train=x_train, x_eval=x_test, y_eval=y_test,
                        micro_out="runs/x/micro", edgetpu=True)
    ```
    """
    if micro_out and mode != "int8":
        raise ValueError(f"micro_out needs mode='int8', got mode={mode!r}.")
    if max_depthwise_taps == "auto":
        max_depthwise_taps = None if micro_out else XNNPACK_DEPTHWISE_TAPS
    if not hasattr(model, "predict"):
        source = os.fspath(model)
    failures = []
    try:
        report = export_tflite(
            model, out_path, mode=mode, x_train=x_train, x_eval=x_eval,
            y_eval=y_eval, class_names=class_names,
            num_calibration=num_calibration, io_type=io_type,
            allow_float_ops=allow_float_ops, max_drop=max_drop,
            seed=seed, verbose=verbose,
            max_depthwise_taps=max_depthwise_taps,
            symmetric_matmul=symmetric_matmul, micro_graph=bool(micro_out))
    except AccuracyGateError as e:
        report = e.report
        failures.append(str(e))
    report["source"] = source
    gate = report.get("gate", {})
    if verbose and gate.get("status") == "warn":
        print(f"warning: accuracy gate not enforced: {gate['reason']}",
              file=sys.stderr)
    with open(out_path, "rb") as f:
        tflite_bytes = f.read()
    if edgetpu:
        from mdnet_keras.export import edgetpu as etpu

        et = etpu.edgetpu_report(tflite_bytes)
        if verbose:
            print(etpu.format_edgetpu_report(et))
        report["edgetpu"] = {k: v for k, v in et.items() if k != "ops"}
    if micro_out:
        from mdnet_keras.export import micro

        images = None if x_eval is None else x_eval[:NUM_MICRO_IMAGES]
        mr = micro.export_micro(out_path, micro_out, images=images,
                                golden_images=x_eval, golden_labels=y_eval,
                                progress=verbose,
                                class_names=class_names, flash_kb=flash_kb,
                                ram_kb=ram_kb, arena_margin=arena_margin)
        report["micro"] = mr
        if verbose:
            print(format_micro(mr, micro_out))
        if not mr["targets"]["ok"]:
            failures.append("; ".join(mr["targets"]["problems"]))
    report["failures"] = failures
    with open(sidecar_paths(out_path)["report"], "w") as f:
        json.dump(report, f, indent=2, default=str)
    return report


def format_micro(micro_report, micro_out):
    """One line on the TFLite Micro step: arena, flash, agreement with LiteRT."""
    line = (f"TFLM: arena {micro_report['arena_bytes']} bytes "
            f"({micro_report['arena_bytes'] / 1024:.1f} KiB), flash "
            f"{micro_report['flash_bytes']} bytes")
    vs = micro_report.get("vs_litert")
    if vs:
        line += (f"; vs LiteRT on {vs['num_images']} images: agreement "
                 f"{100 * vs['argmax_agreement']:.1f}%, max "
                 f"{vs['max_lsb_diff']} LSB")
    return line + f"; app in {micro_out}"
