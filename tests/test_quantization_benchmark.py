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


def test_control_takes_the_fine_tuning_options(tmp_path):
    from benchmarks import qat
    from mdnet_keras.training import config as config_lib

    options = qat.control_overrides(3, learning_rate=1e-5, ema_momentum=0.99)
    config = config_lib.resolve_config(dict(qat.BUDGETS["neu"]["train"], **options,
                                            out=str(tmp_path)))
    assert (config.learning_rate, config.ema_momentum) == (1e-5, 0.99)
    assert qat.fine_tuning_text({"fine_tuning": {}}) == ""
    assert qat.fine_tuning_text({"fine_tuning": {"learning_rate": 1e-5, "ema_momentum": 0.99}}
                                ) == ", ema_momentum 0.99, learning_rate 1e-05"


def test_a_drop_of_exactly_the_target_meets_it():
    # 40.30% - 40.00% on 1,000 images is 3 images, 0.3 points; in floating
    # point 100 * (0.403 - 0.400) is a little above 0.3.
    from benchmarks import qat

    goal = qat.targets({"float_top1": 0.379, "control": {"top1": 0.403},
                        "ptq": {"top1": 0.372, "size_bytes": 100},
                        "qat": {"top1": 0.400, "size_bytes": 100},
                        "qat_epochs": 3, "op_count_difference": {}})
    assert goal["qat_below_control_points"] == 0.3
    assert goal["qat_within_target_of_control"]
    assert goal["applies"] and goal["qat_not_worse_than_ptq"]
    worse = qat.targets({"float_top1": 0.379, "control": {"top1": 0.404},
                         "ptq": {"top1": 0.401, "size_bytes": 100},
                         "qat": {"top1": 0.400, "size_bytes": 100},
                         "qat_epochs": 3, "op_count_difference": {}})
    assert not worse["qat_within_target_of_control"]
    assert not worse["qat_not_worse_than_ptq"]


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


def fake_run(seed, correct, qat_epochs=3):
    """One seed's result as `measure` writes it (only what pooling reads)."""
    from benchmarks import qat

    return {"seed": seed, "qat_epochs": qat_epochs, "op_count_difference": {},
            "ptq": {"size_bytes": 1000}, "qat": {"size_bytes": 1001},
            "correct": {name: qat.bits(right) for name, right in correct.items()}}


def test_seeds_pool_into_one_paired_comparison():
    # Two seeds of 100 images: QAT loses 1 image of each against float (0.5
    # points pooled over 200), PTQ 10 of each; the control loses 2 of the
    # first seed's.
    import numpy as np

    from benchmarks import qat

    def seed(ptq_lost, qat_lost, control_lost):
        right = np.ones(100, bool)
        lose = lambda k: np.arange(100) >= k  # noqa: E731
        return {"float": right, "ptq": lose(ptq_lost), "qat": lose(qat_lost),
                "control": lose(control_lost)}

    summary = qat.pooled([fake_run(0, seed(10, 1, 2)), fake_run(1, seed(10, 1, 0))])
    assert summary["seeds"] == [0, 1] and summary["num_images"] == 200
    assert summary["float_top1"] == 1.0
    assert summary["ptq"]["top1"] == pytest.approx(0.9)
    assert summary["qat"]["gate"]["only_reference_right"] == 2
    assert summary["control"]["qat_gate"]["drop_points"] == pytest.approx(0.0)
    goal = summary["targets"]
    assert goal["applies"] and goal["ptq_loss_points"] == pytest.approx(10.0)
    assert goal["qat_below_float_points"] == pytest.approx(1.0)
    assert not goal["qat_within_target_of_float"]
    assert goal["qat_within_target_of_control"] and goal["qat_not_worse_than_ptq"]
    text = qat.pooled_markdown(summary, [dict(fake_run(0, seed(10, 1, 2)), **{
        "float_top1": 1.0, "control": {"top1": 0.98, "qat_gate": summary["control"]["qat_gate"]},
        "ptq": {"top1": 0.9, "gate": summary["ptq"]["gate"]},
        "qat": {"top1": 0.99, "gate": summary["qat"]["gate"]}})])
    assert "**pooled**" in text and "200 paired test predictions" in text


def test_one_float_model_takes_one_seed(tmp_path):
    from benchmarks import qat

    with pytest.raises(SystemExit):
        qat.main([f"--out={tmp_path}", "--seeds=0,1", "--init_from=float.keras"])
