"""`quantize_model`: a trained functional model -> its quantization-aware twin.

The twin is rebuilt with `keras.models.clone_model`: layers with weights are
replaced by their twins (`quant_layers`), a BatchNormalization that follows a
convolution is folded into it (its place taken by an `Identity`, which
exports to nothing), the other BatchNormalizations are frozen, and an
`ActivationQuantizer` follows every layer whose output is an int8 tensor of
its own scale in the TFLite graph: activations, residual adds, the input
normalisation, pooling and the ends of conv/BN chains without activation.
"""

import inspect

import keras
import numpy as np

from mdnet_keras.export import as_float32_model
from mdnet_keras.layers import DifferentialAttention
from mdnet_keras.layers import MultiScaleChannelConv
from mdnet_keras.layers import StandardAttention
from mdnet_keras.quantization import quant_layers as ql
from mdnet_keras.quantization.quantizers import ActivationQuantizer

QUANTIZER_SUFFIX = "_quant"
# Layers that copy their input's quantization in int8 (or vanish at
# inference): no quantizer, no weights, cloned as they are.
PASS_THROUGH = (
    keras.layers.InputLayer, keras.layers.Reshape, keras.layers.Dropout,
    keras.layers.Identity, keras.layers.ZeroPadding2D, keras.layers.Flatten,
    keras.layers.Concatenate, keras.layers.MaxPooling2D, keras.layers.Permute,
)
# Layers whose output the int8 graph requantizes, so the twin quantizes it.
REQUANTIZING = (
    keras.layers.Activation, keras.layers.ReLU, keras.layers.Add,
    keras.layers.GlobalAveragePooling2D, keras.layers.Rescaling,
)
CONVS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
ATTENTION_TWINS = {
    DifferentialAttention: ql.QuantDifferentialAttention,
    StandardAttention: ql.QuantStandardAttention,
}
QAT_LAYERS = (ql.QuantConv, ql.QuantDense, ql.QuantMultiScaleChannelConv,
              ql.QuantDifferentialAttention, ql.QuantStandardAttention,
              ActivationQuantizer)


def is_quantization_aware(model):
    """Whether `model` is (or holds) a quantization-aware twin."""
    return any(isinstance(layer, QAT_LAYERS)
               for layer in model._flatten_layers(include_self=False))


