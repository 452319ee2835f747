"""Per-channel normalisation of raw 0..255 pixels, on every backend."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mdnet")
class PixelNormalization(keras.layers.Layer):
    """Maps raw pixels to `(x / 255 - mean) / std`, per channel.

    Written with `keras.ops` because Keras' `Rescaling` and `Normalization`
    layers need TensorFlow even under the JAX backend. It exports to TFLite
    as one MUL and one ADD with constant operands, so a deployed model takes
    raw 0..255 pixels. The input's channel count is checked, so a grey image
    given to an RGB model fails instead of silently broadcasting.

    Args:
        mean: list of floats, per-channel mean on the 0..1 scale.
        std: list of floats, per-channel standard deviation, same length.
        **kwargs: base layer arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: tensor of shape `(batch, height, width, len(mean))`.

    Returns:
        The normalised tensor, same shape.

    Example:

    >>> layer = PixelNormalization(mean=[0.5], std=[0.25])
    >>> float(layer(np.full((1, 2, 2, 1), 255.0))[0, 0, 0, 0])
    2.0
    """

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(
                "`mean` and `std` need one entry per channel and a positive "
                f"std. Received: mean={mean}, std={std}"
            )
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        self.input_spec = keras.layers.InputSpec(
            ndim=4, axes={-1: len(self.mean)}
        )

    def call(self, inputs):
        scale = ops.convert_to_tensor(
            [1.0 / (255.0 * s) for s in self.std], self.compute_dtype
        )
        offset = ops.convert_to_tensor(
            [-m / s for m, s in zip(self.mean, self.std)], self.compute_dtype
        )
        return ops.cast(inputs, self.compute_dtype) * scale + offset

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mean": self.mean, "std": self.std})
        return config
