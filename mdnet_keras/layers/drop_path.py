"""Stochastic depth: drops whole residual branches per sample."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mdnet")
class DropPath(keras.layers.Layer):
    """Zeroes a residual branch for a random subset of the batch in training.

    Kept samples are scaled by `1 / (1 - rate)` so the expected value is
    unchanged; at inference the layer is the identity (it leaves no op in an
    exported model).

    References:
        - [Deep Networks with Stochastic Depth](
            https://arxiv.org/abs/1603.09382) (Huang et al., 2016)

    Args:
        rate: float in [0, 1), the probability of dropping the branch.
        seed: optional int, seed of the random generator.
        **kwargs: base layer arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: the residual branch, any shape with the batch first.
        training: bool, whether to drop.

    Example:

    >>> tuple(DropPath(0.1)(np.ones((2, 4, 4, 8)), training=False).shape)
    (2, 4, 4, 8)
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise ValueError(f"`rate` must be in [0, 1). Received: {rate}")
        self.rate = rate
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        keep = 1.0 - self.rate
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        noise = keras.random.uniform(
            shape, dtype=inputs.dtype, seed=self.seed_generator
        )
        mask = ops.floor(keep + noise)
        return inputs * mask / keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config
