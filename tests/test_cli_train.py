"""`python -m mdnet_keras train|evaluate`: flags, errors, exit codes.

Run as subprocesses, as a user runs them (absl flags are process-global)."""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

from mdnet_keras.training import config as train_config

ROOT = pathlib.Path(__file__).resolve().parents[1]


def cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "mdnet_keras", *args],
                          capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


def test_help_documents_every_training_option():
    done = cli("train", "--help")
    assert "USAGE" in done.stdout  # (absl's --help exits with status 1)
    for field in dataclasses.fields(train_config.TrainConfig):
        assert f"--{field.name}:" in done.stdout or \
            f"--[no]{field.name}:" in done.stdout, field.name


def test_unknown_dataset_and_model_names(tmp_path):
    done = cli("train", "--dataset=imagenet", f"--out={tmp_path / 'a'}")
    assert done.returncode == 2
    assert "Unknown dataset 'imagenet'" in done.stderr
    assert "sample, cifar10, cifar100, npz, folder" in done.stderr
    done = cli("train", "--model=mdnet_huge", f"--out={tmp_path / 'b'}")
    assert done.returncode == 2
    assert "Unknown model 'mdnet_huge'" in done.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_refuses_a_finished_run_folder(tmp_path):
    out = tmp_path / "done"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"config": {}}))
    (out / "status.json").write_text(json.dumps({"state": "finished"}))
    (out / "metrics.json").write_text("{}")
    done = cli("train", f"--out={out}")
    assert done.returncode == 2
    assert "already holds a finished run" in done.stderr
    assert "--overwrite" in done.stderr
    assert (out / "metrics.json").read_text() == "{}"


def test_evaluate_a_keras_model_writes_metrics(tmp_path):
    from mdnet_keras.models import MDNet

    MDNet((32, 32, 3), 10, variant="mdnet_micro",
          stage_depths=(1, 1, 1, 1)).save(tmp_path / "m.keras")
    done = cli("evaluate", f"--model={tmp_path / 'm.keras'}",
               f"--out={tmp_path / 'eval'}",
               f"--json_out={tmp_path / 'report.json'}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "top-1:" in done.stdout and "airplane" in done.stdout
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert json.loads((tmp_path / "report.json").read_text()) == metrics
    assert metrics["num_examples"] == 200
    assert np.array(metrics["confusion_matrix"]).sum() == 200
    assert (tmp_path / "eval" / "confusion_matrix.png").exists()
    done = cli("evaluate", f"--model={tmp_path / 'missing.keras'}")
    assert done.returncode == 2 and "existing .keras file" in done.stderr


def test_evaluate_reports_flip_tta_next_to_the_plain_figures(tmp_path):
    from mdnet_keras.models import MDNet

    MDNet((32, 32, 3), 10, variant="mdnet_micro",
          stage_depths=(1, 1, 1, 1)).save(tmp_path / "m.keras")
    done = cli("evaluate", f"--model={tmp_path / 'm.keras'}", "--tta=flip",
               f"--out={tmp_path / 'eval'}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "with flip test-time augmentation: top-1" in done.stdout
    assert "top-1:" in done.stdout
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics["tta_flip"]) == {"top1", "top5"}
    assert "top1" in metrics
    done = cli("evaluate", f"--model={tmp_path / 'm.keras'}", "--tta=crop")
    assert done.returncode != 0 and "--tta" in done.stderr


def test_bad_bn_recalibration_batches_is_refused_before_writing(tmp_path):
    done = cli("train", "--bn_recalibration_batches=-1",
               f"--out={tmp_path / 'a'}")
    assert done.returncode == 2
    assert "--bn_recalibration_batches must be a whole number" in done.stderr
    assert not (tmp_path / "a").exists()


def test_steps_per_execution_is_refused_where_keras_cannot_run_it(tmp_path):
    for value in ("0", "many"):
        done = cli("train", f"--steps_per_execution={value}",
                   f"--out={tmp_path / 'a'}")
        assert done.returncode == 2
        assert ("`steps_per_execution` must be 'auto' or an integer >= 1. "
                f"Received: '{value}'") in done.stderr
    env = dict(os.environ, PYTHONPATH=str(ROOT), KERAS_BACKEND="torch",
               TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, "-m", "mdnet_keras", "train", "--steps_per_execution=4",
         f"--out={tmp_path / 'b'}"], capture_output=True, text=True, env=env,
        timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "not supported by Keras on the torch backend" in done.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
