"""Quantization-aware training (QAT) in Keras 3, for full-int8 TFLite.

- `quantize_model(model)`: the quantization-aware twin of a trained model.
- `fine_tune(model, train_data, val_data, epochs)`: QAT with `model.fit`.
- The twin saves and loads as `.keras` (its layers are registered) and
  converts with `mdnet_keras.export` like the float model.
"""

from mdnet_keras.quantization.fine_tune import DEFAULT_LEARNING_RATE
from mdnet_keras.quantization.fine_tune import RangeFreezer
from mdnet_keras.quantization.fine_tune import check_float32_policy
from mdnet_keras.quantization.fine_tune import check_train_options
from mdnet_keras.quantization.fine_tune import fine_tune
from mdnet_keras.quantization.fine_tune import fine_tune_phase
from mdnet_keras.quantization.quant_layers import QuantConv
from mdnet_keras.quantization.quant_layers import QuantDense
from mdnet_keras.quantization.quant_layers import QuantDifferentialAttention
from mdnet_keras.quantization.quant_layers import QuantMultiScaleChannelConv
from mdnet_keras.quantization.quant_layers import QuantStandardAttention
from mdnet_keras.quantization.quantizers import ActivationQuantizer
from mdnet_keras.quantization.report import FLOAT_BASELINE_NAME
from mdnet_keras.quantization.report import compare_with_ptq
from mdnet_keras.quantization.report import default_ptq_baseline
from mdnet_keras.quantization.report import format_side_by_side
from mdnet_keras.quantization.report import int8_choice
from mdnet_keras.quantization.report import op_count_difference
from mdnet_keras.quantization.report import side_by_side
from mdnet_keras.quantization.quantizers import fake_quant_weights
from mdnet_keras.quantization.twin import calibrate
from mdnet_keras.quantization.twin import freeze_ranges
from mdnet_keras.quantization.twin import is_quantization_aware
from mdnet_keras.quantization.twin import quantize_model
from mdnet_keras.quantization.twin import quantizers

__all__ = [
    "DEFAULT_LEARNING_RATE",
    "FLOAT_BASELINE_NAME",
    "ActivationQuantizer",
    "QuantConv",
    "QuantDense",
    "QuantDifferentialAttention",
    "QuantMultiScaleChannelConv",
    "QuantStandardAttention",
    "RangeFreezer",
    "calibrate",
    "check_float32_policy",
    "check_train_options",
    "compare_with_ptq",
    "default_ptq_baseline",
    "fake_quant_weights",
    "fine_tune",
    "fine_tune_phase",
    "format_side_by_side",
    "int8_choice",
    "freeze_ranges",
    "is_quantization_aware",
    "op_count_difference",
    "quantize_model",
    "quantizers",
    "side_by_side",
]
