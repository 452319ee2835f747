"""Shared parts of MDNet's self-attention layers: projections and head layout.

Tensors stay at most 4-D (TFLite Micro's STRIDED_SLICE rejects 5-D inputs), and
softmax and normalisation run in float32 under mixed precision.
"""

import keras
from keras import ops

from mdnet_keras.layers.initializers import unshared


class SelfAttentionBase(keras.layers.Layer):
    """Self-attention over a token sequence `(batch, tokens, channels)`.

    Subclasses define `value_heads`, `value_head_dim` and `attend`. Queries
    and keys always have `2 * num_heads` heads of size `head_dim`, so the
    differential layer and its standard counterpart have the same shape.

    Args:
        num_heads: int, number of attention heads H. Queries and keys get
            `2 * H` heads.
        head_dim: optional int, size d of each query/key head. Defaults to
            `channels // (2 * num_heads)`.
        use_bias: bool, whether the projections have biases. Defaults to
            `True`.
        kernel_initializer: initializer of the projection kernels. Defaults
            to `"glorot_uniform"`.
        **kwargs: base layer arguments, such as `name` and `dtype`.
    """

    def __init__(
        self,
        num_heads,
        head_dim=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_heads) != num_heads or num_heads < 1:
            raise ValueError(
                f"`num_heads` must be a positive int. Received: {num_heads}"
            )
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        channels = input_shape[-1]
        if self.head_dim is None and channels % (2 * self.num_heads):
            raise ValueError(
                f"{channels} channels cannot be split into 2 * num_heads = "
                f"{2 * self.num_heads} heads. Pass `head_dim` or change "
                "`num_heads`."
            )
        self.key_dim = self.head_dim or channels // (2 * self.num_heads)
        inner = 2 * self.num_heads * self.key_dim

        def dense(name, units, input_width):
            layer = keras.layers.Dense(
                units,
                use_bias=self.use_bias,
                kernel_initializer=unshared(self.kernel_initializer),
                dtype=self.dtype_policy,
                name=name,
            )
            layer.build(tuple(input_shape[:-1]) + (input_width,))
            return layer

        self.query_dense = dense("query", inner, channels)
        self.key_dense = dense("key", inner, channels)
        self.value_dense = dense("value", inner, channels)
        self.output_dense = dense("output", channels, inner)

    def split_heads(self, x, heads):
        """(B, N, heads * dim) -> (B, heads, N, dim)."""
        tokens, width = x.shape[1], x.shape[2]
        x = ops.reshape(x, (-1, tokens, heads, width // heads))
        return ops.transpose(x, (0, 2, 1, 3))

    def merge_heads(self, x):
        """(B, heads, N, dim) -> (B, N, heads * dim)."""
        _, heads, tokens, dim = x.shape
        x = ops.transpose(x, (0, 2, 1, 3))
        return ops.reshape(x, (-1, tokens, heads * dim))

    def attention_probs(self, query, key):
        """Softmax(QK^T / sqrt(d)) in float32, cast back to compute dtype."""
        query = query * ops.cast(self.key_dim**-0.5, query.dtype)
        scores = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2)))
        probs = ops.softmax(ops.cast(scores, "float32"), axis=-1)
        return ops.cast(probs, self.compute_dtype)

    def call(self, inputs, return_attention_scores=False):
        query = self.split_heads(self.query_dense(inputs), 2 * self.num_heads)
        key = self.split_heads(self.key_dense(inputs), 2 * self.num_heads)
        value = self.split_heads(self.value_dense(inputs), self.value_heads)
        outputs, scores = self.attend(query, key, value)
        outputs = self.output_dense(self.merge_heads(outputs))
        if return_attention_scores:
            return outputs, scores
        return outputs

    def count_macs(self, input_shape):
        """Multiply-accumulates for one sequence of `input_shape` (N, C),
        the projections and both attention matmuls included."""
        tokens, channels = input_shape
        key_dim = self.head_dim or channels // (2 * self.num_heads)
        inner = 2 * self.num_heads * key_dim
        projections = 4 * tokens * channels * inner
        attention = 2 * tokens * tokens * inner
        return projections + attention

    def peak_internal_elements(self, input_shape):
        """The most elements that the layer's own intermediate tensors
        (projections, score maps, attention output) hold at one time."""
        tokens, channels = input_shape
        key_dim = self.head_dim or channels // (2 * self.num_heads)
        projection = tokens * 2 * self.num_heads * key_dim
        maps = 2 * self.num_heads * tokens * tokens
        return 3 * projection + maps + self.extra_map_elements(tokens)

    def extra_map_elements(self, tokens):
        return 0

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "head_dim": self.head_dim,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
            }
        )
        return config
