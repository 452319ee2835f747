"""PTQ and QAT int8 side by side: one float model, the same images, paired gates."""

import os

import numpy as np

from mdnet_keras.export import LiteRTRunner
from mdnet_keras.export import convert_model
from mdnet_keras.export import describe_ops
from mdnet_keras.export import load_keras_model
from mdnet_keras.export import paired_gate

FLOAT_BASELINE_NAME = "float.keras"


def default_ptq_baseline(model_path):
    """`float.keras` beside a QAT model (what `train --qat_epochs` writes), or None."""
    path = os.path.join(os.path.dirname(os.fspath(model_path)) or ".", FLOAT_BASELINE_NAME)
    return path if os.path.isfile(path) else None


def side_by_side(float_model, ptq_bytes, qat_bytes, x_eval, y_eval, max_drop=1.0):
    """Top-1 of the float model and both int8 models, each gated against float.

    Returns:
        dict: `float_top1`, and for "ptq" and "qat" the int8 `top1`,
        `size_bytes`, `num_ops` and the paired `gate` against the float
        model; `qat_vs_ptq`, the same paired comparison with PTQ as the
        reference (which int8 model to ship); `same_ops` (whether both int8
        graphs have the same op list) and `op_count_difference` (QAT minus
        PTQ, per op type).
    """
    y_eval = np.asarray(y_eval).reshape(-1)
    float_right = float_model.predict(
        np.asarray(x_eval, "float32"), verbose=0).argmax(-1) == y_eval
    result = {"num_images": int(len(y_eval)), "float_top1": float(float_right.mean())}
    ops, right = {}, {}
    for name, tflite_bytes in (("ptq", ptq_bytes), ("qat", qat_bytes)):
        right[name] = LiteRTRunner(tflite_bytes).predict(x_eval).argmax(-1) == y_eval
        ops[name] = [op["op"] for op in describe_ops(tflite_bytes)]
        result[name] = {"top1": float(right[name].mean()), "size_bytes": len(tflite_bytes),
                        "num_ops": len(ops[name]),
                        "gate": paired_gate(float_right, right[name], max_drop=max_drop)}
    result["qat_vs_ptq"] = paired_gate(right["ptq"], right["qat"], max_drop=max_drop)
    result["same_ops"] = ops["ptq"] == ops["qat"]
    result["op_count_difference"] = op_count_difference(ops["ptq"], ops["qat"])
    return result


def op_count_difference(ptq_ops, qat_ops):
    """{op: QAT count - PTQ count} for the op types whose counts differ."""
    types = set(ptq_ops) | set(qat_ops)
    return {op: qat_ops.count(op) - ptq_ops.count(op) for op in sorted(types)
            if qat_ops.count(op) != ptq_ops.count(op)}


def format_side_by_side(result):
    """The side-by-side table as text."""
    lines = [f"{'model':<10}{'top-1':>9}{'drop':>8}  {'95% interval':<18}gate",
             f"{'float':<10}{100 * result['float_top1']:>8.2f}%"]

    def drop_cells(gate):
        low, high = interval(gate)
        return (f"{gate.get('drop_points', float('nan')):>8.2f}  "
                f"{low:>6.2f} to {high:<6.2f}  ")

    for name in ("ptq", "qat"):
        row, gate = result[name], result[name]["gate"]
        lines.append(f"{name + ' int8':<10}{100 * row['top1']:>8.2f}%"
                     f"{drop_cells(gate)}{gate['status']}")
    if "qat_vs_ptq" in result:  # Reports written before it existed lack it.
        versus = result["qat_vs_ptq"]
        lines.append(f"{'qat - ptq':<10}{'':>9}{drop_cells(versus)}{int8_choice(versus)}")
    lines.append(f"on {result['num_images']} images; same op list: {result['same_ops']}"
                 f" (QAT - PTQ op counts: {result['op_count_difference'] or 'none'})")
    return "\n".join(lines)


def interval(gate):
    """The gate's interval on the drop in points, NaNs where it has none (no
    images to judge)."""
    return gate.get("interval_points", [float("nan")] * 2)


def int8_choice(qat_vs_ptq):
    """Which int8 model the paired comparison of QAT against PTQ favours.

    Args:
        qat_vs_ptq: `paired_gate` of the QAT model with PTQ as the reference.

    Returns:
        str: "ship ptq" when PTQ is right on more images beyond chance (the
        whole interval of QAT's drop lies above 0), "ship qat" when QAT is
        (below 0), else "same within chance".
    """
    low, high = interval(qat_vs_ptq)
    if low > 0:
        return "ship ptq"
    if high < 0:
        return "ship qat"
    return "same within chance"


def compare_with_ptq(qat_report, qat_path, baseline_path, x_train, x_eval, y_eval,
                     max_drop=1.0, **convert_options):
    """The `convert` command's QAT section: PTQ of the float baseline vs QAT.

    Args:
        qat_report: the QAT conversion's report (unchanged).
        qat_path: the QAT `.tflite` just written; the PTQ model is written
            beside it as `<stem>_ptq.tflite`.
        baseline_path: the float `.keras` the QAT model came from, or None.
        x_train: calibration images for the PTQ conversion.
        x_eval, y_eval: evaluation images and labels.
        max_drop: float, the gate's allowed drop in points.
        **convert_options: `mdnet_keras.export.convert_model` options.

    Returns:
        The side-by-side dict (`side_by_side`), with `ptq_path` and `gate`
        (the QAT model against the float one), or a dict saying why not.
    """
    if baseline_path is None:
        return {"reason": "no float baseline (pass --ptq_baseline=FLOAT.keras) "
                          "for the PTQ side-by-side"}
    float_model = load_keras_model(baseline_path)
    ptq_bytes = convert_model(float_model, "int8", rep_images=x_train, **convert_options)
    ptq_path = os.path.splitext(os.fspath(qat_path))[0] + "_ptq.tflite"
    with open(ptq_path, "wb") as f:
        f.write(ptq_bytes)
    with open(qat_path, "rb") as f:
        qat_bytes = f.read()
    result = side_by_side(float_model, ptq_bytes, qat_bytes, x_eval, y_eval, max_drop)
    result.update(baseline=os.fspath(baseline_path), ptq_path=ptq_path,
                  gate=result["qat"]["gate"])
    print(format_side_by_side(result))
    return result
