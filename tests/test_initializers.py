import keras
import numpy as np

from mdnet_keras.layers import DifferentialAttention
from mdnet_keras.layers import MultiScaleChannelConv
from mdnet_keras.layers import StandardAttention
from mdnet_keras.layers.initializers import unshared


def test_unshared_gives_a_new_draw_and_keeps_an_explicit_seed():
    shared = keras.initializers.GlorotUniform()
    first = unshared(shared)((4, 4))
    assert not np.array_equal(first, unshared(shared)((4, 4)))
    seeded = keras.initializers.GlorotUniform(seed=3)
    np.testing.assert_array_equal(unshared(seeded)((4, 4)), seeded((4, 4)))


def test_attention_projections_and_lambdas_start_different():
    # One shared initializer once made query, key, value and output equal.
    for layer in (DifferentialAttention(num_heads=2, depth=1),
                  StandardAttention(num_heads=2)):
        layer.build((1, 16, 32))
        kernels = [np.asarray(w) for w in layer.weights
                   if w.path.endswith("kernel")]
        assert len(kernels) == 4
        for i, a in enumerate(kernels):
            for b in kernels[i + 1:]:
                assert a.shape != b.shape or not np.array_equal(a, b)
    attention = DifferentialAttention(num_heads=2, depth=1)
    attention.build((1, 16, 32))
    vectors = [np.asarray(v) for v in (attention.lambda_q1, attention.lambda_k1,
                                       attention.lambda_q2, attention.lambda_k2)]
    assert len({v.tobytes() for v in vectors}) == 4


def test_multi_scale_kernels_are_independent_draws():
    # One shared initializer once made each group a scaled copy of one draw.
    layer = MultiScaleChannelConv((3, 5, 7, 9))
    layer.build((1, 8, 8, 16))
    first = [np.asarray(k).ravel()[:9] for k in layer.kernels]
    for a, b in zip(first, first[1:]):
        assert abs(np.corrcoef(a, b)[0, 1]) < 0.99
