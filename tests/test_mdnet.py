import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import mdnet_keras
from mdnet_keras import MDNet
from mdnet_keras.layers import DifferentialAttention
from mdnet_keras.layers import StandardAttention

TINY = dict(
    variant="mdnet_micro",
    stem_channels=8,
    stage_channels=(8, 16, 16, 32),
    stage_depths=(1, 1, 2, 2),
    head_channels=32,
    expansion_ratio=2,
)


def images(n, shape=(32, 32, 3), seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, *shape)).astype("float32")


@pytest.mark.parametrize(
    "input_shape", [(32, 32, 3), (48, 40, 3), (64, 64, 1), (33, 35, 1)]
)
def test_output_shapes(input_shape):
    model = MDNet(input_shape=input_shape, num_classes=7, **TINY)
    assert model.predict(images(2, input_shape), verbose=0).shape == (2, 7)


def test_feature_extractor_and_pooling():
    features = MDNet(include_top=False, **TINY)
    assert features.output.shape == (None, 4, 4, 32)
    pooled = MDNet(include_top=False, pooling="max", **TINY)
    assert pooled.output.shape == (None, 32)


def test_paper_size_variants_near_the_papers_2_38m_parameters():
    model = MDNet()
    assert model.name == "mdnet"
    assert abs(model.count_params() / 2.38e6 - 1) < 0.05
    first = MDNet(variant="mdnet_v1")
    assert abs(first.count_params() / 2.38e6 - 1) < 0.02


def test_default_design_has_two_kernel_sizes_and_attention_last():
    from mdnet_keras.layers import MultiScaleChannelConv

    model = MDNet(num_classes=10)
    convs = [layer for layer in model.layers
             if isinstance(layer, MultiScaleChannelConv)]
    attention = [layer for layer in model.layers
                 if isinstance(layer, DifferentialAttention)]
    assert convs and all(layer.kernel_sizes == [3, 5] for layer in convs)
    assert attention and all(layer.name.startswith("stage4_")
                             and layer.head_norm == "batch"
                             for layer in attention)


def test_shipped_weights_pick_their_variant_and_refuse_another():
    assert MDNet(weights="cifar10", num_classes=10).name == "mdnet"
    with pytest.raises(ValueError, match="'cifar10' are for variant "
                       "'mdnet'. Received: variant='mdnet_v1'"):
        MDNet(weights="cifar10", num_classes=10, variant="mdnet_v1")


def test_variants_are_ordered_and_micro_fits_600kb_of_int8_weights():
    params = {v: MDNet(variant=v, num_classes=10).count_params()
              for v in mdnet_keras.MDNET_VARIANTS}
    assert params["mdnet_micro"] < params["mdnet_small"] < params["mdnet"]
    assert params["mdnet_micro"] <= 600_000


def test_attention_kind_swaps_layer_and_keeps_parameters_within_one_percent():
    differential = MDNet(num_classes=10)
    standard = MDNet(num_classes=10, attention="standard")
    kinds = lambda m: {type(layer) for layer in m.layers}  # noqa: E731
    assert DifferentialAttention in kinds(differential)
    assert StandardAttention in kinds(standard)
    assert DifferentialAttention not in kinds(standard)
    ratio = differential.count_params() / standard.count_params()
    assert 1 <= ratio < 1.01


def test_lambda_init_follows_block_depth():
    model = MDNet(**TINY)
    attention = [layer for layer in model.layers
                 if isinstance(layer, DifferentialAttention)]
    assert [layer.depth for layer in attention] == [3, 5]


def test_normalises_raw_pixels_inside():
    model = MDNet(**TINY)
    normalised = keras.Model(model.input, model.get_layer("normalization").output)
    x = np.full((1, 32, 32, 3), 255.0 * 0.4914, "float32")
    assert abs(float(normalised(x)[0, 0, 0, 0])) < 1e-3


