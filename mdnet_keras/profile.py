"""Parameters, MACs and peak activation memory of a functional Keras model."""

import math
from collections import OrderedDict

import keras


def layer_macs(layer, input_shape, output_shape):
    """Multiply-accumulates of one layer for one image (batch 1).

    Counts convolutions, dense layers and, for MDNet's layers, the
    multi-scale depthwise convolution and the attention matmuls; other
    layers (norms, activations, adds) count 0.
    """
    if hasattr(layer, "count_macs"):
        return int(layer.count_macs(tuple(input_shape[1:])))
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel = math.prod(layer.kernel_size)
        return int(math.prod(output_shape[1:]) * kernel)
    if isinstance(layer, keras.layers.Conv2D):
        kernel = math.prod(layer.kernel_size) * input_shape[-1] // layer.groups
        return int(math.prod(output_shape[1:]) * kernel)
    if isinstance(layer, keras.layers.Dense):
        return int(math.prod(output_shape[1:]) * input_shape[-1])
    return 0


def stage_of(layer_name):
    """The stage a layer belongs to, from MDNet's layer names."""
    prefix = layer_name.split("_")[0]
    if prefix.startswith("stage") or prefix in ("stem", "head"):
        return prefix
    if layer_name in ("image", "normalization"):
        return "stem"
    return "head"


def profile(model, batch_size=1):
    """Profiles a functional model, per stage and in total.

    Peak activation memory is defined as the largest sum, over the steps of
    one batch-1 inference run layer by layer in graph order, of the
    activation tensors alive at that step: the model input, every layer
    output that a later layer still reads, the current layer's output, and
    the intermediates inside the current layer (the query/key/value and score
    maps of an attention layer). Weights are not counted. Reshapes are
    counted as new tensors, so the figure is an upper bound on what an
    interpreter that aliases reshapes needs.

    Args:
        model: a functional `keras.Model`, e.g. from `mdnet_keras.MDNet`.
        batch_size: int, batch size for the activation count. Defaults to 1.

    Returns:
        A dict with `"stages"` (an ordered dict stage name -> `params`,
        `macs`) and `"total"` (`params`, `macs`,
        `peak_activation_elements`, `peak_activation_bytes_float32`,
        `peak_activation_bytes_int8`, `peak_layer`).

    Example:

    >>> import mdnet_keras
    >>> report = profile(mdnet_keras.MDNet(variant="mdnet_micro"))
    >>> report["total"]["macs"] > 0
    True
    """
    stages = OrderedDict()
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        entry = stages.setdefault(stage_of(layer.name), {"params": 0, "macs": 0})
        entry["params"] += layer.count_params()
        entry["macs"] += layer_macs(
            layer, first_input(layer).shape, layer.output.shape
        )
    peak, peak_layer = peak_activation_elements(model)
    total = {
        "params": model.count_params(),
        "macs": sum(s["macs"] for s in stages.values()),
        "peak_activation_elements": peak * batch_size,
        "peak_activation_bytes_float32": 4 * peak * batch_size,
        "peak_activation_bytes_int8": peak * batch_size,
        "peak_layer": peak_layer,
    }
    return {"stages": stages, "total": total}


def peak_activation_elements(model):
    """Returns (peak live elements, name of the layer where it occurs)."""
    layers = [
        layer
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer)
    ]
    last_use = {}
    for index, layer in enumerate(layers):
        for tensor in keras.tree.flatten(layer.input):
            last_use[id(tensor)] = index
    for tensor in keras.tree.flatten(model.outputs):
        last_use[id(tensor)] = len(layers)

    live = {id(t): size(t) for t in keras.tree.flatten(model.inputs)}
    peak, peak_layer = sum(live.values()), "input"
    for index, layer in enumerate(layers):
        output = layer.output
        live[id(output)] = size(output)
        internal = 0
        if hasattr(layer, "peak_internal_elements"):
            internal = layer.peak_internal_elements(
                tuple(first_input(layer).shape[1:])
            )
        current = sum(live.values()) + internal
        if current > peak:
            peak, peak_layer = current, layer.name
        live = {k: v for k, v in live.items() if last_use.get(k, -1) > index}
    return peak, peak_layer


def first_input(layer):
    return keras.tree.flatten(layer.input)[0]


def size(tensor):
    return math.prod(tensor.shape[1:])


def format_profile(report, name="model"):
    """A plain-text table of a `profile` report."""
    lines = [f"{name}", f"{'stage':<10}{'params':>12}{'MMACs':>10}"]
    for stage, entry in report["stages"].items():
        lines.append(
            f"{stage:<10}{entry['params']:>12,}{entry['macs'] / 1e6:>10.2f}"
        )
    total = report["total"]
    lines.append(f"{'total':<10}{total['params']:>12,}{total['macs'] / 1e6:>10.2f}")
    lines.append(
        "peak activation memory: "
        f"{total['peak_activation_elements']:,} elements = "
        f"{total['peak_activation_bytes_float32'] / 1024:.1f} KiB float32 / "
        f"{total['peak_activation_bytes_int8'] / 1024:.1f} KiB int8 "
        f"(at {total['peak_layer']})"
    )
    return "\n".join(lines)
