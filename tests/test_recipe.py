"""The training recipe and the metrics: presets, decay exclusions, schedules,
optimizers, weight averaging, loss."""

import math

import keras
import numpy as np
import pytest

from mdnet_keras.layers import DifferentialAttention
from mdnet_keras.models import MDNet
from mdnet_keras.training import evaluation
from mdnet_keras.training import recipe

# Stage 3 has two blocks, so it holds one MDIFFormer (differential) block.
TINY = dict(stem_channels=8, stage_channels=(8, 16, 24, 32),
            stage_depths=(1, 1, 2, 1), num_heads=(0, 0, 1, 1),
            head_channels=32)


@pytest.fixture(scope="module")
def model():
    return MDNet((32, 32, 3), num_classes=10, variant="mdnet_micro", **TINY)


def test_weight_decay_skips_norms_biases_and_lambdas(model):
    optimizer = recipe.make_optimizer(model, 0.1, weight_decay=0.5)
    optimizer.build(model.trainable_variables)
    attention = [layer for layer in model._flatten_layers()
                 if isinstance(layer, DifferentialAttention)]
    assert attention, "the tiny model must hold differential attention"
    excluded = {id(v) for v in recipe.no_decay_variables(model)}
    for layer in attention:
        for variable in (layer.lambda_q1, layer.lambda_k1, layer.lambda_q2,
                         layer.lambda_k2, layer.norm_scale):
            assert id(variable) in excluded
            assert not optimizer._use_weight_decay(variable)
    names = {}
    for variable in model.trainable_variables:
        names.setdefault(variable.name, set()).add(
            optimizer._use_weight_decay(variable))
    for name in ("gamma", "beta", "bias", "lambda_q1", "norm_scale"):
        assert names[name] == {False}, name
    assert names["kernel"] == {True}

    # Really: one step with zero gradients changes only decayed variables,
    # each by the factor (1 - lr * wd).
    before = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    zeros = [keras.ops.zeros_like(v) for v in model.trainable_variables]
    optimizer.apply(zeros, model.trainable_variables)
    for value, variable in zip(before, model.trainable_variables):
        after = keras.ops.convert_to_numpy(variable)
        if id(variable) in excluded:
            np.testing.assert_array_equal(after, value)
        else:
            np.testing.assert_allclose(after, value * (1 - 0.1 * 0.5),
                                       rtol=1e-5, atol=1e-7)
    for value, variable in zip(before, model.trainable_variables):
        variable.assign(value)


def test_schedule_warms_up_linearly_then_cosine():
    peak, total, warmup = 2e-3, 100, 10
    schedule = recipe.learning_rate_schedule(peak, total, warmup,
                                             min_lr_ratio=0.1)

    def lr(step):
        return float(keras.ops.convert_to_numpy(schedule(step)))

    assert lr(0) == pytest.approx(0.0, abs=1e-9)
    assert lr(5) == pytest.approx(peak / 2, rel=1e-5)
    assert lr(10) == pytest.approx(peak, rel=1e-5)
    for step in (10, 32, 55, 77, 100):
        t = (step - warmup) / (total - warmup)
        expected = peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))
        assert lr(step) == pytest.approx(expected, rel=1e-5)
    assert lr(100) == pytest.approx(0.1 * peak, rel=1e-5)
    assert lr(150) == pytest.approx(0.1 * peak, rel=1e-5)
    no_warmup = recipe.learning_rate_schedule(peak, total, 0)
    assert float(keras.ops.convert_to_numpy(no_warmup(0))) == pytest.approx(peak)


def test_learning_rate_scales_with_global_batch():
    assert recipe.scaled_learning_rate(1e-3, 128) == pytest.approx(1e-3)
    assert recipe.scaled_learning_rate(1e-3, 512) == pytest.approx(4e-3)
    assert recipe.scaled_learning_rate(1e-3, 64) == pytest.approx(5e-4)


def test_loss_uses_label_smoothing():
    loss = recipe.make_loss()
    y = np.eye(4, dtype="float32")[[0, 2]]
    p = np.array([[0.7, 0.1, 0.1, 0.1], [0.2, 0.2, 0.5, 0.1]], "float32")
    smoothed = y * 0.9 + 0.1 / 4
    expected = np.mean(-np.sum(smoothed * np.log(p), axis=-1))
    assert float(loss(y, p)) == pytest.approx(expected, rel=1e-5)
    plain = np.mean(-np.sum(y * np.log(p), axis=-1))
    assert abs(float(loss(y, p)) - plain) > 1e-3


