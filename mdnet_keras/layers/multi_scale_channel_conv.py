"""Multi-scale depthwise convolution along the channel dimension."""

import keras
from keras import ops

from mdnet_keras.layers.initializers import unshared


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


def same_padding(size, kernel_size, strides):
    """Output size and (before, after) padding of a "same" convolution.

    Args:
        size: int, input size along one spatial axis.
        kernel_size: int, kernel size along that axis.
        strides: int, the stride.

    Returns:
        A tuple `(output_size, pad_before, pad_after)`, as TensorFlow and
        TFLite pad: the odd pixel goes after.
    """
    output_size = -(-size // strides)
    total = max((output_size - 1) * strides + kernel_size - size, 0)
    return output_size, total // 2, total - total // 2


def live_kernel_range(size, kernel_size, strides):
    """The kernel rows of a "same" convolution that ever touch a real pixel.

    Rows outside the range only ever multiply padding (a 9x9 kernel on a
    4x4 map, say, reaches real pixels with its central 7x7 only), so
    dropping them changes nothing.

    Args:
        size: int, input size along one spatial axis.
        kernel_size: int, kernel size along that axis.
        strides: int, the stride.

    Returns:
        A tuple `(start, stop, output_size, pad_before, pad_after)`: the live
        rows are `start:stop`, and the padding is what a "valid"
        convolution with those rows needs to give the "same" result.
    """
    output_size, before, _ = same_padding(size, kernel_size, strides)
    start = max(0, before - strides * (output_size - 1))
    stop = min(kernel_size, size + before)
    after = max(0, strides * (output_size - 1) + stop - before - size)
    return start, stop, output_size, before - start, after


def kernel_pieces(height, width, max_taps):
    """Tiles a `height x width` kernel with rectangles of at most `max_taps`.

    Bands of full-height columns (as wide as `max_taps` allows), the rows
    left below them in a band of their own: the tiling with the fewest
    pieces, then the fewest pieces of more than 9 taps, over all column
    widths. A 7x7 kernel and 25 taps give three pieces (7x3, 7x3, 7x1), a
    9x9 kernel four (8x3 three times, 1x9).

    Args:
        height: int, kernel height.
        width: int, kernel width.
        max_taps: int, the most taps (height * width) of one piece.

    Returns:
        A list of `(row_start, row_stop, col_start, col_stop)` tuples.
    """
    if height * width <= max_taps:
        return [(0, height, 0, width)]
    best = None
    for piece_width in range(1, min(width, max_taps) + 1):
        piece_height = min(height, max_taps // piece_width)
        body = height // piece_height * piece_height
        pieces = [
            (row, row + piece_height, col, min(col + piece_width, width))
            for row in range(0, body, piece_height)
            for col in range(0, width, piece_width)
        ]
        if body < height:
            rest_width = max(1, max_taps // (height - body))
            pieces += [
                (body, height, col, min(col + rest_width, width))
                for col in range(0, width, rest_width)
            ]
        key = (
            len(pieces),
            sum((r1 - r0) * (c1 - c0) > 9 for r0, r1, c0, c1 in pieces),
        )
        if best is None or key < best[0]:
            best = (key, pieces)
    return best[1]


def pieced_depthwise_conv(inputs, kernel, strides, max_taps):
    """A "same" depthwise convolution as a sum of small-kernel ones.

    The kernel's dead rows and columns (see `live_kernel_range`) are
    dropped, the input is padded once, and each rectangle of
    `kernel_pieces` is a "valid" depthwise convolution over its own window
    of the padded input; the results are summed. Equal to
    `ops.depthwise_conv(inputs, kernel, strides, padding="same")` up to
    float rounding.

    Args:
        inputs: tensor `(batch, height, width, channels)` with a static
            height and width.
        kernel: tensor `(k, k, channels, 1)`.
        strides: int, the stride.
        max_taps: int, the most taps of one piece.

    Returns:
        The convolution's output.
    """
    height, width = inputs.shape[1], inputs.shape[2]
    row0, row1, out_h, top, bottom = live_kernel_range(
        height, kernel.shape[0], strides
    )
    col0, col1, out_w, left, right = live_kernel_range(
        width, kernel.shape[1], strides
    )
    kernel = kernel[row0:row1, col0:col1]
    padded = ops.pad(inputs, ((0, 0), (top, bottom), (left, right), (0, 0)))
    outputs = None
    for r0, r1, c0, c1 in kernel_pieces(row1 - row0, col1 - col0, max_taps):
        window = padded[
            :,
            r0 : r0 + strides * (out_h - 1) + r1 - r0,
            c0 : c0 + strides * (out_w - 1) + c1 - c0,
            :,
        ]
        piece = ops.depthwise_conv(
            window, kernel[r0:r1, c0:c1], strides=strides, padding="valid"
        )
        outputs = piece if outputs is None else outputs + piece
    return outputs


def same_subsample(outputs, size, strides):
    """Every `strides`-th pixel of a stride-1 "same" convolution's output,
    the pixels that the strided "same" convolution computes.

    A strided "same" convolution centres its outputs at `strides * i +
    offset`, `offset` set by how TensorFlow and TFLite split the padding
    (see `same_padding`). The subsample is a 1x1 depthwise convolution of
    ones at the stride: XNNPACK leaves a strided STRIDED_SLICE and 1x1
    pooling out of its graph and runs this.

    Args:
        outputs: tensor `(batch, height, width, channels)`, stride 1.
        size: tuple `(height, width)` of the input, static.
        strides: int, the stride.

    Returns:
        The subsampled tensor.
    """
    offsets = []
    for n in size:
        output_size = -(-n // strides)
        offsets.append(-(((output_size - 1) * strides - n + 1) // 2))
    outputs = outputs[:, offsets[0] :, offsets[1] :, :]
    dtype = keras.backend.standardize_dtype(outputs.dtype)
    ones = ops.ones((1, 1, outputs.shape[-1], 1), dtype)
    return ops.depthwise_conv(outputs, ones, strides=strides, padding="valid")


@keras.saving.register_keras_serializable(package="mdnet")
class MultiScaleChannelConv(keras.layers.Layer):
    """Depthwise convolution with a different kernel size per channel group.

    The input channels are split into groups; each group is convolved
    depthwise with its own kernel size, all groups in parallel, and the
    results are concatenated back in channel order (MixConv-style). One layer
    thus mixes several receptive fields along the channel dimension at the
    cost of one depthwise convolution. With a single kernel size it is exactly
    `keras.layers.DepthwiseConv2D`.

    Groups may be dilated instead of large: `kernel_sizes=(3, 3, 3, 3)` with
    `dilation_rates=(1, 2, 3, 4)` gives the receptive fields of 3/5/7/9
    kernels at 9 taps each. XNNPACK and TFLite Micro run a dilated
    depthwise kernel at the cost of its taps; a large dense kernel costs
    its full size (and above 25 taps leaves XNNPACK's fast path).

    Groups may also be chained (`cascade=True`, Res2Net's hierarchical
    connections): each group after the first adds the previous group's
    output to its input before its convolution, so the receptive field
    grows from group to group; `kernel_sizes=(3, 3, 3, 3)` again sees 3/5/7/9
    pixels across, at 9 taps per group and one addition per pixel, with
    undilated kernels.

    References:
        - [MixConv: Mixed Depthwise Convolutional Kernels](
            https://arxiv.org/abs/1907.09595) (Tan & Le, 2019)
        - [Multi-Scale Context Aggregation by Dilated Convolutions](
            https://arxiv.org/abs/1511.07122) (Yu & Koltun, 2016)
        - [Res2Net: A New Multi-scale Backbone Architecture](
            https://arxiv.org/abs/1904.01169) (Gao et al., 2019)

    Args:
        kernel_sizes: list of odd ints, one kernel size per channel group.
            Defaults to `(3, 5, 7, 9)`.
        channel_split: optional list of ints, the number of channels of each
            group (same length as `kernel_sizes`, summing to the input
            channels). Defaults to `None`: equal groups.
        strides: int, the stride of every group's convolution. Defaults to 1.
            With a dilated group and a stride above 1 (which TensorFlow's
            convolutions do not take together), or with `cascade`, every
            group is computed at stride 1 and the result subsampled
            (`same_subsample`): the same values as a strided convolution.
        dilation_rates: optional list of positive ints, one dilation rate
            per group (same length as `kernel_sizes`). A group of kernel
            size k and dilation d sees `d * (k - 1) + 1` pixels across.
            Defaults to `None`: no dilation.
        use_bias: bool, whether to add a bias. Defaults to `False`.
        kernel_initializer: initializer for the depthwise kernels.
            Defaults to `"he_normal"`.
        max_kernel_taps: optional int. When set, a group whose kernel has
            more taps (k * k) than this is computed as a sum of depthwise
            convolutions over rectangular pieces of its kernel, each with at
            most this many taps (see `pieced_depthwise_conv`): the same
            result up to float rounding, from the same weights. It is an
            export setting: XNNPACK, LiteRT's CPU delegate, runs depthwise
            kernels of up to 25 taps with fast single-pass code and larger
            ones (7x7, 9x9) several times slower per tap, so
            `mdnet_keras.export.convert_model` sets 25. Inputs with a
            dynamic height or width get one convolution per group anyway.
            Defaults to `None`: one depthwise convolution per group.
        cascade: bool, add each group's output to the next group's input
            before that group's convolution (the groups must be of equal
            size). Defaults to `False`: independent groups.
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
    >>> dilated = MultiScaleChannelConv((3, 3, 3, 3), dilation_rates=(1, 2, 3, 4))
    >>> dilated.receptive_fields()
    [3, 5, 7, 9]
    >>> MultiScaleChannelConv((3, 3, 3, 3), cascade=True).receptive_fields()
    [3, 5, 7, 9]
    """

    def __init__(
        self,
        kernel_sizes=(3, 5, 7, 9),
        channel_split=None,
        strides=1,
        use_bias=False,
        kernel_initializer="he_normal",
        max_kernel_taps=None,
        dilation_rates=None,
        cascade=False,
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
        if dilation_rates is not None and (
            len(dilation_rates) != len(kernel_sizes)
            or any(int(d) != d or d < 1 for d in dilation_rates)
        ):
            raise ValueError(
                "`dilation_rates` must be None or one positive int per kernel "
                f"size. Received: dilation_rates={dilation_rates}, "
                f"kernel_sizes={kernel_sizes}"
            )
        self.kernel_sizes = kernel_sizes
        self.dilation_rates = (
            None if dilation_rates is None else [int(d) for d in dilation_rates]
        )
        self.channel_split = (
            None if channel_split is None else list(channel_split)
        )
        self.strides = strides
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        if max_kernel_taps is not None and (
            int(max_kernel_taps) != max_kernel_taps or max_kernel_taps < 1
        ):
            raise ValueError(
                "`max_kernel_taps` must be None or a positive int. Received: "
                f"max_kernel_taps={max_kernel_taps}"
            )
        self.max_kernel_taps = max_kernel_taps
        if cascade and channel_split is not None and len(set(channel_split)) > 1:
            raise ValueError(
                "`cascade` adds each group's output to the next group's "
                "input, so the groups must be of equal size. Received: "
                f"channel_split={channel_split}"
            )
        self.cascade = bool(cascade)

    def dilations(self):
        """The dilation rate of each group."""
        return self.dilation_rates or [1] * len(self.kernel_sizes)

    def receptive_fields(self):
        """The pixels each group sees across: `d * (k - 1) + 1`, and with
        `cascade` also what the groups before it saw."""
        fields = [
            d * (k - 1) + 1 for k, d in zip(self.kernel_sizes, self.dilations())
        ]
        if self.cascade:
            fields = [
                sum(fields[: i + 1]) - i for i in range(len(fields))
            ]
        return fields

    def subsamples(self):
        """Whether the groups run at stride 1 and the output is subsampled."""
        return self.strides > 1 and (max(self.dilations()) > 1 or self.cascade)

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
                initializer=unshared(self.kernel_initializer),
                name=f"kernel_{size}x{size}"
                + (f"_dilation{dilation}" if dilation > 1 else ""),
            )
            for size, dilation, group in zip(
                self.kernel_sizes, self.dilations(), self.group_sizes(channels)
            )
        ]
        self.bias = (
            self.add_weight(shape=(channels,), initializer="zeros", name="bias")
            if self.use_bias
            else None
        )

    def call(self, inputs):
        groups = self._split(inputs)
        strides = 1 if self.subsamples() else self.strides
        outputs = []
        for group, kernel, dilation in zip(
            groups, self.kernels, self.dilations()
        ):
            if self.cascade and outputs:
                group = group + outputs[-1]
            outputs.append(self._depthwise(group, kernel, strides, dilation))
        outputs = (
            outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, -1)
        )
        if self.subsamples():
            outputs = same_subsample(outputs, inputs.shape[1:3], self.strides)
        if self.bias is not None:
            outputs = outputs + self.bias
        return outputs

    def _depthwise(self, inputs, kernel, strides, dilation):
        size = kernel.shape[0]
        if (
            self.max_kernel_taps is None
            or size * size <= self.max_kernel_taps
            or None in inputs.shape[1:3]
            or dilation > 1
        ):
            return ops.depthwise_conv(
                inputs,
                kernel,
                strides=strides,
                padding="same",
                dilation_rate=dilation,
            )
        return pieced_depthwise_conv(
            inputs, kernel, strides, self.max_kernel_taps
        )

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
        """Multiply-accumulates for one image of `input_shape` (HWC): the
        taps of every group at the resolution it is computed at, and the
        subsample's one per output element."""
        _, height, width, channels = self.compute_output_shape(
            (1, *input_shape)
        )
        subsample = 0
        if self.subsamples():
            subsample = height * width * channels
            height, width = input_shape[:2]
        return subsample + sum(
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
                "max_kernel_taps": self.max_kernel_taps,
                "dilation_rates": self.dilation_rates,
                "cascade": self.cascade,
            }
        )
        return config
