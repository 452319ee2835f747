"""Deployment: LiteRT (TFLite) conversion and validation, TFLite Micro, Edge TPU.

One module per concern: `keras_model` (loading and preparing the Keras
model), `converter` (the LiteRT converter per mode), `selective` (mode
int8_xnnpack, with ai-edge-quantizer), `flatbuffer` (reading
and editing a `.tflite`), `xnnpack` (which ops LiteRT's CPU delegate takes),
`litert_runner` (running a `.tflite`), `validation` (the report),
`accuracy_gate` (the paired test that gates a converted model's
top-1 drop), `side_files` (labels, preprocessing facts), `edgetpu` (the
Edge TPU estimate), `micro` (the model in TFLite Micro: arena, agreement),
`micro_graph` (MDNet's graph form for TFLite Micro), `micro_flatbuffer`
(the model as the app compiles it in), `micro_app` (the
C++ app: C arrays, golden images, the rendered template),
`micro_build` (building and running that app) and `exporter` (the whole
pipeline, `export_all`). Import from here, not from those modules.

TensorFlow and the LiteRT/TFLM runtimes are imported lazily inside the
functions, so importing this package is cheap.
"""

from mdnet_keras.export import micro
from mdnet_keras.export import micro_app
from mdnet_keras.export import selective
from mdnet_keras.export.converter import DEFAULT_NUM_CALIBRATION
from mdnet_keras.export.converter import MODES
from mdnet_keras.export.converter import convert_model
from mdnet_keras.export.edgetpu import edgetpu_report
from mdnet_keras.export.edgetpu import format_edgetpu_report
from mdnet_keras.export.errors import AccuracyGateError
from mdnet_keras.export.errors import ConversionError
from mdnet_keras.export.errors import ModelLoadError
from mdnet_keras.export.exporter import export_all
from mdnet_keras.export.exporter import export_tflite
from mdnet_keras.export.flatbuffer import describe_ops
from mdnet_keras.export.flatbuffer import io_details
from mdnet_keras.export.flatbuffer import symmetric_matmul_operands
from mdnet_keras.export.keras_model import as_float32_model
from mdnet_keras.export.keras_model import load_keras_model
from mdnet_keras.export.keras_model import model_image_shape
from mdnet_keras.export.keras_model import with_small_depthwise_kernels
from mdnet_keras.export.litert_runner import LiteRTRunner
from mdnet_keras.export.micro_flatbuffer import micro_model
from mdnet_keras.export.side_files import find_labels_file
from mdnet_keras.export.side_files import read_labels
from mdnet_keras.export.side_files import sidecar_paths
from mdnet_keras.export.validation import DEFAULT_MAX_DROP
from mdnet_keras.export.accuracy_gate import paired_gate
from mdnet_keras.export.validation import format_report
from mdnet_keras.export.validation import validate_tflite
from mdnet_keras.export.xnnpack import XNNPACK_DEPTHWISE_TAPS
from mdnet_keras.export.xnnpack import xnnpack_partitions

__all__ = [
    "DEFAULT_MAX_DROP",
    "DEFAULT_NUM_CALIBRATION",
    "MODES",
    "XNNPACK_DEPTHWISE_TAPS",
    "AccuracyGateError",
    "ConversionError",
    "LiteRTRunner",
    "ModelLoadError",
    "paired_gate",
    "as_float32_model",
    "convert_model",
    "describe_ops",
    "edgetpu_report",
    "export_all",
    "export_tflite",
    "find_labels_file",
    "format_edgetpu_report",
    "format_report",
    "io_details",
    "load_keras_model",
    "micro",
    "micro_app",
    "micro_model",
    "model_image_shape",
    "read_labels",
    "sidecar_paths",
    "symmetric_matmul_operands",
    "validate_tflite",
    "with_small_depthwise_kernels",
    "xnnpack_partitions",
]
