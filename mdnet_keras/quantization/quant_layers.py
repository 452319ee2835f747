"""Quantization-aware twins of the layers with weights.

Each twin computes what its int8 TFLite counterpart computes: kernels rounded
per channel to the int8 grid after the folding the converter applies (a
BatchNormalization that follows a convolution goes into its kernel and bias;
its statistics are frozen, its scale and shift still train), and the tensors
that exist in the int8 graph fake-quantized. Tensors that the converter fuses
away (a query's scale, a convolution's output before its ReLU6) get no
quantizer, so the op list stays that of the float model.
"""

import keras
from keras import ops

from mdnet_keras.layers import DifferentialAttention
from mdnet_keras.layers import MultiScaleChannelConv
from mdnet_keras.layers import StandardAttention
from mdnet_keras.layers.differential_attention import RMS_NORM_EPSILON
from mdnet_keras.quantization.quantizers import SOFTMAX_RANGE
from mdnet_keras.quantization.quantizers import ActivationQuantizer
from mdnet_keras.quantization.quantizers import fake_quant_weights


def add_batch_norm_weights(layer, channels):
    """Gives `layer` the weights of a folded BatchNormalization (stats frozen)."""
    layer.gamma = layer.add_weight(shape=(channels,), initializer="ones", name="gamma")
    layer.beta = layer.add_weight(shape=(channels,), initializer="zeros", name="beta")
    layer.moving_mean = layer.add_weight(
        shape=(channels,), initializer="zeros", trainable=False, name="moving_mean")
    layer.moving_variance = layer.add_weight(
        shape=(channels,), initializer="ones", trainable=False, name="moving_variance")


def batch_norm_scale_shift(layer):
    """`(scale, shift)` of the folded BatchNormalization: y = x * scale + shift."""
    scale = layer.gamma * ops.rsqrt(layer.moving_variance + layer.batch_norm_epsilon)
    return scale, layer.beta - layer.moving_mean * scale


