"""`python -m mdnet_keras convert`: a trained `.keras` model -> `.tflite`.

Converts, validates (size, ops, float islands, Keras vs TFLite top-1 and
agreement on held-out images), writes the report, labels and preprocessing
facts beside the `.tflite`, and exits non-zero when the accuracy gate fails.
With `--mode=int8`, `--micro_out=DIR` also runs the model in TFLite Micro,
measures its arena and writes the C++ app; `--edgetpu` prints the Edge TPU
compatibility estimate.

    python -m mdnet_keras convert --model=runs/x/best.keras --mode=int8 \
        --dataset=cifar10 --data=../shared/data/cifar10.npz \
        --out=runs/x/model_int8.tflite --micro_out=runs/x/micro \
        --flash_kb=1024 --ram_kb=256 --edgetpu
"""

import json
import os
import sys

from absl import flags
from mdnet_keras.cli.flag_util import define as _define

FLAGS = flags.FLAGS


_define(flags.DEFINE_string, "model", None, "Trained model, a .keras file.")
_define(flags.DEFINE_enum, "mode", "int8", ["float32", "float16", "dynamic", "int8", "int16x8"],
                  "Conversion mode.")
_define(flags.DEFINE_string, "dataset", "cifar10",
                    "Data set name for mdnet_keras.data.load_dataset "
                    "(sample, cifar10, cifar100, npz, folder).")
_define(flags.DEFINE_string, "data", None, "Data file or folder for --dataset.")
_define(flags.DEFINE_string, "out", None, "Output .tflite path. Default: beside the "
                    "model, <stem>_<mode>.tflite.")
_define(flags.DEFINE_integer, "num_calibration", 200,
                     "Real training images drawn for int8/int16x8 calibration.")
_define(flags.DEFINE_enum, "io_type", "int8", ["int8", "uint8"],
                  "Input/output type of a full-integer (int8) model.")
_define(flags.DEFINE_integer, "eval_images", 1000,
                     "Held-out test images for the report (0: all).")
_define(flags.DEFINE_float, "max_drop", 1.0,
                   "Fail when top-1 falls more than this many points beyond "
                   "doubt (a paired test on the evaluation images).")
# --- QAT (issue 16) ---
_define(flags.DEFINE_string, "ptq_baseline", None,
        "With a quantization-aware (QAT) --model: the float .keras it was "
        "fine-tuned from, converted by post-training quantization for the "
        "side-by-side report and used as the gate's reference (default: "
        "float.keras beside the model, if there).")
# --- end QAT ---
_define(flags.DEFINE_bool, "allow_float_ops", False,
                  "Accept float ops in an integer model (reported, not fatal).")
_define(flags.DEFINE_string, "micro_out", None,
                    "int8 only: write the TFLite Micro app (C array + template) here.")
_define(flags.DEFINE_integer, "flash_kb", None, "TFLM flash budget for the model (KiB).")
_define(flags.DEFINE_integer, "ram_kb", None, "TFLM RAM budget for the tensor arena (KiB).")
_define(flags.DEFINE_integer, "arena_margin", 0,
                     "Bytes added to the measured arena in kTensorArenaSize.")
_define(flags.DEFINE_bool, "edgetpu", False, "Print the Edge TPU compatibility estimate.")
_define(flags.DEFINE_integer, "seed", 0, "Seed for the calibration and evaluation draws.")
_define(flags.DEFINE_integer, "max_depthwise_taps", None,
                     "Split multi-scale depthwise kernels with more taps "
                     "(7x7, 9x9) into pieces of at most this many, which "
                     "XNNPACK runs 2-3x faster (same function); 0 keeps them "
                     "whole. Default: 25, or 0 with --micro_out (TFLite Micro "
                     "gains nothing from the pieces and they cost arena: "
                     "MDNet int8 413 -> 487 KiB).")
_define(flags.DEFINE_bool, "symmetric_matmul", True,
                  "int8: quantize attention's matmul operands with zero point "
                  "0, so that XNNPACK runs the matmuls.")


def default_out(model_path, mode):
    stem = os.path.splitext(model_path)[0]
    return f"{stem}_{mode}.tflite"


