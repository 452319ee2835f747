"""MDNet in the graph form that TFLite Micro runs in the least memory.

The same float function as the trained model, from the same weights, with
the BatchNorms that the converter leaves behind folded and each
multi-scale depthwise step written per channel group:

- a `MultiScaleConvBlock` (expand, `MultiScaleChannelConv`, project) runs
  each kernel group on its own: a 1x1 expansion to the group's channels,
  its depthwise kernel, with the BatchNorms and ReLU6 folded into both,
  then the concatenation and the projection. The converter's form splits
  the whole expanded map (SPLIT) and keeps it, its pieces and the
  depthwise outputs alive together; here only one group's map lives at a
  time, and the BatchNorm after the concatenation (a MUL and an ADD over
  the whole map) is gone.
- when that block's expanded map is at least `partial_sum_bytes` (int8),
  the projection is split too: each group projects its own channels and
  the four projections are summed (ADD), so no concatenation holds the
  whole map either. This is where MDNet's arena peak is (32x32 maps).
- a `MDIFFormerBlock`'s multi-scale step gets its BatchNorm folded into the
  depthwise kernels and biases, and the MLP's pre-norm is folded into its
  first 1x1 convolution.

Every rewrite is exact in float (up to rounding); in int8 each group's map
gets its own calibrated scale, and the partial sums add requantizations.
The multiply-accumulates are the same (the partial sums add one addition
per output element and group).
"""

import keras
import numpy as np

# The expanded map (int8 bytes) from which a block runs as partial sums.
DEFAULT_PARTIAL_SUM_BYTES = 32 * 1024


def _bn_scale_shift(bn):
    gamma, beta, mean, var = (np.asarray(w) for w in bn.get_weights())
    scale = gamma / np.sqrt(var + bn.epsilon)
    return scale, beta - mean * scale


