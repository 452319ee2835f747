"""`benchmarks/recipe.py` and `benchmarks/host_overhead.py` in their quick
modes: they run the package's training loop and write JSON, Markdown and
(for recipes) the per-epoch plot."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import host_overhead  # noqa: E402
from mdnet_keras.training.batchnorm import DEFAULT_BATCHES  # noqa: E402
from benchmarks import recipe as recipe_benchmark  # noqa: E402


def test_epochs_spec():
    assert recipe_benchmark.parse_epochs("resnet20:10,mdnet:6",
                                         ["mdnet", "resnet20"]) == {
        "mdnet": 6, "resnet20": 10}
    assert recipe_benchmark.parse_epochs("3", ["a", "b"]) == {"a": 3, "b": 3}
    with pytest.raises(ValueError, match="no epochs for \\['b'\\]"):
        recipe_benchmark.parse_epochs("a:2", ["a", "b"])


@pytest.mark.slow
def test_recipe_benchmark_quick(tmp_path):
    results = recipe_benchmark.main(["--quick", f"--out={tmp_path}"])
    assert [r["recipe"] for r in results["runs"]] == ["legacy", "fast"]
    for r in results["runs"]:
        assert len(r["test_top1_per_epoch"]) == r["epochs"] == 6
        assert r["final_test_top1"] == pytest.approx(
            r["test_top1_per_epoch"][-1])
    fast = results["runs"][1]
    assert fast["config"]["optimizer"] == "sgd"
    assert fast["ema_momentum_used"] > 0
    assert fast["config"]["bn_recalibration_batches"] == DEFAULT_BATCHES
    saved = json.loads((tmp_path / "cifar10.json").read_text())
    assert saved["runs"] == json.loads(json.dumps(results["runs"]))
    assert f"| resnet20 | fast | - | {DEFAULT_BATCHES} | 6 |" in (
        tmp_path / "cifar10.md").read_text()
    assert (tmp_path / "cifar10.png").read_bytes()[:4] == b"\x89PNG"

    # A pair run again on its own, beside the earlier call's runs: the
    # finished run folder is read back, not trained again.
    earlier = tmp_path / "earlier.json"
    earlier.write_text((tmp_path / "cifar10.json").read_text())
    again = recipe_benchmark.main(["--quick", "--recipes=fast",
                                   f"--include={earlier}", f"--out={tmp_path}"])
    (fast_again,) = again["runs"]
    assert fast_again["test_top1_per_epoch"] == fast["test_top1_per_epoch"]
    assert [r["recipe"] for r in again["included"][0]["runs"]] == [
        "legacy", "fast"]
    table = (tmp_path / "cifar10.md").read_text()
    assert f"| resnet20 | fast | - | {DEFAULT_BATCHES} | 6 |" in table
    assert table.count("| [1] |") == 2 and table.count("| this call |") == 1
    assert "[1] `python benchmarks/recipe.py --quick" in table


@pytest.mark.slow
def test_recipe_benchmark_tabulates_runs_of_separate_calls(tmp_path):
    # Pairs trained in separate processes (side by side on one GPU), on a
    # copy of the data named by --data, then drawn together by a call that
    # trains nothing.
    from mdnet_keras.data import load_dataset

    sample = load_dataset("sample")
    copy = tmp_path / "copy.npz"
    np.savez(copy, x_train=sample.x_train, y_train=sample.y_train,
             x_test=sample.x_test, y_test=sample.y_test)
    common = ["--models=resnet20", "--epochs=1", "--train_images=256",
              "--test_images=64", "--batch_size=64", f"--data={copy}",
              "--data_label=CIFAR-10 (a copy)"]
    for recipe_name, seed in (("legacy", 0), ("fast", 1)):
        recipe_benchmark.main(common + [f"--recipes={recipe_name}", f"--seed={seed}",
                                        f"--out={tmp_path / recipe_name}"])
    merged = recipe_benchmark.main(
        common[2:] + ["--models=", f"--out={tmp_path / 'merged'}",
                      f"--include={tmp_path / 'legacy' / 'cifar10.json'},"
                      f"{tmp_path / 'fast' / 'cifar10.json'}"])
    assert merged["runs"] == []
    assert merged["data"]["data"] == "CIFAR-10 (a copy)"
    table = (tmp_path / "merged" / "cifar10.md").read_text()
    # Each run keeps its seed: other seeds of a pair tabulate beside it.
    assert f"| resnet20 | legacy | - | {DEFAULT_BATCHES} | 1 | 0 |" in table
    assert f"| resnet20 | fast | - | {DEFAULT_BATCHES} | 1 | 1 |" in table
    assert "Batch 64, seed 0, 1." in table
    assert (tmp_path / "merged" / "cifar10.png").exists()
    assert not (tmp_path / "merged" / "tmp").exists()  # no subset written


@pytest.mark.slow
def test_recipe_benchmark_varies_one_option_at_a_time(tmp_path):
    results = recipe_benchmark.main([
        "--models=resnet20", "--recipes=fast", "--epochs=1",
        "--train_images=256", "--test_images=64", "--batch_size=64",
        "--vary=label_smoothing=0.05", "--vary=crop_padding=2",
        f"--out={tmp_path}"])
    as_is, smoothing, padding = results["runs"]
    assert [r["change"] for r in results["runs"]] == [
        {}, {"label_smoothing": 0.05}, {"crop_padding": 2}]
    assert as_is["config"]["label_smoothing"] == 0.2
    assert as_is["config"]["crop_padding"] is None
    assert smoothing["config"]["label_smoothing"] == 0.05
    assert smoothing["config"]["crop_padding"] is None
    assert padding["config"]["crop_padding"] == 2
    assert padding["config"]["label_smoothing"] == 0.2
    # Each run trained in its own folder.
    assert len(list((tmp_path / "tmp" / "cifar10").glob("resnet20-fast-*"))) == 3
    table = (tmp_path / "cifar10.md").read_text()
    for change in ("-", "label_smoothing=0.05", "crop_padding=2"):
        assert f"| resnet20 | fast | {change} | {DEFAULT_BATCHES} | 1 |" in table


@pytest.mark.slow
def test_recipe_benchmark_runs_only_the_varied_options(tmp_path):
    results = recipe_benchmark.main([
        "--models=resnet20", "--recipes=fast", "--epochs=1",
        "--train_images=256", "--test_images=64", "--batch_size=64",
        "--vary=learning_rate=0.2", "--vary_together=learning_rate=0.2,crop_padding=2",
        "--only_varied", f"--out={tmp_path}"])
    assert [r["change"] for r in results["runs"]] == [
        {"learning_rate": 0.2}, {"learning_rate": 0.2, "crop_padding": 2}]
    together = results["runs"][1]["config"]
    assert (together["learning_rate"], together["crop_padding"]) == (0.2, 2)
    assert sorted(p.name for p in (tmp_path / "tmp" / "cifar10").glob("resnet20-*")) == [
        "resnet20-fast-e1-n256-s0-learning_rate0.2",
        "resnet20-fast-e1-n256-s0-learning_rate0.2-crop_padding2"]


def test_only_varied_needs_a_change(tmp_path):
    with pytest.raises(ValueError, match="--only_varied needs at least one --vary"):
        recipe_benchmark.main(["--models=resnet20", "--only_varied",
                               f"--out={tmp_path}"])


def test_train_seconds_are_per_epoch_of_the_last_session():
    resumed = {"epochs": 8, "train_seconds": 44.0, "epochs_this_session": 1}
    unbroken = {"epochs": 8, "train_seconds": 440.0, "epochs_this_session": 8}
    earlier_version = {"epochs": 4, "train_seconds": 100.0}
    finished_before = {"epochs": 8, "train_seconds": 0.6, "epochs_this_session": 0}
    assert recipe_benchmark.seconds_per_epoch(resumed) == "44.0"
    assert recipe_benchmark.seconds_per_epoch(unbroken) == "55.0"
    assert recipe_benchmark.seconds_per_epoch(earlier_version) == "25.0"
    assert recipe_benchmark.seconds_per_epoch(finished_before) == "-"
    assert recipe_benchmark.seconds_per_epoch({"epochs": 1, "train_seconds": None}) == "-"


def test_vary_reads_values_by_option_type():
    assert recipe_benchmark.parse_vary(
        ["learning_rate=0.05,0.2", "crop_padding=2", "flip=false",
         "schedule=cosine"]) == [
        {"learning_rate": 0.05}, {"learning_rate": 0.2}, {"crop_padding": 2},
        {"flip": False}, {"schedule": "cosine"}]
    assert recipe_benchmark.describe_change({"learning_rate": 0.2}) == (
        "learning_rate=0.2")
    assert recipe_benchmark.describe_change({}) == "-"


@pytest.mark.parametrize("spec, message", [
    ("learning_rat=0.1", "'learning_rat' is not a training option"),
    ("epochs=3", "'epochs' is not a training option"),
    ("learning_rate=", "lists no values"),
    ("crop_padding=two", "crop_padding takes a number \\(int\\), not 'two'"),
    ("flip=yes", "flip takes true or false, not 'yes'"),
])
def test_vary_refuses_bad_options(spec, message):
    with pytest.raises(ValueError, match=message):
        recipe_benchmark.parse_vary([spec])


def test_vary_together_makes_one_change_of_several_options():
    assert recipe_benchmark.parse_together(
        ["learning_rate=0.2,label_smoothing=0.1,crop_padding=2",
         "flip=false"]) == [
        {"learning_rate": 0.2, "label_smoothing": 0.1, "crop_padding": 2},
        {"flip": False}]
    assert recipe_benchmark.describe_change(
        {"learning_rate": 0.2, "crop_padding": 2}) == (
        "learning_rate=0.2, crop_padding=2")


@pytest.mark.parametrize("spec, message", [
    ("learning_rate=0.2,seed=1", "'seed' is not a training option"),
    ("learning_rate=0.2,crop_padding=", "crop_padding= lists no values"),
    ("learning_rate=0.2,learning_rate=0.1", "sets learning_rate twice"),
])
def test_vary_together_refuses_bad_options(spec, message):
    with pytest.raises(ValueError, match=message):
        recipe_benchmark.parse_together([spec])


def test_recipe_benchmark_needs_a_label_for_other_data(tmp_path):
    with pytest.raises(ValueError, match="needs --data_label"):
        recipe_benchmark.make_subset("cifar10", 10, 10, str(tmp_path / "s"),
                                     source="copy.npz")


def test_recipe_benchmark_refuses_to_tabulate_nothing(tmp_path):
    with pytest.raises(ValueError, match="nothing to tabulate"):
        recipe_benchmark.main(["--models=", "--train_images=20",
                               "--test_images=10", f"--out={tmp_path}"])


def test_recipe_benchmark_refuses_runs_on_other_data(tmp_path):
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"data": {"train_images": 256}, "seed": 0,
                                   "command": "", "machine": {}, "runs": []}))
    results = {"data": {"train_images": 50000}, "seed": 0}
    with pytest.raises(ValueError, match="was measured on .*256.*, not on "
                                         "this call's .*50000"):
        recipe_benchmark.include_earlier(results, [str(earlier)])


@pytest.mark.slow
def test_host_overhead_quick(tmp_path):
    report = host_overhead.main(["--quick", "--backends=tensorflow",
                                 "--bn_recalibration_batches=0",
                                 "--steps_per_execution=1,2",
                                 f"--out={tmp_path}"])
    (backend,) = report["backends"]
    assert backend["cli_bn_recalibration_batches"] == 0
    assert backend["steps_per_execution"] == [1, 2]
    assert set(backend["models"]) == {"tiny", "tiny, 2 steps a call"}
    for result in backend["models"].values():
        medians = result["median_step_ms"]
        assert set(medians) == set(host_overhead.ARMS)
        assert all(v > 0 for v in medians.values())
        assert result["host_ms"] == pytest.approx(
            medians["cli"] - medians["compiled_step"], abs=1e-3)
    table = (tmp_path / "host_overhead.md").read_text()
    assert "| tensorflow | tiny | 0 |" in table
    assert "| tensorflow | tiny, 2 steps a call | 0 |" in table


def test_host_overhead_worker_keeps_the_python_path(monkeypatch):
    # Keras installed by path (wheels unpacked on a GPU machine) must stay
    # importable in the backend's worker.
    monkeypatch.setenv("PYTHONPATH", "/tmp/site")
    env = host_overhead.worker_environment("jax")
    assert env["PYTHONPATH"].split(":") == [host_overhead.ROOT, "/tmp/site"]
    assert env["KERAS_BACKEND"] == "jax"
    monkeypatch.delenv("PYTHONPATH")
    assert host_overhead.worker_environment("jax")["PYTHONPATH"] == (
        host_overhead.ROOT)


def test_host_overhead_refuses_a_missing_data_file(tmp_path):
    # A named file that is not there is an error, not the package sample.
    with pytest.raises(SystemExit):
        host_overhead.main([f"--data={tmp_path / 'missing.npz'}", "--quick",
                            f"--out={tmp_path}"])
    assert not (tmp_path / "host_overhead.json").exists()


def test_host_overhead_tf_data_arm_on_tensorflow_only():
    # A tf.data fit slowed every later arm of a JAX process.
    assert "bare_tf_data" in host_overhead.arms_for("tensorflow")
    assert host_overhead.arms_for("jax") == ("cli", "bare_pipeline",
                                             "bare_arrays", "compiled_step")


def test_host_overhead_markdown_without_tf_data_arm(tmp_path):
    # Reports written before the tf.data and compiled-step arms existed, or
    # without TensorFlow.
    models = {"tiny": {
        "median_step_ms": {"cli": 5.0, "bare_pipeline": 4.0,
                           "bare_arrays": 2.0},
        "cli_over_bare_pipeline": 1.25, "cli_over_bare_arrays": 2.5}}
    report = {"command": "host_overhead.py",
              "machine": {"machine": "x86_64", "cpu_count": 2},
              "backends": [{"backend": "jax", "models": models}]}
    path = tmp_path / "host_overhead.md"
    host_overhead.write_markdown(report, path)
    assert ("| jax | tiny | - | 5.00 | 4.00 | - | 2.00 | - | 1.25 | - | 2.50 "
            "| - |") in path.read_text()


def test_compiled_step_on_jax_with_a_weight_average():
    # The average starts as the very buffer of its weight, which JAX cannot
    # donate twice in one call.
    code = (
        "import numpy as np, keras\n"
        "from benchmarks import host_overhead\n"
        "model = host_overhead.tiny_model((8, 8, 3), 4)\n"
        "model.compile(keras.optimizers.SGD(use_ema=True), "
        "'categorical_crossentropy')\n"
        "x = np.zeros((16, 8, 8, 3), 'float32')\n"
        "y = np.eye(4, dtype='float32')[np.arange(16) % 4]\n"
        "print('SECONDS', host_overhead.compiled_step_seconds(model, x, y, 3))\n")
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        env=host_overhead.worker_environment("jax"), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.split("SECONDS")[-1]) > 0
