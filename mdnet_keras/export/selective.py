"""Selective int8 quantization for phones, with Google's ai-edge-quantizer.

LiteRT's CPU delegate, XNNPACK, runs int8 convolutions and matmuls but no
int8 SOFTMAX or RSQRT. In a full-int8 model each of those ops (two softmaxes
per differential attention block, one RSQRT per RMS head norm) ends an
XNNPACK partition: the graph is cut into pieces, with the slow built-in
kernels in between. Mode `int8_xnnpack` quantizes everything else to int8
and keeps those ops in float32, which XNNPACK runs, so that the graph stays
in one or a few partitions.

The TFLite converter cannot leave chosen ops in float in a full-integer
model; `ai-edge-quantizer` can: it quantizes the float32 `.tflite` by a
recipe of (op type or tensor name -> config). The recipe here:

- every supported op: int8 activations (asymmetric, per tensor), int8
  weights (symmetric, per channel), integer compute;
- BATCH_MATMUL: symmetric int8 activations, because XNNPACK takes an int8
  batch matmul only with a zero point of 0 (the converter's int8 mode gets
  the same by `symmetric_matmul_operands`);
- `FLOAT_OPS` (SOFTMAX, RSQRT) and the ADD that feeds an RSQRT (the
  norm's epsilon, which XNNPACK leaves out in int8): not quantized;
- activation ranges: the minimum and maximum over all calibration images,
  as the converter takes them (`running_min_max`).

The model's input and output are int8, as in mode `int8`. This mode is for
LiteRT on phones and desktops; the Edge TPU and TFLite Micro need mode
`int8` (no float ops at all).
"""

import contextlib
import os
import re
import warnings

import numpy as np

from mdnet_keras.export.errors import ConversionError
from mdnet_keras.export.flatbuffer import describe_ops
from mdnet_keras.export.flatbuffer import tensor_readers

# Ops XNNPACK runs in float32 but not in int8.
FLOAT_OPS = ("SOFTMAX", "RSQRT")


def float_feeders(ops):
    """The ADD ops of `ops` (from `describe_ops`) whose result only an RSQRT
    reads."""
    readers = tensor_readers(ops)
    return [op for op in ops if op["op"] == "ADD" and all(
        readers.get(t["index"]) == {"RSQRT"} for t in op["outputs"])]


def float_by_design(ops):
    """Indices of the ops mode `int8_xnnpack` keeps in float: `FLOAT_OPS`,
    their `float_feeders`, and the QUANTIZE / DEQUANTIZE ops around them."""
    return ({op["index"] for op in ops
             if op["op"] in FLOAT_OPS + ("QUANTIZE", "DEQUANTIZE")}
            | {op["index"] for op in float_feeders(ops)})


def running_min_max(old, new):
    """Calibration ranges as the TFLite converter takes them: the smallest
    and largest value over all calibration images.

    ai-edge-quantizer's default is a moving average of each image's range,
    which with batch-1 models clips the images whose range is wider than the
    typical one (on the test models here it cost many more disagreements
    with the float model than the converter's int8).
    """
    if not old:
        return new
    return {"min": np.minimum(old["min"], new["min"]),
            "max": np.maximum(old["max"], new["max"])}


def configure(quant, float_tflite):
    """Sets mode `int8_xnnpack`'s recipe (above) on the ai-edge-quantizer
    `Quantizer` of `float_tflite`; returns it."""
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    ops = qtyping.TFLOperationName
    quant.add_static_config(".*", ops.ALL_SUPPORTED, activation_num_bits=8,
                            weight_num_bits=8)
    symmetric = qtyping.OpQuantizationConfig(
        activation_tensor_config=qtyping.TensorQuantizationConfig(
            num_bits=8, symmetric=True),
        weight_tensor_config=qtyping.TensorQuantizationConfig(
            num_bits=8, symmetric=True,
            granularity=qtyping.QuantGranularity.CHANNELWISE),
        compute_precision=qtyping.ComputePrecision.INTEGER)
    quant.update_quantization_recipe(".*", ops.BATCH_MATMUL, symmetric)
    for op in FLOAT_OPS:
        quant.update_quantization_recipe(
            ".*", ops(op), algorithm_key=AlgorithmName.NO_QUANTIZE)
    # An op's scope in the recipe is its output names, each followed by ";".
    for op in float_feeders(describe_ops(float_tflite)):
        scope = "".join(re.escape(t["name"]) + ";" for t in op["outputs"])
        quant.update_quantization_recipe(
            "^" + scope, ops.ADD, algorithm_key=AlgorithmName.NO_QUANTIZE)
    return quant


def quantize_for_xnnpack(float_tflite, calibration, verbose=False):
    """int8 everywhere but `FLOAT_OPS`, from a float32 `.tflite`.

    Args:
        float_tflite: bytes of a float32 `.tflite` with one signature.
        calibration: iterable of float32 arrays (1, H, W, C), raw pixels:
            the calibration images (as `representative_dataset` draws them).
        verbose: show ai-edge-quantizer's progress and summary.

    Returns:
        The quantized `.tflite` bytes.

    Raises:
        ConversionError: ai-edge-quantizer is not installed, or failed.
    """
    try:
        from ai_edge_quantizer import calibrator
        from ai_edge_quantizer import quantizer
        from ai_edge_quantizer import recipe_manager
    except ImportError as e:
        raise ConversionError(
            "Mode int8_xnnpack needs ai-edge-quantizer: pip install "
            f"ai-edge-quantizer (see requirements.txt). ({e})") from None
    from ai_edge_litert.interpreter import Interpreter

    float_tflite = bytes(float_tflite)
    signatures = Interpreter(model_content=float_tflite).get_signature_list()
    if len(signatures) != 1:
        raise ConversionError("Mode int8_xnnpack needs a model with one "
                              f"signature; got {sorted(signatures)}.")
    signature, io_names = next(iter(signatures.items()))
    (input_name,) = io_names["inputs"]
    samples = [{input_name: np.asarray(x, dtype="float32")}
               for x in calibration]
    if not samples:
        raise ValueError("Mode int8_xnnpack needs calibration images; got "
                         "none.")
    quant = configure(quantizer.Quantizer(float_tflite), float_tflite)
    if verbose:
        print(f"Quantizing with ai-edge-quantizer ({len(samples)} "
              "calibration images; SOFTMAX and RSQRT stay float)...")
    # Its progress bars count ops times images and its summary repeats
    # what the validation report says, so they are not shown.
    try:
        with open(os.devnull, "w") as quiet, \
                contextlib.redirect_stdout(quiet), \
                contextlib.redirect_stderr(quiet), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calib = calibrator.Calibrator(
                float_tflite, num_threads=os.cpu_count() or 1,
                qsv_update_func=running_min_max)
            manager = recipe_manager.RecipeManager()
            manager.load_quantization_recipe(quant.get_quantization_recipe())
            calib.calibrate({signature: samples}, manager)
            result = quant.quantize(calib.get_model_qsvs(),
                                    enable_progress_bar=False,
                                    enable_progress_report=False)
    except Exception as e:  # the quantizer's errors are many types
        raise ConversionError(
            f"ai-edge-quantizer failed: {type(e).__name__}: {str(e)[:2000]}"
        ) from e
    return bytes(result.quantized_model)

