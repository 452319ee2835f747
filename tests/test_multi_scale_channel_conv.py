import keras
import numpy as np
import pytest

from layer_test_util import run_layer_test
from mdnet_keras.layers import MultiScaleChannelConv


def impulse(channels, size=15):
    x = np.zeros((1, size, size, channels), "float32")
    x[0, size // 2, size // 2, :] = 1.0
    return x


def test_each_group_sees_exactly_its_own_kernel_size():
    layer = MultiScaleChannelConv(
        kernel_sizes=(3, 5, 7, 9), kernel_initializer="ones"
    )
    out = keras.ops.convert_to_numpy(layer(impulse(8)))[0]
    footprints = [int(np.count_nonzero(out[..., c])) for c in range(8)]
    assert footprints == [9, 9, 25, 25, 49, 49, 81, 81]
    for channel, size in zip(range(0, 8, 2), (3, 5, 7, 9)):
        rows = np.nonzero(out[..., channel].any(axis=1))[0]
        assert rows.max() - rows.min() + 1 == size


def test_explicit_channel_split():
    layer = MultiScaleChannelConv((3, 5), channel_split=(6, 2))
    layer.build((None, 8, 8, 8))
    assert [tuple(k.shape) for k in layer.kernels] == [(3, 3, 6, 1), (5, 5, 2, 1)]


def test_single_kernel_equals_depthwise_conv2d():
    x = np.random.default_rng(0).normal(size=(2, 9, 9, 6)).astype("float32")
    layer = MultiScaleChannelConv(kernel_sizes=(5,), strides=2, use_bias=True)
    reference = keras.layers.DepthwiseConv2D(5, strides=2, padding="same")
    layer.build(x.shape)
    reference.build(x.shape)
    rng = np.random.default_rng(1)
    layer.kernels[0].assign(rng.normal(size=(5, 5, 6, 1)))
    layer.bias.assign(rng.normal(size=(6,)))
    reference.set_weights([layer.kernels[0].numpy(), layer.bias.numpy()])
    np.testing.assert_allclose(layer(x), reference(x), rtol=1e-5, atol=1e-5)


def test_output_shape_and_macs_with_stride():
    layer = MultiScaleChannelConv((3, 5, 7, 9), strides=2)
    out = layer(np.zeros((1, 16, 16, 32), "float32"))
    assert out.shape == (1, 8, 8, 32)
    assert layer.compute_output_shape((None, 16, 16, 32)) == (None, 8, 8, 32)
    assert layer.count_macs((16, 16, 32)) == 64 * 8 * (9 + 25 + 49 + 81)


def test_indivisible_channels_name_the_values():
    layer = MultiScaleChannelConv((3, 5, 7, 9))
    with pytest.raises(ValueError, match="Cannot split 10 channels into 4"):
        layer(np.zeros((1, 8, 8, 10), "float32"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kernel_sizes": (3, 4)}, "odd positive"),
        ({"kernel_sizes": ()}, "non-empty"),
        ({"kernel_sizes": (3, 5), "channel_split": (4,)}, "one entry per"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiScaleChannelConv(**kwargs)


def test_split_must_sum_to_channels():
    layer = MultiScaleChannelConv((3, 5), channel_split=(4, 3))
    with pytest.raises(ValueError, match="sum to the input channels \\(8\\)"):
        layer(np.zeros((1, 8, 8, 8), "float32"))


@pytest.mark.parametrize(
    "kwargs, output_shape",
    [
        ({"kernel_sizes": (3, 5, 7, 9)}, (2, 9, 9, 8)),
        ({"kernel_sizes": (3, 7), "channel_split": (2, 6), "strides": 2,
          "use_bias": True}, (2, 5, 5, 8)),
        ({"kernel_sizes": (3, 9), "max_kernel_taps": 25}, (2, 9, 9, 8)),
        ({"kernel_sizes": (3, 3, 3, 3), "dilation_rates": (1, 2, 3, 4)},
         (2, 9, 9, 8)),
        ({"kernel_sizes": (3, 3, 3, 3), "dilation_rates": (1, 2, 3, 4),
          "strides": 2}, (2, 5, 5, 8)),
        ({"kernel_sizes": (3, 3, 3, 3), "cascade": True}, (2, 9, 9, 8)),
        ({"kernel_sizes": (3, 5), "cascade": True, "strides": 2,
          "use_bias": True}, (2, 5, 5, 8)),
    ],
)
def test_layer_checks(kwargs, output_shape):
    run_layer_test(MultiScaleChannelConv, kwargs, (2, 9, 9, 8), output_shape)


def dilated_as_dense(kernel, dilation):
    """A k x k kernel dilated by d, as the (d(k-1)+1)-wide dense kernel with
    zeros between its taps."""
    size = dilation * (kernel.shape[0] - 1) + 1
    dense = np.zeros((size, size) + kernel.shape[2:], kernel.dtype)
    dense[::dilation, ::dilation] = kernel
    return dense


@pytest.mark.parametrize("size", [4, 5, 8, 9, 16])
@pytest.mark.parametrize("strides", [1, 2, 3])
def test_dilated_groups_equal_zero_inserted_dense_kernels(size, strides):
    # Strided and dilated at once is computed at stride 1 and subsampled;
    # the dense layer takes the stride directly, so this also checks that
    # the subsample picks the pixels a strided "same" convolution computes.
    x = np.random.default_rng(0).normal(size=(2, size, size, 6))
    x = x.astype("float32")
    dilated = MultiScaleChannelConv(
        (3, 3, 3), dilation_rates=(1, 2, 4), strides=strides, use_bias=True
    )
    dense = MultiScaleChannelConv((3, 5, 9), strides=strides, use_bias=True)
    dilated.build(x.shape)
    dense.build(x.shape)
    rng = np.random.default_rng(1)
    dilated.set_weights(
        [rng.normal(size=w.shape) for w in dilated.get_weights()])
    kernels = [w.numpy() for w in dilated.kernels]
    dense.set_weights([dilated_as_dense(k, d) for k, d in zip(
        kernels, (1, 2, 4))] + [dilated.bias.numpy()])
    np.testing.assert_allclose(dilated(x), dense(x), rtol=1e-5, atol=1e-5)


def test_dilated_groups_see_their_receptive_field_at_nine_taps():
    layer = MultiScaleChannelConv(
        (3, 3, 3, 3), dilation_rates=(1, 2, 3, 4), kernel_initializer="ones"
    )
    out = keras.ops.convert_to_numpy(layer(impulse(8)))[0]
    assert layer.receptive_fields() == [3, 5, 7, 9]
    for channel, field in zip(range(0, 8, 2), (3, 5, 7, 9)):
        assert np.count_nonzero(out[..., channel]) == 9
        rows = np.nonzero(out[..., channel].any(axis=1))[0]
        assert rows.max() - rows.min() + 1 == field
    assert [k.name for k in layer.kernels] == [
        "kernel_3x3", "kernel_3x3_dilation2", "kernel_3x3_dilation3",
        "kernel_3x3_dilation4"]


def test_macs_of_dilated_groups_count_the_stride_one_work():
    layer = MultiScaleChannelConv((3, 3), dilation_rates=(1, 2))
    assert layer.count_macs((16, 16, 8)) == 16 * 16 * 8 * 9
    strided = MultiScaleChannelConv((3, 3), dilation_rates=(1, 2), strides=2)
    assert strided.count_macs((16, 16, 8)) == 16 * 16 * 8 * 9 + 8 * 8 * 8


def reference_cascade(x, kernels, strides):
    """Res2Net's chain written out: group i convolves its channels plus
    group i - 1's output, every group at stride 1, then the strided "same"
    convolution's pixels are kept."""
    groups = np.split(x, len(kernels), axis=-1)
    outputs = []
    for group, kernel in zip(groups, kernels):
        if outputs:
            group = group + outputs[-1]
        outputs.append(keras.ops.convert_to_numpy(keras.ops.depthwise_conv(
            group, kernel, strides=1, padding="same")))
    full = np.concatenate(outputs, axis=-1)
    # A strided "same" convolution's outputs sit where its padding puts them.
    offset = [(-(-n // strides) - 1) * strides - n + 1 for n in x.shape[1:3]]
    start = [-(o // 2) for o in offset]
    return full[:, start[0]::strides, start[1]::strides]


@pytest.mark.parametrize("size", [5, 8, 9])
@pytest.mark.parametrize("strides", [1, 2])
def test_cascade_adds_each_group_output_to_the_next_group_input(size, strides):
    x = np.random.default_rng(0).normal(size=(2, size, size, 8))
    x = x.astype("float32")
    layer = MultiScaleChannelConv((3, 3, 5, 3), strides=strides, cascade=True)
    layer.build(x.shape)
    rng = np.random.default_rng(1)
    layer.set_weights([rng.normal(size=w.shape) for w in layer.get_weights()])
    kernels = [w.numpy() for w in layer.kernels]
    np.testing.assert_allclose(
        layer(x), reference_cascade(x, kernels, strides), rtol=1e-5, atol=1e-5)


def test_cascade_groups_see_growing_receptive_fields_with_3x3_kernels():
    layer = MultiScaleChannelConv(
        (3, 3, 3, 3), cascade=True, kernel_initializer="ones")
    out = keras.ops.convert_to_numpy(layer(impulse(8)))[0]
    assert layer.receptive_fields() == [3, 5, 7, 9]
    for channel, field in zip(range(0, 8, 2), (3, 5, 7, 9)):
        rows = np.nonzero(out[..., channel].any(axis=1))[0]
        assert rows.max() - rows.min() + 1 == field
    assert layer.count_macs((15, 15, 8)) == 15 * 15 * 8 * 9
    independent = MultiScaleChannelConv((3, 3, 3, 3))
    assert independent.receptive_fields() == [3, 3, 3, 3]


def test_cascade_needs_equal_groups():
    with pytest.raises(ValueError, match=r"equal size. Received: channel_split=\(2, 6\)"):
        MultiScaleChannelConv((3, 3), channel_split=(2, 6), cascade=True)
    layer = MultiScaleChannelConv((3, 3), channel_split=(4, 4), cascade=True)
    assert tuple(layer(np.zeros((1, 6, 6, 8), "float32")).shape) == (1, 6, 6, 8)


@pytest.mark.parametrize("dilation_rates", [(1,), (1, 0), (1, 1.5)])
def test_bad_dilation_rates_name_the_values(dilation_rates):
    with pytest.raises(ValueError, match="dilation_rates"):
        MultiScaleChannelConv((3, 3), dilation_rates=dilation_rates)


def test_kernel_pieces_tile_the_kernel_within_the_tap_limit():
    from mdnet_keras.layers.multi_scale_channel_conv import kernel_pieces

    assert kernel_pieces(5, 5, 25) == [(0, 5, 0, 5)]
    assert len(kernel_pieces(7, 7, 25)) == 3
    assert len(kernel_pieces(9, 9, 25)) == 4
    for height, width, max_taps in [(7, 7, 25), (9, 9, 25), (9, 9, 9),
                                    (11, 11, 25), (7, 4, 9), (9, 9, 1)]:
        covered = np.zeros((height, width), int)
        for r0, r1, c0, c1 in kernel_pieces(height, width, max_taps):
            assert (r1 - r0) * (c1 - c0) <= max_taps
            covered[r0:r1, c0:c1] += 1
        assert (covered == 1).all()


@pytest.mark.parametrize("size", [4, 5, 8, 9, 16])
@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("max_taps", [9, 25])
def test_pieced_kernels_give_the_same_output(size, strides, max_taps):
    kernel_sizes = (1, 3, 5, 7, 9)
    x = np.random.default_rng(0).normal(size=(2, size, size, 10))
    x = x.astype("float32")
    layer = MultiScaleChannelConv(kernel_sizes, strides=strides, use_bias=True)
    pieced = MultiScaleChannelConv(
        kernel_sizes, strides=strides, use_bias=True, max_kernel_taps=max_taps
    )
    layer.build(x.shape)
    pieced.build(x.shape)
    rng = np.random.default_rng(1)
    layer.set_weights([rng.normal(size=w.shape) for w in layer.get_weights()])
    pieced.set_weights(layer.get_weights())
    np.testing.assert_allclose(pieced(x), layer(x), rtol=1e-5, atol=1e-5)


def test_max_kernel_taps_validation():
    with pytest.raises(ValueError, match="max_kernel_taps"):
        MultiScaleChannelConv((3, 5), max_kernel_taps=0)