def _layer(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def _conv(weights, name, activation=None):
    kernel = weights[0]
    layer = keras.layers.Conv2D(kernel.shape[-1], kernel.shape[:2],
                                use_bias=len(weights) > 1,
                                activation=activation, name=name)
    layer.build((None, None, None, kernel.shape[2]))
    layer.set_weights(weights)
    return layer


def _depthwise(kernel, bias, strides, dilation, name):
    layer = keras.layers.DepthwiseConv2D(
        kernel.shape[:2], strides=strides, padding="same",
        dilation_rate=dilation, activation="relu6", name=name)
    layer.build((None, None, None, kernel.shape[2]))
    layer.set_weights([kernel, bias])
    return layer


class _GroupedBlock:
    """A `MultiScaleConvBlock` written per kernel group (see module doc)."""

    def __init__(self, model, block, partial_sum_bytes):
        def get(suffix):
            return model.get_layer(f"{block}_{suffix}")

        self.block = block
        expand = get("expand_conv").get_weights()[0]
        expand_scale, expand_shift = _bn_scale_shift(get("expand_bn"))
        self.conv = get("multiscale")
        conv_scale, conv_shift = _bn_scale_shift(get("multiscale_bn"))
        conv_bias = (self.conv.bias.numpy() * conv_scale if self.conv.use_bias
                     else 0.0)
        project = get("project_conv").get_weights()[0]
        project_scale, project_shift = _bn_scale_shift(get("project_bn"))
        self.project = project * project_scale
        self.project_bias = project_shift
        sizes = self.conv.group_sizes(expand.shape[-1])
        self.slices = [slice(sum(sizes[:i]), sum(sizes[:i + 1]))
                       for i in range(len(sizes))]
        self.expand = [
            _conv([expand[..., s] * expand_scale[s], expand_shift[s]],
                  f"{block}_expand_g{i}", "relu6")
            for i, s in enumerate(self.slices)]
        self.depthwise = [
            _depthwise(kernel.numpy() * conv_scale[s][:, None],
                       (conv_bias[s] if np.ndim(conv_bias) else 0.0) + conv_shift[s],
                       self.conv.strides, dilation, f"{block}_multiscale_g{i}")
            for i, (kernel, dilation, s) in enumerate(
                zip(self.conv.kernels, self.conv.dilations(), self.slices))]
        self.partial_sum_bytes = partial_sum_bytes

    def __call__(self, inputs):
        _, height, width, _ = inputs.shape
        channels = self.project.shape[2]
        partial = height * width * channels >= self.partial_sum_bytes
        groups = []
        for i, (expand, depthwise, s) in enumerate(
                zip(self.expand, self.depthwise, self.slices)):
            x = depthwise(expand(inputs))
            if partial:
                weights = [self.project[:, :, s]]
                if i == 0:
                    weights.append(self.project_bias)
                x = _conv(weights, f"{self.block}_project_g{i}")(x)
                x = x if not groups else keras.layers.Add(
                    name=f"{self.block}_project_sum{i}")([groups.pop(), x])
            groups.append(x)
        if partial:
            return groups[0]
        x = keras.layers.Concatenate(name=f"{self.block}_concat")(groups)
        return _conv([self.project, self.project_bias], f"{self.block}_project")(x)


def _folded_multiscale(model, block):
    """A MDIFFormer's `MultiScaleChannelConv` with its BatchNorm folded in."""
    conv = model.get_layer(f"{block}_multiscale")
    scale, shift = _bn_scale_shift(model.get_layer(f"{block}_multiscale_bn"))
    config = dict(conv.get_config(), use_bias=True, name=f"{block}_multiscale_folded")
    folded = type(conv).from_config(config)
    folded.build(conv.input.shape)
    offset, kernels = 0, []
    for kernel in conv.kernels:
        group = kernel.shape[2]
        kernels.append(kernel.numpy() * scale[offset:offset + group][:, None])
        offset += group
    bias = conv.bias.numpy() * scale if conv.use_bias else 0.0
    folded.set_weights(kernels + [bias + shift])
    return folded


def _folded_mlp(model, block):
    """A MDIFFormer's first MLP convolution with the pre-norm folded in."""
    conv = model.get_layer(f"{block}_mlp1_conv")
    scale, shift = _bn_scale_shift(model.get_layer(f"{block}_mlp_norm"))
    kernel = conv.get_weights()[0]  # (1, 1, in, out)
    bias = shift @ kernel[0, 0]
    if conv.use_bias:
        bias = bias + conv.get_weights()[1]
    return _conv([kernel * scale[:, None], bias], f"{block}_mlp1_folded")


def _identity(*args, **kwargs):
    return args[0]


def with_micro_graph(model, partial_sum_bytes=DEFAULT_PARTIAL_SUM_BYTES):
    """Returns `model` in the graph form for TFLite Micro (module doc).

    Args:
        model: a float32 MDNet `keras.Model` (other models, and MDNet blocks
            whose multi-scale step subsamples or chains its groups
            (`cascade`), are left as they are).
        partial_sum_bytes: int, the expanded map (int8 bytes) from which a
            `MultiScaleConvBlock` also splits its projection.

    Returns:
        `model` itself when nothing applies, else a new functional model
        that shares the other layers with `model`.

    Example:

    >>> import mdnet_keras
    >>> model = mdnet_keras.MDNet(num_classes=10, variant="mdnet_micro")
    >>> small = with_micro_graph(model)
    >>> len(small.layers) > len(model.layers)
    True
    """
    from mdnet_keras.layers import MultiScaleChannelConv

    replace = {}
    for layer in model.layers:
        # A subsampled step, or chained groups (each adds the previous
        # group's unnormalised output), have no per-group form here.
        if (not isinstance(layer, MultiScaleChannelConv) or layer.subsamples()
                or layer.cascade):
            continue
        block = layer.name[: -len("_multiscale")]
        if _layer(model, f"{block}_expand_conv") is not None:
            grouped = _GroupedBlock(model, block, partial_sum_bytes)
            for suffix in ("expand_conv", "expand_bn", "expand_act", "multiscale",
                           "multiscale_bn", "multiscale_act", "project_bn"):
                replace[f"{block}_{suffix}"] = _identity
            replace[f"{block}_project_conv"] = grouped
        elif _layer(model, f"{block}_mlp_norm") is not None:
            replace[f"{block}_multiscale"] = _folded_multiscale(model, block)
            replace[f"{block}_multiscale_bn"] = _identity
            replace[f"{block}_mlp_norm"] = _identity
            replace[f"{block}_mlp1_conv"] = _folded_mlp(model, block)
    if not replace:
        return model
    inputs = keras.Input(model.inputs[0].shape[1:], name=model.inputs[0].name)
    outputs = model._run_through_graph(
        inputs, operation_fn=lambda op: replace.get(op.name, op))
    return keras.Model(inputs, outputs, name=model.name)
