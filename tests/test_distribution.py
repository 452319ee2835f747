"""Distribution: mirrored on two logical CPUs, two TensorFlow workers on
localhost against it, a worker killed mid-run and the resume, multi-worker
without TF_CONFIG; JAX's DataParallel on two CPU devices against one, and
its multi-process refusal."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from mdnet_keras.training import distribution
from mdnet_keras.training import run
from mdnet_keras.training import run_folder
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


def train_command(data, out, epochs, strategy="multi_worker", *extra):
    return [sys.executable, "-m", "mdnet_keras", "train",
            f"--strategy={strategy}", "--dataset=npz", f"--data={data}",
            "--model=mdnet_micro", f"--model_config={json.dumps(TINY)}",
            f"--epochs={epochs}", "--batch_size=64", "--verbose=0",
            f"--out={out}", *extra]


def start_workers(args, cluster, logs):
    """Starts one process per worker of `cluster`, logging into `logs`_<i>."""
    return [subprocess.Popen(
        args, env=subprocess_env(TF_CONFIG=json.dumps(
            {"cluster": {"worker": cluster},
             "task": {"type": "worker", "index": index}})),
        stdout=open(f"{logs}_{index}.log", "w"), stderr=subprocess.STDOUT)
        for index in range(len(cluster))]


def finish_workers(workers, logs, timeout=900):
    """Waits for `workers`; returns their exit codes and logs."""
    codes = [worker.wait(timeout=timeout) for worker in workers]
    return codes, [open(f"{logs}_{i}.log").read() for i in range(len(codes))]


@pytest.mark.slow
def test_two_workers_on_localhost_match_one_worker(small_npz, mirrored_run,
                                                   tmp_path):
    out = tmp_path / "multi_worker"
    cluster = [f"127.0.0.1:{port}" for port in free_ports(2)]
    codes, logs = finish_workers(start_workers(
        train_command(small_npz, out, 1), cluster, tmp_path / "w"),
        tmp_path / "w")
    for code, log in zip(codes, logs):
        assert code == 0, log[-3000:]
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


@pytest.mark.slow
def test_killed_worker_fails_the_run_clearly_and_rerun_resumes(small_npz,
                                                               tmp_path):
    out = tmp_path / "killed"
    cluster = [f"127.0.0.1:{port}" for port in free_ports(2)]
    args = train_command(small_npz, out, 3)
    workers = start_workers(args, cluster, tmp_path / "first")
    # SIGKILL worker 1 once the chief has backed up epoch 1 (its last write
    # of the epoch), so in epoch 2: the chief cannot finish a step alone.
    metadata = out / "backup_full" / "training_metadata.json"
    deadline = time.time() + 600
    while time.time() < deadline and workers[0].poll() is None:
        try:
            if json.loads(metadata.read_text())["epoch"] >= 1:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    time.sleep(0.2)
    workers[1].send_signal(signal.SIGKILL)
    # The survivor stops (its peer watchdog, or TensorFlow's heartbeats, find
    # the lost peer) with a message naming it and the way to resume, not a
    # traceback or a hang.
    codes, logs = finish_workers(workers, tmp_path / "first", timeout=300)
    assert codes == [4, -signal.SIGKILL], (codes, logs[0][-3000:])
    assert "/job:worker/replica:0/task:1 stopped" in logs[0], logs[0][-3000:]
    assert "re-run the same command on every worker" in logs[0]
    assert "Traceback" not in logs[0], logs[0][-3000:]
    before = read_rows(out)
    kept = run_folder.backup_epoch(out)
    assert 1 <= kept < 3 and len(before["epoch"]) >= kept
    assert f"resume from epoch {kept + 1}" in logs[0]

    codes, logs = finish_workers(start_workers(args, cluster,
                                               tmp_path / "again"),
                                 tmp_path / "again")
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert f"Resuming from epoch {kept + 1}" in logs[0]
    after = read_rows(out)
    assert after["epoch"] == [0, 1, 2]
    for key in ("loss", "val_top1"):
        assert after[key][:kept] == before[key][:kept], key
    assert json.loads((out / "status.json").read_text())["state"] == \
        "finished"
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 3


def test_lost_worker_message_names_the_peer_and_the_resume(monkeypatch,
                                                           tmp_path):
    tf = pytest.importorskip("tensorflow")
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"worker": ["a:1", "b:2"]},
         "task": {"type": "worker", "index": 0}}))
    error = tf.errors.UnavailableError(None, None, (
        "{{function_node __wrapped__CollectiveReduceV2_device_/job:worker/"
        "replica:0/task:0/device:CPU:0}} Collective ops is aborted by: "
        "The following tasks are unhealthy (stopped sending heartbeats):\n"
        "/job:worker/replica:0/task:1\nThe tasks have crashed."))
    assert distribution.is_lost_worker_error(error)
    assert not distribution.is_lost_worker_error(ValueError("x"))
    message = distribution.lost_worker_message(error, str(tmp_path), 1)
    assert message.startswith("/job:worker/replica:0/task:1 stopped")
    assert "task:0" not in message.split("TensorFlow said")[0]
    assert "resume from epoch 2" in message and str(tmp_path) in message


def test_peer_tasks_are_the_other_chief_and_worker_tasks(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"],
                     "evaluator": ["d:4"]},
         "task": {"type": "worker", "index": 0}}))
    assert distribution.peer_tasks() == ["/job:chief/replica:0/task:0",
                                         "/job:worker/replica:0/task:1"]


class FakeCollectives:
    """TensorFlow's collective health check and abort, with peers that die."""

    def __init__(self):
        self.dead, self.started, self.aborted = set(), set(), []

    def check_collective_ops_peer_health(self, peer, timeout_in_ms):
        if peer in self.dead or peer not in self.started:
            raise RuntimeError(f"{peer} unavailable")

    def abort_collective_ops(self, code, message):
        self.aborted.append(message)


