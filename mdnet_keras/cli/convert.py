"""`python -m mdnet_keras convert`: a trained `.keras` model -> `.tflite`.

Converts, validates (size, ops, float islands, Keras vs TFLite top-1 and
agreement on held-out images), writes the report, labels and preprocessing
facts beside the `.tflite`, and exits non-zero when the accuracy gate fails.
With `--mode=int8`, `--micro_out=DIR` also runs the model in TFLite Micro,
measures its arena and writes the C++ app; `--edgetpu` prints the Edge TPU
compatibility estimate (`mdnet_keras.export.export_all` does all three).
The data flags default to the model's run folder (see `data_flags`):

    python -m mdnet_keras convert --model=runs/x/best.keras --mode=int8 \
        --out=runs/x/model_int8.tflite --micro_out=runs/x/micro \
        --flash_kb=1024 --ram_kb=256 --edgetpu
"""

import json
import os
import sys

from absl import flags

from mdnet_keras.cli import data_flags
from mdnet_keras.cli.flag_util import define
from mdnet_keras.export import MODES

FLAGS = flags.FLAGS

data_flags.define_data_flags()
define(flags.DEFINE_string, "model", None, "Trained model, a .keras file.")
define(flags.DEFINE_enum, "mode", "int8", list(MODES),
       "Conversion mode: int8 runs everywhere (phones, Edge TPU, TFLite "
       "Micro); int8_xnnpack keeps SOFTMAX and RSQRT in float so that "
       "XNNPACK runs the whole graph on phones; int16x8 when "
       "int8 loses too much accuracy.")
define(flags.DEFINE_string, "out", None, "Output .tflite path. Default: beside "
       "the model, <stem>_<mode>.tflite.")
define(flags.DEFINE_integer, "num_calibration", 200,
       "Real training images drawn for int8/int16x8/int8_xnnpack "
       "calibration.")
define(flags.DEFINE_enum, "io_type", "int8", ["int8", "uint8"],
       "Input/output type of a full-integer (int8) model.")
define(flags.DEFINE_integer, "eval_images", 1000,
       "Held-out test images for the report (0: all).")
define(flags.DEFINE_float, "max_drop", 1.0,
       "Fail when top-1 falls more than this many points beyond doubt: a "
       "paired test on the same images (see mdnet_keras.export.accuracy_gate).")
define(flags.DEFINE_string, "ptq_baseline", None,  # QAT (issue 16)
       "With a quantization-aware (QAT) --model: the float .keras it was "
       "fine-tuned from, converted by post-training quantization for the "
       "side-by-side report (default: float.keras beside the model, if there).")
define(flags.DEFINE_bool, "allow_float_ops", False,
       "Accept float ops in an integer model (reported, not fatal).")
define(flags.DEFINE_string, "micro_out", None,
       "int8 only: write the TFLite Micro app (C array + template) here; "
       "MDNet is converted in its graph form for TFLite Micro (same float "
       "function, smaller arena: mdnet_keras.export.micro_graph).")
define(flags.DEFINE_integer, "flash_kb", None,
       "TFLM flash budget for the model (KiB).")
define(flags.DEFINE_integer, "ram_kb", None,
       "TFLM RAM budget for the tensor arena (KiB).")
define(flags.DEFINE_integer, "arena_margin", 0,
       "Bytes added to the measured arena in kTensorArenaSize.")
define(flags.DEFINE_bool, "edgetpu", False,
       "Print the Edge TPU compatibility estimate.")
define(flags.DEFINE_integer, "max_depthwise_taps", None,
       "Split multi-scale depthwise kernels with more taps (7x7, 9x9) into "
       "pieces of at most this many, which XNNPACK runs on its fast path "
       "(same function); 0 keeps them whole. Default: 25, or 0 with "
       "--micro_out (TFLite Micro gains nothing from the pieces and they "
       "cost arena; measured in benchmarks/results/).")
define(flags.DEFINE_bool, "symmetric_matmul", True,
       "int8: quantize attention's matmul operands with zero point 0, so "
       "that XNNPACK runs the matmuls.")


def default_out(model_path, mode):
    stem = os.path.splitext(model_path)[0]
    return f"{stem}_{mode}.tflite"


def check_class_names(model_path, class_names):
    """Raises ValueError when the run's `labels.txt` names other classes."""
    from mdnet_keras.export import find_labels_file
    from mdnet_keras.export import read_labels

    labels = find_labels_file(model_path)
    if labels and read_labels(labels) != [str(c) for c in class_names]:
        raise ValueError(
            f"{labels} lists the classes {read_labels(labels)[:10]} but the "
            f"data has {list(class_names)[:10]}: convert with the data the "
            "model was trained on (--dataset, --data).")


