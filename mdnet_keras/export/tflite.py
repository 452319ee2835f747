"""Keras -> LiteRT (TFLite) conversion and validation.

Modes:

- `float32`:  plain float model, `TFLITE_BUILTINS` only.
- `float16`:  float16 weights (dequantized at load), float compute.
- `dynamic`:  int8 weights, float activations (dynamic-range quantization).
- `int8`:     full integer: int8 weights and activations, int8 or uint8 model
              input/output, `TFLITE_BUILTINS_INT8` only, calibrated on real
              training images.
- `int16x8`:  int16 activations, int8 weights (the documented remedy when
              int8 loses too much accuracy); float32 model input/output.

The route is Keras 3's own `model.export(path, format="litert", ...)` under the
TensorFlow backend, with a batch-1 `input_signature` (else the batch dimension
stays dynamic) and `target_spec={"supported_ops": [...]}` always set (Keras'
default also allows SELECT_TF_OPS, i.e. Flex ops that no microcontroller or
Edge TPU runs).

Every conversion is followed by `validate_tflite`: size, op list, a float-island
check read from the flatbuffer's tensor types (the converter leaves float ops in
an "integer" model silently), top-1 of the Keras model and of the `.tflite` on
held-out images, argmax agreement and the largest output difference, and an
paired accuracy gate (`accuracy_gate.paired_gate`).

This module imports TensorFlow; keep TF-only code here and in `micro.py`.
"""

import json
import os
import tempfile
import zipfile

import numpy as np

from mdnet_keras.export.accuracy_gate import paired_gate

MODES = ("float32", "float16", "dynamic", "int8", "int16x8")
INTEGER_MODES = ("int8", "int16x8")
IO_TYPES = ("int8", "uint8")

FLOAT_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16", "COMPLEX64")

DEFAULT_MAX_DROP = 1.0  # points of top-1
DEFAULT_NUM_CALIBRATION = 200
# The most taps (kh * kw) of a depthwise kernel that XNNPACK runs on its fast
# single-pass code (its unipass microkernels go up to 5x5). Measured with
# ai-edge-litert 2.3.0 on one x86 core, 32x32x24, batch 1: 3x3 17 us, any
# shape of 10-25 taps 42 us, 5x6 (30 taps) 468 us, 9x9 1164 us (int8).
XNNPACK_DEPTHWISE_TAPS = 25
# int8 ops that compute their output's quantization from its own parameters
# (unlike RESHAPE, TRANSPOSE, STRIDED_SLICE, CONCATENATION, which copy).
REQUANTIZING_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D",
                    "BATCH_MATMUL", "ADD", "SUB", "MUL", "QUANTIZE")


class ConversionError(RuntimeError):
    """A model could not be converted, or the result breaks a hard rule."""


class ModelLoadError(ValueError):
    """The model file is missing, not a Keras model, or not an image classifier."""


class AccuracyGateError(RuntimeError):
    """The converted model lost more top-1 than allowed."""

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = report


# ---------------------------------------------------------------------------
# Loading and preparing the Keras model
# ---------------------------------------------------------------------------


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
    to rounding (~1e-6); XNNPACK runs it 2-3x faster (MDNet at 32x32,
    batch 1, one core: float32 5.4 -> 2.8 ms, int8 6.6 -> 2.3 ms). The
    graph has more ops (PAD, STRIDED_SLICE, ADD; 223 -> 388 for MDNet) and,
    in int8, each piece's sum is requantized.

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

    if not any(needs_pieces(l) for l in model._flatten_layers(include_self=False)):
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


# ---------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------


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


