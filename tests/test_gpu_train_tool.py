"""The tool that trained the shipped weights: train, then evaluate here."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "gpu_train_cifar10.py"


def run_tool(*args):
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    result = subprocess.run([sys.executable, str(TOOL), *args], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_train_checkpoints_and_evaluate_reports(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"
    np.savez(data,
             x_train=rng.integers(0, 256, (300, 32, 32, 3), dtype=np.uint8),
             y_train=np.arange(300) % 10,
             x_test=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),
             y_test=np.arange(40) % 10)
    out = tmp_path / "out"
    run_tool("train", "--model=resnet20", f"--data={data}", "--epochs=2",
             "--checkpoint_every=1", f"--out={out}")
    report = json.loads((out / "resnet20.report.json").read_text())
    assert report["epochs_done"] == 2
    assert report["train_images"] == 300
    assert report["drop_path_rate"] == 0.0  # baselines have none
    assert [row["epoch"] for row in report["history"]] == [1, 2]
    assert set(report["test_on_this_copy"]) == {"loss", "top1", "top5"}

    evaluation = tmp_path / "test.json"
    run_tool("evaluate", "--model=resnet20", f"--data={data}",
             f"--weights={out / 'resnet20.weights.h5'}",
             f"--report={evaluation}")
    results = json.loads(evaluation.read_text())
    assert results["test_images"] == 40
    # The weights came back: evaluating them gives the training run's figure.
    np.testing.assert_allclose(results["top1"],
                               report["test_on_this_copy"]["top1"])


def load_tool():
    spec = importlib.util.spec_from_file_location("gpu_train_cifar10", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_budget_guard_does_not_count_compilation_as_an_epoch():
    # The bug: a 190 s first epoch (mostly compilation) against 290 s left
    # stopped MDNet after 1 of 10 epochs that took about 10 s each.
    overruns = load_tool().next_epoch_overruns
    epochs = [{"seconds": s} for s in (190.0, 10.0, 30.0)]
    assert not overruns(epochs[:1], remaining_s=290.0)
    assert not overruns(epochs[:2], remaining_s=290.0)
    assert overruns(epochs[:2], remaining_s=10.0)
    # The latest epoch sets the estimate, not the fastest.
    assert overruns(epochs, remaining_s=40.0)
    assert overruns(epochs[:1], remaining_s=0.0)
