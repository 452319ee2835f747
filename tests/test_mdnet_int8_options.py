"""MDNet's int8 latency options through the export: the int8 graph they
leave (no RSQRT, dilated convolutions fused into DEPTHWISE_CONV_2D, chained
groups as int8 additions, no float island, nothing but SOFTMAX outside
XNNPACK), the float32 model equal to
Keras, and the int8 model running in TFLite Micro."""

import keras
import numpy as np
import pytest

from mdnet_keras import MDNet
from mdnet_keras.data.datasets import load_sample
from mdnet_keras.export import LiteRTRunner
from mdnet_keras.export import convert_model
from mdnet_keras.export import describe_ops
from mdnet_keras.export import xnnpack_partitions

OPTIONS = {
    "dilated": dict(kernel_sizes=(3, 3, 3, 3), dilation_rates=(1, 2, 3, 4),
                    head_norm="batch"),
    "cascade": dict(kernel_sizes=(3, 3, 3, 3), cascade=True, head_norm="batch"),
    "kernels_3_5_late_attention": dict(
        kernel_sizes=(3, 5), head_norm="batch",
        stage_types=("conv", "conv", "conv", "mdiff")),
}


def micro_model(**options):
    """mdnet_micro with random BatchNorm statistics, so that the head
    norms' inference scale and offset are not the identity."""
    keras.utils.set_random_seed(0)
    model = MDNet(variant="mdnet_micro", num_classes=10, **options)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        for variable in layer.non_trainable_weights:
            if "moving_mean" in variable.path:
                variable.assign(rng.normal(scale=0.1, size=variable.shape))
            elif "moving_variance" in variable.path:
                variable.assign(rng.uniform(0.5, 1.5, size=variable.shape))
    return model


@pytest.fixture(scope="module", params=sorted(OPTIONS))
def model(request):
    return micro_model(**OPTIONS[request.param])


@pytest.fixture(scope="module")
def images():
    return load_sample().x_train


@pytest.fixture(scope="module")
def int8(model, images):
    return convert_model(model, "int8", rep_images=images, num_calibration=16)


def test_int8_graph_leaves_only_softmax_outside_xnnpack(int8):
    ops = describe_ops(int8)
    names = {op["op"] for op in ops}
    assert "RSQRT" not in names
    assert not names & {"SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"}
    for op in ops:
        for tensor in op["inputs"] + op["outputs"]:
            if not tensor["is_constant"]:
                assert tensor["type"] in ("INT8", "INT32"), (op["op"], tensor)
    assert set(xnnpack_partitions(int8)["left_out_by_type"]) == {"SOFTMAX"}


def test_default_rms_norm_leaves_rsqrt_for_contrast(images):
    content = convert_model(micro_model(), "int8", rep_images=images,
                            num_calibration=4)
    assert "RSQRT" in xnnpack_partitions(content)["left_out_by_type"]


def test_float32_model_equals_keras(model, images):
    x = images[:4].astype("float32")
    content = convert_model(model, "float32")
    np.testing.assert_allclose(LiteRTRunner(content).predict(x),
                               model.predict(x, verbose=0), atol=1e-5)


def test_int8_runs_in_tflite_micro(model, images):
    pytest.importorskip("tflite_micro")
    from mdnet_keras.export import micro

    content = convert_model(model, "int8", rep_images=images,
                            num_calibration=16, max_depthwise_taps=None)
    arena = micro.find_min_arena(content)
    assert arena > 0
    comparison = micro.compare_with_litert(content, images[:2], arena)
    assert comparison["argmax_agreement"] == 1.0