def test_drop_path_rate_rises_linearly():
    model = MDNet(drop_path_rate=0.3, **TINY)
    rates = [layer.rate for layer in model.layers
             if layer.name.endswith("drop_path")]
    assert rates == sorted(rates) and max(rates) == pytest.approx(0.3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_shape": (32, 32)}, r"\(height, width, channels\).*\(32, 32\)"),
        ({"input_shape": (32, 32, 4)}, r"1 \(grey\) or 3 \(RGB\).*4 channels"),
        ({"input_shape": (16, 32, 3)}, r"at least 32x32.*\(16, 32, 3\)"),
        ({"input_shape": (None, None, 3)}, "static height and width"),
        ({"variant": "mdnet_huge"}, "Unknown MDNet variant 'mdnet_huge'"),
        ({"stage_channels": (24, 48, 128, 251)}, "Cannot split 251 channels into 2"),
        ({"stage_depths": (1, 2)}, "one entry per stage"),
        ({"attention": "linear"}, "Received: linear"),
        ({"pooling": "mean", "include_top": False}, "Received: mean"),
        ({"weights": "no/such/file.keras"}, "no/such/file.keras"),
        ({"dilation_rates": (1, 2, 3)}, "one entry per kernel size"),
        ({"head_norm": "layer"}, "head_norm='layer'"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MDNet(**kwargs)


def test_wrong_input_rank_or_channels_at_call_time():
    model = MDNet(**TINY)
    with pytest.raises(ValueError, match=r"Expected shape \(None, 32, 32, 3\).*\(1, 32, 32\)"):
        model.predict(np.zeros((1, 32, 32), "float32"), verbose=0)
    with pytest.raises(ValueError, match="axis -1 of input shape to have value 3.*\\(1, 32, 32, 1\\)"):
        model.predict(np.zeros((1, 32, 32, 1), "float32"), verbose=0)


DILATED_BATCH_NORM = dict(
    kernel_sizes=(3, 3, 3, 3), dilation_rates=(1, 2, 3, 4), head_norm="batch"
)


def test_dilation_and_head_norm_reach_every_block():
    from mdnet_keras.layers import MultiScaleChannelConv

    model = MDNet(num_classes=5, **TINY, **DILATED_BATCH_NORM)
    convs = [layer for layer in model.layers
             if isinstance(layer, MultiScaleChannelConv)]
    attention = [layer for layer in model.layers
                 if isinstance(layer, DifferentialAttention)]
    assert convs and attention
    assert all(layer.receptive_fields() == [3, 5, 7, 9] for layer in convs)
    assert all(layer.head_norm == "batch" for layer in attention)
    default = MDNet(num_classes=5, **TINY)
    assert all(layer.dilation_rates is None for layer in default.layers
               if isinstance(layer, MultiScaleChannelConv))
    assert all(layer.head_norm == "rms" for layer in default.layers
               if isinstance(layer, DifferentialAttention))


def test_cascade_reaches_every_multiscale_step():
    from mdnet_keras.layers import MultiScaleChannelConv

    model = MDNet(num_classes=5, **TINY, kernel_sizes=(3, 3, 3, 3), cascade=True)
    convs = [layer for layer in model.layers
             if isinstance(layer, MultiScaleChannelConv)]
    assert convs and all(layer.cascade for layer in convs)
    assert all(layer.receptive_fields() == [3, 5, 7, 9] for layer in convs)
    assert not any(layer.cascade for layer in MDNet(num_classes=5, **TINY).layers
                   if isinstance(layer, MultiScaleChannelConv))


@pytest.mark.parametrize("options", [
    {}, DILATED_BATCH_NORM, {"kernel_sizes": (3, 3, 3, 3), "cascade": True}])
def test_keras_save_load_gives_identical_predictions(tmp_path, options):
    model = MDNet(num_classes=5, **TINY, **options)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    x = images(3)
    np.testing.assert_array_equal(
        model.predict(x, verbose=0), restored.predict(x, verbose=0)
    )


def test_weights_from_keras_file_with_another_head(tmp_path):
    source = MDNet(num_classes=10, **TINY)
    source.save(tmp_path / "source.keras")
    target = MDNet(num_classes=3, weights=tmp_path / "source.keras", **TINY)
    np.testing.assert_array_equal(
        target.get_layer("stage4_block1_attention").get_weights()[0],
        source.get_layer("stage4_block1_attention").get_weights()[0],
    )
    features = MDNet(include_top=False, weights=str(tmp_path / "source.keras"), **TINY)
    x = images(1)
    expected = keras.Model(source.input, source.get_layer("head_act").output)(x)
    np.testing.assert_allclose(features(x), expected, rtol=1e-5, atol=1e-5)


def test_weights_h5_round_trip_and_mismatch(tmp_path):
    source = MDNet(num_classes=4, **TINY)
    source.save_weights(tmp_path / "w.weights.h5")
    target = MDNet(num_classes=4, weights=str(tmp_path / "w.weights.h5"), **TINY)
    x = images(2)
    np.testing.assert_array_equal(source.predict(x, verbose=0), target.predict(x, verbose=0))
    (tmp_path / "w.txt").write_text("")
    with pytest.raises(ValueError, match=r"must end in .keras or .weights.h5"):
        MDNet(num_classes=4, weights=str(tmp_path / "w.txt"), **TINY)


def test_unrelated_keras_file_is_refused(tmp_path):
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="foo")])
    other.save(tmp_path / "other.keras")
    with pytest.raises(ValueError, match="different architecture"):
        MDNet(weights=str(tmp_path / "other.keras"), **TINY)


