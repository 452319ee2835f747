"""Mode int8_xnnpack (`mdnet_keras.export.selective`): int8 everywhere but the
ops XNNPACK runs only in float, made by ai-edge-quantizer."""

import builtins

import numpy as np
import pytest

from export_models import AGREEMENT
from export_models import cifar
from export_models import converted
from export_models import mdnet_micro
from export_models import tiny
from export_models import toy


def compute_ops_in_float(report_ops):
    return {op["op"] for op in report_ops
            if op["op"] not in ("QUANTIZE", "DEQUANTIZE")
            and any(t["type"] == "FLOAT32" for t in op["inputs"] + op["outputs"])}


@pytest.mark.slow
def test_mdnet_runs_in_one_xnnpack_partition_with_float_softmax_and_rsqrt():
    from mdnet_keras.export import describe_ops
    from mdnet_keras.export import validate_tflite
    from mdnet_keras.export import xnnpack_partitions

    model, _ = mdnet_micro()
    _, _, xt, yt, _ = cifar()
    int8 = converted("mdnet", "int8")
    mixed = converted("mdnet", "int8_xnnpack")
    # The converter's int8 model is cut where XNNPACK takes no int8 op.
    assert {"SOFTMAX", "RSQRT"} <= set(
        xnnpack_partitions(int8)["left_out_by_type"])
    partitions = xnnpack_partitions(mixed)
    assert partitions["partitions"] == 1 and partitions["left_out_ops"] == 0
    ops = describe_ops(mixed)
    # Float by design: softmax, the norm's RSQRT and the epsilon ADD before
    # it; every convolution, matmul and the rest stay int8.
    assert compute_ops_in_float(ops) == {"SOFTMAX", "RSQRT", "ADD"}
    float_adds = [op for op in ops if op["op"] == "ADD" and any(
        t["type"] == "FLOAT32" for t in op["outputs"])]
    assert len(float_adds) == sum(op["op"] == "RSQRT" for op in ops)
    report = validate_tflite(model, mixed, "int8_xnnpack", xt[:300], yt[:300])
    assert report["float_ops"] == []
    assert report["io"]["inputs"][0]["dtype"] == "int8"
    assert report["io"]["outputs"][0]["dtype"] == "int8"


@pytest.mark.slow
def test_toy_agrees_with_keras_about_as_well_as_int8():
    from mdnet_keras.export import validate_tflite

    model, _ = toy()
    _, _, xt, yt, _ = cifar()
    report = validate_tflite(model, converted("toy", "int8_xnnpack"),
                             "int8_xnnpack", xt[:600], yt[:600])
    assert report["argmax_agreement"] >= AGREEMENT["int8_xnnpack"], report
    assert abs(report["tflite_top1"] - report["keras_top1"]) < 0.03
    assert report["gate"]["status"] == "pass", report["gate"]
    assert "SOFTMAX" not in report["xnnpack"]["left_out_by_type"]


def test_the_validation_still_finds_an_unplanned_float_op():
    from mdnet_keras.export import selective
    from mdnet_keras.export.flatbuffer import find_float_ops

    def op(index, kind, inputs, outputs):
        return {"index": index, "op": kind,
                "inputs": [{"index": i, "type": t, "name": f"t{i}"}
                           for i, t in inputs],
                "outputs": [{"index": i, "type": t, "name": f"t{i}"}
                            for i, t in outputs]}

    ops = [op(0, "MEAN", [(0, "INT8")], [(1, "INT8")]),
           op(1, "DEQUANTIZE", [(1, "INT8")], [(2, "FLOAT32")]),
           op(2, "ADD", [(2, "FLOAT32")], [(3, "FLOAT32")]),
           op(3, "RSQRT", [(3, "FLOAT32")], [(4, "FLOAT32")]),
           op(4, "CONV_2D", [(4, "FLOAT32")], [(5, "FLOAT32")]),
           op(5, "QUANTIZE", [(5, "FLOAT32")], [(6, "INT8")])]
    assert [o["index"] for o in selective.float_feeders(ops)] == [2]
    islands = find_float_ops(ops, skip=selective.float_by_design(ops))
    assert [island["op"] for island in islands] == ["CONV_2D"]


def test_missing_quantizer_is_a_clear_error(monkeypatch):
    from mdnet_keras.export import ConversionError
    from mdnet_keras.export import convert_model

    real_import = builtins.__import__

    def no_quantizer(name, *args, **kwargs):
        if name.startswith("ai_edge_quantizer"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_quantizer)
    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3))
    with pytest.raises(ConversionError, match="pip install ai-edge-quantizer"):
        convert_model(tiny(), "int8_xnnpack", rep_images=images,
                      num_calibration=4)


def test_needs_calibration_images():
    from mdnet_keras.export import convert_model

    with pytest.raises(ValueError, match="representative dataset"):
        convert_model(tiny(), "int8_xnnpack")


def test_a_quantization_aware_model_is_refused():
    from mdnet_keras import quantization
    from mdnet_keras.export import convert_model

    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3))
    twin = quantization.quantize_model(tiny())
    with pytest.raises(ValueError, match="converts with mode int8"):
        convert_model(twin, "int8_xnnpack", rep_images=images,
                      num_calibration=4)
