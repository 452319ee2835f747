import math

import numpy as np
import pytest

from layer_test_util import run_layer_test
from mdnet_keras.layers import DifferentialAttention
from mdnet_keras.layers import StandardAttention


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_matches_numpy_reference():
    x = np.random.default_rng(1).normal(size=(2, 10, 16)).astype("float32")
    layer = StandardAttention(num_heads=2)
    layer.build(x.shape)
    rng = np.random.default_rng(0)
    for variable in layer.weights:
        variable.assign(rng.normal(scale=0.3, size=variable.shape))
    dense = {n: (getattr(layer, f"{n}_dense").kernel.numpy(),
                 getattr(layer, f"{n}_dense").bias.numpy())
             for n in ("query", "key", "value", "output")}
    d = layer.key_dim
    expected = []
    for sample in x:
        q, k, v = (sample @ dense[n][0] + dense[n][1] for n in ("query", "key", "value"))
        heads = [softmax(q[:, i*d:(i+1)*d] @ k[:, i*d:(i+1)*d].T / math.sqrt(d)) @ v[:, i*d:(i+1)*d]
                 for i in range(4)]
        expected.append(np.concatenate(heads, -1) @ dense["output"][0] + dense["output"][1])
    np.testing.assert_allclose(layer(x), np.stack(expected), rtol=2e-4, atol=2e-4)


def test_same_shape_as_differential_and_params_within_one_percent():
    x = np.zeros((1, 64, 128), "float32")
    standard, differential = StandardAttention(4), DifferentialAttention(4)
    standard(x)
    differential(x)
    assert standard.count_params() < differential.count_params()
    assert differential.count_params() / standard.count_params() - 1 < 0.01
    assert standard.count_macs((64, 128)) == differential.count_macs((64, 128))


def test_returns_maps_of_all_heads():
    out, scores = StandardAttention(2)(np.zeros((1, 9, 16), "float32"),
                                      return_attention_scores=True)
    assert out.shape == (1, 9, 16)
    assert scores.shape == (1, 4, 9, 9)


@pytest.mark.parametrize("kwargs", [
    {"num_heads": 2, "head_dim": 4, "use_bias": False},
    {"num_heads": 2},
])
def test_layer_checks(kwargs):
    run_layer_test(StandardAttention, kwargs, (2, 9, 16), (2, 9, 16))
