"""Helpers shared by the training tests (tiny models, small data)."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np

from mdnet_keras.data import load_dataset
from mdnet_keras.training import evaluation

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = {"stem_channels": 8, "stage_channels": [8, 16, 24, 32],
        "stage_depths": [1, 1, 2, 1], "num_heads": [0, 0, 1, 1],
        "head_channels": 32}


ARTEFACTS = ("config.json", "labels.txt", "history.csv", "best.keras",
             "best.json", "last.keras", "model.weights.h5", "metrics.json",
             "history.png", "confusion_matrix.png", "status.json")


def subset_npz(path, per_class_train, per_class_test, classes=10):
    """A class-balanced subset of the embedded sample, as an .npz."""
    sample = load_dataset("sample")

    def pick(y, count):
        return np.concatenate([np.flatnonzero(y == c)[:count]
                               for c in range(classes)])

    train_idx = pick(sample.y_train, per_class_train)
    test_idx = pick(sample.y_test, per_class_test)
    np.savez(path, x_train=sample.x_train[train_idx],
             y_train=sample.y_train[train_idx],
             x_test=sample.x_test[test_idx], y_test=sample.y_test[test_idx])
    return str(path)


def subprocess_env(**extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    env.update(extra)
    return env


def kill_in_epoch_after(command, backup, epoch, timeout):
    """Runs `command` and SIGKILLs it half a second into the epoch after the
    one its backup folder `backup` records as `epoch` (or at `timeout` s)."""
    victim = subprocess.Popen(command, env=subprocess_env(),
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    meta = pathlib.Path(backup) / "training_metadata.json"
    deadline = time.time() + timeout
    while time.time() < deadline and victim.poll() is None:
        try:
            if json.loads(meta.read_text())["epoch"] >= epoch:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    time.sleep(0.5)  # Into the next epoch's steps.
    victim.send_signal(signal.SIGKILL)
    victim.wait()


def read_rows(out):
    return evaluation.read_history(os.path.join(out, "history.csv"))


def train_command(data, out, epochs=3, model_config=TINY):
    return [sys.executable, "-m", "mdnet_keras", "train", "--dataset=npz",
            f"--data={data}", "--model=mdnet_micro",
            f"--model_config={json.dumps(model_config)}", f"--epochs={epochs}",
            "--batch_size=32", "--warmup_epochs=1", "--verbose=2",
            f"--out={out}"]
