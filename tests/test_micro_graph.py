"""MDNet in the graph form for TFLite Micro (mdnet_keras.export.micro_graph):
the same float function, fewer ops, a smaller TFLite Micro arena."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import mdnet_keras  # noqa: E402
from export_models import tiny  # noqa: E402
from mdnet_keras.export.micro_graph import with_micro_graph  # noqa: E402


def _mdnet(**kwargs):
    """mdnet_micro with logits out and BatchNorm statistics far from their
    initial values, so that a wrong fold shows."""
    keras.utils.set_random_seed(0)
    model = mdnet_keras.MDNet(num_classes=10, variant="mdnet_micro",
                              classifier_activation=None, **kwargs)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.gamma.shape
            layer.set_weights([rng.uniform(0.5, 1.5, shape), rng.normal(0, 0.3, shape),
                               rng.normal(0, 0.3, shape), rng.uniform(0.5, 2.0, shape)])
    return model


def _images(n=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3)).astype("float32")


def test_micro_graph_is_the_same_float_function():
    model = _mdnet()
    micro = with_micro_graph(model)
    assert micro is not model
    names = [layer.name for layer in micro.layers]
    # The 32x32 blocks run as partial sums, the rest per group + concatenation.
    assert "stage1_block0_project_sum3" in names and "stage2_block0_project_sum3" in names
    assert "stage2_block1_concat" in names and "stage2_block1_project_sum1" not in names
    assert not any(name.endswith("multiscale_bn") or name.endswith("mlp_norm")
                   for name in names)
    x = _images()
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(micro.predict(x, verbose=0), expected,
                               rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_partial_sum_threshold_and_dilated_blocks():
    model = _mdnet(dilation_rates=(1, 2, 3, 4))
    x = _images(2)
    expected = model.predict(x, verbose=0)
    # No block as partial sums; the strided dilated blocks (subsampled) stay.
    micro = with_micro_graph(model, partial_sum_bytes=10**9)
    names = [layer.name for layer in micro.layers]
    assert not any("project_sum" in name for name in names)
    assert "stage2_block0_multiscale" in names and "stage1_block0_multiscale_g0" in names
    np.testing.assert_allclose(micro.predict(x, verbose=0), expected,
                               rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_chained_groups_are_left_as_they_are():
    # With `cascade` a group adds the previous group's output before its
    # BatchNorm: neither the per-group blocks nor the BatchNorm fold apply.
    model = _mdnet(kernel_sizes=(3, 3, 3, 3), cascade=True)
    assert with_micro_graph(model) is model


def test_other_models_are_left_as_they_are():
    model = tiny()
    assert with_micro_graph(model) is model


@pytest.mark.slow
def test_micro_graph_needs_less_tflm_arena_and_fewer_ops():
    pytest.importorskip("tflite_micro")
    from mdnet_keras.export import convert_model
    from mdnet_keras.export import describe_ops
    from mdnet_keras.export import micro
    from mdnet_keras.export import micro_model

    model = _mdnet()
    rep = _images(16, seed=1)
    sizes = {}
    for form in (False, True):
        data = convert_model(model, "int8", rep_images=rep, num_calibration=16,
                             max_depthwise_taps=None, micro_graph=form)
        ops = [op["op"] for op in describe_ops(data)]
        small, _ = micro_model(data)
        sizes[form] = (micro.find_min_arena(small), ops)
    (plain_arena, plain_ops), (arena, ops) = sizes[False], sizes[True]
    assert arena < 0.8 * plain_arena, (arena, plain_arena)
    # TFLite Micro's person-detection budget (136 KiB), on the x86-64 host.
    assert arena <= 136 * 1024, arena
    # No whole-map SPLIT before a 32x32 block, no BatchNorm left as MUL + ADD.
    assert ops.count("SPLIT") == plain_ops.count("SPLIT") - 5
    assert ops.count("MUL") < plain_ops.count("MUL")
