import math
import subprocess
import sys

import pytest
import tensorflow as tf

from mdnet_keras import MDNet
from mdnet_keras.profile import peak_activation_elements
from mdnet_keras.profile import profile


def traced_macs(model):
    """MACs counted from the conv / matmul ops of the traced TF graph."""
    spec = tf.TensorSpec((1, *model.input.shape[1:]), tf.float32)
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    total = 0
    for op in graph.get_operations():
        if op.type == "Conv2D":
            kernel = op.inputs[1].shape
            total += math.prod(op.outputs[0].shape) * math.prod(kernel[:3])
        elif op.type == "DepthwiseConv2dNative":
            kh, kw = op.inputs[1].shape[:2]
            total += math.prod(op.outputs[0].shape) * kh * kw
        elif op.type in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
            a = op.inputs[0].shape
            inner = a[-2] if op.get_attr("adj_x" if "Batch" in op.type else "transpose_a") else a[-1]
            total += math.prod(op.outputs[0].shape) * inner
        elif op.type == "Einsum":
            raise AssertionError("unexpected einsum: count it")
    return total


@pytest.mark.parametrize(
    "kwargs",
    [
        {"variant": "mdnet"},
        {"variant": "mdnet_micro", "input_shape": (48, 40, 1), "num_classes": 6},
        {"variant": "mdnet_small", "attention": "standard", "num_classes": 10},
    ],
)
def test_macs_match_the_traced_graph(kwargs):
    model = MDNet(**kwargs)
    report = profile(model)
    assert report["total"]["macs"] == traced_macs(model)


def test_stages_sum_to_total_and_attention_matmuls_count():
    model = MDNet(variant="mdnet_micro")
    report = profile(model)
    stages = report["stages"]
    assert list(stages) == ["stem", "stage1", "stage2", "stage3", "stage4", "head"]
    assert sum(s["params"] for s in stages.values()) == model.count_params()
    attention = model.get_layer("stage3_block1_attention")
    tokens, channels = 64, 64
    matmuls = 2 * tokens * tokens * channels  # scores and weighted values
    assert attention.count_macs((tokens, channels)) == 4 * tokens * channels**2 + matmuls


def test_peak_activation_counts_live_tensors():
    import keras

    inputs = keras.Input((8,))
    a = keras.layers.Dense(16, name="a")(inputs)
    b = keras.layers.Dense(4, name="b")(a)
    c = keras.layers.Add(name="c")([keras.layers.Dense(4, name="skip")(inputs), b])
    model = keras.Model(inputs, c)
    # Whichever of "b" / "skip" runs second: the input (8) or a (16) is
    # still live beside a and one 4-wide output, 28 in all; 8 + 16 + 4 + 4
    # would mean dead tensors were kept.
    peak, layer = peak_activation_elements(model)
    assert peak == 28 and layer in ("b", "skip")


def test_micro_activation_footprint_is_small():
    total = profile(MDNet(variant="mdnet_micro", num_classes=10))["total"]
    assert total["peak_activation_bytes_int8"] < 256 * 1024


def test_profile_command(tmp_path):
    out = tmp_path / "p.json"
    result = subprocess.run(
        [sys.executable, "-m", "mdnet_keras", "profile", "--model=mdnet_micro",
         f"--json={out}"], capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "stage3" in result.stdout and "peak activation memory" in result.stdout
    import json

    assert json.loads(out.read_text())["total"]["params"] == MDNet(variant="mdnet_micro").count_params()


def test_profile_command_markdown_table():
    result = subprocess.run(
        [sys.executable, "-m", "mdnet_keras", "profile", "--markdown"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [text for text in result.stdout.splitlines() if text.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == [
        "mdnet", "mdnet_v1", "mdnet_small", "mdnet_micro"]
    assert "| 2,282,732 |" in rows[0] and "| 2,377,900 |" in rows[1]
