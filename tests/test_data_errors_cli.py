"""Bad data given to `python -m mdnet_keras train`: one clear line, exit 2.

Each case runs the command as a user does (a subprocess) and checks that
the message names the input and the command's own flags, with no
traceback."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]


def train(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "mdnet_keras", "train",
                           *args], capture_output=True, text=True, env=env,
                          timeout=300)


def one_class_folder(root):
    for i in range(3):
        (root / "only").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(
            root / "only" / f"{i}.png")
    return root


def corrupt_folder(root):
    for c in "ab":
        (root / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(
                root / c / f"{i}.png")
    (root / "b" / "1.png").write_bytes(b"half a file")
    return root


def one_based_npz(path):
    x = np.zeros((6, 32, 32, 3), np.uint8)
    np.savez(path, x_train=x, y_train=np.array([1, 2, 3, 1, 2, 3]),
             x_test=x[:3], y_test=np.array([1, 2, 3]))
    return path


@pytest.mark.parametrize("make, dataset, expected", [
    (lambda p: p / "nope.npz", "npz", r"No \.npz file at .*nope\.npz.*--data="),
    (one_based_npz, "npz", r"d\.npz: .*1-based: subtract 1"),
    (one_class_folder, "folder", r"one class folder \('only'\).*at least 2"),
    (corrupt_folder, "folder", r"1\.png.*\(--skip_bad_files\)"),
])
def test_bad_data_is_one_clear_error(tmp_path, make, dataset, expected):
    import re

    data = make(tmp_path / ("d.npz" if dataset == "npz" else "images"))
    done = train(f"--dataset={dataset}", f"--data={data}",
                 f"--out={tmp_path / 'run'}", "--epochs=1")
    assert done.returncode == 2, (done.stdout + done.stderr)[-2000:]
    assert "Traceback" not in done.stderr
    assert re.search("error: .*" + expected, done.stderr), done.stderr[-2000:]
    assert not (tmp_path / "run" / "best.keras").exists()