def run_convert(model_path, mode, dataset, data, out=None, num_calibration=200,
                io_type="int8", eval_images=1000, max_drop=1.0,
                allow_float_ops=False, micro_out=None, flash_kb=None, ram_kb=None,
                arena_margin=0, edgetpu=False, seed=0, max_depthwise_taps=None,
                symmetric_matmul=True, ptq_baseline=None):
    """The convert command as a function. Returns (exit_code, report).

    `max_depthwise_taps=None` picks 25, or 0 (kernels whole) with
    `micro_out`."""
    import numpy as np

    from mdnet_keras.data.datasets import load_dataset
    from mdnet_keras.export import tflite as tfl

    model = tfl.load_keras_model(model_path)
    h, w, c = tfl.model_image_shape(model)
    ds = load_dataset(dataset, data=data, image_size=(h, w), channels=c)
    if ds.num_classes != model.outputs[0].shape[-1]:
        raise ValueError(
            f"The data set has {ds.num_classes} classes but the model outputs "
            f"{model.outputs[0].shape[-1]}.")
    x_eval, y_eval = ds.x_test, ds.y_test
    if eval_images and eval_images < len(x_eval):
        idx = np.random.default_rng(seed).choice(len(x_eval), eval_images, replace=False)
        x_eval, y_eval = x_eval[np.sort(idx)], y_eval[np.sort(idx)]
    out = out or default_out(model_path, mode)
    code = 0
    try:
        report = tfl.export_tflite(
            model, out, mode=mode, x_train=ds.x_train, x_eval=x_eval,
            y_eval=y_eval, class_names=ds.class_names,
            num_calibration=num_calibration, io_type=io_type,
            allow_float_ops=allow_float_ops, max_drop=max_drop,
            seed=seed,
            max_depthwise_taps=(
                (0 if micro_out else tfl.XNNPACK_DEPTHWISE_TAPS)
                if max_depthwise_taps is None else max_depthwise_taps) or None,
            symmetric_matmul=symmetric_matmul)
    except tfl.AccuracyGateError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        report, code = e.report, 1
    report["source"] = os.fspath(model_path)
    # --- QAT (issue 16) ---
    from mdnet_keras import quantization

    if mode == "int8" and quantization.is_quantization_aware(model):
        report["qat"] = quantization.compare_with_ptq(
            report, out, ptq_baseline or quantization.default_ptq_baseline(model_path),
            ds.x_train, x_eval, y_eval, num_calibration=num_calibration,
            io_type=io_type, max_drop=max_drop, seed=seed,
            max_depthwise_taps=report["max_depthwise_taps"],
            symmetric_matmul=symmetric_matmul)
        if report["qat"].get("gate", {}).get("status") == "fail":
            code = 1
    # --- end QAT ---
    if report.get("gate", {}).get("status") == "warn":
        print(f"warning: accuracy gate not enforced: {report['gate']['reason']}",
              file=sys.stderr)
    with open(out, "rb") as f:
        tflite_bytes = f.read()
    if edgetpu:
        from mdnet_keras.export import edgetpu as etpu

        et = etpu.edgetpu_report(tflite_bytes)
        print(etpu.format_edgetpu_report(et))
        report["edgetpu"] = {k: v for k, v in et.items() if k != "ops"}
    if micro_out:
        if mode != "int8":
            raise ValueError("--micro_out needs --mode=int8.")
        from mdnet_keras.export import micro

        n = min(100, len(x_eval))
        mr = micro.export_micro(out, micro_out, images=x_eval[:n],
                                class_names=ds.class_names, flash_kb=flash_kb,
                                ram_kb=ram_kb, arena_margin=arena_margin)
        report["micro"] = mr
        print(f"TFLM: arena {mr['arena_bytes']} bytes "
              f"({mr['arena_bytes'] / 1024:.1f} KiB), flash {mr['flash_bytes']} bytes; "
              f"vs LiteRT on {n} images: agreement "
              f"{100 * mr['vs_litert']['argmax_agreement']:.1f}%, max "
              f"{mr['vs_litert']['max_lsb_diff']} LSB; app in {micro_out}")
        if not mr["targets"]["ok"]:
            print("FAILED: " + "; ".join(mr["targets"]["problems"]), file=sys.stderr)
            code = code or 1
    report_path = tfl.sidecar_paths(out)["report"]
    with open(report_path, "w") as f:
        json.dump(report, f, indent=2, default=str)
    return code, report


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        sys.exit(2)
    if not FLAGS.model:
        print("error: --model=PATH.keras is required", file=sys.stderr)
        sys.exit(2)
    from mdnet_keras.export import tflite as tfl

    try:
        code, _ = run_convert(
            FLAGS.model, FLAGS.mode, FLAGS.dataset, FLAGS.data, FLAGS.out,
            FLAGS.num_calibration, FLAGS.io_type, FLAGS.eval_images,
            FLAGS.max_drop, FLAGS.allow_float_ops,
            FLAGS.micro_out, FLAGS.flash_kb, FLAGS.ram_kb, FLAGS.arena_margin,
            FLAGS.edgetpu, FLAGS.seed, FLAGS.max_depthwise_taps,
            FLAGS.symmetric_matmul, FLAGS.ptq_baseline)
    except (tfl.ModelLoadError, tfl.ConversionError, ValueError,
            FileNotFoundError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)
