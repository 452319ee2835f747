"""Multi-scale depthwise convolution along the channel dimension."""

import keras
from keras import ops


def split_channels(channels, num_groups):
    """Splits `channels` into `num_groups` equal groups.

    Args:
        channels: int, number of channels.
        num_groups: int, number of groups.

    Returns:
        A list of `num_groups` ints that sum to `channels`.

    Raises:
        ValueError: if `channels` is not divisible by `num_groups`.
    """
    if channels % num_groups:
        raise ValueError(
            f"Cannot split {channels} channels into {num_groups} equal "
            f"kernel groups: {channels} is not divisible by {num_groups}. "
            "Pass `channel_split` explicitly or choose a channel count "
            f"that is a multiple of {num_groups}."
        )
    return [channels // num_groups] * num_groups


@keras.saving.register_keras_serializable(package="mdnet")
class MultiScaleChannelConv(keras.layers.Layer):
    """Depthwise convolution with a different kernel size per channel group.

    The input channels are split into groups; each group is convolved
    depthwise with its own kernel size, all groups in parallel, and the
    results are concatenated back in channel order (MixConv-style). One layer
    thus mixes several receptive fields along the channel dimension at the
    cost of one depthwise convolution. With a single kernel size it is exactly
    `keras.layers.DepthwiseConv2D`.

    References:
        - [MixConv: Mixed Depthwise Convolutional Kernels](
            https://arxiv.org/abs/1907.09595) (Tan & Le, 2019)

    Args:
        kernel_sizes: list of odd ints, one kernel size per channel group.
            Defaults to `(3, 5, 7, 9)`.
        channel_split: optional list of ints, the number of channels of each
            group (same length as `kernel_sizes`, summing to the input
            channels). Defaults to `None`: equal groups.
        strides: int, the stride of every group's convolution. Defaults to 1.
        use_bias: bool, whether to add a bias. Defaults to `False`.
        kernel_initializer: initializer for the depthwise kernels.
            Defaults to `"he_normal"`.
        **kwargs: base layer arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: tensor of shape `(batch, height, width, channels)`.

    Returns:
        A tensor of shape `(batch, height // strides, width // strides,
        channels)` ("same" padding).

    Example:

    >>> layer = MultiScaleChannelConv(kernel_sizes=(3, 5, 7, 9))
    >>> tuple(layer(np.zeros((1, 16, 16, 32))).shape)
    (1, 16, 16, 32)
    """

    def __init__(
        self,
        kernel_sizes=(3, 5, 7, 9),
        channel_split=None,
        strides=1,
        use_bias=False,
        kernel_initializer="he_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        kernel_sizes = list(kernel_sizes)
        if not kernel_sizes or any(
            int(k) != k or k < 1 or k % 2 == 0 for k in kernel_sizes
        ):
            raise ValueError(
                "`kernel_sizes` must be a non-empty list of odd positive "
                f"ints. Received: kernel_sizes={kernel_sizes}"
            )
        if channel_split is not None and len(channel_split) != len(
            kernel_sizes
        ):
            raise ValueError(
                "`channel_split` needs one entry per kernel size. Received: "
                f"channel_split={channel_split}, kernel_sizes={kernel_sizes}"
            )
        self.kernel_sizes = kernel_sizes
        self.channel_split = (
            None if channel_split is None else list(channel_split)
        )
        self.strides = strides
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def group_sizes(self, channels):
        """Returns the number of channels of each kernel group."""
        if self.channel_split is None:
            return split_channels(channels, len(self.kernel_sizes))
        if sum(self.channel_split) != channels or min(self.channel_split) < 1:
            raise ValueError(
                "`channel_split` must be positive and sum to the input "
                f"channels ({channels}). Received: "
                f"channel_split={self.channel_split}"
            )
        return self.channel_split

    def build(self, input_shape):
        channels = input_shape[-1]
        self.kernels = [
            self.add_weight(
                shape=(size, size, group, 1),
                initializer=self.kernel_initializer,
                name=f"kernel_{size}x{size}",
            )
            for size, group in zip(
                self.kernel_sizes, self.group_sizes(channels)
            )
        ]
        self.bias = (
            self.add_weight(shape=(channels,), initializer="zeros", name="bias")
            if self.use_bias
            else None
        )

    def call(self, inputs):
        groups = self._split(inputs)
        outputs = [
            ops.depthwise_conv(
                group, kernel, strides=self.strides, padding="same"
            )
            for group, kernel in zip(groups, self.kernels)
        ]
        outputs = (
            outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, -1)
        )
        if self.bias is not None:
            outputs = outputs + self.bias
        return outputs

    def _split(self, inputs):
        # Equal groups split by count (TFLite SPLIT), others by slicing
        # (STRIDED_SLICE): ops.split at indices becomes SPLIT_V, which the
        # Edge TPU compiler cannot map and XNNPACK leaves to the CPU.
        if len(self.kernels) == 1:
            return [inputs]
        sizes = self.group_sizes(inputs.shape[-1])
        if self.channel_split is None:
            return ops.split(inputs, len(sizes), axis=-1)
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        return [
            inputs[..., start : start + size]
            for start, size in zip(starts, sizes)
        ]

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape

        def reduce(size):
            return None if size is None else -(-size // self.strides)

        return (batch, reduce(height), reduce(width), channels)

    def count_macs(self, input_shape):
        """Multiply-accumulates for one image of `input_shape` (HWC)."""
        _, height, width, _ = self.compute_output_shape((1, *input_shape))
        return sum(
            size * size * group * height * width
            for size, group in zip(
                self.kernel_sizes, self.group_sizes(input_shape[-1])
            )
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_sizes": self.kernel_sizes,
                "channel_split": self.channel_split,
                "strides": self.strides,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
            }
        )
        return config
