"""The model as the micro app compiles it in (mdnet_keras.export.micro_flatbuffer):
smaller, aligned, and the same outputs in TFLite Micro bit for bit."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("tflite_micro")

from export_models import tiny  # noqa: E402
from export_models import tiny_images  # noqa: E402


@pytest.fixture(scope="module")
def converted():
    from mdnet_keras.export import convert_model

    return convert_model(tiny(), "int8", rep_images=tiny_images(), num_calibration=20)


def _buffer_starts(data):
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(bytearray(data), 0)
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        if buffer.DataLength():
            yield buffer._tab.Vector(buffer._tab.Offset(4))


def test_micro_model_drops_what_tflm_never_reads(converted):
    from mdnet_keras.export import micro_model
    from mdnet_keras.export.flatbuffer import read_model

    small, dropped = micro_model(converted)
    assert len(small) < len(converted)
    assert dropped["names"] > 0 and dropped["zero_points"] > 0
    model = read_model(small)
    assert model.signatureDefs is None and model.description is None
    tensors = model.subgraphs[0].tensors
    assert all(t.name is None for t in tensors)
    per_channel = [t for t in tensors if t.quantization is not None
                   and t.quantization.scale is not None and len(t.quantization.scale) > 1]
    assert per_channel and all(len(t.quantization.zeroPoint) == 1 for t in per_channel)
    # Activations keep their own zero point, weights the same data.
    before = read_model(converted)
    for old, new in zip(before.subgraphs[0].tensors, tensors):
        assert old.shape.tolist() == new.shape.tolist() and old.buffer == new.buffer
        zero_point = None if old.quantization is None else old.quantization.zeroPoint
        if zero_point is not None and len(zero_point) == 1:
            assert old.quantization.zeroPoint.tolist() == new.quantization.zeroPoint.tolist()
    for old, new in zip(before.buffers, model.buffers):
        assert np.array_equal(np.asarray(old.data if old.data is not None else []),
                              np.asarray(new.data if new.data is not None else []))
    # TFLite Micro's aligner: every weight buffer on a 16-byte boundary.
    assert all(start % 16 == 0 for start in _buffer_starts(small))


def test_micro_model_gives_tflm_the_same_outputs(converted):
    from mdnet_keras.export import micro
    from mdnet_keras.export import micro_model

    small, _ = micro_model(converted)
    images = tiny_images(16, seed=1)
    assert micro.same_micro_outputs(small, converted, images)
    a = micro.MicroRunner(small).run_raw(images)
    assert np.array_equal(a, micro.MicroRunner(converted).run_raw(images))
    # The comparison would see a different model.
    other = tiny(seed=1)
    from mdnet_keras.export import convert_model

    different = convert_model(other, "int8", rep_images=tiny_images(), num_calibration=20)
    assert not micro.same_micro_outputs(different, converted, images)


def test_export_micro_refuses_a_micro_form_that_answers_differently(
        converted, tmp_path, monkeypatch):
    from mdnet_keras.export import convert_model
    from mdnet_keras.export import micro

    path = tmp_path / "m.tflite"
    path.write_bytes(converted)
    other = convert_model(tiny(seed=1), "int8", rep_images=tiny_images(), num_calibration=20)
    monkeypatch.setattr(micro, "micro_model", lambda data: (other, {}))
    with pytest.raises(RuntimeError, match="answers differently"):
        micro.export_micro(str(path), tmp_path / "app", images=tiny_images(4, seed=2))
