"""Loading and preparing the Keras model for conversion.

Checks that a `.keras` file holds a single-input image classifier, rebuilds
a mixed-precision model under float32 and pieces large depthwise kernels for
XNNPACK (`with_small_depthwise_kernels`), all with the same weights.
"""

import os
import zipfile

import numpy as np

from mdnet_keras.export.errors import ConversionError
from mdnet_keras.export.errors import ModelLoadError
from mdnet_keras.export.xnnpack import XNNPACK_DEPTHWISE_TAPS


def _register_project_objects():
    """Imports the modules whose import registers MDNet's custom objects."""
    import importlib

    for name in ("mdnet_keras.layers", "mdnet_keras.models",
                 "mdnet_keras.quantization"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def load_keras_model(path, custom_objects=None):
    """Loads a `.keras` image classifier for conversion, with clear errors.

    Args:
        path: path of a `.keras` file.
        custom_objects: optional dict of extra custom objects.

    Returns:
        A `keras.Model` with one image input `(None, H, W, C)` and one output
        `(None, num_classes)`.

    Raises:
        ModelLoadError: missing file, not a `.keras` archive, unknown custom
            objects, or a model that is not a single-input image classifier.
    """
    import keras

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelLoadError(f"Model file not found: {path!r}")
    if not path.endswith(".keras"):
        raise ModelLoadError(
            f"Expected a Keras v3 '.keras' file, got {path!r}. Save the "
            "trained model with model.save('name.keras')."
        )
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(
            f"{path!r} is not a Keras '.keras' archive (not a zip file)."
        )
    with zipfile.ZipFile(path) as zf:
        if "config.json" not in zf.namelist():
            raise ModelLoadError(
                f"{path!r} is a zip file but not a Keras '.keras' archive "
                "(no config.json)."
            )
    _register_project_objects()
    try:
        model = keras.saving.load_model(
            path, custom_objects=custom_objects, compile=False
        )
    except (TypeError, ValueError) as e:
        msg = str(e)
        if "Could not locate" in msg or "Unknown" in msg or "custom" in msg:
            raise ModelLoadError(
                f"{path!r} uses custom objects that are not registered in "
                "this process (an MDNet model needs only `import mdnet_keras`; "
                "anything else must be importable or passed as "
                f"custom_objects). Keras said: {msg.splitlines()[0]}"
            ) from e
        raise ModelLoadError(f"Could not load {path!r}: {msg}") from e
    check_image_classifier(model, source=path)
    return model


def check_image_classifier(model, source="model"):
    """Raises ModelLoadError unless `model` maps one image to one class vector."""
    import keras

    if not isinstance(model, keras.Model):
        raise ModelLoadError(f"{source}: not a keras.Model ({type(model)}).")
    inputs = model.inputs if hasattr(model, "inputs") else None
    outputs = model.outputs if hasattr(model, "outputs") else None
    if not inputs or len(inputs) != 1 or len(inputs[0].shape) != 4:
        shapes = [tuple(t.shape) for t in inputs or []]
        raise ModelLoadError(
            f"{source}: expected an MDNet-style image classifier with one "
            f"(batch, height, width, channels) input; got inputs {shapes}."
        )
    if not outputs or len(outputs) != 1 or len(outputs[0].shape) != 2:
        shapes = [tuple(t.shape) for t in outputs or []]
        raise ModelLoadError(
            f"{source}: expected one (batch, num_classes) output; got "
            f"outputs {shapes}."
        )
    shape = tuple(inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ModelLoadError(
            f"{source}: the input shape {shape} is not static; build the "
            "model with a fixed input_shape=(H, W, C) before converting."
        )


def model_image_shape(model):
    """(H, W, C) of the model's input."""
    return tuple(int(d) for d in model.inputs[0].shape[1:])


def _uses_non_float32_policy(model):
    for layer in model._flatten_layers(include_self=True):
        policy = getattr(layer, "dtype_policy", None)
        if policy is not None and policy.name != "float32":
            return True
    return False


def _edit_config(obj, edit):
    """Applies `edit` to every dict of a serialized config, innermost first."""
    if isinstance(obj, dict):
        return edit({k: _edit_config(v, edit) for k, v in obj.items()})
    if isinstance(obj, list):
        return [_edit_config(v, edit) for v in obj]
    return obj


def _rebuild(model, edit):
    """A new model from `model`'s config edited by `edit`, same weights."""
    import keras

    config = _edit_config(keras.saving.serialize_keras_object(model), edit)
    rebuilt = keras.saving.deserialize_keras_object(config)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def _float32_dtypes(config):
    """A config dict with any mixed-precision dtype policy set to float32."""
    def mixed(value):
        if isinstance(value, dict):
            return "Policy" in str(value.get("class_name", ""))
        return value in ("mixed_float16", "mixed_bfloat16")

    return {k: "float32" if k == "dtype" and mixed(v) else v
            for k, v in config.items()}


def as_float32_model(model):
    """Returns `model` itself, or a float32 rebuild when it is mixed precision.

    A model trained under a `mixed_float16`/`mixed_bfloat16` policy does not
    convert as it is (the casts become `tf.Mul`/`Cast` ops in float16 that
    neither TFLite builtins nor the int8 quantizer handle). It is rebuilt from
    its config under the float32 policy and given the same weights (variables
    are float32 under mixed precision, so nothing is lost).
    """
    import keras

    if not _uses_non_float32_policy(model):
        return model
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        rebuilt = _rebuild(model, _float32_dtypes)
    finally:
        keras.config.set_dtype_policy(previous)
    if _uses_non_float32_policy(rebuilt):
        raise ConversionError("Could not rebuild the model under float32.")
    return rebuilt


def with_small_depthwise_kernels(model, max_taps=XNNPACK_DEPTHWISE_TAPS):
    """Returns `model`, or a rebuild whose large depthwise kernels are pieced.

    Every `MultiScaleChannelConv` with a kernel of more than `max_taps` taps
    (7x7 and 9x9 at the default 25) is rebuilt with `max_kernel_taps=max_taps`
    and the same weights: each large kernel then runs as a few depthwise
    convolutions of at most `max_taps` taps over windows of a padded input,
    summed (see `MultiScaleChannelConv`). The float function is the same up
    to rounding; XNNPACK runs every piece on its fast path (see
    `XNNPACK_DEPTHWISE_TAPS`; latencies pieced and whole in
    `benchmarks/results/int8_breakdown/`). The graph has more ops (PAD,
    STRIDED_SLICE, ADD) and, in int8, each piece's sum is requantized.

    Args:
        model: a float32 `keras.Model`.
        max_taps: int, the most taps of one depthwise kernel.

    Returns:
        `model` itself when it has no such kernel, else a new functional
        model built from its config.

    Raises:
        ConversionError: the model cannot be rebuilt from its config.
    """
    from mdnet_keras.layers import MultiScaleChannelConv

    def needs_pieces(layer):
        return isinstance(layer, MultiScaleChannelConv) and any(
            size * size > max_taps for size in layer.kernel_sizes
        ) and layer.max_kernel_taps != max_taps

    if not any(needs_pieces(layer) for layer in model._flatten_layers(include_self=False)):
        return model
    def set_max_taps(config):
        # Any MultiScaleChannelConv class (its quantization-aware twin too).
        if isinstance(config.get("config"), dict) and (
            "max_kernel_taps" in config["config"]
        ):
            config["config"]["max_kernel_taps"] = max_taps
        return config

    try:
        rebuilt = _rebuild(model, set_max_taps)
    except Exception as e:  # serialization errors are many types
        raise ConversionError(
            "Could not rebuild the model with small depthwise kernels "
            f"({type(e).__name__}: {str(e)[:500]}); convert with "
            "max_depthwise_taps=None to keep the large kernels."
        ) from e
    return rebuilt


def check_images(images, model_shape, what="images"):
    """Validates an image array against the model's (H, W, C); returns it."""
    images = np.asarray(images)
    if images.ndim == 3 and model_shape[-1] == 1:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(
            f"{what}: expected an array (N, H, W, C), got shape {images.shape}."
        )
    if images.shape[0] == 0:
        raise ValueError(f"{what} is empty: need at least one image.")
    if tuple(images.shape[1:]) != tuple(model_shape):
        raise ValueError(
            f"{what} have shape {tuple(images.shape[1:])} (H, W, C) but the "
            f"model expects {tuple(model_shape)}. Load the data with "
            f"image_size={tuple(model_shape[:2])} and channels="
            f"{model_shape[2]}."
        )
    return images