@keras.saving.register_keras_serializable(package="mdnet_qat")
class QuantConv(keras.layers.Layer):
    """Conv2D or DepthwiseConv2D with its BatchNormalization folded in.

    The kernel is multiplied per output channel by
    `gamma / sqrt(moving_variance + epsilon)` and the bias becomes
    `beta - moving_mean * gamma / sqrt(...)` (plus the scaled conv bias), as
    the TFLite converter folds them; the folded kernel is then fake-quantized
    per output channel.

    Args:
        filters: int, output channels, or None for a depthwise convolution.
        kernel_size: tuple `(kh, kw)`.
        strides: tuple of two ints. Defaults to `(1, 1)`.
        padding: `"same"` or `"valid"`. Defaults to `"same"`.
        dilation_rate: tuple of two ints. Defaults to `(1, 1)`.
        use_bias: bool, whether the convolution has its own bias.
        batch_norm_epsilon: float, the folded BatchNormalization's epsilon,
            or None when there is none. Defaults to None.
        **kwargs: base layer arguments, such as `name`.

    Call arguments:
        inputs: tensor `(batch, height, width, channels)`.

    Returns:
        The convolution's output, as the folded int8 kernel computes it.

    Example:

    >>> layer = QuantConv(8, (3, 3), batch_norm_epsilon=1e-3)
    >>> tuple(layer(np.zeros((1, 8, 8, 4), "float32")).shape)
    (1, 8, 8, 8)
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="same",
                 dilation_rate=(1, 1), use_bias=False, batch_norm_epsilon=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = tuple(kernel_size)
        self.strides = tuple(strides)
        self.padding = padding
        self.dilation_rate = tuple(dilation_rate)
        self.use_bias = use_bias
        self.batch_norm_epsilon = batch_norm_epsilon

    @property
    def depthwise(self):
        return self.filters is None

    def build(self, input_shape):
        channels = input_shape[-1]
        out = channels if self.depthwise else self.filters
        shape = self.kernel_size + ((channels, 1) if self.depthwise else (channels, out))
        self.kernel = self.add_weight(shape=shape, name="kernel")
        self.bias = (self.add_weight(shape=(out,), initializer="zeros", name="bias")
                     if self.use_bias else None)
        if self.batch_norm_epsilon is not None:
            add_batch_norm_weights(self, out)

    def folded(self):
        """The folded float kernel and bias (before fake quantization)."""
        kernel, bias = self.kernel, self.bias
        if self.batch_norm_epsilon is None:
            return kernel, bias
        scale, shift = batch_norm_scale_shift(self)
        if bias is not None:
            shift = shift + bias * scale
        per_channel = ops.reshape(scale, (-1, 1)) if self.depthwise else scale
        return kernel * per_channel, shift

    def quantized_kernel(self):
        kernel, _ = self.folded()
        return fake_quant_weights(kernel, axis=2 if self.depthwise else -1)

    def call(self, inputs):
        _, bias = self.folded()
        kernel = self.quantized_kernel()
        if self.depthwise:
            x = ops.depthwise_conv(inputs, kernel, strides=self.strides,
                                   padding=self.padding,
                                   dilation_rate=self.dilation_rate)
        else:
            x = ops.conv(inputs, kernel, strides=self.strides, padding=self.padding,
                         dilation_rate=self.dilation_rate)
        return x if bias is None else x + bias

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters, "kernel_size": self.kernel_size,
            "strides": self.strides, "padding": self.padding,
            "dilation_rate": self.dilation_rate, "use_bias": self.use_bias,
            "batch_norm_epsilon": self.batch_norm_epsilon,
        })
        return config


@keras.saving.register_keras_serializable(package="mdnet_qat")
class QuantDense(keras.layers.Dense):
    """Dense with a per-output-channel int8 kernel and a quantized output.

    The pre-activation output is fake-quantized (unless `quantize_output`
    is False, where the converter fuses what follows into the matmul), and
    a softmax's output gets TFLite's fixed int8 softmax range.

    Args:
        units: int, output width.
        quantize_output: bool, whether to fake-quantize the matmul's output.
            Defaults to True.
        **kwargs: `keras.layers.Dense` arguments.

    Example:

    >>> layer = QuantDense(4, activation="softmax")
    >>> tuple(layer(np.zeros((2, 8), "float32")).shape)
    (2, 4)
    """

    def __init__(self, units, quantize_output=True, **kwargs):
        super().__init__(units, **kwargs)
        self.quantize_output = quantize_output

    def build(self, input_shape):
        super().build(input_shape)
        self.output_quantizer = (ActivationQuantizer(name="output_quantizer")
                                 if self.quantize_output else None)
        self.softmax_quantizer = (
            ActivationQuantizer(fixed_range=SOFTMAX_RANGE, name="softmax_quantizer")
            if self.activation is keras.activations.softmax else None)
        for quantizer in (self.output_quantizer, self.softmax_quantizer):
            if quantizer is not None:
                quantizer.build(())

    def call(self, inputs, training=False):
        x = ops.matmul(inputs, fake_quant_weights(self.kernel, axis=-1))
        if self.bias is not None:
            x = x + self.bias
        if self.output_quantizer is not None:
            x = self.output_quantizer(x, training=training)
        if self.activation is not None:
            x = self.activation(x)
        if self.softmax_quantizer is not None:
            x = self.softmax_quantizer(x)
        return x

    def get_config(self):
        config = super().get_config()
        config["quantize_output"] = self.quantize_output
        return config


@keras.saving.register_keras_serializable(package="mdnet_qat")
class QuantMultiScaleChannelConv(MultiScaleChannelConv):
    """`MultiScaleChannelConv` with per-channel int8 kernels and its BN, as in int8.

    The converter cannot fold the BatchNormalization after the concatenated
    groups into the kernels: it moves the shift into the depthwise biases
    and keeps the scale as a MUL. So the concatenation holds
    `depthwise(x) + shift / scale` in one int8 tensor (quantized here), and
    the MUL by `scale` follows.

    Args:
        batch_norm_epsilon: float, the epsilon of the folded
            BatchNormalization, or None when there is none. Defaults to None.
        **kwargs: `MultiScaleChannelConv` arguments.

    Example:

    >>> layer = QuantMultiScaleChannelConv(kernel_sizes=(3, 5), batch_norm_epsilon=1e-3)
    >>> tuple(layer(np.zeros((1, 8, 8, 8), "float32")).shape)
    (1, 8, 8, 8)
    """

    def __init__(self, batch_norm_epsilon=None, **kwargs):
        super().__init__(**kwargs)
        self.batch_norm_epsilon = batch_norm_epsilon

    def build(self, input_shape):
        super().build(input_shape)
        if self.batch_norm_epsilon is None:
            return
        add_batch_norm_weights(self, input_shape[-1])
        self.output_quantizer = ActivationQuantizer(name="output_quantizer")
        self.output_quantizer.build(())

    def _depthwise(self, inputs, kernel, *args):
        return super()._depthwise(inputs, fake_quant_weights(kernel, axis=2), *args)

    def call(self, inputs, training=False):
        x = super().call(inputs)
        if self.batch_norm_epsilon is None:
            return x
        scale, shift = batch_norm_scale_shift(self)
        return self.output_quantizer(x + shift / scale, training=training) * scale

    def get_config(self):
        config = super().get_config()
        config["batch_norm_epsilon"] = self.batch_norm_epsilon
        return config


class QuantAttentionMixin:
    """Quantized projections, matmul operands, softmax and head norm of attention.

    Quantized: keys, values and the layer's output (their projections'
    outputs), the scaled queries, the score maps, the softmax maps and, per
    subclass (`INTERNAL`), the tensors after them that the int8 graph
    requantizes; every projection kernel per channel.
    """

    INTERNAL = ("query", "score", "context")

    def build(self, input_shape):
        super().build(input_shape)
        for name in ("query", "key", "value", "output"):
            dense = getattr(self, f"{name}_dense")
            twin = QuantDense(
                dense.units, use_bias=dense.use_bias, quantize_output=name != "query",
                dtype=self.dtype_policy, name=name)
            twin.build(tuple(input_shape[:-1]) + (dense.kernel.shape[0],))
            self._tracker.untrack(dense)
            setattr(self, f"{name}_dense", twin)
        self.internal_quantizers = {
            name: ActivationQuantizer(name=f"{name}_quantizer") for name in self.INTERNAL}
        self.softmax_quantizer = ActivationQuantizer(
            fixed_range=SOFTMAX_RANGE, name="softmax_quantizer")
        for quantizer in (*self.internal_quantizers.values(), self.softmax_quantizer):
            quantizer.build(())

    def fake_quant(self, name, x):
        return self.internal_quantizers[name](x, training=getattr(self, "_training", False))

    def call(self, inputs, return_attention_scores=False, training=False):
        self._training = training
        return super().call(inputs, return_attention_scores=return_attention_scores)

    def attention_probs(self, query, key):
        query = self.fake_quant("query", query * ops.cast(self.key_dim**-0.5, query.dtype))
        scores = self.fake_quant("score", ops.matmul(query, ops.transpose(key, (0, 1, 3, 2))))
        probs = self.softmax_quantizer(ops.softmax(ops.cast(scores, "float32"), axis=-1))
        return ops.cast(probs, self.compute_dtype)


@keras.saving.register_keras_serializable(package="mdnet_qat")
class QuantDifferentialAttention(QuantAttentionMixin, DifferentialAttention):
    """`DifferentialAttention` with int8 fake quantization (see the mixin).

    Also quantized: `lambda * A2`, the difference map, its product with the
    values and every step of the head RMS norm (int8 ops in TFLite), or with
    `head_norm="batch"` the head BatchNorm's output (at inference a fixed
    scale and offset; it trains on batch statistics like any BatchNorm).

    Example:

    >>> layer = QuantDifferentialAttention(num_heads=2)
    >>> tuple(layer(np.zeros((1, 16, 32), "float32")).shape)
    (1, 16, 32)
    """

    INTERNAL = QuantAttentionMixin.INTERNAL + (
        "weighted", "difference", "square", "mean_square", "rsqrt", "normalized")

    def attend(self, query, key, value):
        probs = self.attention_probs(query, key)
        first = probs[:, : self.num_heads]
        second = probs[:, self.num_heads :]
        weighted = self.fake_quant("weighted", ops.cast(self.lambda_value(), probs.dtype) * second)
        difference = self.fake_quant("difference", first - weighted)
        context = self.fake_quant("context", ops.matmul(difference, value))
        if self.head_norm == "batch":
            outputs = self.fake_quant("normalized", self.head_batch_norm(
                context, training=getattr(self, "_training", False)))
        else:
            outputs = self.head_rms_norm(context)
        outputs = outputs * ops.cast(1.0 - self.lambda_init, outputs.dtype)
        return outputs, {"softmax_1": first, "softmax_2": second, "difference": difference}

    def head_rms_norm(self, x):
        # Every tensor of the int8 norm is rounded as there: the int8 MEAN keeps
        # the squares' scale, so a small mean square rounds to 0 and the int8
        # RSQRT saturates at its range's top. Left in float, these rows made
        # the fine-tuned twin and its int8 model disagree (see
        # benchmarks/results/qat/README.md).
        x32 = ops.cast(x, "float32")
        square_quantizer = self.internal_quantizers["square"]
        square = self.fake_quant("square", x32 * x32)
        mean_square = square_quantizer.in_range(ops.mean(square, axis=-1, keepdims=True))
        shifted = self.fake_quant("mean_square", mean_square + RMS_NORM_EPSILON)
        if getattr(self, "_training", False):
            # Training only (no op in the exported graph): a rounded 0 gets
            # the rsqrt of one step, so its gradient is finite and the rsqrt
            # range tops out there, where int8 saturates rsqrt(0).
            shifted = ops.maximum(shifted, self.internal_quantizers["mean_square"].step())
        inverse = self.fake_quant("rsqrt", ops.rsqrt(shifted))
        normalized = self.fake_quant("normalized", x32 * inverse)
        return ops.cast(normalized, self.compute_dtype) * self.norm_scale


@keras.saving.register_keras_serializable(package="mdnet_qat")
class QuantStandardAttention(QuantAttentionMixin, StandardAttention):
    """`StandardAttention` with int8 fake quantization (see the mixin).

    Example:

    >>> layer = QuantStandardAttention(num_heads=2)
    >>> tuple(layer(np.zeros((1, 16, 32), "float32")).shape)
    (1, 16, 32)
    """

    def attend(self, query, key, value):
        probs = self.attention_probs(query, key)
        return self.fake_quant("context", ops.matmul(probs, value)), probs
