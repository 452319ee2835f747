"""Reading and editing a `.tflite` flatbuffer (ai-edge-litert's schema).

Lists the ops and tensors (`describe_ops`), the input/output quantization
(`io_details`), float islands in an integer model (`find_float_ops`), and
re-quantizes int8 matmul operands in place (`symmetric_matmul_operands`).
"""

import numpy as np

FLOAT_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16", "COMPLEX64")
# int8 ops that compute their output's quantization from its own parameters
# (unlike RESHAPE, TRANSPOSE, STRIDED_SLICE, CONCATENATION, which copy).
REQUANTIZING_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D",
                    "BATCH_MATMUL", "ADD", "SUB", "MUL", "QUANTIZE")


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
    """Input/output details (dtype name, shape, scale, zero point).

    Read from the flatbuffer, not through an interpreter, so that it also
    reads the micro form of a model (`micro_model`), which LiteRT refuses.
    """
    schema = _schema()
    model = read_model(tflite_bytes)
    type_names = _enum_names(schema.TensorType)
    sub = model.subgraphs[0]

    def d(index):
        t = sub.tensors[index]
        q = t.quantization
        scales = [] if q is None or q.scale is None else q.scale
        zero_points = [] if q is None or q.zeroPoint is None else q.zeroPoint
        return {
            "dtype": np.dtype(type_names[t.type].lower()).name,
            "shape": [int(s) for s in t.shape],
            "scale": float(scales[0]) if len(scales) else 0.0,
            "zero_point": int(zero_points[0]) if len(zero_points) else 0,
        }

    return {
        "inputs": [d(i) for i in sub.inputs],
        "outputs": [d(i) for i in sub.outputs],
    }


def tensor_readers(ops):
    """Tensor index -> the set of op types that read it, from `describe_ops`."""
    readers = {}
    for op in ops:
        for tensor in op["inputs"]:
            readers.setdefault(tensor["index"], set()).add(op["op"])
    return readers


def find_float_ops(ops, allow_io_boundary=False, graph_io=(), skip=()):
    """Ops that read or write a float tensor.

    Args:
        ops: from `describe_ops`.
        allow_io_boundary: allow a QUANTIZE that reads a graph input and a
            DEQUANTIZE that writes a graph output (int16x8 with float I/O).
        graph_io: tensor indices of the graph inputs and outputs.
        skip: indices of ops that are float by design (int8_xnnpack).
    """
    skip = set(skip)
    islands = []
    for op in ops:
        floats = [t for t in op["inputs"] + op["outputs"] if t["type"] in FLOAT_TYPES]
        if not floats or op["index"] in skip:
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
