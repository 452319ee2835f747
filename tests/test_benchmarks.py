"""The benchmark harness: baselines' sizes, partition counting, and the quick
suite end to end on one small model (JSON and Markdown structure)."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import baselines  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks import run  # noqa: E402
from benchmarks import suite_data  # noqa: E402
from benchmarks import suite_results  # noqa: E402


@pytest.mark.parametrize(
    "name, classes, params",
    [
        # Keras counts BatchNorm moving statistics as (non-trainable) params.
        ("mobilenetv2_x1_0", 10, 2_270_794),
        ("mobilenetv2_x1_0", 100, 2_386_084),
        ("resnet20", 10, 271_098),
        ("resnet56", 10, 857_082),
        ("mdnet_kernels_3_5", 10, 2_241_106),
        ("mdnet_kernels_3", 10, 2_226_258),
    ],
)
def test_baseline_sizes(name, classes, params):
    model = baselines.build_model(name, (32, 32, 3), classes)
    assert model.count_params() == params
    assert model.output.shape == (None, classes)


def test_command_line_repeats_the_run_from_the_repository_root(monkeypatch):
    script = str(ROOT / "benchmarks" / "streaming.py")
    assert suite_results.command_line(script, ["--sizes=10", "--quick"]) == \
        "python benchmarks/streaming.py --sizes=10 --quick"
    monkeypatch.setattr(sys, "argv", [script, "--rounds=2"])
    assert suite_results.command_line(script) == \
        "python benchmarks/streaming.py --rounds=2"


def test_ablations_within_one_percent_of_mdnet():
    mdnet = baselines.build_model("mdnet").count_params()
    for name in ("mdnet_standard_attention", "mdnet_single_kernel"):
        other = baselines.build_model(name).count_params()
        assert abs(other - mdnet) / mdnet < 0.01, name


def test_mobilenetv2_total_stride_8_and_raw_pixels():
    model = baselines.build_model("mobilenetv2_x0_5", (32, 32, 3), 10)
    assert model.get_layer("head_conv").output.shape[1:3] == (4, 4)
    assert model.get_layer("normalization") is not None


def test_subsample_zero_pad_shortcut():
    layer = baselines.SubsampleZeroPad(16)
    x = np.arange(2 * 4 * 4 * 16, dtype="float32").reshape(2, 4, 4, 16)
    y = np.asarray(layer(x))
    assert y.shape == (2, 2, 2, 32)
    np.testing.assert_array_equal(y[..., 8:24], x[:, ::2, ::2, :])
    assert not y[..., :8].any() and not y[..., 24:].any()
    again = baselines.SubsampleZeroPad.from_config(layer.get_config())
    assert again.extra_channels == 16


def test_unknown_model_is_rejected():
    with pytest.raises(ValueError, match="Unknown model"):
        baselines.build_model("vgg16")


def test_balanced_subset_is_balanced_and_seeded():
    labels = np.repeat(np.arange(10), 50)
    idx = suite_data.balanced_subset(labels, 95, seed=0)
    counts = np.bincount(labels[idx], minlength=10)
    assert counts.sum() == 95 and counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(idx, suite_data.balanced_subset(labels, 95, seed=0))


def test_pareto_front():
    points = [(1, 50, "a"), (2, 40, "b"), (3, 60, "c"), (4, 55, "d")]
    assert [p[2] for p in report.pareto_front(points)] == ["a", "c"]


def test_quick_suite_end_to_end(tmp_path):
    """The whole harness on ResNet-20 with tiny budgets; then a resume."""
    overrides = {"op_profile_models": (), "neu_seeds": (),
                 "cifar_train_images": 64, "cifar_test_images": 64,
                 "cifar100_train_images": 100, "cifar100_test_images": 100,
                 "int8_eval_images": 32, "calibration_images": 16}
    run.run_suite("quick", ["resnet20"], str(tmp_path),
                  budget_overrides=overrides, command="pytest")
    path = tmp_path / "quick.json"
    assert path.exists() and (tmp_path / "quick.md").exists()
    assert (tmp_path / "quick_pareto.png").stat().st_size > 1000
    saved = json.loads(path.read_text())
    assert saved["suite"] == "quick" and saved["command"] == "pytest"
    for key in ("machine", "started"):
        assert key in saved["runs"][0]
    assert {"keras", "tensorflow", "ai_edge_litert"} <= set(saved["versions"])
    model = saved["models"]["resnet20"]
    assert model["profile"]["params"] == 271_098
    assert model["profile"]["macs"] > 40e6
    assert 0 <= model["accuracy"]["cifar10"]["seed0"]["top1"] <= 1
    if os.path.exists(suite_data.CIFAR100_NPZ):
        cifar100 = model["accuracy"]["cifar100"]["seed0"]
        assert (cifar100["train_images"], cifar100["test_images"]) == (100, 100)
        assert "CIFAR-100 (JPEG q75 copy)" in saved["data"]["cifar100"]["source"]
    tp = saved["throughput"]
    assert tp["train_images_per_s"]["resnet20"]["median"] > 0
    assert tp["pipeline_images_per_s"]["cifar10"]["median"] > 0
    for mode in run.TFLITE_MODES:
        entry = model["tflite"][mode]
        assert entry["size_bytes"] > 0
        # Option-A shortcuts: XNNPACK leaves the 2 STRIDED_SLICE out.
        assert entry["xnnpack"]["left_out_by_type"].get("STRIDED_SLICE") == 2
        assert entry["xnnpack"]["partitions"] >= 1
        for threads in ("1", "2"):
            lat = saved["latency"]["results"]["resnet20"][mode][threads]
            assert lat["median_ms"] > 0 and lat["runs"] >= 20
    assert model["tflite"]["int8"]["eval_images"] == 32
    assert model["micro"]["arena_bytes"] > 0
    markdown = (tmp_path / "quick.md").read_text()
    for heading in ("## Size, speed and accuracy", "## TFLite",
                    "## TFLite Micro", "ResNet-20",
                    "CIFAR-100 (JPEG q75 copy) top-1 %"):
        assert heading in markdown

    # A rerun resumes: every entry is cached, nothing is recomputed.
    before = json.dumps(saved["models"])
    again = run.run_suite("quick", ["resnet20"], str(tmp_path),
                          budget_overrides=overrides, command="pytest")
    assert json.dumps(again["models"]) == before
    assert len(again["runs"]) == 2

    # The script itself, as the README runs it, rewrites the report.
    markdown = (tmp_path / "quick.md").read_text()
    (tmp_path / "quick.md").unlink()
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"),
                    "--suite=quick", "--report_only", f"--out={tmp_path}"],
                   check=True, cwd=ROOT, timeout=300)
    assert (tmp_path / "quick.md").read_text() == markdown


def test_machine_line_names_the_gpus():
    info = {"machine": "x86_64", "cpu_count": 16, "load_average": [0.5],
            "gpus": ["NVIDIA H200"]}
    assert suite_results.describe_machine(info) == (
        "x86_64, 16 cores, NVIDIA H200, load average at the start [0.5]")
    del info["gpus"]
    assert "cores, load" in suite_results.describe_machine(info)
