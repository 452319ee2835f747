"""Deployment: LiteRT (TFLite) conversion and validation, TFLite Micro, Edge TPU.

TensorFlow and the LiteRT/TFLM runtimes are imported lazily inside the
functions, so importing this package is cheap.
"""

from mdnet_keras.export.accuracy_gate import paired_gate
from mdnet_keras.export.tflite import MODES
from mdnet_keras.export.tflite import AccuracyGateError
from mdnet_keras.export.tflite import ConversionError
from mdnet_keras.export.tflite import LiteRTRunner
from mdnet_keras.export.tflite import ModelLoadError
from mdnet_keras.export.tflite import as_float32_model
from mdnet_keras.export.tflite import convert_model
from mdnet_keras.export.tflite import describe_ops
from mdnet_keras.export.tflite import export_tflite
from mdnet_keras.export.tflite import load_keras_model
from mdnet_keras.export.tflite import validate_tflite
from mdnet_keras.export.tflite import xnnpack_partitions

__all__ = [
    "MODES",
    "AccuracyGateError",
    "ConversionError",
    "LiteRTRunner",
    "ModelLoadError",
    "as_float32_model",
    "convert_model",
    "describe_ops",
    "export_tflite",
    "load_keras_model",
    "paired_gate",
    "validate_tflite",
    "xnnpack_partitions",
]