def run_convert(model_path, *, mode="int8", dataset="sample", out=None,
                eval_images=1000, load_args=None, ptq_baseline=None,
                **export_args):
    """The convert command as a function. Returns (exit_code, report).

    Args:
        model_path: the `.keras` model.
        mode: one of `mdnet_keras.export.MODES`.
        dataset: the data set name for `load_dataset`.
        out: the `.tflite` path; None for `default_out`.
        eval_images: held-out images for the report (0: all).
        load_args: other keyword arguments of `load_dataset` (`data`,
            `seed`, ...).
        ptq_baseline: with a quantization-aware model, the float `.keras`
            converted by PTQ for the side-by-side report (None:
            `float.keras` beside the model, if there).
        **export_args: keyword arguments of `mdnet_keras.export.export_all`.
    """
    import numpy as np

    from mdnet_keras.data.datasets import load_dataset
    from mdnet_keras.export import export_all
    from mdnet_keras.export import load_keras_model
    from mdnet_keras.export import model_image_shape

    load_args = dict(load_args or {})
    seed = load_args.get("seed", 0)
    model = load_keras_model(model_path)
    h, w, c = model_image_shape(model)
    ds = load_dataset(dataset, image_size=(h, w), channels=c, **load_args)
    if ds.num_classes != model.outputs[0].shape[-1]:
        raise ValueError(
            f"The data set has {ds.num_classes} classes but the model outputs "
            f"{model.outputs[0].shape[-1]}.")
    check_class_names(model_path, ds.class_names)
    x_eval, y_eval = ds.x_test, ds.y_test
    if eval_images and eval_images < len(x_eval):
        idx = np.random.default_rng(seed).choice(len(x_eval), eval_images,
                                                 replace=False)
        x_eval, y_eval = x_eval[np.sort(idx)], y_eval[np.sort(idx)]
    out = out or default_out(model_path, mode)
    report = export_all(
        model, out, mode=mode,
        x_train=ds.x_train, x_eval=x_eval, y_eval=y_eval,
        class_names=ds.class_names, seed=seed,
        source=os.fspath(model_path), **export_args)
    from mdnet_keras.quantization import is_quantization_aware

    if mode == "int8" and is_quantization_aware(model):
        add_ptq_comparison(report, out, model_path, ptq_baseline, ds.x_train,
                           x_eval, y_eval, seed, export_args)
    for failure in report["failures"]:
        print(f"FAILED: {failure}", file=sys.stderr)
    return (1 if report["failures"] else 0), report


def add_ptq_comparison(report, out, model_path, ptq_baseline, x_train, x_eval,
                       y_eval, seed, export_args):
    """Adds PTQ of the float baseline vs this QAT model to `report` and its file."""
    from mdnet_keras import quantization
    from mdnet_keras.export import sidecar_paths

    options = {key: export_args[key] for key in ("num_calibration", "io_type",
                                                 "symmetric_matmul")
               if key in export_args}
    report["qat"] = quantization.compare_with_ptq(
        report, out,
        ptq_baseline or quantization.default_ptq_baseline(model_path),
        x_train, x_eval, y_eval, max_drop=export_args.get("max_drop", 1.0),
        seed=seed, max_depthwise_taps=report["max_depthwise_taps"], **options)
    if report["qat"].get("gate", {}).get("status") == "fail":
        report["failures"].append("QAT int8: " + report["qat"]["gate"]["reason"])
    with open(sidecar_paths(out)["report"], "w") as f:
        json.dump(report, f, indent=2, default=str)


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        sys.exit(2)
    if not FLAGS.model:
        print("error: --model=PATH.keras is required", file=sys.stderr)
        sys.exit(2)
    from mdnet_keras.data import DatasetNotFoundError
    from mdnet_keras.export import ConversionError
    from mdnet_keras.export import ModelLoadError

    taps = FLAGS.max_depthwise_taps
    try:
        data_flags.from_run_folder(FLAGS.model)
        code, _ = run_convert(
            FLAGS.model, mode=FLAGS.mode, dataset=FLAGS.dataset,
            out=FLAGS.out, eval_images=FLAGS.eval_images,
            load_args=data_flags.load_args(),
            num_calibration=FLAGS.num_calibration, io_type=FLAGS.io_type,
            max_drop=FLAGS.max_drop,
            allow_float_ops=FLAGS.allow_float_ops,
            micro_out=FLAGS.micro_out, flash_kb=FLAGS.flash_kb,
            ram_kb=FLAGS.ram_kb, arena_margin=FLAGS.arena_margin,
            edgetpu=FLAGS.edgetpu,
            max_depthwise_taps="auto" if taps is None else (taps or None),
            symmetric_matmul=FLAGS.symmetric_matmul,
            ptq_baseline=FLAGS.ptq_baseline)
    except (ModelLoadError, ConversionError, ValueError, FileNotFoundError,
            ImportError, DatasetNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)
