"""Quantization-aware training (QAT) in Keras 3, for full-int8 TFLite.

- `quantize_model(model)`: the quantization-aware twin of a trained model.
- `fine_tune(model, train_data, val_data, epochs)`: QAT with `model.fit`.
- The twin saves and loads as `.keras` (its layers are registered) and
  converts with `mdnet_keras.export` like the float model.
"""

from mdnet_keras.quantization.fine_tune import RangeFreezer
from mdnet_keras.quantization.fine_tune import check_float32_policy
from mdnet_keras.quantization.fine_tune import fine_tune
from mdnet_keras.quantization.quant_layers import QuantConv
from mdnet_keras.quantization.quant_layers import QuantDense
from mdnet_keras.quantization.quant_layers import QuantDifferentialAttention
from mdnet_keras.quantization.quant_layers import QuantMultiScaleChannelConv
from mdnet_keras.quantization.quant_layers import QuantStandardAttention
from mdnet_keras.quantization.quantizers import ActivationQuantizer
from mdnet_keras.quantization.quantizers import fake_quant_weights
from mdnet_keras.quantization.twin import calibrate
from mdnet_keras.quantization.twin import freeze_ranges
from mdnet_keras.quantization.twin import is_quantization_aware
from mdnet_keras.quantization.twin import quantize_model
from mdnet_keras.quantization.twin import quantizers

__all__ = [
    "ActivationQuantizer",
    "QuantConv",
    "QuantDense",
    "QuantDifferentialAttention",
    "QuantMultiScaleChannelConv",
    "QuantStandardAttention",
    "RangeFreezer",
    "calibrate",
    "check_float32_policy",
    "fake_quant_weights",
    "fine_tune",
    "freeze_ranges",
    "is_quantization_aware",
    "quantize_model",
    "quantizers",
]