def test_metrics_are_top1_and_top5():
    names = [m.name for m in recipe.make_metrics(10)]
    assert names == ["top1", "top5"]
    assert recipe.make_metrics(3)[1].k == 3


def test_class_weights():
    labels = np.array([0] * 6 + [1] * 2 + [2] * 4)
    weights = recipe.class_weights(labels, 3, "balanced")
    assert weights == pytest.approx({0: 12 / 18, 1: 12 / 6, 2: 12 / 12})
    assert recipe.class_weights(labels, 3, "none") is None
    assert recipe.class_weights(labels, 3, "1,2,0.5") == {0: 1, 1: 2, 2: 0.5}
    with pytest.raises(ValueError, match="one non-negative number per class"):
        recipe.class_weights(labels, 3, "1,2")


def test_jit_compile_defaults():
    assert recipe.default_jit_compile("tensorflow", accelerator=False) is False
    assert recipe.default_jit_compile("tensorflow", accelerator=True) is True
    assert recipe.default_jit_compile("jax") is True


def test_steps_per_execution_defaults():
    # Several steps a call where a fast accelerator would wait on the host.
    for backend in ("tensorflow", "jax"):
        assert recipe.default_steps_per_execution(
            195, backend, accelerator=True) == (
            recipe.ACCELERATOR_STEPS_PER_EXECUTION)
        assert recipe.default_steps_per_execution(
            195, backend, accelerator=False) == 1
        # Never more than an epoch's steps.
        assert recipe.default_steps_per_execution(
            5, backend, accelerator=True) == 5
    assert recipe.default_steps_per_execution(
        195, "torch", accelerator=True) == 1
    assert recipe.default_steps_per_execution(195) == 1  # this CPU machine