def quantizers(model):
    """Every `ActivationQuantizer` of `model` (nested ones included)."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, ActivationQuantizer)]


def _consumers(model):
    """Layer name -> the layers that take its output."""
    found = {layer.name: [] for layer in model.layers}
    for layer in model.layers:
        if len(layer._inbound_nodes) > 1:
            raise ValueError(
                f"Layer {layer.name!r} is called {len(layer._inbound_nodes)} "
                "times; the quantization-aware twin needs each layer called "
                "once (a shared layer has one range per use in int8).")
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                found[tensor._keras_history.operation.name].append(layer)
    return found


def _plan(model):
    """What to do with each layer: folds and quantized outputs."""
    consumers = _consumers(model)

    def sole(name, types):
        after = consumers[name]
        return after[0] if len(after) == 1 and isinstance(after[0], types) else None

    fold = {}        # conv name -> the BatchNormalization folded into it
    folded = set()   # the names of those BatchNormalizations
    quantize = set()  # names of layers followed by an ActivationQuantizer
    for layer in model.layers:
        if isinstance(layer, REQUANTIZING) or _is_normalization(layer):
            quantize.add(layer.name)
        if isinstance(layer, CONVS + (MultiScaleChannelConv,)):
            bn = sole(layer.name, keras.layers.BatchNormalization)
            end = layer
            if bn is not None:
                fold[layer.name] = bn
                folded.add(bn.name)
                end = bn
            if sole(end.name, (keras.layers.Activation, keras.layers.ReLU)) is None:
                quantize.add(end.name)
    return fold, folded, quantize


def _is_normalization(layer):
    return type(layer).__name__ == "PixelNormalization"


def _check_supported(layer):
    supported = (PASS_THROUGH + REQUANTIZING + CONVS + tuple(ATTENTION_TWINS) + (
        keras.layers.BatchNormalization, keras.layers.Dense, MultiScaleChannelConv))
    if isinstance(layer, MultiScaleChannelConv) and layer.cascade:
        raise ValueError(
            f"Layer {layer.name!r}: a MultiScaleChannelConv with chained groups "
            "(cascade=True) has no quantization-aware twin yet; quantize the "
            "float model after training (convert --mode=int8).")
    if isinstance(layer, supported) or _is_normalization(layer):
        return
    if layer.weights or not isinstance(layer, keras.layers.Layer):
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) has no "
            "quantization-aware twin. Supported: Conv2D, DepthwiseConv2D, "
            "BatchNormalization, Dense, MultiScaleChannelConv, "
            "DifferentialAttention, StandardAttention and weightless layers.")


def _twin_layer(layer, fold, folded):
    """The twin of one layer (unbuilt) and how to fill its weights."""
    config = layer.get_config()
    if layer.name in folded:
        return keras.layers.Identity(name=layer.name)
    if isinstance(layer, CONVS):
        if getattr(layer, "groups", 1) != 1 or getattr(layer, "depth_multiplier", 1) != 1:
            raise ValueError(f"Layer {layer.name!r}: grouped convolutions and "
                             "depth multipliers > 1 have no twin.")
        bn = fold.get(layer.name)
        return ql.QuantConv(
            None if isinstance(layer, keras.layers.DepthwiseConv2D) else layer.filters,
            layer.kernel_size, strides=layer.strides, padding=layer.padding,
            dilation_rate=layer.dilation_rate, use_bias=layer.use_bias,
            batch_norm_epsilon=None if bn is None else bn.epsilon, name=layer.name)
    if isinstance(layer, keras.layers.BatchNormalization):
        twin = keras.layers.BatchNormalization.from_config(config)
        twin.trainable = False  # statistics frozen: what the converter folds
        return twin
    if isinstance(layer, keras.layers.Dense):
        return ql.QuantDense.from_config(config)
    if isinstance(layer, MultiScaleChannelConv):
        bn = fold.get(layer.name)
        return ql.QuantMultiScaleChannelConv.from_config(
            dict(config, batch_norm_epsilon=None if bn is None else bn.epsilon))
    for source, twin_class in ATTENTION_TWINS.items():
        if type(layer) is source:
            return twin_class.from_config(config)
    return layer.__class__.from_config(config)


def _copy_weights(original, twin, bn):
    """Fills a built twin layer from the float layer (and folded BN)."""
    if isinstance(twin, (ql.QuantConv, ql.QuantMultiScaleChannelConv)):
        if isinstance(twin, ql.QuantConv):
            values = {"kernel": original.kernel}
        else:
            for variable, value in zip(twin.kernels, original.kernels):
                variable.assign(value)
            values = {}
        if original.use_bias:
            values["bias"] = original.bias
        if bn is not None:
            values.update(gamma=bn.gamma, beta=bn.beta, moving_mean=bn.moving_mean,
                          moving_variance=bn.moving_variance)
        for name, value in values.items():
            getattr(twin, name).assign(value)
        return
    if isinstance(twin, ql.QuantAttentionMixin):
        for name in ("query", "key", "value", "output"):
            source = getattr(original, f"{name}_dense")
            target = getattr(twin, f"{name}_dense")
            target.kernel.assign(source.kernel)
            if source.use_bias:
                target.bias.assign(source.bias)
        # The rest (lambdas, the head norm's scale or BatchNorm) by path:
        # the twin keeps the float layer's name and its sublayers' names.
        own = {w.path: w for w in twin.weights}
        projections = {getattr(original, f"{name}_dense").path for name in
                       ("query", "key", "value", "output")}
        for w in original.weights:
            if w.path.rsplit("/", 1)[0] in projections:
                continue
            if w.path not in own:
                raise ValueError(f"The quantization-aware twin of {original.name!r} "
                                 f"has no weight {w.path!r} to take the float value.")
            own[w.path].assign(w)
        return
    float_weights = original.get_weights()
    if isinstance(twin, ql.QuantDense):
        for variable, value in zip((twin.kernel, twin.bias), float_weights):
            variable.assign(value)
        return
    twin.set_weights(float_weights)


def quantize_model(model, calibration_images=None, batch_size=32, momentum=0.99):
    """Returns the quantization-aware twin of a trained functional model.

    Args:
        model: a functional `keras.Model` made of the supported layer types
            (an MDNet, or e.g. a MobileNetV2 of Conv2D / DepthwiseConv2D /
            BatchNormalization / ReLU / Add / Dense). A mixed-precision model
            is rebuilt in float32 first (fake quantization runs in float32).
        calibration_images: optional array `(N, H, W, C)` of training
            images; each quantizer's range starts as their moving min/max
            (else at the first training batch).
        batch_size: int, batch size of the calibration pass.
        momentum: float, the quantizers' moving-average momentum.

    Returns:
        A new functional model with the same inputs, outputs and names of
        the float layers, holding the float weights.

    Raises:
        ValueError: a layer type without a twin, or a shared layer.

    Example:

    >>> import mdnet_keras
    >>> float_model = mdnet_keras.MDNet(num_classes=10, variant="mdnet_micro")
    >>> qat = quantize_model(float_model)
    >>> qat.predict(np.zeros((1, 32, 32, 3)), verbose=0).shape
    (1, 10)
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "_run_through_graph"):
        raise ValueError(
            f"quantize_model needs a functional keras.Model; got {type(model).__name__}.")
    if is_quantization_aware(model):
        raise ValueError(f"Model {model.name!r} is already quantization-aware.")
    model = as_float32_model(model)
    for layer in model.layers:
        _check_supported(layer)
    fold, folded, quantize = _plan(model)
    originals = {}

    def clone(layer):
        twin = _twin_layer(layer, fold, folded)
        originals[id(twin)] = layer
        return twin

    def call(twin, *args, **kwargs):
        # A folded BatchNormalization's call arguments (mask) do not fit
        # the Identity in its place.
        accepted = inspect.signature(twin.call).parameters
        outputs = twin(*args, **{k: v for k, v in kwargs.items() if k in accepted})
        name = originals[id(twin)].name
        if name in quantize:
            outputs = ActivationQuantizer(
                momentum=momentum, name=name + QUANTIZER_SUFFIX)(outputs)
        return outputs

    qat = keras.models.clone_model(model, clone_function=clone, call_function=call)
    bns = {conv: bn for conv, bn in fold.items()}
    for twin in qat.layers:
        original = originals.get(id(twin))
        if original is not None and original.weights and twin.weights:
            _copy_weights(original, twin, bns.get(original.name))
    if calibration_images is not None:
        calibrate(qat, calibration_images, batch_size)
    return qat


def calibrate(model, images, batch_size=32):
    """Sets the quantizers' ranges from `images` (training mode, in batches)."""
    images = np.asarray(images, "float32")
    for start in range(0, len(images), batch_size):
        model(images[start:start + batch_size], training=True)


def freeze_ranges(model, frozen=True):
    """Stops (or restarts) range tracking in every quantizer of `model`."""
    for quantizer in quantizers(model):
        quantizer.freeze(frozen)
