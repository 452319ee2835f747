import math

import keras
import numpy as np
import pytest

from layer_test_util import run_layer_test
from mdnet_keras.layers import DifferentialAttention
from mdnet_keras.layers.differential_attention import lambda_init_for_depth


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def reference(layer, x):
    """Differential attention written out in NumPy from the paper."""
    h, d = layer.num_heads, layer.key_dim
    w = {name: v.numpy() for name, v in (
        ("wq", layer.query_dense.kernel), ("bq", layer.query_dense.bias),
        ("wk", layer.key_dense.kernel), ("bk", layer.key_dense.bias),
        ("wv", layer.value_dense.kernel), ("bv", layer.value_dense.bias),
        ("wo", layer.output_dense.kernel), ("bo", layer.output_dense.bias),
    )}
    lq1, lk1, lq2, lk2 = (v.numpy() for v in (
        layer.lambda_q1, layer.lambda_k1, layer.lambda_q2, layer.lambda_k2))
    lambda_init = 0.8 - 0.6 * math.exp(-0.3 * layer.depth)
    lam = np.exp(lq1 @ lk1) - np.exp(lq2 @ lk2) + lambda_init
    if layer.head_norm == "batch":
        norm = layer.head_batch_norm
        gamma = norm.gamma.numpy()

        def normalise(o):  # inference: the moving statistics
            return (o - norm.moving_mean.numpy()) / np.sqrt(
                norm.moving_variance.numpy() + norm.epsilon)
    else:
        gamma = layer.norm_scale.numpy()

        def normalise(o):
            return o / np.sqrt(np.mean(o * o, axis=-1, keepdims=True) + 1e-5)
    outputs = []
    for sample in x:
        q = sample @ w["wq"] + w["bq"]
        k = sample @ w["wk"] + w["bk"]
        v = sample @ w["wv"] + w["bv"]
        heads = []
        for i in range(h):
            # Heads [0, H) form the first softmax map, [H, 2H) the second.
            q1, q2 = q[:, i * d:(i + 1) * d], q[:, (h + i) * d:(h + i + 1) * d]
            k1, k2 = k[:, i * d:(i + 1) * d], k[:, (h + i) * d:(h + i + 1) * d]
            a1 = softmax(q1 @ k1.T / math.sqrt(d))
            a2 = softmax(q2 @ k2.T / math.sqrt(d))
            o = (a1 - lam * a2) @ v[:, i * 2 * d:(i + 1) * 2 * d]
            heads.append(normalise(o) * gamma * (1 - lambda_init))
        outputs.append(np.concatenate(heads, axis=-1) @ w["wo"] + w["bo"])
    return np.stack(outputs)


def randomise(layer, seed=0):
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        values = rng.normal(scale=0.3, size=variable.shape)
        if "variance" in variable.name:
            values = np.abs(values) + 0.5
        variable.assign(values)


@pytest.mark.parametrize("head_norm", ["rms", "batch"])
@pytest.mark.parametrize("depth", [0, 3])
def test_matches_numpy_reference(depth, head_norm):
    x = np.random.default_rng(1).normal(size=(2, 16, 32)).astype("float32")
    layer = DifferentialAttention(num_heads=2, depth=depth, head_norm=head_norm)
    layer.build(x.shape)
    randomise(layer)
    np.testing.assert_allclose(
        layer(x), reference(layer, x), rtol=2e-4, atol=2e-4
    )


def test_head_layout():
    layer = DifferentialAttention(num_heads=2)
    layer.build((None, 16, 32))
    assert layer.key_dim == 8
    assert layer.query_dense.kernel.shape == (32, 32)  # 2H heads of size d
    assert layer.value_dense.kernel.shape == (32, 32)  # H heads of size 2d
    assert layer.norm_scale.shape == (16,)


def test_lambda_init_schedule():
    assert lambda_init_for_depth(0) == pytest.approx(0.2)
    assert lambda_init_for_depth(5) == pytest.approx(0.8 - 0.6 * math.exp(-1.5))
    assert DifferentialAttention(2, depth=5).lambda_init == pytest.approx(
        0.8 - 0.6 * math.exp(-1.5)
    )