def test_classification_report_counts():
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array([
        [0.9, 0.05, 0.05],  # 0 -> 0
        [0.2, 0.7, 0.1],    # 0 -> 1
        [0.1, 0.8, 0.1],    # 1 -> 1
        [0.1, 0.8, 0.1],    # 1 -> 1
        [0.5, 0.1, 0.4],    # 2 -> 0 (second choice right)
        [0.1, 0.2, 0.7],    # 2 -> 2
    ])
    report = evaluation.classification_report(y, probs, ["a", "b", "c"])
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert report["top1"] == pytest.approx(4 / 6)
    assert report["top5"] == 1.0
    assert report["per_class"]["a"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert report["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert report["per_class"]["b"]["recall"] == 1.0
    assert report["per_class"]["c"]["f1"] == pytest.approx(2 / 3)
    assert evaluation.top_k_accuracy(y, probs, 2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        evaluation.classification_report(y, probs[:, :2], ["a", "b", "c"])


def test_plots_write_png(tmp_path):
    history = {"epoch": [0, 1], "loss": [2.0, 1.5], "val_loss": [2.1, 1.7],
               "top1": [0.2, 0.4], "val_top1": [0.2, 0.3],
               "learning_rate": [1e-3, 0.0]}
    evaluation.plot_history(history, tmp_path / "h.png")
    evaluation.plot_confusion_matrix([[3, 1], [0, 4]], ["x", "y"],
                                     tmp_path / "c.png")
    for name in ("h.png", "c.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_cycle_rises_then_falls_linearly_and_round_trips():
    schedule = recipe.learning_rate_schedule(0.4, 100, 20, min_lr_ratio=0.1,
                                             shape="one_cycle")

    def lr(step):
        return float(keras.ops.convert_to_numpy(schedule(step)))

    assert lr(0) == pytest.approx(0.0, abs=1e-9)
    assert lr(10) == pytest.approx(0.2, rel=1e-5)
    assert lr(20) == pytest.approx(0.4, rel=1e-5)
    assert lr(60) == pytest.approx(0.4 * (1 - 0.9 * 0.5), rel=1e-5)
    assert lr(100) == pytest.approx(0.04, rel=1e-5)
    assert lr(500) == pytest.approx(0.04, rel=1e-5)
    copy = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule))
    assert isinstance(copy, recipe.OneCycle)
    assert float(keras.ops.convert_to_numpy(copy(60))) == pytest.approx(lr(60))


def test_schedule_errors_name_the_problem():
    with pytest.raises(ValueError, match="warm-up .*does not end before"):
        recipe.learning_rate_schedule(0.1, 10, 10)
    with pytest.raises(ValueError, match="Unknown schedule 'step'"):
        recipe.learning_rate_schedule(0.1, 10, 1, shape="step")


def test_presets_and_auto():
    assert recipe.get_recipe("auto", epochs=15) == recipe.RECIPES["fast"]
    assert recipe.get_recipe(
        "auto", epochs=recipe.LONG_BUDGET_EPOCHS) == recipe.RECIPES["long"]
    legacy = recipe.get_recipe("legacy")
    assert (legacy.optimizer, legacy.learning_rate, legacy.weight_decay,
            legacy.warmup_epochs, legacy.schedule, legacy.ema_fraction) == (
        "adamw", recipe.LEARNING_RATE, recipe.WEIGHT_DECAY,
        recipe.WARMUP_EPOCHS, "cosine", 0.0)
    with pytest.raises(ValueError, match="Unknown recipe 'airbench'.*fast"):
        recipe.get_recipe("airbench")


def test_sgd_is_nesterov_with_ema_and_skips_decay_like_adamw(model):
    sgd = recipe.make_optimizer(model, 0.1, weight_decay=5e-3,
                                optimizer="sgd", momentum=0.8,
                                ema_momentum=0.99)
    assert isinstance(sgd, keras.optimizers.SGD)
    assert sgd.nesterov and sgd.momentum == 0.8
    assert sgd.use_ema and sgd.ema_momentum == 0.99
    norm = next(v for v in model.trainable_variables if len(v.shape) < 2)
    assert not sgd._use_weight_decay(norm)
    adamw = recipe.make_optimizer(model, 0.1)
    assert isinstance(adamw, keras.optimizers.AdamW) and not adamw.use_ema
    with pytest.raises(ValueError, match="Unknown optimizer 'lion'"):
        recipe.make_optimizer(model, 0.1, optimizer="lion")
    with pytest.raises(ValueError, match="`momentum` must be in"):
        recipe.make_optimizer(model, 0.1, optimizer="sgd", momentum=1.0)
    with pytest.raises(ValueError, match="`ema_momentum` must be in"):
        recipe.make_optimizer(model, 0.1, ema_momentum=-0.1)


def test_ema_span_follows_the_run_and_is_checked():
    assert recipe.ema_momentum_for(0.1, 5000) == pytest.approx(0.998)
    assert recipe.ema_momentum_for(0.0, 5000) == 0.0
    recipe.check_ema(0.998, 1000)
    recipe.check_ema(0.0, 1)
    with pytest.raises(ValueError, match="about 1000 steps, but the run has "
                                         "160 steps"):
        recipe.check_ema(0.999, 160)
    with pytest.raises(ValueError, match="in \\[0, 1\\)"):
        recipe.check_ema(1.5, 160)


def test_flip_tta_averages_each_image_with_its_mirror():
    inputs = keras.Input((4, 4, 1))
    # Left half against right half: mirrored images get the other class.
    left = keras.layers.Lambda(lambda t: keras.ops.mean(t[:, :, :2], (1, 2)))(
        inputs)
    right = keras.layers.Lambda(lambda t: keras.ops.mean(t[:, :, 2:], (1, 2)))(
        inputs)
    logits = keras.layers.Concatenate()([left, right, right * 0 + 0.5])
    model = keras.Model(inputs, keras.layers.Softmax()(logits))
    x = np.zeros((2, 4, 4, 1), "float32")
    x[0, :, :2] = 3.0
    x[1, :, 2:] = 3.0
    y = np.array([0, 0])
    probs = model.predict(x, verbose=0)
    assert evaluation.top_k_accuracy(y, probs, 1) == 0.5
    result = evaluation.flip_tta_accuracy(model, x, y, probs)
    mirrored = model.predict(x[:, :, ::-1], verbose=0)
    mean = (probs + mirrored) / 2
    assert result["top1"] == evaluation.top_k_accuracy(y, mean, 1)
    assert result["top5"] == 1.0
