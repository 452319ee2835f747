"""Keras -> LiteRT (TFLite) conversion: the converter's options per mode.

Modes:

- `float32`:  plain float model, `TFLITE_BUILTINS` only.
- `float16`:  float16 weights (dequantized at load), float compute.
- `dynamic`:  int8 weights, float activations (dynamic-range quantization).
- `int8`:     full integer: int8 weights and activations, int8 or uint8 model
              input/output, `TFLITE_BUILTINS_INT8` only, calibrated on real
              training images.
- `int16x8`:  int16 activations, int8 weights (the documented remedy when
              int8 loses too much accuracy); float32 model input/output.
- `int8_xnnpack`: int8 like `int8` except the ops XNNPACK runs only in
              float (SOFTMAX, RSQRT), quantized from the float32 model by
              ai-edge-quantizer; int8 model input/output; for LiteRT on
              phones (see `mdnet_keras.export.selective`).

The route is Keras 3's own `model.export(path, format="litert", ...)` under the
TensorFlow backend, with a batch-1 `input_signature` (else the batch dimension
stays dynamic) and `target_spec={"supported_ops": [...]}` always set (Keras'
default also allows SELECT_TF_OPS, i.e. Flex ops that no microcontroller or
Edge TPU runs).

`export_tflite` follows every conversion with `validate_tflite` (see
`mdnet_keras.export.validation`).

This module imports TensorFlow lazily; keep TF-only code in `export/`.
"""

import os
import tempfile

import numpy as np

from mdnet_keras.export.errors import ConversionError
from mdnet_keras.export.flatbuffer import symmetric_matmul_operands
from mdnet_keras.export.keras_model import as_float32_model
from mdnet_keras.export.keras_model import check_image_classifier
from mdnet_keras.export.keras_model import check_images
from mdnet_keras.export.keras_model import model_image_shape
from mdnet_keras.export.keras_model import with_small_depthwise_kernels
from mdnet_keras.export.selective import quantize_for_xnnpack
from mdnet_keras.export.xnnpack import XNNPACK_DEPTHWISE_TAPS
from mdnet_keras.export.micro_graph import with_micro_graph

MODES = ("float32", "float16", "dynamic", "int8", "int16x8", "int8_xnnpack")
INTEGER_MODES = ("int8", "int16x8", "int8_xnnpack")
IO_TYPES = ("int8", "uint8")
DEFAULT_NUM_CALIBRATION = 200


