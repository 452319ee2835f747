"""Image classification data sets as uint8 arrays (or streamed from disk).

Every data set comes back as an `ImageDataset`: uint8 NHWC images and int64
labels for a train and a test split, plus the class names. `load_dataset` is
the one entry point:

- `"sample"`: the small CIFAR-10 (JPEG copy) sample shipped in the package
  (100 train and 20 test images per class), for runs without network or data.
- `"cifar10"`, `"cifar100"`: an `.npz` given as `data`, else TensorFlow
  Datasets (`tfds.load`), else Keras' own loader. Offline, a missing data set
  fails at once with a `DatasetNotFoundError` that says how to provide it.
- `"npz"`: a file with `x_train, y_train, x_test, y_test` (and optionally
  `label_names` or `class_names`).
- `"folder"`: `root/<class>/*.jpg|png|...`, or `root/train/<class>` with
  `root/test/<class>` (or `root/val/<class>`); without a test folder a seeded,
  stratified split holds out `validation_split` of each class. With `train/`,
  `test/` and `val/`, `val/` is the data set's own validation split
  (`ImageDataset.x_val`). A folder too
  large for memory is streamed: its images are `ImageFiles`, decoded batch by
  batch (see `mdnet_keras.data.folders.load_folder`).

Only NumPy and Pillow are imported here; TensorFlow Datasets and Keras are
imported inside the CIFAR loaders (`mdnet_keras.data.cifar`), so the module
works on a machine that has JAX but no TensorFlow. Files are decoded by
`mdnet_keras.data.images`; arrays are checked into an `ImageDataset` by
`mdnet_keras.data.image_dataset`.
"""

import dataclasses
import importlib.resources
import logging
import os
import pathlib
import zipfile
import zlib

import numpy as np

from mdnet_keras.data.folders import cli_option, load_folder
from mdnet_keras.data.images import (  # noqa: F401  (the data set API)
    IMAGE_EXTENSIONS,
    RESIZE_METHOD,
    BadImageError,
    ImageFiles,
    load_image,
    resize_images,
    to_channels,
)

from mdnet_keras.data import jpeg_npz
from mdnet_keras.data.cifar import CIFAR10_CLASS_NAMES, NUM_CLASSES, load_cifar
from mdnet_keras.data.image_dataset import (  # noqa: F401  (the data set API)
    DatasetNotFoundError,
    ImageDataset,
    make_dataset,
    with_validation,
)

logger = logging.getLogger(__name__)

