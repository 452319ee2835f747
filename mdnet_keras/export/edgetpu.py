"""Coral Edge TPU compatibility report, from the published rules.

`edgetpu_compiler` cannot be installed here, so this reads the `.tflite`
flatbuffer and applies the rules Coral documents for the compiler
(coral.ai/docs/edgetpu/models-intro, "Model requirements" and "Supported
operations"):

- every tensor quantized to 8 bits (int8/uint8; int32 biases are fine);
- tensor sizes constant at compile time (no dynamic shape signature), batch 1;
- tensors of at most 3 dimensions, or only the 3 innermost dimensions larger
  than 1;
- only the supported ops, within their limits (e.g. SOFTMAX on 1-D input only;
  no BATCH_MATMUL at all);
- the compiler maps ops, in execution order, up to the first one it cannot map;
  that op and everything after it run on the CPU.

The report names the first op that falls back and the share of the model's
multiply-accumulates (MACs) that run before it, on the TPU. It is an estimate
from the published rules, not the compiler's output: run `edgetpu_compiler -s`
to confirm (see tflite/README.md).
"""

import numpy as np

from mdnet_keras.export.flatbuffer import describe_ops
from mdnet_keras.export.flatbuffer import io_details

# The supported-operations table (op -> limitation checked here, if any).
SUPPORTED_OPS = {
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D",
    "EXPAND_DIMS", "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "LSTM",
    "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU",
    "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1",
    "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE",
    "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE",
    "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
    "HARD_SWISH",
}
SOFTMAX_MAX_ELEMENTS = 16000
QUANTIZED_TYPES = ("INT8", "UINT8")
# Bias / shape / index tensors that may stay int32.
AUX_TYPES = ("INT32",)


def _non_unit(shape):
    return [d for d in shape if d != 1]


def _numel(shape):
    return int(np.prod(shape)) if len(shape) else 1


def op_macs(op):
    """Multiply-accumulates of one op (0 for ops without a reduction).

    CONV_2D: output elements x kh x kw x cin; DEPTHWISE_CONV_2D: output
    elements x kh x kw; FULLY_CONNECTED: output elements x in_features;
    BATCH_MATMUL: output elements x the contracted dimension; TRANSPOSE_CONV:
    input elements x kh x kw x cout. Element-wise ops count 0.
    """
    name = op["op"]
    ins, outs = op["inputs"], op["outputs"]
    if not outs:
        return 0
    out_n = _numel(outs[0]["shape"])
    if name == "CONV_2D" and len(ins) >= 2:
        _, kh, kw, cin = ins[1]["shape"]
        return out_n * kh * kw * cin
    if name == "DEPTHWISE_CONV_2D" and len(ins) >= 2:
        _, kh, kw, _ = ins[1]["shape"]
        return out_n * kh * kw
    if name == "FULLY_CONNECTED" and len(ins) >= 2:
        return out_n * ins[1]["shape"][-1]
    if name == "BATCH_MATMUL" and len(ins) >= 2:
        a = ins[0]["shape"]
        return out_n * (a[-1] if a else 1)
    if name == "TRANSPOSE_CONV" and len(ins) >= 2:
        cout, kh, kw, _ = ins[1]["shape"]
        return _numel(ins[2]["shape"]) * kh * kw * cout if len(ins) > 2 else 0
    return 0


