"""Plain softmax multi-head self-attention, shaped like DifferentialAttention."""

import keras
from keras import ops

from mdnet_keras.layers.attention_base import SelfAttentionBase


@keras.saving.register_keras_serializable(package="mdnet")
class StandardAttention(SelfAttentionBase):
    """Multi-head softmax self-attention with `2 * num_heads` heads.

    The ablation baseline for `DifferentialAttention`: the same query, key,
    value and output projections (parameter count within 1%), but every one
    of the `2 * num_heads` heads is an ordinary softmax attention
    `softmax(Q K^T / sqrt(d)) V`.

    Args:
        num_heads: int, H; the layer has `2 * H` heads of size `head_dim`.
        head_dim: optional int, size d of each head. Defaults to
            `channels // (2 * num_heads)`.
        use_bias: bool, whether the projections have biases. Defaults to
            `True`.
        kernel_initializer: initializer of the projection kernels. Defaults
            to `"glorot_uniform"`.
        **kwargs: base layer arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: tensor of shape `(batch, tokens, channels)`.
        return_attention_scores: bool, whether to also return the attention
            maps, shape `(batch, 2 * num_heads, tokens, tokens)`.

    Returns:
        A tensor of shape `(batch, tokens, channels)`, and the attention maps
        if asked for.

    Example:

    >>> layer = StandardAttention(num_heads=2)
    >>> tuple(layer(np.zeros((1, 64, 32))).shape)
    (1, 64, 32)
    """

    @property
    def value_heads(self):
        return 2 * self.num_heads

    def attend(self, query, key, value):
        probs = self.attention_probs(query, key)
        return ops.matmul(probs, value), probs
