"""CIFAR-10 and CIFAR-100 through their real loaders: TensorFlow Datasets
(`tfds.load`), else Keras' `keras.datasets` loader.

Nothing touches the network unless asked (`download=True`); offline, a
missing data set fails at once with a `DatasetNotFoundError` that lists
what was tried and the ways to provide it (an `.npz` copy among them,
which `mdnet_keras.data.load_dataset` reads without these loaders).
TensorFlow Datasets and Keras are imported inside the loaders, so this
module imports with NumPy alone.
"""

import os
import pickle
import tempfile

import numpy as np

from mdnet_keras.data.folders import cli_option
from mdnet_keras.data.image_dataset import DatasetNotFoundError
from mdnet_keras.data.image_dataset import make_dataset

CIFAR10_CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog",
                       "frog", "horse", "ship", "truck")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
# Keras' `get_file` keeps the downloaded archive as `<name>_archive` in its
# cache folder; the official archive names are in `_CIFAR_URLS`.
_KERAS_ARCHIVES = {"cifar10": "cifar-10-batches-py-target",
                   "cifar100": "cifar-100-python-target"}
_CIFAR_URLS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}


def load_cifar(name, data_dir=None, download=False):
    """Loads CIFAR-10 or CIFAR-100 with tfds, else Keras' loader.

    With `download=False` nothing touches the network: tfds reads only
    `data_dir`, and Keras' loader runs only if its archive is already in its
    cache (`keras_archive_path`).

    Args:
        name: str, "cifar10" or "cifar100".
        data_dir: str, tfds data folder, or None for tfds' default.
        download: bool, allow tfds / Keras to download the data.

    Returns:
        An `ImageDataset`.

    Raises:
        DatasetNotFoundError: neither loader found the data; the message
            lists what was tried and the ways to provide the data.
    """
    failures = []
    for loader in (_load_tfds, _load_keras):
        try:
            return loader(name, data_dir=data_dir, download=download)
        except Exception as error:  # Each loader's failure is reported below.
            failures.append(f"{loader.__doc__.split(':')[0]}: "
                            f"{type(error).__name__}: {error}")
    raise DatasetNotFoundError(_not_found_message(name, data_dir, failures))


def _load_tfds(name, data_dir, download):
    """tensorflow_datasets.load: reads (or downloads) a tfds data set."""
    import tensorflow_datasets as tfds

    # batch_size=-1 is not used: tfds then batches by the split sizes in the
    # data set's metadata and aborts the process when those are unknown.
    splits, info = tfds.load(name, split=["train", "test"], data_dir=data_dir,
                             download=download, as_supervised=True,
                             with_info=True, try_gcs=False)
    arrays = []
    for split in splits:
        batches = list(tfds.as_numpy(split.batch(10000)))
        arrays += [np.concatenate([b[i] for b in batches]) for i in (0, 1)]
    return make_dataset(*arrays, class_names=info.features["label"].names,
                        name=name, num_classes=NUM_CLASSES[name])


def _load_keras(name, data_dir, download):
    """keras.datasets: reads Keras' cached archive (or downloads it)."""
    del data_dir  # Keras' loader has its own cache folder.
    archive = keras_archive_path(name)
    if not download and not os.path.isfile(archive):
        raise DatasetNotFoundError(f"no archive at {archive} and "
                                   "download=False")
    import keras

    (x_train, y_train), (x_test, y_test) = getattr(
        keras.datasets, name).load_data()
    return make_dataset(x_train, y_train, x_test, y_test,
                        _keras_class_names(name, archive), name,
                        NUM_CLASSES[name])


def keras_cache_dir():
    """Returns the folder where Keras' `get_file` keeps data sets.

    Mirrors Keras 3: `$KERAS_HOME`, else `~/.keras` (`/tmp/.keras` if the
    home folder is not writable), with `datasets/` under it.
    """
    home = os.environ.get("KERAS_HOME") or os.path.join(
        os.path.expanduser("~") if os.access(os.path.expanduser("~"), os.W_OK)
        else "/tmp", ".keras")
    if os.path.isdir(home) and not os.access(home, os.W_OK):
        home = os.path.join(tempfile.gettempdir(), ".keras")
    return os.path.join(home, "datasets")


def keras_archive_path(name):
    """Returns where Keras' CIFAR loader expects its downloaded archive.

    Args:
        name: str, "cifar10" or "cifar100".

    Returns:
        str, e.g. `~/.keras/datasets/cifar-10-batches-py-target_archive`: the
        original `cifar-10-python.tar.gz` saved under that name.
    """
    return os.path.join(keras_cache_dir(), _KERAS_ARCHIVES[name] + "_archive")


def _keras_class_names(name, archive):
    """Class names for Keras' CIFAR arrays (CIFAR-100's from its meta file)."""
    if name == "cifar10":
        return CIFAR10_CLASS_NAMES
    meta = os.path.join(archive.removesuffix("_archive"), "cifar-100-python",
                        "meta")
    if not os.path.isfile(meta):
        return None
    with open(meta, "rb") as f:
        return pickle.load(f, encoding="latin1")["fine_label_names"]


def _not_found_message(name, data_dir, failures):
    """Says what was tried and how to provide CIFAR `name`."""
    tried = "\n".join(f"  - {failure}" for failure in failures)
    tfds_dir = data_dir or "~/tensorflow_datasets"
    return (
        f"Data set {name!r} is not on this machine, and download=False or "
        f"there is no network. Tried:\n{tried}\n"
        "Provide it in one of these ways:\n"
        f"  1. A prepared TensorFlow Datasets folder: where there is internet"
        f", run `tfds.load('{name}', data_dir=DIR, download=True)`, copy DIR"
        f" here and pass {cli_option('data_dir', 'DIR')} (looked in "
        f"{tfds_dir}).\n"
        f"  2. The original archive for Keras' loader: save "
        f"{_CIFAR_URLS[name]} as {keras_archive_path(name)}.\n"
        "  3. An .npz with x_train, y_train, x_test, y_test (uint8 NHWC "
        f"images, integer labels): pass {cli_option('data', 'PATH.npz')} "
        f"(with dataset {name!r} or 'npz').\n"
        "  4. An image folder, ROOT/<class>/*.png or ROOT/train|test/<class>/"
        f": pass {cli_option('dataset', 'folder')} and "
        f"{cli_option('data', 'ROOT')}.\n"
        f"  Or pass {cli_option('download')} on a machine with internet.")