def test_returns_both_maps_and_their_difference():
    x = np.random.default_rng(2).normal(size=(1, 9, 16)).astype("float32")
    layer = DifferentialAttention(num_heads=2)
    out, maps = layer(x, return_attention_scores=True)
    assert out.shape == (1, 9, 16)
    assert set(maps) == {"softmax_1", "softmax_2", "difference"}
    for key in maps:
        assert maps[key].shape == (1, 2, 9, 9)
    np.testing.assert_allclose(np.sum(maps["softmax_1"], -1), 1.0, rtol=1e-5)
    lam = float(layer.lambda_value())
    np.testing.assert_allclose(
        maps["difference"],
        np.asarray(maps["softmax_1"]) - lam * np.asarray(maps["softmax_2"]),
        rtol=1e-5,
        atol=1e-6,
    )


def test_lambda_is_trained():
    inputs = keras.Input((16, 8))
    x = DifferentialAttention(num_heads=2, name="attention")(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(x))
    model = keras.Model(inputs, outputs)
    model.compile("adam", "mse")
    layer = model.get_layer("attention")
    before = [v.numpy().copy() for v in (layer.lambda_q1, layer.lambda_k2)]
    lambda_before = float(layer.lambda_value())
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(32, 16, 8)), rng.normal(size=(32, 2)),
              epochs=3, batch_size=8, verbose=0)
    after = [v.numpy() for v in (layer.lambda_q1, layer.lambda_k2)]
    assert all(np.abs(a - b).max() > 1e-4 for a, b in zip(after, before))
    assert float(layer.lambda_value()) != pytest.approx(lambda_before, abs=1e-6)


def test_mixed_precision_keeps_softmax_in_float32():
    layer = DifferentialAttention(num_heads=2, dtype="mixed_float16")
    x = np.random.default_rng(0).normal(size=(1, 9, 16)).astype("float32")
    out, maps = layer(x, return_attention_scores=True)
    assert out.dtype == "float16"
    np.testing.assert_allclose(np.sum(np.asarray(maps["softmax_1"], "float32"), -1), 1.0, rtol=2e-3)


def test_bad_head_count_names_the_values():
    layer = DifferentialAttention(num_heads=3)
    with pytest.raises(ValueError, match="20 channels cannot be split into 2 \\* num_heads = 6"):
        layer(np.zeros((1, 4, 20), "float32"))
    with pytest.raises(ValueError, match="Received: 0"):
        DifferentialAttention(num_heads=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_heads": 2, "depth": 4, "head_dim": 8},
        {"num_heads": 2, "head_norm": "batch"},
        {"num_heads": 1, "lambda_init": 0.5, "use_bias": False},
    ],
)
def test_layer_checks(kwargs):
    layer = run_layer_test(DifferentialAttention, kwargs, (2, 16, 32),
                           (2, 16, 32))
    clone = DifferentialAttention.from_config(layer.get_config())
    assert clone.lambda_init == layer.lambda_init


def test_batch_head_norm_learns_statistics_and_has_no_rms_scale():
    layer = DifferentialAttention(num_heads=2, head_norm="batch")
    x = np.random.default_rng(0).normal(size=(4, 16, 32)).astype("float32")
    layer(x)
    assert not hasattr(layer, "norm_scale")
    assert layer.head_batch_norm.gamma.shape == (16,)
    before = layer.head_batch_norm.moving_mean.numpy().copy()
    training = keras.ops.convert_to_numpy(layer(x, training=True))
    assert np.abs(layer.head_batch_norm.moving_mean.numpy() - before).max() > 0
    assert not np.allclose(training, keras.ops.convert_to_numpy(layer(x)))


def test_bad_head_norm_names_the_value():
    with pytest.raises(ValueError, match="head_norm='layer'"):
        DifferentialAttention(num_heads=2, head_norm="layer")
