"""The run folder: a finished run refused, another run's folder refused,
the default folder moving on."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pytest

from mdnet_keras.training import batchnorm
from mdnet_keras.training import config as train_config
from mdnet_keras.training import evaluation
from mdnet_keras.training import run
from mdnet_keras.training import run_folder


def test_refuses_finished_run_folder(finished_run, tmp_path):
    config, _ = finished_run
    with pytest.raises(run_folder.RunFolderError, match="finished run.*--overwrite"):
        run.train(config)
    # --overwrite replaces it (on a copy here).
    copy = tmp_path / "copy"
    shutil.copytree(config["out"], copy)
    resolved = train_config.resolve_config(dict(config, out=str(copy), overwrite=True))
    assert run_folder.prepare_run_folder(resolved) is False
    assert os.listdir(copy) == []
    # The default folder moves on to the first unfinished one.
    root = tmp_path / "runs"
    shutil.copytree(config["out"], root / "sample-mdnet_micro")
    default = run_folder.default_out_dir(train_config.resolve_config(out="x"), root=str(root))
    assert default == str(root / "sample-mdnet_micro-2")


def test_refuses_foreign_or_other_config_folder(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(run_folder.RunFolderError, match="holds no training run"):
        run_folder.prepare_run_folder(train_config.resolve_config(out=str(foreign),
                                                  overwrite=True))
    assert (foreign / "notes.txt").exists()
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    config = train_config.resolve_config(out=str(unfinished), epochs=3)
    evaluation.write_json(unfinished / "config.json",
                          {"config": dataclasses.asdict(config)})
    assert run_folder.prepare_run_folder(config) is True  # same config: resume
    # Steps per compiled call change when the same steps train, not which:
    # a run started with one a call (a CPU) resumes with 32 (a GPU).
    assert run_folder.prepare_run_folder(train_config.resolve_config(
        out=str(unfinished), epochs=3, steps_per_execution=32)) is True
    with pytest.raises(run_folder.RunFolderError, match="another configuration.*epochs"):
        run_folder.prepare_run_folder(train_config.resolve_config(out=str(unfinished),
                                                  epochs=5))
    # A run written before an option existed ran without it.
    older = dataclasses.asdict(config)
    del older["bn_recalibration_batches"]
    evaluation.write_json(unfinished / "config.json", {"config": older})
    with pytest.raises(run_folder.RunFolderError,
                       match="bn_recalibration_batches: 0 -> "
                             f"{batchnorm.DEFAULT_BATCHES}"):
        run_folder.prepare_run_folder(config)
    assert run_folder.prepare_run_folder(train_config.resolve_config(
        out=str(unfinished), epochs=3, bn_recalibration_batches=0)) is True


def test_a_live_lock_refuses_a_second_run_and_a_stale_one_is_removed(
        tmp_path):
    out = tmp_path / "locked"
    out.mkdir()
    config = train_config.resolve_config(out=str(out))
    run_folder.acquire_lock(str(out))
    holder = json.loads((out / run_folder.LOCK_FILE).read_text())
    assert holder["pid"] == os.getpid()
    with pytest.raises(run_folder.RunFolderError,
                       match="in use by another training .*pid"):
        run_folder.prepare_run_folder(config)
    with pytest.raises(run_folder.RunFolderError, match="in use"):
        run.train(config)
    run_folder.release_lock(str(out))
    assert not (out / run_folder.LOCK_FILE).exists()
    # A killed run's lock: its process is gone.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (out / run_folder.LOCK_FILE).write_text(json.dumps(
        dict(holder, pid=gone.pid)))
    assert run_folder.prepare_run_folder(config) is False
    assert not (out / run_folder.LOCK_FILE).exists()


def test_an_uncreatable_out_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    config = train_config.resolve_config(out=str(blocker / "run"))
    with pytest.raises(run_folder.RunFolderError,
                       match="Cannot create --out=.*file/run"):
        run_folder.prepare_run_folder(config)


def test_a_folder_another_worker_creates_first_is_taken(monkeypatch, tmp_path):
    # Two workers of a multi-worker run start together: both find --out
    # missing, and the second makedirs met the first one's folder ("Cannot
    # create --out=...: File exists").
    out = tmp_path / "multi_worker"
    config = train_config.resolve_config(out=str(out), strategy="multi_worker")
    exists = os.path.exists

    def created_meanwhile(path):
        if os.fspath(path) == str(out) and not exists(path):
            os.mkdir(out)
            return False
        return exists(path)

    monkeypatch.setattr(run_folder.os.path, "exists", created_meanwhile)
    assert run_folder.prepare_run_folder(config) is False
    assert out.is_dir()


def test_overwrite_is_refused_for_multi_worker_runs(tmp_path):
    # Each worker prepares the folder: with --overwrite one would delete the
    # run another worker had just started writing.
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"config": {}}))
    config = train_config.resolve_config(out=str(out), strategy="multi_worker",
                                         overwrite=True)
    with pytest.raises(run_folder.RunFolderError,
                       match="--overwrite with --strategy=multi_worker.*Delete .*run once"):
        run_folder.prepare_run_folder(config)
    assert (out / "config.json").exists()
