"""Distribution: mirrored on two logical CPUs, two TensorFlow workers on
localhost against it, multi-worker without TF_CONFIG."""

import json
import socket
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


@pytest.fixture(scope="module")
def mirrored_run(small_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("mirrored") / "run"
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
    return out


def test_mirrored_strategy_on_two_logical_cpus(mirrored_run):
    out = mirrored_run
    facts = json.loads((out / "config.json").read_text())["run"]
    assert facts["num_replicas"] == 2
    assert facts["per_replica_batch_size"] == 32
    assert read_rows(out)["epoch"] == [0]
    assert (out / "metrics.json").exists()


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_on_localhost_match_one_worker(small_npz, mirrored_run,
                                                   tmp_path):
    out = tmp_path / "multi_worker"
    cluster = [f"127.0.0.1:{port}" for port in free_ports(2)]
    args = [sys.executable, "-m", "mdnet_keras", "train",
            "--strategy=multi_worker", "--dataset=npz", f"--data={small_npz}",
            "--model=mdnet_micro", f"--model_config={json.dumps(TINY)}",
            "--epochs=1", "--batch_size=64", "--verbose=0", f"--out={out}"]
    workers = [subprocess.Popen(
        args, env=subprocess_env(TF_CONFIG=json.dumps(
            {"cluster": {"worker": cluster},
             "task": {"type": "worker", "index": index}})),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for index in range(2)]
    logs = [worker.communicate(timeout=900)[0] for worker in workers]
    for worker, log in zip(workers, logs):
        assert worker.returncode == 0, log[-3000:]
    facts = json.loads((out / "config.json").read_text())["run"]
    assert facts["num_replicas"] == 2 and facts["global_batch_size"] == 64
    # The chief (worker 0) writes the run; worker 1 only its own folder.
    assert (out / "metrics.json").exists() and (out / "best.keras").exists()
    assert sorted(p.name for p in (out / "workers").iterdir()) == ["worker_1"]
    # Two workers of one replica each train as one worker of two replicas:
    # the same global batches, the same gradient all-reduce.
    multi, single = read_rows(out), read_rows(mirrored_run)
    for key in ("loss", "top1", "val_loss", "val_top1"):
        assert multi[key] == pytest.approx(single[key], abs=1e-4), key
