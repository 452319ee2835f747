"""Fake quantization of weights and activations, as the int8 TFLite graph has it.

Both rest on `keras.quantizers.fake_quant_with_min_max_vars`, which under the
TensorFlow backend emits `tf.quantization.fake_quant_with_min_max_vars*`: the
TFLite converter reads those ops as the quantization ranges of the tensors
they produce and removes them, so the int8 model uses the ranges learned here
(tensors without one are calibrated as in post-training quantization).
"""

import keras
from keras import ops

NUM_BITS = 8
WEIGHT_LEVELS = 127.0  # int8 weights use [-127, 127]
# The converter nudges a range so that zero is exact; an empty range (a
# quantizer that never saw data) would divide by zero there.
MIN_RANGE = 1e-6
# TFLite's int8 SOFTMAX writes scale 1/256, zero point -128: [0, 255/256].
SOFTMAX_RANGE = (0.0, 255.0 / 256.0)


def fake_quant_weights(kernel, axis):
    """Per-channel symmetric int8 rounding of weights, as TFLite quantizes them.

    Scale `max|w| / 127` per channel of `axis`, zero point 0, values in
    [-127, 127] (the converter's narrow range); gradients pass straight
    through. The rounded kernel is the converter's own grid: it finds the
    same per-channel maximum and so the same int8 values. (Written out
    rather than with `fake_quant_with_min_max_vars(axis=...)`, whose
    per-channel form transposes the kernel, which the converter rejects for
    a depthwise kernel.)

    Args:
        kernel: a float tensor.
        axis: int, the channel axis (output channels; for a depthwise kernel
            `(kh, kw, channels, 1)`, axis 2).

    Returns:
        A tensor of `kernel`'s shape holding values of the int8 grid.

    Example:

    >>> w = np.array([[0.5, -1.0], [0.25, 0.3]], "float32")
    >>> q = np.asarray(fake_quant_weights(w, axis=-1))
    >>> [round(float(v) * 127 / 0.5) for v in q[:, 0]]
    [127, 64]
    """
    axis = axis % len(kernel.shape)
    reduce = tuple(i for i in range(len(kernel.shape)) if i != axis)
    bound = ops.max(ops.abs(kernel), axis=reduce, keepdims=True)
    scale = ops.maximum(bound, MIN_RANGE) / WEIGHT_LEVELS
    rounded = ops.clip(ops.round(kernel / scale), -WEIGHT_LEVELS, WEIGHT_LEVELS) * scale
    return kernel + ops.stop_gradient(rounded - kernel)


def fake_quant_range(x, minimum, maximum):
    """Per-tensor int8 fake quantization of `x` over `[minimum, maximum]`."""
    maximum = ops.maximum(maximum, minimum + MIN_RANGE)
    return keras.quantizers.fake_quant_with_min_max_vars(
        x, minimum, maximum, num_bits=NUM_BITS
    )


@keras.saving.register_keras_serializable(package="mdnet_qat")
class ActivationQuantizer(keras.layers.Layer):
    """Fake-quantizes a tensor to int8 over a range tracked while training.

    In training, while `tracking` is 1, the range follows the batches'
    min / max by an exponential moving average (the first batch sets it);
    `freeze()` (or setting `tracking` to 0) keeps it fixed, as it will be in
    the int8 model. The range always holds 0, as TFLite's does. With
    `fixed_range` the range is a constant (a softmax's [0, 255/256]).

    Args:
        momentum: float in [0, 1), weight of the old range in the moving
            average. Defaults to 0.99.
        fixed_range: optional `(min, max)` constant range. Defaults to None.
        **kwargs: base layer arguments, such as `name`.

    Call arguments:
        inputs: a float tensor.
        training: bool, whether to update the range (while tracking).

    Returns:
        `inputs` rounded to the int8 grid of the range (same shape).

    Example:

    >>> q = ActivationQuantizer()
    >>> _ = q(np.linspace(-1.0, 3.0, 9).astype("float32"), training=True)
    >>> [round(float(v), 2) for v in (q.min_value, q.max_value)]
    [-1.0, 3.0]
    """

    def __init__(self, momentum=0.99, fixed_range=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= momentum < 1:
            raise ValueError(f"`momentum` must be in [0, 1). Received: {momentum}")
        if fixed_range is not None and (
            len(fixed_range) != 2 or not fixed_range[0] <= 0 < fixed_range[1]
        ):
            raise ValueError(
                "`fixed_range` must be (min, max) with min <= 0 < max. "
                f"Received: {fixed_range}"
            )
        self.momentum = float(momentum)
        self.fixed_range = None if fixed_range is None else [float(v) for v in fixed_range]

    def build(self, input_shape):
        def scalar(name, value):
            return self.add_weight(
                shape=(), initializer=keras.initializers.Constant(value),
                trainable=False, dtype="float32", name=name,
            )

        self.min_value = scalar("min_value", 0.0)
        self.max_value = scalar("max_value", 0.0)
        self.tracking = scalar("tracking", 1.0)
        self.initialized = scalar("initialized", 0.0)

    def call(self, inputs, training=False):
        x = ops.cast(inputs, "float32")
        if self.fixed_range is not None:
            return fake_quant_range(x, *self.fixed_range)
        minimum, maximum = self.min_value, self.max_value
        if training:
            batch_min = ops.minimum(ops.stop_gradient(ops.min(x)), 0.0)
            batch_max = ops.maximum(ops.stop_gradient(ops.max(x)), 0.0)
            seen = self.initialized > 0
            track = self.tracking > 0
            m = self.momentum
            minimum = ops.where(
                track, ops.where(seen, m * minimum + (1 - m) * batch_min, batch_min), minimum
            )
            maximum = ops.where(
                track, ops.where(seen, m * maximum + (1 - m) * batch_max, batch_max), maximum
            )
            self.min_value.assign(minimum)
            self.max_value.assign(maximum)
            self.initialized.assign(ops.where(track, 1.0, self.initialized))
        return fake_quant_range(x, minimum, maximum)

    def in_range(self, x):
        """Fake-quantizes `x` over this quantizer's range, which it leaves as is.

        For an int8 op whose output keeps its input's scale (TFLite's MEAN).
        """
        if self.fixed_range is not None:
            return fake_quant_range(ops.cast(x, "float32"), *self.fixed_range)
        return fake_quant_range(ops.cast(x, "float32"), self.min_value, self.max_value)

    def step(self):
        """The int8 step of the current range (what one integer level is worth)."""
        low, high = self.fixed_range or (self.min_value, self.max_value)
        return ops.maximum(high - low, MIN_RANGE) / (2**NUM_BITS - 1)

    def freeze(self, frozen=True):
        """Stops (or restarts) tracking the range."""
        self.tracking.assign(0.0 if frozen else 1.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "fixed_range": self.fixed_range})
        return config