def op_problems(op):
    """Reasons an op cannot be mapped to the Edge TPU (empty list: mappable)."""
    name = op["op"]
    problems = []
    if name not in SUPPORTED_OPS:
        problems.append(f"{name} is not a supported Edge TPU operation")
    tensors = op["inputs"] + op["outputs"]
    for t in tensors:
        if t["type"] not in QUANTIZED_TYPES and t["type"] not in AUX_TYPES:
            problems.append(
                f"tensor {t['name']} is {t['type']}, not 8-bit quantized")
        elif t["type"] in AUX_TYPES and not t["is_constant"] and name != "QUANTIZE":
            problems.append(
                f"tensor {t['name']} is a non-constant {t['type']} activation")
        if any(d < 0 for d in t["shape_signature"]):
            problems.append(
                f"tensor {t['name']} has a dynamic shape {t['shape_signature']}")
        shape = t["shape"]
        # The rule is about activation tensors: conv filters are 4-D constants.
        if not t["is_constant"] and len(shape) > 3 and any(d != 1 for d in shape[:-3]):
            problems.append(
                f"tensor {t['name']} {shape}: more than 3 innermost dimensions "
                "larger than 1")
    if name == "SOFTMAX" and op["inputs"]:
        shape = op["inputs"][0]["shape"]
        if len(_non_unit(shape)) > 1:
            problems.append(f"SOFTMAX on a {len(_non_unit(shape))}-D input {shape}"
                            " (only 1-D is supported)")
        elif _numel(shape) > SOFTMAX_MAX_ELEMENTS:
            problems.append(f"SOFTMAX over {_numel(shape)} > {SOFTMAX_MAX_ELEMENTS} elements")
    if name in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION"):
        pass  # fused activations are not visible in describe_ops; not checked
    if name == "FULLY_CONNECTED" and op["outputs"]:
        if len(_non_unit(op["outputs"][0]["shape"])) > 1:
            problems.append("FULLY_CONNECTED output is not one-dimensional")
    # De-duplicate, keep order.
    return list(dict.fromkeys(problems))


def edgetpu_report(tflite_bytes):
    """Estimates how the Edge TPU compiler would map a `.tflite` model.

    Returns:
        dict with `compatible` (every op maps), `first_fallback` (index, op,
        reasons) or None, `tpu_ops`/`cpu_ops` counts, `total_macs`,
        `tpu_macs`, `tpu_mac_share`, `model_problems` (model-level rules such
        as batch 1) and per-op `ops`.
    """
    ops = describe_ops(tflite_bytes)
    io = io_details(tflite_bytes)
    model_problems = []
    for d in io["inputs"]:
        if d["shape"] and d["shape"][0] != 1:
            model_problems.append(f"input batch is {d['shape'][0]}, must be 1")
    per_op, first = [], None
    total = tpu = 0
    for op in ops:
        macs = op_macs(op)
        problems = op_problems(op)
        total += macs
        on_tpu = first is None and not problems and not model_problems
        if on_tpu:
            tpu += macs
        elif first is None:
            first = {"index": op["index"], "op": op["op"],
                     "reasons": problems or model_problems}
        per_op.append({"index": op["index"], "op": op["op"], "macs": macs,
                       "problems": problems,
                       "runs_on": "tpu" if on_tpu else "cpu"})
    n_tpu = sum(1 for o in per_op if o["runs_on"] == "tpu")
    return {
        "compatible": first is None,
        "first_fallback": first,
        "tpu_ops": n_tpu,
        "cpu_ops": len(per_op) - n_tpu,
        "total_macs": int(total),
        "tpu_macs": int(tpu),
        "tpu_mac_share": float(tpu / total) if total else (1.0 if first is None else 0.0),
        "model_problems": model_problems,
        "ops": per_op,
        "note": ("estimate from Coral's published rules; confirm with "
                 "`edgetpu_compiler -s model.tflite`"),
    }


def format_edgetpu_report(report):
    lines = [
        f"Edge TPU: {'all ops map' if report['compatible'] else 'partial'}; "
        f"{report['tpu_ops']} op(s) on TPU, {report['cpu_ops']} on CPU; "
        f"{100 * report['tpu_mac_share']:.1f}% of {report['total_macs']:,} MACs on TPU"
    ]
    if report["first_fallback"]:
        f = report["first_fallback"]
        lines.append(f"first op on CPU: #{f['index']} {f['op']}: " + "; ".join(f["reasons"]))
    return "\n".join(lines)
