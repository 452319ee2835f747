"""benchmarks/qat.py in quick mode: one run writes the side-by-side JSON and
Markdown (PTQ and QAT int8 against float and against the float control of
equal length, size, ops, latency, the issue's targets)."""

import json
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT))


def test_quick_benchmark_writes_side_by_side(tmp_path):
    from benchmarks import qat

    out = tmp_path / "results"
    result = qat.main(["--quick", "--qat_epochs=1", f"--out={out}",
                       f"--work={tmp_path / 'work'}"])
    saved = json.loads((out / "qat.json").read_text())
    assert saved["num_images"] == result["num_images"] == 200
    for name in ("ptq", "qat"):
        assert 0 <= saved[name]["top1"] <= 1
        assert saved[name]["gate"]["status"] in ("pass", "warn", "fail")
        assert saved["latency_ms_1_thread"][name] > 0
    assert set(saved["op_count_difference"]) <= {"ADD"}
    assert set(saved["train_seconds"]) == {"float", "qat", "control"}
    control = saved["control"]
    assert control["epochs"] == 1 and 0 <= control["top1"] <= 1
    assert control["qat_gate"]["num_images"] == 200
    targets = saved["targets"]
    assert targets["ptq_loss_points"] == pytest.approx(
        100 * (saved["float_top1"] - saved["ptq"]["top1"]), abs=1e-3)
    assert targets["qat_below_control_points"] == pytest.approx(
        100 * (control["top1"] - saved["qat"]["top1"]), abs=1e-3)
    markdown = (out / "qat.md").read_text()
    for text in ("PTQ int8", "QAT int8", "float + 1 epochs", "--quick", "Targets"):
        assert text in markdown


def test_control_continues_as_the_qat_fine_tuning_trains(tmp_path):
    # The control must train as `quantization.fine_tune` does: the loop's
    # schedule with these options is fine_tune's CosineDecay(1e-4 -> 0).
    from benchmarks import qat
    from mdnet_keras import quantization
    from mdnet_keras.training import config as config_lib
    from mdnet_keras.training import recipe

    options = qat.control_overrides(3)
    config = config_lib.resolve_config(dict(qat.BUDGETS["neu"]["train"], **options,
                                            out=str(tmp_path)))
    assert (config.optimizer, config.schedule, config.epochs) == ("adamw", "cosine", 3)
    assert config.weight_decay == recipe.WEIGHT_DECAY
    assert not config.scale_learning_rate and config.ema_momentum == 0
    schedule = recipe.learning_rate_schedule(config.learning_rate, 100,
                                             config.warmup_epochs, config.min_lr_ratio,
                                             config.schedule)
    for step, expected in ((0, quantization.DEFAULT_LEARNING_RATE), (100, 0.0)):
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_a_baseline_is_built_for_the_float_run_and_loaded_for_the_others(tmp_path):
    # The CIFAR-10 rows hand benchmarks/baselines.py's models to the loop.
    from benchmarks import qat

    assert qat.builders("mdnet_micro") == (None, None)
    build, load = qat.builders("mobilenetv2_x0_5")
    model = build((32, 32, 3), 10)
    path = str(tmp_path / "float.keras")
    model.save(path)
    loaded = load(path)((32, 32, 3), 10)
    assert loaded.name == model.name and loaded.count_params() == model.count_params()
    config = qat.resolve(dict(qat.BUDGETS["cifar10"]["train"], model="mobilenetv2_x1_0",
                              data=path, out=str(tmp_path / "run")))
    assert (config.model, config.validation_split, config.recipe) == (
        "mobilenetv2_x1_0", 0, "fast")