@pytest.fixture
def collectives(monkeypatch):
    pytest.importorskip("tensorflow")
    from tensorflow.python.eager import context

    fake = FakeCollectives()
    monkeypatch.setattr(context, "context", lambda: fake)
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"worker": ["a:1", "b:2", "c:3"]},
         "task": {"type": "worker", "index": 0}}))
    return fake


def wait_for(condition, seconds=5.0):
    deadline = time.time() + seconds
    while time.time() < deadline and not condition():
        time.sleep(0.01)
    return condition()


def test_watchdog_aborts_when_a_peer_that_answered_stops(collectives,
                                                         tmp_path):
    watchdog = distribution.PeerWatchdog(str(tmp_path), interval_seconds=0.01,
                                         attempts=2)
    watchdog.on_train_begin()
    watchdog.on_epoch_begin(0)
    # task:2 has not started yet (workers start at different times): no
    # abort; task:1 answers, then dies.
    collectives.started.add("/job:worker/replica:0/task:1")
    time.sleep(0.1)
    assert collectives.aborted == []
    collectives.dead.add("/job:worker/replica:0/task:1")
    assert wait_for(lambda: collectives.aborted)
    assert collectives.aborted == [
        "/job:worker/replica:0/task:1 stopped answering this worker's "
        "health checks"]
    watchdog.on_train_end()  # the aborted step raised: fit ended


def test_watchdog_waits_through_epoch_ends(collectives, tmp_path):
    # At an epoch end the chief writes checkpoints while a peer that
    # finished may have exited: no abort until the next epoch begins.
    watchdog = distribution.PeerWatchdog(str(tmp_path), interval_seconds=0.01,
                                         attempts=1)
    collectives.started.update(distribution.peer_tasks())
    watchdog.on_train_begin()
    watchdog.on_epoch_begin(0)
    time.sleep(0.1)
    watchdog.on_epoch_end(0)
    collectives.dead.add("/job:worker/replica:0/task:2")
    time.sleep(0.1)
    assert collectives.aborted == []
    watchdog.on_epoch_begin(1)
    assert wait_for(lambda: collectives.aborted)
    watchdog.on_train_end()


def test_watchdog_exits_when_the_aborted_step_does_not_return(
        collectives, monkeypatch, tmp_path, capfd):
    exits = []
    monkeypatch.setattr(os, "_exit", exits.append)
    watchdog = distribution.PeerWatchdog(str(tmp_path), interval_seconds=0.01,
                                         attempts=1, grace_seconds=0.05)
    collectives.started.add("/job:worker/replica:0/task:1")
    watchdog.on_train_begin()
    watchdog.on_epoch_begin(0)
    time.sleep(0.1)
    collectives.dead.add("/job:worker/replica:0/task:1")
    assert wait_for(lambda: exits)
    assert exits == [4]
    notice, error = capfd.readouterr().err.splitlines()
    assert notice.startswith("/job:worker/replica:0/task:1 stopped answering")
    assert error.startswith("error: /job:worker/replica:0/task:1 stopped")
    assert f"{tmp_path} keeps 0 finished epoch(s)" in error
    watchdog.on_train_end()  # also disarms faulthandler's forced exit