def representative_dataset(images, num_samples=DEFAULT_NUM_CALIBRATION, seed=0):
    """A calibration generator over real training images.

    Args:
        images: uint8 or float array (N, H, W, C) of raw 0..255 pixels (MDNet
            normalises inside the model).
        num_samples: how many images to draw (without replacement).
        seed: RNG seed for the draw.

    Returns:
        A zero-argument callable yielding `[float32 array (1, H, W, C)]`.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(
            "The representative dataset is empty: full-integer quantization "
            "needs real training images to calibrate activation ranges."
        )
    if num_samples is None or num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}.")
    n = min(int(num_samples), images.shape[0])
    idx = np.random.default_rng(seed).choice(images.shape[0], n, replace=False)
    chosen = images[np.sort(idx)].astype("float32")

    def gen():
        for i in range(chosen.shape[0]):
            yield [chosen[i : i + 1]]

    return gen


def converter_options(mode, rep_images=None, num_calibration=None, io_type="int8",
                      seed=0):
    """The `model.export(..., format="litert")` converter options for a mode."""
    import tensorflow as tf

    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; choose one of {MODES}.")
    builtins = tf.lite.OpsSet.TFLITE_BUILTINS
    if mode == "float32":
        return {"target_spec": {"supported_ops": [builtins]}}
    if mode == "float16":
        return {
            "optimizations": [tf.lite.Optimize.DEFAULT],
            "target_spec": {
                "supported_ops": [builtins],
                "supported_types": [tf.float16],
            },
        }
    if mode == "dynamic":
        return {
            "optimizations": [tf.lite.Optimize.DEFAULT],
            "target_spec": {"supported_ops": [builtins]},
        }
    if rep_images is None:
        raise ValueError(
            f"Mode {mode!r} needs a representative dataset of real training "
            "images (rep_images)."
        )
    rep = representative_dataset(
        rep_images, num_calibration or DEFAULT_NUM_CALIBRATION, seed=seed
    )
    if mode == "int8":
        if io_type not in IO_TYPES:
            raise ValueError(f"io_type must be one of {IO_TYPES}, got {io_type!r}")
        io = tf.int8 if io_type == "int8" else tf.uint8
        return {
            "optimizations": [tf.lite.Optimize.DEFAULT],
            "representative_dataset": rep,
            "target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
            "inference_input_type": io,
            "inference_output_type": io,
        }
    # int16x8
    return {
        "optimizations": [tf.lite.Optimize.DEFAULT],
        "representative_dataset": rep,
        "target_spec": {
            "supported_ops": [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
        },
    }


def convert_model(model, mode, rep_images=None, num_calibration=None,
                  io_type="int8", seed=0,
                  max_depthwise_taps=XNNPACK_DEPTHWISE_TAPS,
                  symmetric_matmul=True):
    """Converts an in-memory Keras model; returns the `.tflite` bytes.

    The model is first rebuilt under float32 if it is mixed precision, then
    with its large multi-scale depthwise kernels split into pieces of at most
    `max_depthwise_taps` taps (see `with_small_depthwise_kernels`; `None`
    keeps them whole). The input signature is fixed to batch 1 (static
    shapes for micro/Edge TPU). In mode int8, `symmetric_matmul` re-quantizes
    the second operand of each BATCH_MATMUL with a zero point of 0 so that
    XNNPACK runs it (see `symmetric_matmul_operands`).
    """
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise ConversionError(
            "TFLite conversion needs the TensorFlow backend: run it in a "
            "process started with KERAS_BACKEND=tensorflow (a model trained "
            "under JAX converts after loading its .keras there)."
        )
    check_image_classifier(model)
    shape = model_image_shape(model)
    if rep_images is not None:
        rep_images = check_images(rep_images, shape, "representative images")
    elif mode in INTEGER_MODES:
        raise ValueError(
            f"Mode {mode!r} needs a representative dataset (real training "
            "images); got none."
        )
    options = converter_options(mode, rep_images, num_calibration, io_type, seed)
    model = as_float32_model(model)
    if max_depthwise_taps is not None:
        model = with_small_depthwise_kernels(model, max_depthwise_taps)
    signature = [tf.TensorSpec((1,) + shape, tf.float32, name="image")]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.tflite")
        try:
            model.export(path, format="litert", input_signature=signature,
                         verbose=False, **options)
        except Exception as e:  # converter errors are many types
            raise ConversionError(
                f"Conversion to {mode} failed: {type(e).__name__}: "
                f"{str(e)[:2000]}"
            ) from e
        with open(path, "rb") as f:
            tflite_bytes = f.read()
    if mode == "int8" and symmetric_matmul:
        tflite_bytes, _ = symmetric_matmul_operands(tflite_bytes)
    return tflite_bytes


def symmetric_matmul_operands(tflite_bytes):
    """Gives the second operand of every int8 BATCH_MATMUL a zero point of 0.

    XNNPACK takes an int8 BATCH_MATMUL only when its second operand is
    quantized symmetrically (zero point 0); the calibrated keys and values
    of attention rarely are, so their matmuls run outside XNNPACK and split
    the graph into partitions. This edit re-quantizes each such operand
    over the symmetric range that covers its calibrated one (scale
    `max(|min|, |max|) / 127`, zero point 0): the operand, and the RESHAPE /
    TRANSPOSE chain back to the op that produces it (those ops keep their
    input's parameters), get the new parameters; the producer, an op that
    requantizes its output (in MDNet's attention a FULLY_CONNECTED), then
    writes them. The cost is at most one bit of that operand's resolution.
    Only scale and zero point change, in place; a chain that starts
    anywhere else (a graph input, a slice, a concatenation) or whose
    tensors have other consumers, per-channel parameters or constant data
    is left alone.

    Args:
        tflite_bytes: a `.tflite` model.

    Returns:
        A tuple `(new_bytes, num_changed)`.
    """
    schema = _schema()
    buf = bytearray(tflite_bytes)
    model = schema.Model.GetRootAsModel(buf, 0)
    op_names = _enum_names(schema.BuiltinOperator)
    graph = model.Subgraphs(0)

    def name_of(op):
        code = model.OperatorCodes(op.OpcodeIndex())
        return op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))

    operators = [graph.Operators(i) for i in range(graph.OperatorsLength())]
    producer, consumers = {}, {}
    for op in operators:
        for t in op.OutputsAsNumpy():
            producer[int(t)] = op
        for t in op.InputsAsNumpy():
            consumers[int(t)] = consumers.get(int(t), 0) + 1
    graph_outputs = set(int(t) for t in graph.OutputsAsNumpy())

    def quantization(index):
        tensor = graph.Tensors(index)
        q = tensor.Quantization()
        if (tensor.Type() != schema.TensorType.INT8 or q is None
                or q.ScaleLength() != 1 or q.ZeroPointLength() != 1
                or model.Buffers(tensor.Buffer()).DataLength()):
            return None
        return q

    changed = 0
    for op in operators:
        if name_of(op) != "BATCH_MATMUL":
            continue
        chain = [int(op.InputsAsNumpy()[1])]
        while (chain[-1] in producer
               and name_of(producer[chain[-1]]) in ("RESHAPE", "TRANSPOSE")):
            chain.append(int(producer[chain[-1]].InputsAsNumpy()[0]))
        params = [quantization(t) for t in chain]
        if (chain[-1] not in producer
                or name_of(producer[chain[-1]]) not in REQUANTIZING_OPS
                or any(q is None for q in params)
                or any(consumers.get(t) != 1 or t in graph_outputs for t in chain)
                or int(params[0].ZeroPointAsNumpy()[0]) == 0):
            continue
        scale = float(params[0].ScaleAsNumpy()[0])
        zero_point = int(params[0].ZeroPointAsNumpy()[0])
        new_scale = max((128 + zero_point) * scale, (127 - zero_point) * scale) / 127
        for q in params:
            q.ScaleAsNumpy()[0] = new_scale  # views into `buf`
            q.ZeroPointAsNumpy()[0] = 0
        changed += 1
    return bytes(buf), changed


# ---------------------------------------------------------------------------
# Reading a .tflite
# ---------------------------------------------------------------------------


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _enum_names(enum_cls):
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_")}


def read_model(tflite_bytes):
    """Parses a `.tflite` flatbuffer into the schema's object API (`ModelT`)."""
    schema = _schema()
    buf = bytearray(tflite_bytes)
    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))


