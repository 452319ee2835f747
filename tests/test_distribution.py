"""Distribution: mirrored on two logical CPUs, multi-worker without
TF_CONFIG."""

import json
import subprocess
import sys

import pytest

from mdnet_keras.training import run
from training_util import TINY
from training_util import read_rows
from training_util import subprocess_env


def test_multi_worker_without_tf_config_errors(monkeypatch, tmp_path):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    out = tmp_path / "mw"
    with pytest.raises(ValueError, match="TF_CONFIG"):
        run.train(strategy="multi_worker", out=str(out))
    assert not out.exists()


def test_mirrored_strategy_on_two_logical_cpus(small_npz, tmp_path):
    out = tmp_path / "mirrored"
    script = f"""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from mdnet_keras.training import train
train(dataset="npz", data={small_npz!r}, model="mdnet_micro",
      model_config={TINY!r}, epochs=1, batch_size=64, strategy="mirrored",
      verbose=0, out={str(out)!r})
"""
    done = subprocess.run([sys.executable, "-c", script], env=subprocess_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    facts = json.loads((out / "config.json").read_text())["run"]
    assert facts["num_replicas"] == 2
    assert facts["per_replica_batch_size"] == 32
    assert read_rows(out)["epoch"] == [0]
    assert (out / "metrics.json").exists()
