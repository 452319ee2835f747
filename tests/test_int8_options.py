"""The int8 options benchmark: its option table, and its quick run end to
end (each option changes the int8 graph the way its name says)."""

import json
import pathlib
import sys

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import baselines  # noqa: E402
from benchmarks import int8_options  # noqa: E402
from mdnet_keras.layers import DifferentialAttention  # noqa: E402
from mdnet_keras.layers import MultiScaleChannelConv  # noqa: E402


def layers_of(model, cls):
    return [layer for layer in model.layers if isinstance(layer, cls)]


def test_options_are_registered_and_reach_the_model():
    table = int8_options.option_models("mdnet_micro")
    assert list(table) == [
        "mdnet_micro", "mdnet_micro_dilated", "mdnet_micro_batch_head_norm",
        "mdnet_micro_dilated_batch_head_norm",
        "mdnet_micro_cascade_batch_head_norm",
        "mdnet_micro_cascade_late_attention_batch_head_norm",
        "mdnet_micro_kernels_3_5_batch_head_norm",
        "mdnet_micro_kernels_3_5_late_attention_batch_head_norm",
        "mdnet_micro_groups_3x3_batch_head_norm",
        "mdnet_micro_kernels_3_batch_head_norm"]
    model = baselines.build_model("mdnet_micro_dilated_batch_head_norm")
    assert all(layer.receptive_fields() == [3, 5, 7, 9]
               for layer in layers_of(model, MultiScaleChannelConv))
    assert all(layer.head_norm == "batch"
               for layer in layers_of(model, DifferentialAttention))
    default = baselines.build_model("mdnet_micro")
    assert all(layer.kernel_sizes == [3, 5, 7, 9] and
               layer.dilation_rates is None
               for layer in layers_of(default, MultiScaleChannelConv))
    ordered = int8_options.option_models(
        "mdnet_micro", ["dilated_batch_head_norm", "base"])
    assert list(ordered) == ["mdnet_micro_dilated_batch_head_norm",
                             "mdnet_micro"]
    with pytest.raises(ValueError, match="Unknown options \\['wide'\\]"):
        int8_options.option_models("mdnet_micro", ["wide"])


def test_the_default_mdnet_is_the_option_that_met_the_targets():
    option = int8_options.option_models(
        "mdnet_v1", ["kernels_3_5_late_attention_batch_head_norm"])
    (name,) = option
    shapes = lambda model: [  # noqa: E731
        (layer.name, type(layer), [tuple(w.shape) for w in layer.weights])
        for layer in model.layers]
    default = baselines.build_model("mdnet")
    assert shapes(default) == shapes(baselines.build_model(name))
    assert {layer.head_norm for layer in layers_of(
        default, DifferentialAttention)} == {"batch"}
    assert int8_options.BUDGETS["full"]["variant"] == "mdnet_v1"


def test_top1_verdict_gives_the_spread_target_and_the_welch_error():
    import statistics

    base, option = [0.4137, 0.4133, 0.4129], [0.4130, 0.4004, 0.4228]
    summary = {"models": {
        name: {"top1": dict(enumerate(top1)),
               "int8_vs_reference": {"1": 0.9, "2": 1.0}}
        for name, top1 in (("m", base), ("m_option", option), ("other", [0.5]))}}
    verdicts = int8_options.verdicts(summary, "m")
    assert set(verdicts) == {"m", "m_option"}
    top1 = verdicts["m_option"]["top1"]
    points = [[100 * v for v in values] for values in (base, option)]
    assert top1["points_vs_default"] == pytest.approx(
        statistics.mean(points[1]) - statistics.mean(points[0]))
    assert top1["default_seed_spread"] == pytest.approx(0.08)
    assert top1["difference_standard_error"] == pytest.approx(
        (statistics.variance(points[0]) / 3
         + statistics.variance(points[1]) / 3) ** 0.5)
    assert top1["met"] is False  # -0.12 points, outside a 0.08 spread
    assert verdicts["m"]["int8_1_threads"]["met"]


def test_quick_run_end_to_end(tmp_path):
    int8_options.main(["--quick", "--options=base,dilated_batch_head_norm",
                       f"--out={tmp_path}"])
    results = json.loads((tmp_path / "int8_options.json").read_text())
    rows = results["models"]
    assert set(rows) == {"mdnet_micro", "mdnet_micro_dilated_batch_head_norm",
                         "resnet20"}
    base, option = rows["mdnet_micro"], rows[
        "mdnet_micro_dilated_batch_head_norm"]
    for row in rows.values():
        for mode in int8_options.MODES:
            assert row["latency_ms"][mode]["1"] > 0
            assert row["latency_ms"][mode]["2"] > 0
        assert row["micro"]["arena_bytes"] > 0
        assert 0 <= row["edgetpu"]["tpu_mac_share"] <= 1
    ms, reference = base["latency_ms"], rows["resnet20"]["latency_ms"]
    best = base["best_int8_mode"]["1"]
    assert base["int8_vs_reference"]["1"] == pytest.approx(
        ms[best]["1"] / min(reference[m]["1"] for m in int8_options.INT8_MODES))
    # The batch head norm takes the RSQRT out; dilated 3x3 kernels need
    # fewer weights and MACs than 3/5/7/9 kernels; int8_xnnpack leaves
    # nothing out of XNNPACK.
    assert "RSQRT" in base["xnnpack"]["int8"]["left_out_by_type"]
    assert set(option["xnnpack"]["int8"]["left_out_by_type"]) == {"SOFTMAX"}
    assert option["xnnpack"]["int8"]["partitions"] < base["xnnpack"]["int8"][
        "partitions"]
    for row in (base, option):
        assert row["xnnpack"]["int8_xnnpack"]["left_out_ops"] == 0
    assert option["macs"] < base["macs"]
    assert option["params"] < base["params"]
    for name in ("mdnet_micro", "mdnet_micro_dilated_batch_head_norm"):
        assert 0 <= rows[name]["top1"]["0"] <= 1
        verdict = results["verdicts"][name]
        assert set(verdict) == {"int8_1_threads", "int8_2_threads", "top1"}
        assert verdict["top1"]["met"] is None  # one seed: inconclusive
        assert verdict["top1"]["difference_standard_error"] is None
    markdown = (tmp_path / "int8_options.md").read_text()
    assert "| mdnet_micro_dilated_batch_head_norm |" in markdown
    # Neither part: the Markdown again from the JSON, nothing recomputed.
    (tmp_path / "int8_options.md").unlink()
    int8_options.main(["--quick", "--parts=", f"--out={tmp_path}",
                       "--options=base,dilated_batch_head_norm"])
    assert (tmp_path / "int8_options.md").read_text() == markdown
    # Another seed joins the ones already trained instead of starting over,
    # and two seeds of the base make the verdict conclusive.
    int8_options.main(["--quick", "--parts=accuracy", "--seeds=1",
                       "--options=base", f"--out={tmp_path}"])
    results = json.loads((tmp_path / "int8_options.json").read_text())
    assert set(results["models"]["mdnet_micro"]["top1"]) == {"0", "1"}
    assert set(results["models"]["mdnet_micro_dilated_batch_head_norm"][
        "top1"]) == {"0"}
    assert results["verdicts"]["mdnet_micro"]["top1"]["met"] is True
    keras.backend.clear_session()
