"""Tests of mdnet_keras.data.cifar: CIFAR through tfds and Keras' loader,
offline without touching the network, through `load_dataset`."""

import os
import pathlib
import socket
import time

import numpy as np
import pytest

from mdnet_keras.data import cifar
from mdnet_keras.data.datasets import DatasetNotFoundError, load_dataset


def test_cifar100_through_tfds_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        ds = load_dataset("cifar100", data_dir=str(tmp_path))
    assert ds.x_train.shape == (12, 32, 32, 3) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (12, 32, 32, 3)
    assert ds.num_classes == 100 and ds.y_train.max() < 100


@pytest.fixture
def no_network(monkeypatch):
    """Records (and refuses) every attempt to resolve or connect."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def test_cifar_offline_fails_fast_with_instructions(tmp_path, monkeypatch,
                                                    no_network):
    pytest.importorskip("tensorflow_datasets")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    start = time.perf_counter()
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar100", data_dir=str(tmp_path / "tfds"))
    assert time.perf_counter() - start < 20
    message = str(info.value)
    for needle in ("tensorflow_datasets.load: AssertionError",
                   "data_dir=DIR", "cifar-100-python.tar.gz",
                   str(tmp_path / "keras" / "datasets" /
                       "cifar-100-python-target_archive"),
                   "x_train, y_train, x_test, y_test", "--dataset=folder",
                   "--download"):
        assert needle in message
    assert isinstance(info.value, FileNotFoundError)
    assert no_network == []


def test_keras_fallback_runs_when_archive_is_cached(tmp_path, monkeypatch,
                                                    no_network):
    keras = pytest.importorskip("keras")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    archive = pathlib.Path(cifar.keras_archive_path("cifar10"))
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"")
    x = np.zeros((4, 32, 32, 3), np.uint8)
    y = np.array([[0], [9], [3], [3]], np.uint8)
    monkeypatch.setattr(keras.datasets.cifar10, "load_data",
                        lambda: ((x, y), (x[:2], y[:2])))
    ds = load_dataset("cifar10", data_dir=str(tmp_path / "tfds"))
    assert ds.y_train.tolist() == [0, 9, 3, 3] and ds.class_names[9] == "truck"
    assert os.path.dirname(archive) == cifar.keras_cache_dir()


# --- bad input that used to pass silently or with a traceback ---------------