DATASET_NAMES = ("sample", "cifar10", "cifar100", "npz", "folder")
SAMPLE_FILE = "cifar10_sample.npz"
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_dataset(name, data=None, image_size=None, channels=None,
                 data_dir=None, download=False, validation_split=0.1, seed=0,
                 skip_bad_files=False, streaming="auto",
                 max_memory_bytes=None):
    """Loads an image classification data set.

    Args:
        name: str, one of `DATASET_NAMES`: "sample", "cifar10", "cifar100",
            "npz" or "folder".
        data: str or path, the `.npz` file ("npz", optionally "cifar10" and
            "cifar100") or the image folder ("folder").
        image_size: int or (height, width), resize every image to this size
            with `RESIZE_METHOD`. Defaults to None: keep the stored size
            (a folder's images must then all have one size).
        channels: int, 1 (greyscale) or 3 (RGB); images with the other count
            are converted (see `to_channels`). Defaults to None: keep arrays'
            channels, and read folders as RGB.
        data_dir: str, TensorFlow Datasets' data folder for "cifar10" and
            "cifar100". Defaults to None: tfds' default (~/tensorflow_datasets).
        download: bool, let tfds or Keras download CIFAR when missing.
            Defaults to False: nothing is downloaded.
        validation_split: float in [0, 1), share of each class held out as the
            test split of a folder that has no `test/` or `val/` folder.
        seed: int, seed of that split.
        skip_bad_files: bool, skip image files that cannot be decoded (with a
            warning and `ImageDataset.skipped_files`) instead of raising
            `BadImageError`.
        streaming: str, for folders: "auto" (stream when the decoded images
            would exceed `max_memory_bytes`), "always" or "never"; see
            `mdnet_keras.data.folders.load_folder`. Arrays ("npz", CIFAR,
            "sample") are always in memory.
        max_memory_bytes: int, the budget of `streaming="auto"`. Defaults to
            None: half of the machine's memory.

    Returns:
        An `ImageDataset`.

    Raises:
        ValueError: an unknown `name`, or invalid data (the message says what).
        DatasetNotFoundError: the data set is not on this machine.

    Example:

    >>> ds = load_dataset("sample", image_size=16, channels=1)
    >>> ds.x_train.shape, ds.num_classes
    ((1000, 16, 16, 1), 10)
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"Unknown dataset {name!r}; choose one of "
                         f"{', '.join(DATASET_NAMES)}.")
    if streaming == "always" and name != "folder":
        raise ValueError(f"streaming='always' reads image folders; dataset "
                         f"{name!r} is loaded into memory. Use "
                         f"{cli_option('streaming', 'auto')} or 'never'.")
    if name == "folder":
        if data is None or not os.path.isdir(data):
            raise DatasetNotFoundError(_no_folder_message(data))
        root = pathlib.Path(data)
        *arrays, names, skipped, validation = load_folder(
            root, image_size, 3 if channels is None else channels,
            validation_split, seed, skip_bad_files, streaming,
            max_memory_bytes)
        dataset = dataclasses.replace(
            make_dataset(*arrays, names, root.name), skipped_files=skipped)
        if validation is not None:
            dataset = with_validation(dataset, *validation)
    elif name == "sample":
        dataset = load_sample()
    elif name == "npz" or data is not None:
        dataset = load_npz(data, name=None if name == "npz" else name)
    else:
        dataset = load_cifar(name, data_dir=data_dir, download=download)
    return _adapt(dataset, image_size, channels)


def _no_folder_message(data):
    """Says what is at `data` instead of a folder, and what to pass."""
    what = ("a file" if data is not None and os.path.isfile(data)
            else "nothing")
    hint = (" (an .npz goes with " + cli_option("dataset", "npz") + ")"
            if str(data).endswith(".npz") else "")
    return (f"No image folder at {data!r} ({what} there){hint}: pass "
            f"{cli_option('data', 'PATH')} to a folder of class folders, "
            "PATH/<class>/*.jpg.")


def load_sample():
    """Loads the CIFAR-10 (JPEG copy) sample embedded in the package.

    Returns:
        An `ImageDataset` named "sample": 1000 train and 200 test images,
        uint8 32x32x3, 10 classes.
    """
    ref = importlib.resources.files(__package__).joinpath("sample",
                                                          SAMPLE_FILE)
    with importlib.resources.as_file(ref) as path:
        dataset = load_npz(path, name="cifar10")
    return dataclasses.replace(dataset, name="sample")


def load_npz(path, name=None):
    """Loads and checks an `.npz` with `x_train, y_train, x_test, y_test`.

    Labels may have shape (N,) or (N, 1). Class names come from a
    `label_names` or `class_names` array when present. A file of JPEG bytes
    in the layout of `jpeg_npz` (e.g. `cifar100-jpeg.npz`) is decoded.

    Args:
        path: str or path of the `.npz` file.
        name: str, a known data set ("cifar10", "cifar100") whose class count
            the labels must fit, or None.

    Returns:
        An `ImageDataset`.

    Raises:
        DatasetNotFoundError: no such file.
        ValueError: not an .npz, missing keys or invalid arrays; the message
            names the file and the array.
    """
    if path is None or not os.path.isfile(path):
        what = ("a folder (use " + cli_option("dataset", "folder") + ")"
                if path is not None and os.path.isdir(path) else "no file")
        raise DatasetNotFoundError(
            f"No .npz file at {os.fspath(path) if path else path!r} ({what}): "
            f"pass {cli_option('data', 'PATH')} to a file with x_train, "
            "y_train, x_test, y_test.")
    arrays, names = _read_npz(path)
    if names is None and name == "cifar10":
        names = CIFAR10_CLASS_NAMES
    try:
        return make_dataset(**arrays, class_names=names,
                            name=name or pathlib.Path(path).stem,
                            num_classes=NUM_CLASSES.get(name))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error


def _read_npz(path):
    """Reads the arrays of an `.npz`; returns (arrays dict, class names)."""
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic[:4] != b"PK\x03\x04":  # Every .npz is a zip archive.
        what = ("a single .npy array" if magic == b"\x93NUMPY"
                else "not a NumPy archive")
        raise ValueError(f"{path}: {what}; save the data with "
                         f"np.savez(PATH, {'=..., '.join(NPZ_KEYS)}=...).")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if jpeg_npz.is_jpeg_packed(npz.files):
                return jpeg_npz.decode_arrays(npz), _read_names(npz, path)
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise ValueError(
                    f"{path}: missing arrays {missing}; it has "
                    f"{sorted(npz.files)}. Give {', '.join(NPZ_KEYS)}, or "
                    "JPEG bytes as train_jpeg / train_offsets / test_jpeg / "
                    "test_offsets with the labels.")
            arrays = {k: _read_array(npz, k, path) for k in NPZ_KEYS}
            names = _read_names(npz, path)
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(f"{path}: cannot read it as an .npz archive "
                         f"(truncated or corrupt): {error}") from error
    return arrays, names


def _read_names(npz, path):
    """The `label_names` (or `class_names`) array of an `.npz`, or None."""
    key = next((k for k in ("label_names", "class_names")
                if k in npz.files), None)
    return None if key is None else _read_array(npz, key, path)


def _read_array(npz, key, path):
    """Reads array `key`, naming it when it holds Python objects."""
    try:
        return npz[key]
    except ValueError as error:
        raise ValueError(f"{path}: array {key!r} holds Python objects, which "
                         "are not loaded (allow_pickle=False): store numbers "
                         "(or str for label_names).") from error

def _adapt(dataset, image_size, channels):
    """Resizes and converts the channels of a data set's images."""
    if dataset.streamed:  # load_image resizes and converts each file.
        return dataset
    have = dataset.x_train.shape[-1]
    if channels is not None and have != channels:
        logger.warning("%s: converting %d-channel images to %d channels.",
                       dataset.name, have, channels)
    x_train, x_test, x_val = (
        None if x is None else resize_images(to_channels(x, channels),
                                             image_size)
        for x in (dataset.x_train, dataset.x_test, dataset.x_val))
    return dataclasses.replace(dataset, x_train=x_train, x_test=x_test,
                               x_val=x_val)
