"""Reading and editing a `.tflite` (mdnet_keras.export.flatbuffer)."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

from export_models import AGREEMENT  # noqa: E402
from export_models import cifar  # noqa: E402
from export_models import converted  # noqa: E402
from export_models import tiny  # noqa: E402
from export_models import tiny_images  # noqa: E402
from export_models import toy  # noqa: E402


def test_describe_ops_and_io_details_of_a_tiny_model():
    from mdnet_keras.export import convert_model
    from mdnet_keras.export import describe_ops
    from mdnet_keras.export import io_details

    data = convert_model(tiny(), "int8", rep_images=tiny_images(), num_calibration=10)
    ops = describe_ops(data)
    assert [op["op"] for op in ops] == ["CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"]
    assert [op["index"] for op in ops] == [0, 1, 2, 3]
    conv = ops[0]
    assert conv["inputs"][0]["shape"] == [1, 16, 16, 3]
    assert conv["inputs"][1]["is_constant"] and not conv["inputs"][0]["is_constant"]
    io = io_details(data)
    assert io["inputs"][0]["dtype"] == "int8" and io["inputs"][0]["shape"] == [1, 16, 16, 3]
    assert io["outputs"][0]["shape"] == [1, 4]


def test_find_float_ops_allows_only_the_io_boundary_when_asked():
    from mdnet_keras.export.flatbuffer import find_float_ops

    def tensor(index, kind):
        return {"index": index, "name": f"t{index}", "type": kind}

    ops = [
        {"index": 0, "op": "QUANTIZE", "inputs": [tensor(0, "FLOAT32")],
         "outputs": [tensor(1, "INT16")]},
        {"index": 1, "op": "ADD", "inputs": [tensor(1, "INT16")],
         "outputs": [tensor(2, "FLOAT32")]},
        {"index": 2, "op": "DEQUANTIZE", "inputs": [tensor(2, "INT16")],
         "outputs": [tensor(3, "FLOAT32")]},
    ]
    assert [o["index"] for o in find_float_ops(ops)] == [0, 1, 2]
    islands = find_float_ops(ops, allow_io_boundary=True, graph_io={0, 3})
    assert [(o["index"], o["float_tensors"]) for o in islands] == [(1, ["t2:FLOAT32"])]


@pytest.mark.slow
def test_int8_has_no_float_tensor_anywhere():
    from mdnet_keras.export import describe_ops

    for which in ("toy", "mdnet"):
        ops = describe_ops(converted(which, "int8"))
        types = {t["type"] for op in ops for t in op["inputs"] + op["outputs"]}
        assert types <= {"INT8", "INT32"}, (which, types)


@pytest.mark.slow
def test_int8_matmul_operands_are_symmetric_and_run_in_xnnpack():
    from mdnet_keras.export import convert_model
    from mdnet_keras.export import symmetric_matmul_operands
    from mdnet_keras.export import validate_tflite
    from mdnet_keras.export import xnnpack_partitions

    model, _ = toy()
    x, _, xt, yt, _ = cifar()
    plain = convert_model(model, "int8", rep_images=x[5000:],
                          num_calibration=100, symmetric_matmul=False)
    edited, changed = symmetric_matmul_operands(plain)
    assert changed > 0
    assert edited == converted("toy", "int8")
    assert symmetric_matmul_operands(edited) == (edited, 0)
    for data in (edited, converted("mdnet", "int8")):
        left_out = xnnpack_partitions(data)["left_out_by_type"]
        assert "BATCH_MATMUL" not in left_out, left_out
    assert "BATCH_MATMUL" in xnnpack_partitions(plain)["left_out_by_type"]
    report = validate_tflite(model, edited, "int8", xt[:500], yt[:500])
    assert report["argmax_agreement"] >= AGREEMENT["int8"], report