def test_watchdog_ends_a_process_whose_main_thread_hangs_holding_the_gil(
        tmp_path):
    # As a deadlocked destructor does: no Python thread can run, so only
    # faulthandler's own thread can end the process, and its stacks must
    # reach stderr without the log filter's thread.
    script = f"""
import ctypes, json, os, sys, time
sys.path.insert(0, {os.path.dirname(__file__)!r})
os.environ["TF_CONFIG"] = json.dumps(
    {{"cluster": {{"worker": ["a:1", "b:2"]}},
     "task": {{"type": "worker", "index": 0}}}})
from tensorflow.python.eager import context
from test_distribution import FakeCollectives
from mdnet_keras import tf_logs
from mdnet_keras.training import distribution
tf_logs.hide()  # as under the command line: fd 2 is the filter's pipe
fake = FakeCollectives()
context.context = lambda: fake
watchdog = distribution.PeerWatchdog({str(tmp_path)!r}, interval_seconds=0.01,
                                     attempts=1, grace_seconds=0.2,
                                     forced_exit_seconds=0.3)
fake.started.add("/job:worker/replica:0/task:1")
watchdog.on_train_begin()
watchdog.on_epoch_begin(0)
time.sleep(0.1)
fake.dead.add("/job:worker/replica:0/task:1")
while not fake.aborted:
    time.sleep(0.01)
ctypes.PyDLL(None).sleep(60)  # libc's sleep, holding the GIL
"""
    started = time.time()
    done = subprocess.run([sys.executable, "-c", script], env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-3000:]
    assert time.time() - started < 45
    assert "stopped answering this worker's health checks" in done.stderr
    assert "Timeout" in done.stderr and "most recent call first" in \
        done.stderr, done.stderr[-3000:]


def test_backup_epoch_reads_the_latest_backup(tmp_path):
    assert run_folder.backup_epoch(tmp_path / "absent") == 0
    for name, epoch in (("backup_frozen", 2), ("backup_full", 5)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "training_metadata.json").write_text(
            json.dumps({"epoch": epoch, "batch": 0}))
    assert run_folder.backup_epoch(tmp_path) == 5


JAX_TWO_CPUS = dict(KERAS_BACKEND="jax",
                    XLA_FLAGS="--xla_force_host_platform_device_count=2")


@pytest.mark.slow
def test_jax_data_parallel_on_two_cpus_matches_one_device(small_npz,
                                                          tmp_path):
    pytest.importorskip("jax")
    runs = {strategy: subprocess.Popen(
        train_command(small_npz, tmp_path / strategy, 2, strategy,
                      "--learning_rate=0.005"),
        env=subprocess_env(**JAX_TWO_CPUS), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
        for strategy in ("mirrored", "none")}
    for strategy, process in runs.items():
        log = process.communicate(timeout=900)[0]
        assert process.returncode == 0, log[-3000:]
    parallel = json.loads((tmp_path / "mirrored" / "config.json")
                          .read_text())["run"]
    single = json.loads((tmp_path / "none" / "config.json").read_text())["run"]
    assert parallel["backend"] == single["backend"] == "jax"
    assert (parallel["num_replicas"], parallel["per_replica_batch_size"]) \
        == (2, 32)
    assert (single["num_replicas"], single["global_batch_size"]) == (1, 64)
    # The same global batches and the same step: only the order of float
    # sums differs (two devices' halves, then an all-reduce), which training
    # amplifies. Measured over these 2 epochs: |loss difference| <= 8e-4,
    # |val_loss difference| <= 2.5e-4 (4 steps of one batch agree to 7e-5).
    two, one = read_rows(tmp_path / "mirrored"), read_rows(tmp_path / "none")
    assert two["epoch"] == one["epoch"] == [0, 1]
    for key in ("loss", "val_loss"):
        assert two[key] == pytest.approx(one[key], abs=2e-3), key


def test_jax_multi_worker_names_what_is_missing_or_refused(monkeypatch):
    for name in ("KERAS_DISTRIBUTION_JOB_ADDRESSES",
                 "KERAS_DISTRIBUTION_NUM_PROCESSES",
                 "KERAS_DISTRIBUTION_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "0")
    with pytest.raises(ValueError, match="missing: "
                       "KERAS_DISTRIBUTION_JOB_ADDRESSES, "
                       "KERAS_DISTRIBUTION_NUM_PROCESSES\\."):
        distribution.check_multi_worker_environment("jax")
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "127.0.0.1:1")
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "1")
    distribution.check_multi_worker_environment("jax")


def test_multi_process_jax_run_is_refused_clearly(small_npz, tmp_path):
    """Two `jax.distributed` processes: refused before connecting."""
    pytest.importorskip("jax")
    out = tmp_path / "jax_processes"
    done = subprocess.run(
        train_command(small_npz, out, 1), env=subprocess_env(
            KERAS_BACKEND="jax",
            KERAS_DISTRIBUTION_JOB_ADDRESSES="127.0.0.1:1,127.0.0.1:2",
            KERAS_DISTRIBUTION_NUM_PROCESSES="2",
            KERAS_DISTRIBUTION_PROCESS_ID="1"),
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "KERAS_DISTRIBUTION_NUM_PROCESSES=2: this command trains under " \
        "JAX in one process only" in done.stderr
    assert "--strategy=mirrored" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()