def representative_dataset(images, num_samples=DEFAULT_NUM_CALIBRATION, seed=0,
                           progress=False):
    """A calibration generator over real training images.

    Args:
        images: uint8 or float array (N, H, W, C) of raw 0..255 pixels (MDNet
            normalises inside the model).
        num_samples: how many images to draw (without replacement).
        seed: RNG seed for the draw.
        progress: show a progress bar as the converter draws the images.

    Returns:
        A zero-argument callable yielding `[float32 array (1, H, W, C)]`.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(
            "The representative dataset is empty: full-integer quantization "
            "needs real training images to calibrate activation ranges."
        )
    if num_samples is None or num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}.")
    n = min(int(num_samples), images.shape[0])
    idx = np.random.default_rng(seed).choice(images.shape[0], n, replace=False)
    chosen = images[np.sort(idx)].astype("float32")

    def gen():
        bar = None
        if progress:
            import keras

            print("Calibrating on training images:")
            bar = keras.utils.Progbar(chosen.shape[0], unit_name="image")
        for i in range(chosen.shape[0]):
            yield [chosen[i : i + 1]]
            if bar is not None:
                bar.update(i + 1)

    return gen


def converter_options(mode, rep_images=None, num_calibration=None, io_type="int8",
                      seed=0, progress=False):
    """The `model.export(..., format="litert")` converter options for a mode."""
    import tensorflow as tf

    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; choose one of {MODES}.")
    builtins = tf.lite.OpsSet.TFLITE_BUILTINS
    if mode == "float32":
        return {"target_spec": {"supported_ops": [builtins]}}
    if mode == "float16":
        return {
            "optimizations": [tf.lite.Optimize.DEFAULT],
            "target_spec": {
                "supported_ops": [builtins],
                "supported_types": [tf.float16],
            },
        }
    if mode == "dynamic":
        return {
            "optimizations": [tf.lite.Optimize.DEFAULT],
            "target_spec": {"supported_ops": [builtins]},
        }
    if rep_images is None:
        raise ValueError(
            f"Mode {mode!r} needs a representative dataset of real training "
            "images (rep_images)."
        )
    rep = representative_dataset(
        rep_images, num_calibration or DEFAULT_NUM_CALIBRATION, seed=seed,
        progress=progress,
    )
    if mode == "int8":
        if io_type not in IO_TYPES:
            raise ValueError(f"io_type must be one of {IO_TYPES}, got {io_type!r}")
        io = tf.int8 if io_type == "int8" else tf.uint8
        return {
            "optimizations": [tf.lite.Optimize.DEFAULT],
            "representative_dataset": rep,
            "target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
            "inference_input_type": io,
            "inference_output_type": io,
        }
    # int16x8
    return {
        "optimizations": [tf.lite.Optimize.DEFAULT],
        "representative_dataset": rep,
        "target_spec": {
            "supported_ops": [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
        },
    }


def convert_model(model, mode, rep_images=None, num_calibration=None,
                  io_type="int8", seed=0,
                  max_depthwise_taps=XNNPACK_DEPTHWISE_TAPS,
                  symmetric_matmul=True, micro_graph=False, verbose=False):
    """Converts an in-memory Keras model; returns the `.tflite` bytes.

    The model is first rebuilt under float32 if it is mixed precision, then
    with its large multi-scale depthwise kernels split into pieces of at most
    `max_depthwise_taps` taps (see `with_small_depthwise_kernels`; `None`
    keeps them whole). With `micro_graph` (for TFLite Micro, with
    `max_depthwise_taps=None`), MDNet is then rewritten in the form that
    TFLite Micro runs in the least memory (same float function, see
    `with_micro_graph`). The input signature is fixed to batch 1 (static
    shapes for micro/Edge TPU). In mode int8, `symmetric_matmul` re-quantizes
    the second operand of each BATCH_MATMUL with a zero point of 0 so that
    XNNPACK runs it (see `symmetric_matmul_operands`). `verbose` shows a
    progress bar over the calibration images.
    """
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise ConversionError(
            "TFLite conversion needs the TensorFlow backend: run it in a "
            "process started with KERAS_BACKEND=tensorflow (a model trained "
            "under JAX converts after loading its .keras there)."
        )
    check_image_classifier(model)
    if mode == "int8_xnnpack":
        from mdnet_keras.quantization import is_quantization_aware

        if is_quantization_aware(model):
            raise ValueError(
                "A quantization-aware (QAT) model converts with mode int8: "
                "its trained ranges are int8's. For int8_xnnpack, convert "
                "the float model it was fine-tuned from.")
    shape = model_image_shape(model)
    if rep_images is not None:
        rep_images = check_images(rep_images, shape, "representative images")
    elif mode in INTEGER_MODES:
        raise ValueError(
            f"Mode {mode!r} needs a representative dataset (real training "
            "images); got none."
        )
    # int8_xnnpack quantizes the float32 model after the converter.
    options = converter_options(
        "float32" if mode == "int8_xnnpack" else mode, rep_images,
        num_calibration, io_type, seed, progress=verbose)
    model = as_float32_model(model)
    if max_depthwise_taps is not None:
        model = with_small_depthwise_kernels(model, max_depthwise_taps)
    if micro_graph:
        model = with_micro_graph(model)
    signature = [tf.TensorSpec((1,) + shape, tf.float32, name="image")]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.tflite")
        try:
            model.export(path, format="litert", input_signature=signature,
                         verbose=False, **options)
        except Exception as e:  # converter errors are many types
            raise ConversionError(
                f"Conversion to {mode} failed: {type(e).__name__}: "
                f"{str(e)[:2000]}"
            ) from e
        with open(path, "rb") as f:
            tflite_bytes = f.read()
    if mode == "int8" and symmetric_matmul:
        tflite_bytes, _ = symmetric_matmul_operands(tflite_bytes)
    if mode == "int8_xnnpack":
        rep = representative_dataset(
            rep_images, num_calibration or DEFAULT_NUM_CALIBRATION, seed=seed,
            progress=verbose)
        tflite_bytes = quantize_for_xnnpack(
            tflite_bytes, (sample for (sample,) in rep()), verbose=verbose)
    return tflite_bytes