def test_mixed_precision_training_step():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = MDNet(num_classes=4, **TINY)
        model.compile("adam", "sparse_categorical_crossentropy")
        history = model.fit(images(8), np.arange(8) % 4, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        assert model.get_layer("stage3_block1_attention").compute_dtype == "bfloat16"
        assert model.output.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


JAX_SCRIPT = """
import os, sys
# The GPU machines have JAX but no TensorFlow: fail on any TF import.
sys.modules["tensorflow"] = None
import numpy as np, keras
assert keras.backend.backend() == "jax"
import mdnet_keras
kwargs = {kwargs}
model = mdnet_keras.MDNet(num_classes=5, **kwargs)
model.load_weights(sys.argv[1])
np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))
model.compile("adamw", keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
x = np.load(sys.argv[2]); y = np.eye(5)[np.arange(len(x)) % 5]
loss = model.fit(x, y, epochs=1, batch_size=4, verbose=0).history["loss"][0]
assert np.isfinite(loss), loss
print("jax fit loss", loss)
"""


@pytest.mark.parametrize("options", [{}, DILATED_BATCH_NORM])
def test_same_outputs_under_jax_and_one_fit_step(tmp_path, options):
    pytest.importorskip("jax")
    kwargs = dict(TINY, **options)
    model = MDNet(num_classes=5, **kwargs)
    model.save_weights(tmp_path / "w.weights.h5")
    x = images(4)
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "run_jax.py"
    script.write_text(JAX_SCRIPT.format(kwargs=repr(kwargs)))
    env = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "w.weights.h5"),
         str(tmp_path / "x.npy"), str(tmp_path / "jax.npy")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_allclose(
        np.load(tmp_path / "jax.npy"), model.predict(x, verbose=0), rtol=1e-4, atol=1e-5
    )


def test_shipped_weights_by_name(tmp_path, monkeypatch):
    from mdnet_keras.models import mdnet_presets

    source = MDNet(num_classes=4, variant="mdnet_micro")
    source.save_weights(tmp_path / "micro.weights.h5")
    monkeypatch.setitem(mdnet_presets.MDNET_WEIGHTS, "test-set", {
        "variant": "mdnet_micro", "num_classes": 4,
        "file": str(tmp_path / "micro.weights.h5")})
    same_head = MDNet(num_classes=4, variant="mdnet_micro", weights="test-set")
    x = images(2)
    np.testing.assert_array_equal(source.predict(x, verbose=0), same_head.predict(x, verbose=0))
    new_head = MDNet(num_classes=7, variant="mdnet_micro", weights="test-set")
    np.testing.assert_array_equal(
        new_head.get_layer("head_conv").get_weights()[0],
        source.get_layer("head_conv").get_weights()[0])


def test_shipped_cifar10_weights_are_the_registered_file():
    import hashlib

    from mdnet_keras.models import mdnet_presets

    entry = mdnet_presets.MDNET_WEIGHTS["cifar10"]
    with open(mdnet_presets.weights_path("cifar10"), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == entry["sha256"]


def test_shipped_cifar10_weights_classify_the_embedded_sample():
    from mdnet_keras.data import datasets

    sample = datasets.load_sample()  # 200 CIFAR-10 test images, none trained on
    model = MDNet(weights="cifar10", num_classes=10)
    predicted = model.predict(sample.x_test.astype("float32"), verbose=0).argmax(-1)
    # Well below the shipped weights' score; a broken file or a renamed
    # layer falls to chance (0.1).
    assert np.mean(predicted == sample.y_test) >= 0.8


def test_weights_h5_of_another_class_count_load_into_a_new_head(tmp_path):
    source = MDNet((32, 32, 3), 10, **TINY)
    path = str(tmp_path / "ten.weights.h5")
    source.save_weights(path)
    five = MDNet((32, 32, 3), 5, weights=path, **TINY)
    assert five.output.shape == (None, 5)
    np.testing.assert_array_equal(
        five.get_layer("stem_conv").get_weights()[0],
        source.get_layer("stem_conv").get_weights()[0])


def test_a_truncated_keras_file_is_named_as_such(tmp_path):
    good = tmp_path / "good.keras"
    MDNet((32, 32, 3), 10, **TINY).save(good)
    cut = tmp_path / "cut.keras"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="cut.keras exists but is not a "
                                         "readable .keras model"):
        MDNet((32, 32, 3), 5, weights=str(cut), **TINY)
