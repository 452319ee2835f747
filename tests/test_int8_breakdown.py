"""The int8 latency breakdown: its model surgery, and its quick run end to
end (each variant changes the graph the way its name says)."""

import json
import pathlib
import sys

import keras
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import int8_breakdown  # noqa: E402
from mdnet_keras import MDNet  # noqa: E402
from mdnet_keras.layers.attention_base import SelfAttentionBase  # noqa: E402


def test_without_attention_passes_tokens_through():
    model = MDNet(variant="mdnet_micro", num_classes=10)
    attention = [layer.name for layer in model.layers
                 if isinstance(layer, SelfAttentionBase)]
    assert attention
    stripped = int8_breakdown.without_attention(model)
    assert not any(isinstance(layer, SelfAttentionBase)
                   for layer in stripped.layers)
    for name in attention:
        assert isinstance(stripped.get_layer(name), keras.layers.Identity)
    assert len(stripped.layers) == len(model.layers)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3))
    assert stripped.predict(x, verbose=0).shape == (2, 10)


def test_quick_breakdown_end_to_end(tmp_path):
    int8_breakdown.main(["--quick", f"--out={tmp_path}"])
    results = json.loads((tmp_path / "int8_breakdown.json").read_text())
    rows = results["variants"]
    assert set(rows) == {
        "mdnet_micro", "mdnet_micro_whole_kernels",
        "mdnet_micro_asymmetric_matmul", "mdnet_micro_kernels_3_5",
        "mdnet_micro_kernels_3", "mdnet_micro_no_attention", "resnet20"}
    for row in rows.values():
        assert row["xnnpack"]["partitions"] >= 1
        assert row["latency_ms"]["1"] > 0 and row["latency_ms"]["2"] > 0
    base = rows["mdnet_micro"]
    # Smaller kernels, fewer depthwise weights: the kernel sizes reached
    # the model.
    assert rows["mdnet_micro_kernels_3"]["params"] < \
        rows["mdnet_micro_kernels_3_5"]["params"] < base["params"]
    np.testing.assert_allclose(
        base["vs_reference"]["1"],
        base["latency_ms"]["1"] / rows["resnet20"]["latency_ms"]["1"])
    # Pieces of <= 25 taps add ops; whole kernels have fewer.
    assert rows["mdnet_micro_whole_kernels"]["xnnpack"]["ops"] < \
        base["xnnpack"]["ops"]
    # XNNPACK takes int8 BATCH_MATMUL only with symmetric operands.
    assert "BATCH_MATMUL" not in base["xnnpack"]["left_out_by_type"]
    assert "BATCH_MATMUL" in rows["mdnet_micro_asymmetric_matmul"][
        "xnnpack"]["left_out_by_type"]
    # The RSQRT of the per-head RMSNorm goes with the attention.
    assert "RSQRT" in base["xnnpack"]["left_out_by_type"]
    assert "RSQRT" not in rows["mdnet_micro_no_attention"]["xnnpack"][
        "left_out_by_type"]
    markdown = (tmp_path / "int8_breakdown.md").read_text()
    assert "| mdnet_micro_no_attention |" in markdown
    keras.backend.clear_session()
