"""The `.tflite` that a TFLite Micro app compiles in: the model without what
TFLite Micro never reads.

The converter's flatbuffer carries tensor names, a signature, min/max
calibration ranges and one int64 zero point per channel of every
per-channel tensor. TFLite Micro reads none of the strings (only metadata
names, kept), and for a per-channel tensor whose zero-point array has one
entry it uses that entry for every channel (`micro_allocator.cc`: "zero
point arrays for weights can be reduced to a single value"). Dropping them
is what TFLite Micro's own `tflm_model_transforms` does; the result is
re-aligned with TFLite Micro's flatbuffer aligner (its C++ writer keeps the
16-byte alignment of the weight buffers that Python's writer loses).

Only the micro app gets these bytes: LiteRT refuses a per-channel tensor
with one zero point, so the Python-side `.tflite` stays as converted.
"""

import os
import tempfile

import numpy as np

from mdnet_keras.export.flatbuffer import read_model

TFLITE_IDENTIFIER = b"TFL3"


def strip_for_micro(model):
    """Edits a `ModelT` in place; returns what was dropped (counts)."""
    dropped = {"names": 0, "zero_points": 0, "min_max": 0,
               "signature_defs": len(model.signatureDefs or [])}
    model.description = None
    model.signatureDefs = None
    for subgraph in model.subgraphs:
        subgraph.name = None
        for tensor in subgraph.tensors:
            dropped["names"] += tensor.name is not None
            tensor.name = None
            q = tensor.quantization
            if q is None:
                continue
            dropped["min_max"] += len(q.min if q.min is not None else []) + len(
                q.max if q.max is not None else [])
            q.min = q.max = None
            zero_points = q.zeroPoint
            if zero_points is not None and len(zero_points) > 1 and not np.any(
                    np.asarray(zero_points)):
                dropped["zero_points"] += len(zero_points) - 1
                q.zeroPoint = np.zeros(1, np.int64)
    return dropped


def pack(model):
    """Serializes a `ModelT` and re-aligns it with TFLite Micro's aligner."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.tools import (
        tflite_flatbuffer_align_wrapper as aligner)

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    with tempfile.TemporaryDirectory(prefix="mdnet_micro_fb_") as tmp:
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as f:
            f.write(builder.Output())
        aligner.align_tflite_model(path, path)
        with open(path, "rb") as f:
            return f.read()


def micro_model(tflite_bytes):
    """The model as the micro app compiles it in (see the module doc).

    Args:
        tflite_bytes: an int8 `.tflite` from the converter.

    Returns:
        A tuple `(micro_bytes, dropped)`: the smaller flatbuffer, which
        TFLite Micro runs with the same outputs bit for bit, and the counts
        of what was dropped.

    Example:

    ```python
    small, dropped = micro_model(open("model_int8.tflite", "rb").read())
    ```
    """
    model = read_model(tflite_bytes)
    dropped = strip_for_micro(model)
    return pack(model), dropped
