"""Differential attention (Differential Transformer, arXiv 2410.05258)."""

import math

import keras
from keras import ops

from mdnet_keras.layers.attention_base import SelfAttentionBase

RMS_NORM_EPSILON = 1e-5
HEAD_NORMS = ("rms", "batch")
# As MDNet's own BatchNorms: short CPU budgets need moving statistics that
# follow the weights within a few hundred steps.
BATCH_NORM_MOMENTUM = 0.9
BATCH_NORM_EPSILON = 1e-3


def lambda_init_for_depth(depth):
    """The paper's lambda_init schedule: `0.8 - 0.6 * exp(-0.3 * depth)`.

    Args:
        depth: int, 0-based index of the block in the network.
    """
    return 0.8 - 0.6 * math.exp(-0.3 * depth)


@keras.saving.register_keras_serializable(package="mdnet")
class DifferentialAttention(SelfAttentionBase):
    """Differential self-attention: the difference of two softmax maps.

    Queries and keys are projected into `2 * H` heads of size d and values
    into H heads of size 2d. For each head,

        A1 = softmax(Q1 K1^T / sqrt(d)),  A2 = softmax(Q2 K2^T / sqrt(d))
        out = (A1 - lambda * A2) V
        lambda = exp(lq1 . lk1) - exp(lq2 . lk2) + lambda_init

    with four learned d-vectors (the re-parameterised lambda) shared by all
    heads. Each head's output is RMS-normalised over its 2d features (with a
    learned scale), multiplied by `1 - lambda_init`, and the heads are
    projected back to the input width. Subtracting the second map cancels
    attention that both maps give to irrelevant tokens ("attention noise").

    Written for full-int8 TFLite: the RMS norm uses `x * x` (not a square
    op), heads are sliced from 4-D tensors, and softmax and the norm run in
    float32 under mixed precision.

    `head_norm="batch"` normalises each head's 2d features with BatchNorm
    instead (statistics over the batch and the tokens, shared by the heads,
    a learned scale and no shift, like the RMS norm's). At inference it is a
    fixed per-feature scale and offset, so the int8 graph has a MUL and an
    ADD where the RMS norm leaves an RSQRT, which XNNPACK does not run in
    int8 (every RSQRT splits its graph).

    References:
        - [Differential Transformer](https://arxiv.org/abs/2410.05258)
          (Ye et al., 2024)

    Args:
        num_heads: int, number H of differential heads.
        head_dim: optional int, size d of each query/key head. Defaults to
            `channels // (2 * num_heads)`.
        depth: int, 0-based index of the block, which sets lambda_init.
            Defaults to 0.
        lambda_init: optional float overriding the depth schedule.
        head_norm: `"rms"` (the paper's per-head RMS norm) or `"batch"`
            (BatchNorm over each head's features; no RSQRT at inference).
            Defaults to `"rms"`.
        use_bias: bool, whether the projections have biases. Defaults to
            `True`.
        kernel_initializer: initializer of the projection kernels. Defaults
            to `"glorot_uniform"`.
        **kwargs: base layer arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: tensor of shape `(batch, tokens, channels)`.
        return_attention_scores: bool, whether to also return a dict of
            attention maps, each `(batch, num_heads, tokens, tokens)`:
            `"softmax_1"` (A1), `"softmax_2"` (A2) and `"difference"`
            (A1 - lambda * A2).

    Returns:
        A tensor of shape `(batch, tokens, channels)`, and the maps if asked.

    Example:

    >>> layer = DifferentialAttention(num_heads=2, depth=3)
    >>> tuple(layer(np.zeros((1, 64, 32))).shape)
    (1, 64, 32)
    """

    def __init__(
        self, num_heads, depth=0, lambda_init=None, head_norm="rms", **kwargs
    ):
        super().__init__(num_heads, **kwargs)
        if head_norm not in HEAD_NORMS:
            raise ValueError(
                f"`head_norm` must be one of {HEAD_NORMS}. Received: "
                f"head_norm={head_norm!r}"
            )
        self.head_norm = head_norm
        self.depth = depth
        self.lambda_init = (
            lambda_init_for_depth(depth) if lambda_init is None else lambda_init
        )

    @property
    def value_heads(self):
        return self.num_heads

    def build(self, input_shape):
        super().build(input_shape)
        self.lambda_q1, self.lambda_k1, self.lambda_q2, self.lambda_k2 = (
            self.add_weight(
                shape=(self.key_dim,),
                initializer=keras.initializers.RandomNormal(stddev=0.1),
                dtype="float32",
                name=name,
            )
            for name in ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2")
        )
        if self.head_norm == "batch":
            self.head_batch_norm = keras.layers.BatchNormalization(
                momentum=BATCH_NORM_MOMENTUM,
                epsilon=BATCH_NORM_EPSILON,
                center=False,
                dtype=self.dtype_policy,
                name="head_norm",
            )
            self.head_batch_norm.build(
                (None, self.num_heads, None, 2 * self.key_dim)
            )
        else:
            self.norm_scale = self.add_weight(
                shape=(2 * self.key_dim,), initializer="ones", name="norm_scale"
            )

    def lambda_value(self):
        """The current scalar lambda."""
        return (
            ops.exp(ops.sum(self.lambda_q1 * self.lambda_k1))
            - ops.exp(ops.sum(self.lambda_q2 * self.lambda_k2))
            + self.lambda_init
        )

    def attend(self, query, key, value):
        probs = self.attention_probs(query, key)
        first = probs[:, : self.num_heads]
        second = probs[:, self.num_heads :]
        lam = ops.cast(self.lambda_value(), probs.dtype)
        difference = first - lam * second
        outputs = ops.matmul(difference, value)
        if self.head_norm == "batch":
            outputs = self.head_batch_norm(outputs)
        else:
            outputs = self.head_rms_norm(outputs)
        outputs = outputs * ops.cast(1.0 - self.lambda_init, outputs.dtype)
        maps = {"softmax_1": first, "softmax_2": second, "difference": difference}
        return outputs, maps

    def head_rms_norm(self, x):
        """RMS norm over each head's 2d features, in float32."""
        x32 = ops.cast(x, "float32")
        mean_square = ops.mean(x32 * x32, axis=-1, keepdims=True)
        x32 = x32 * ops.rsqrt(mean_square + RMS_NORM_EPSILON)
        return ops.cast(x32, self.compute_dtype) * self.norm_scale

    def extra_map_elements(self, tokens):
        return self.num_heads * tokens * tokens

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "depth": self.depth,
                "lambda_init": self.lambda_init,
                "head_norm": self.head_norm,
            }
        )
        return config
