"""Edge TPU compatibility report (mdnet_keras.export.edgetpu): one test per
published rule, on small int8 models converted here."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import functools  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from export_models import converted  # noqa: E402

IMAGES = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3)).astype("uint8")


def _int8(build):
    import keras

    from mdnet_keras import export

    inp = keras.Input((16, 16, 3))
    model = keras.Model(inp, build(inp))
    return export.convert_model(model, "int8", rep_images=IMAGES, num_calibration=16)


def _head(x):
    from keras import layers

    x = layers.GlobalAveragePooling2D()(x)
    return layers.Dense(4, activation="softmax")(x)


@functools.lru_cache(maxsize=None)
def conv_only():
    from keras import layers

    def build(inp):
        x = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
        x = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
        return _head(x)

    return _int8(build)


def test_conv_only_model_passes():
    from mdnet_keras import export

    report = export.edgetpu_report(conv_only())
    assert report["compatible"], report["first_fallback"]
    assert report["cpu_ops"] == 0 and report["tpu_mac_share"] == 1.0


def test_op_with_four_non_unit_dims_falls_back():
    from keras import layers

    from mdnet_keras import export

    def build(inp):
        x = layers.Conv2D(8, 3, padding="same")(inp)
        x = layers.Reshape((2, 8, 16, 8))(x)  # (1, 2, 8, 16, 8): 4 non-unit
        x = layers.Permute((2, 1, 3, 4))(x)  # TRANSPOSE of a 5-D tensor
        x = layers.Reshape((16, 16, 8))(x)
        return _head(x)

    report = export.edgetpu_report(_int8(build))
    first = report["first_fallback"]
    assert first is not None and "3 innermost" in " ".join(first["reasons"])


def test_two_d_softmax_falls_back():
    from keras import layers

    from mdnet_keras import export

    def build(inp):
        x = layers.Conv2D(8, 3, padding="same")(inp)
        x = layers.Reshape((32, 64))(x)
        x = layers.Softmax(axis=-1)(x)  # softmax over a (32, 64) tensor
        x = layers.Reshape((16, 16, 8))(x)
        return _head(x)

    report = export.edgetpu_report(_int8(build))
    first = report["first_fallback"]
    assert first["op"] == "SOFTMAX", first
    assert "only 1-D" in " ".join(first["reasons"])


def test_unsupported_op_mid_graph_and_mac_share():
    from keras import layers

    from mdnet_keras import export

    def build(inp):
        x = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)  # TPU
        t = layers.Reshape((256, 8))(x)
        scores = layers.Dot(axes=(2, 2))([t, t])  # BATCH_MATMUL: not supported
        x = layers.Reshape((16, 16, 256))(scores)
        x = layers.Conv2D(8, 1)(x)  # after the fallback: CPU
        return _head(x)

    data = _int8(build)
    report = export.edgetpu_report(data)
    first = report["first_fallback"]
    assert first["op"] == "BATCH_MATMUL", first
    ops = export.describe_ops(data)
    assert 0 < first["index"] < len(ops) - 1  # in the middle of the graph
    # MAC share: everything before the first fallback, by hand.
    conv = 16 * 16 * 8 * 3 * 3 * 3
    dense = 0
    bmm = 256 * 256 * 8
    conv2 = 16 * 16 * 8 * 256
    fc = 4 * 8
    assert report["tpu_macs"] == conv + dense
    assert report["total_macs"] == conv + dense + bmm + conv2 + fc
    assert report["tpu_mac_share"] == pytest.approx((conv + dense) / report["total_macs"])
    assert all(o["runs_on"] == "cpu" for o in report["ops"][first["index"]:])


def test_float_and_dynamic_tensors_are_rejected():
    from mdnet_keras.export.edgetpu import op_problems

    t = {"name": "x", "type": "FLOAT32", "shape": [1, 8], "shape_signature": [-1, 8],
         "is_constant": False, "index": 0}
    problems = op_problems({"op": "ADD", "inputs": [t], "outputs": []})
    text = " ".join(problems)
    assert "not 8-bit quantized" in text and "dynamic shape" in text


@pytest.mark.slow
def test_mdnet_micro_report():
    """Shares the mdnet_micro fixture (trained once per session)."""
    from mdnet_keras import export

    report = export.edgetpu_report(converted("mdnet", "int8"))
    print(export.format_edgetpu_report(report))
    assert report["total_macs"] > 1e6
    assert 0.0 <= report["tpu_mac_share"] <= 1.0
    if not report["compatible"]:
        assert report["first_fallback"]["reasons"]


def test_multi_scale_channel_conv_maps_to_the_tpu():
    """Its channel groups must not become SPLIT_V, which the compiler cannot
    map: unequal groups once cut the TPU share of mdnet_micro to 8%."""
    from mdnet_keras import export
    from mdnet_keras.layers import MultiScaleChannelConv

    def build(inp):
        from keras import layers

        x = layers.Conv2D(16, 1)(inp)
        x = MultiScaleChannelConv((3, 5, 7), channel_split=(8, 4, 4))(x)
        x = MultiScaleChannelConv((3, 5, 7, 9))(x)
        return _head(x)

    tflite_bytes = _int8(build)
    ops = {op["op"] for op in export.describe_ops(tflite_bytes)}
    # SPLIT_V is also left out of XNNPACK: 9 extra partitions in mdnet.
    assert "SPLIT_V" not in ops and {"SPLIT", "STRIDED_SLICE"} <= ops
    report = export.edgetpu_report(tflite_bytes)
    assert report["compatible"], report["first_fallback"]
    assert report["tpu_mac_share"] == 1.0