def describe_ops(tflite_bytes):
    """Lists the operators of the main subgraph, in execution order.

    Returns:
        A list of dicts: `index`, `op` (builtin name, or `CUSTOM:<name>`),
        `inputs`/`outputs` (each a list of dicts with `index`, `name`,
        `type`, `shape`, `shape_signature`, `is_constant`).
    """
    schema = _schema()
    model = read_model(tflite_bytes)
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    sub = model.subgraphs[0]

    def tensor_info(i):
        t = sub.tensors[i]
        buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        data = getattr(buf, "data", None) if buf is not None else None
        name = t.name.decode() if isinstance(t.name, bytes) else t.name
        shape = [] if t.shape is None else [int(d) for d in t.shape]
        sig = shape if t.shapeSignature is None else [int(d) for d in t.shapeSignature]
        return {
            "index": int(i),
            "name": name,
            "type": type_names.get(t.type, str(t.type)),
            "shape": shape,
            "shape_signature": sig,
            "is_constant": data is not None and len(data) > 0,
        }

    ops = []
    for k, op in enumerate(sub.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        name = op_names.get(builtin, str(builtin))
        if name == "CUSTOM":
            cc = code.customCode
            name = "CUSTOM:" + (cc.decode() if isinstance(cc, bytes) else str(cc))
        ops.append({
            "index": k,
            "op": name,
            "inputs": [tensor_info(i) for i in (op.inputs if op.inputs is not None else []) if i >= 0],
            "outputs": [tensor_info(i) for i in (op.outputs if op.outputs is not None else []) if i >= 0],
        })
    return ops


def io_details(tflite_bytes):
    """Input/output details (dtype name, shape, scale, zero point)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=bytes(tflite_bytes))

    def d(x):
        scale, zp = x["quantization"]
        return {
            "dtype": np.dtype(x["dtype"]).name,
            "shape": [int(s) for s in x["shape"]],
            "scale": float(scale),
            "zero_point": int(zp),
        }

    return {
        "inputs": [d(x) for x in it.get_input_details()],
        "outputs": [d(x) for x in it.get_output_details()],
    }


def find_float_ops(ops, allow_io_boundary=False, graph_io=()):
    """Ops that read or write a float tensor.

    Args:
        ops: from `describe_ops`.
        allow_io_boundary: allow a QUANTIZE that reads a graph input and a
            DEQUANTIZE that writes a graph output (int16x8 with float I/O).
        graph_io: tensor indices of the graph inputs and outputs.
    """
    islands = []
    for op in ops:
        floats = [t for t in op["inputs"] + op["outputs"] if t["type"] in FLOAT_TYPES]
        if not floats:
            continue
        if allow_io_boundary and op["op"] in ("QUANTIZE", "DEQUANTIZE"):
            if all(t["index"] in graph_io for t in floats):
                continue
        islands.append({
            "index": op["index"],
            "op": op["op"],
            "float_tensors": [f"{t['name']}:{t['type']}" for t in floats],
        })
    return islands


# ---------------------------------------------------------------------------
# Running a .tflite
# ---------------------------------------------------------------------------


def xnnpack_partitions(tflite_bytes, num_threads=1):
    """XNNPACK partitions and the ops left out of them.

    The interpreter (ai-edge-litert, default resolver, which applies the
    XNNPACK delegate) lists the model's original nodes and then one node
    named `DELEGATE` per partition that XNNPACK took. A partition's node
    lists its outside inputs and its outputs; walking back from its outputs
    to those inputs finds the original ops it replaced. The ops no
    partition holds run on TFLite's own kernels.
    """
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=bytes(tflite_bytes), num_threads=num_threads)
    it.allocate_tensors()
    nodes = it._get_ops_details()
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    original = [n for n in nodes if n["op_name"] != "DELEGATE"]
    producer = {}
    for n in original:
        for t in n["outputs"]:
            producer[int(t)] = n["index"]
    by_index = {n["index"]: n for n in original}
    delegated = set()
    for d in delegates:
        boundary = set(int(t) for t in d["inputs"])
        stack = [producer[int(t)] for t in d["outputs"] if int(t) in producer]
        while stack:
            i = stack.pop()
            if i in delegated:
                continue
            delegated.add(i)
            for t in by_index[i]["inputs"]:
                t = int(t)
                if t < 0 or t in boundary or t not in producer:
                    continue
                stack.append(producer[t])
    left_out = [n for n in original if n["index"] not in delegated]
    counts = {}
    for n in left_out:
        counts[n["op_name"]] = counts.get(n["op_name"], 0) + 1
    return {
        "ops": len(original),
        "partitions": len(delegates),
        "delegated_ops": len(delegated),
        "left_out_ops": len(left_out),
        "left_out_by_type": counts,
        "left_out": [f"{n['index']}:{n['op_name']}" for n in left_out][:60],
    }


def quantize_input(images, detail):
    """Maps float pixels to the input tensor's dtype using its scale/zero point."""
    dtype = np.dtype(detail["dtype"])
    x = np.asarray(images, dtype=np.float32)
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zp = detail["quantization"]
    info = np.iinfo(dtype)
    q = np.round(x / scale + zp)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_output(raw, detail):
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return raw.astype(np.float32)
    scale, zp = detail["quantization"]
    return (raw.astype(np.float32) - zp) * scale


class LiteRTRunner:
    """Runs a batch-1 `.tflite` image classifier with `ai_edge_litert`."""

    def __init__(self, tflite_bytes, num_threads=None, kernels="default"):
        """kernels: "default" (XNNPACK delegate where it applies),
        "builtin" (TFLite's optimized kernels, no delegate) or "reference"
        (TFLite's reference kernels, the closest to TFLite Micro's)."""
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_litert.interpreter import OpResolverType

        resolver = {
            "default": OpResolverType.AUTO,
            "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            "reference": OpResolverType.BUILTIN_REF,
        }[kernels]
        self.interpreter = Interpreter(
            model_content=bytes(tflite_bytes), num_threads=num_threads,
            experimental_op_resolver_type=resolver,
        )
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.image_shape = tuple(int(d) for d in self.input["shape"][1:])

    def run_raw(self, images):
        """Returns the raw output tensors (N, classes) in their own dtype."""
        images = check_images(images, self.image_shape)
        x = quantize_input(images, self.input)
        out = []
        for i in range(x.shape[0]):
            self.interpreter.set_tensor(self.input["index"], x[i : i + 1])
            self.interpreter.invoke()
            out.append(self.interpreter.get_tensor(self.output["index"])[0].copy())
        return np.stack(out)

    def predict(self, images):
        """Float outputs (dequantized), shape (N, classes)."""
        return dequantize_output(self.run_raw(images), self.output)


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def validate_tflite(model, tflite_bytes, mode, x_eval, y_eval,
                    allow_float_ops=False, max_drop=DEFAULT_MAX_DROP,
                    batch_size=256):
    """Builds the validation report of a converted model.

    Args:
        model: the (float) Keras model it came from.
        tflite_bytes: the converted model.
        mode: conversion mode (decides whether float tensors are allowed).
        x_eval, y_eval: held-out images (raw 0..255) and integer labels.
        allow_float_ops: downgrade a float island in an integer model from an
            error to a note in the report.

    Returns:
        The report dict (JSON-serialisable).

    Raises:
        ConversionError: float island in an integer model (unless allowed), or
            Flex/custom ops.
    """
    ops = describe_ops(tflite_bytes)
    model_t = read_model(tflite_bytes)
    sub = model_t.subgraphs[0]
    graph_io = set(int(i) for i in list(sub.inputs) + list(sub.outputs))
    op_counts = {}
    for op in ops:
        op_counts[op["op"]] = op_counts.get(op["op"], 0) + 1
    custom = [op["op"] for op in ops if op["op"].startswith("CUSTOM")]
    report = {
        "mode": mode,
        "size_bytes": len(tflite_bytes),
        "num_ops": len(ops),
        "ops": [op["op"] for op in ops],
        "op_counts": op_counts,
        "io": io_details(tflite_bytes),
        "custom_or_flex_ops": custom,
    }
    if custom:
        raise ConversionError(
            f"{mode} model contains custom/Flex ops {custom}; they do not run "
            "on plain LiteRT builtins, TFLite Micro or the Edge TPU."
        )
    report["xnnpack"] = xnnpack_partitions(tflite_bytes)
    if mode in INTEGER_MODES:
        islands = find_float_ops(
            ops, allow_io_boundary=(mode == "int16x8"), graph_io=graph_io
        )
        report["float_ops"] = islands
        if islands and not allow_float_ops:
            desc = ", ".join(f"#{o['index']} {o['op']}" for o in islands[:10])
            raise ConversionError(
                f"The {mode} model has {len(islands)} op(s) that read or write "
                f"float tensors (float islands): {desc}. Replace the layers "
                "that produce them (e.g. LayerNormalization -> NEG/RSQRT, "
                "ops.square -> SQUARE, GELU) or pass allow_float_ops."
            )
    else:
        report["float_ops"] = None  # float models: not applicable

    if x_eval is not None and len(x_eval) > 0:
        shape = model_image_shape(model)
        x_eval = check_images(x_eval, shape, "evaluation images")
        y_eval = np.asarray(y_eval).reshape(-1).astype(int)
        keras_out = np.asarray(model.predict(x_eval.astype("float32"),
                                             batch_size=batch_size, verbose=0))
        lite_out = LiteRTRunner(tflite_bytes).predict(x_eval)
        keras_pred = keras_out.argmax(-1)
        lite_pred = lite_out.argmax(-1)
        num_classes = keras_out.shape[-1]
        keras_top1 = float((keras_pred == y_eval).mean())
        lite_top1 = float((lite_pred == y_eval).mean())
        out_detail = report["io"]["outputs"][0]
        max_diff = float(np.max(np.abs(keras_out - lite_out)))
        report.update({
            "num_eval_images": int(x_eval.shape[0]),
            "num_classes": int(num_classes),
            "keras_top1": round(keras_top1, 5),
            "tflite_top1": round(lite_top1, 5),
            "argmax_agreement": round(float((keras_pred == lite_pred).mean()), 5),
            "max_abs_output_diff": max_diff,
            "max_abs_output_diff_lsb": (
                round(max_diff / out_detail["scale"], 3)
                if out_detail["scale"] > 0 else None
            ),
            "output_is_probability": bool(
                np.allclose(keras_out.sum(-1), 1.0, atol=1e-3)
            ),
        })
        report["gate"] = paired_gate(keras_pred == y_eval, lite_pred == y_eval,
                                     max_drop=max_drop)
    else:
        report["gate"] = {"status": "warn", "reason": "no evaluation images"}
    return report


def format_report(report):
    """A short human-readable summary of a validation report."""
    lines = [
        f"mode: {report['mode']}  size: {report['size_bytes']} bytes "
        f"({report['size_bytes'] / 1024:.1f} KiB)  ops: {report['num_ops']}",
        "op counts: " + ", ".join(f"{k}x{v}" for k, v in sorted(report["op_counts"].items())),
        "io: " + json.dumps(report["io"]),
    ]
    if report.get("float_ops") is not None:
        lines.append(f"float islands: {len(report['float_ops'])}")
    if "xnnpack" in report:
        left_out = report["xnnpack"]["left_out_by_type"]
        lines.append(
            f"XNNPACK (LiteRT's CPU delegate): {report['xnnpack']['partitions']}"
            " partition(s); ops left to TFLite's own kernels: "
            + (", ".join(f"{k}x{v}" for k, v in sorted(left_out.items()))
               or "none"))
    if "keras_top1" in report:
        lines.append(
            f"top-1 keras {100 * report['keras_top1']:.2f}%  tflite "
            f"{100 * report['tflite_top1']:.2f}%  agreement "
            f"{100 * report['argmax_agreement']:.2f}%  max |diff| "
            f"{report['max_abs_output_diff']:.4g} on {report['num_eval_images']} images"
        )
    gate = report.get("gate", {})
    lines.append(f"gate: {gate.get('status')} {gate.get('reason', '')}".rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Side files (labels, preprocessing facts) and the whole pipeline
# ---------------------------------------------------------------------------


def sidecar_paths(tflite_path):
    stem = os.path.splitext(os.fspath(tflite_path))[0]
    return {
        "labels": stem + ".labels.txt",
        "preprocessing": stem + ".preprocessing.json",
        "report": stem + ".report.json",
    }


def find_labels_file(model_path):
    """`<stem>.labels.txt` beside the model, else `labels.txt` in its folder."""
    stem = os.path.splitext(os.fspath(model_path))[0]
    for cand in (stem + ".labels.txt",
                 os.path.join(os.path.dirname(os.fspath(model_path)) or ".", "labels.txt")):
        if os.path.isfile(cand):
            return cand
    return None


def read_labels(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def write_labels(path, class_names):
    with open(path, "w", encoding="utf-8") as f:
        for name in class_names:
            f.write(f"{name}\n")


def preprocessing_facts(tflite_bytes, image_shape, resize_method="bilinear"):
    """What an app must do to an image before feeding this model."""
    io = io_details(tflite_bytes)
    inp, out = io["inputs"][0], io["outputs"][0]
    return {
        "input_shape": inp["shape"],
        "input_dtype": inp["dtype"],
        "input_scale": inp["scale"],
        "input_zero_point": inp["zero_point"],
        "pixel_range": [0, 255],
        "pixel_to_input": (
            "raw RGB pixel values 0..255; the model normalises inside"
            if inp["dtype"] == "float32" else
            f"q = round(pixel / {inp['scale']:g} + {inp['zero_point']}) "
            f"(as {inp['dtype']})"
        ),
        "channels": int(image_shape[-1]),
        "resize": {"height": int(image_shape[0]), "width": int(image_shape[1]),
                   "method": resize_method},
        "output_dtype": out["dtype"],
        "output_scale": out["scale"],
        "output_zero_point": out["zero_point"],
        "output": "class probabilities (softmax) in labels-file order",
    }


def export_tflite(model, out_path, mode="int8", x_train=None, x_eval=None,
                  y_eval=None, class_names=None, num_calibration=DEFAULT_NUM_CALIBRATION,
                  io_type="int8", allow_float_ops=False, max_drop=DEFAULT_MAX_DROP,
                  seed=0, verbose=True,
                  max_depthwise_taps=XNNPACK_DEPTHWISE_TAPS,
                  symmetric_matmul=True):
    """Converts, validates and writes a model with its side files.

    Args:
        model: a `keras.Model` or the path of a `.keras` file.
        out_path: the `.tflite` path to write.
        mode: one of `MODES`.
        x_train: real training images (uint8, raw pixels) for calibration.
        x_eval, y_eval: held-out images and labels for the report.
        class_names: written as `<stem>.labels.txt`.
        num_calibration: calibration images drawn from `x_train`.
        io_type: "int8" or "uint8" model input/output (mode int8).
        allow_float_ops: accept float islands in an integer model.
        max_drop: the top-1 drop (points) the accuracy gate allows (see
            `mdnet_keras.export.accuracy_gate.paired_gate`).
        max_depthwise_taps: large multi-scale depthwise kernels are split
            into pieces of at most this many taps (see `convert_model`);
            `None` keeps them whole.
        symmetric_matmul: int8 only: zero-point-0 matmul operands, so that
            XNNPACK runs attention's matmuls (see `convert_model`).

    Returns:
        The report dict (also written as `<stem>.report.json`).

    Raises:
        ModelLoadError, ValueError, ConversionError: bad input or conversion.
        AccuracyGateError: the gate failed (files are still written, so the
            report can be inspected).
    """
    out_path = os.fspath(out_path)
    if not out_path.endswith(".tflite"):
        raise ValueError(f"out_path must end with .tflite, got {out_path!r}")
    source = None
    if not hasattr(model, "predict"):
        source = os.fspath(model)
        model = load_keras_model(source)
    check_image_classifier(model)
    shape = model_image_shape(model)
    if x_eval is not None:
        x_eval = check_images(x_eval, shape, "evaluation images")
    model = as_float32_model(model)
    tflite_bytes = convert_model(model, mode, rep_images=x_train,
                                 num_calibration=num_calibration,
                                 io_type=io_type, seed=seed,
                                 max_depthwise_taps=max_depthwise_taps,
                                 symmetric_matmul=symmetric_matmul)
    report = validate_tflite(model, tflite_bytes, mode, x_eval, y_eval,
                             allow_float_ops=allow_float_ops,
                             max_drop=max_drop)
    report["source"] = source
    report["tflite_path"] = out_path
    report["max_depthwise_taps"] = max_depthwise_taps
    if mode == "int8":
        report["symmetric_matmul"] = bool(symmetric_matmul)
        report["io_type"] = io_type
        report["num_calibration"] = int(min(num_calibration, len(x_train)))
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    with open(out_path, "wb") as f:
        f.write(tflite_bytes)
    side = sidecar_paths(out_path)
    if class_names is not None:
        write_labels(side["labels"], [str(c) for c in class_names])
        report["labels_path"] = side["labels"]
    with open(side["preprocessing"], "w") as f:
        json.dump(preprocessing_facts(tflite_bytes, shape), f, indent=2)
    with open(side["report"], "w") as f:
        json.dump(report, f, indent=2)
    if verbose:
        print(format_report(report))
        print(f"wrote {out_path} and {side['report']}")
    if report.get("gate", {}).get("status") == "fail":
        raise AccuracyGateError(
            f"Accuracy gate failed for {out_path}: {report['gate']['reason']}",
            report,
        )
    return report
