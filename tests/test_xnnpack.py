"""XNNPACK partitions (mdnet_keras.export.xnnpack): which ops LiteRT's CPU
delegate takes. (MDNet's attention matmuls: test_flatbuffer.)"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from export_models import tiny  # noqa: E402
from export_models import tiny_images  # noqa: E402


def test_float_model_runs_in_one_partition():
    from mdnet_keras.export import convert_model
    from mdnet_keras.export import xnnpack_partitions

    result = xnnpack_partitions(convert_model(tiny(), "float32"))
    assert result["ops"] == 4 and result["partitions"] == 1
    assert result["delegated_ops"] == 4 and result["left_out_ops"] == 0
    assert result["left_out_by_type"] == {} and result["left_out"] == []


def test_int8_softmax_is_left_out():
    from mdnet_keras.export import convert_model
    from mdnet_keras.export import xnnpack_partitions

    data = convert_model(tiny(), "int8", rep_images=tiny_images(), num_calibration=10)
    result = xnnpack_partitions(data)
    # XNNPACK has no int8 SOFTMAX: it stays with TFLite's own kernels.
    assert result["left_out_by_type"] == {"SOFTMAX": 1}, result
    assert result["delegated_ops"] + result["left_out_ops"] == result["ops"]
    assert result["left_out"] == ["3:SOFTMAX"]
