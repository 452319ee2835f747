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
imported inside the CIFAR loaders, so the module works on a machine that has
JAX but no TensorFlow. Files are decoded by `mdnet_keras.data.images`.
"""

import dataclasses
import importlib.resources
import logging
import os
import pathlib
import pickle
import tempfile
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

logger = logging.getLogger(__name__)

DATASET_NAMES = ("sample", "cifar10", "cifar100", "npz", "folder")
SAMPLE_FILE = "cifar10_sample.npz"
CIFAR10_CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog",
                       "frog", "horse", "ship", "truck")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# Keras' `get_file` keeps the downloaded archive as `<name>_archive` in its
# cache folder; the official archive names are in `_CIFAR_URLS`.
_KERAS_ARCHIVES = {"cifar10": "cifar-10-batches-py-target",
                   "cifar100": "cifar-100-python-target"}
_CIFAR_URLS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}


class DatasetNotFoundError(FileNotFoundError):
    """A data set is not on this machine and cannot be downloaded."""


@dataclasses.dataclass
class ImageDataset:
    """An image classification data set, in memory or streamed.

    Args:
        x_train: uint8 array (N, H, W, C), training images, or `ImageFiles`
            (decoded when indexed) for a streamed folder.
        y_train: int64 array (N,), training labels in [0, num_classes).
        x_test: uint8 array (M, H, W, C) or `ImageFiles`, test (or
            validation) images.
        y_test: int64 array (M,), test labels.
        class_names: tuple of str, the name of each class index.
        name: str, the data set's name (e.g. "cifar10" or a folder's name).
        skipped_files: tuple of str, image files left out because they could
            not be decoded (only with `skip_bad_files=True`).
        x_val: the data set's own validation images (a folder's `val/`
            beside `test/`), the same kind as `x_train`, or None (training
            then holds out part of the training images to select on).
        y_val: int64 array of the validation labels, or None.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple
    name: str
    skipped_files: tuple = ()
    x_val: object = None
    y_val: object = None

    @property
    def num_classes(self):
        """int, the number of classes."""
        return len(self.class_names)

    @property
    def image_shape(self):
        """tuple (H, W, C) of the images."""
        return tuple(self.x_train.shape[1:])

    @property
    def streamed(self):
        """bool, the images are `ImageFiles` read from disk batch by batch."""
        return isinstance(self.x_train, ImageFiles)


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


def make_dataset(x_train, y_train, x_test, y_test, class_names=None,
                 name="arrays", num_classes=None):
    """Checks arrays and wraps them in an `ImageDataset`.

    Args:
        x_train: array (N, H, W, C) or (N, H, W), images with values 0..255,
            or `ImageFiles`.
        y_train: int array (N,) or (N, 1), labels.
        x_test: array (M, H, W, C) or (M, H, W), or `ImageFiles`.
        y_test: int array (M,) or (M, 1).
        class_names: sequence of str, or None for "0", "1", ...
        name: str, the data set's name.
        num_classes: int, the class count labels must fit, or None to take it
            from `class_names` (else the largest label + 1, and then every
            class from 0 up must have examples).

    Returns:
        An `ImageDataset` with uint8 images and int64 labels.

    Raises:
        ValueError: wrong rank, dtype or channel count, no training images,
            image and label counts that differ, train and test images of
            different shapes, fewer than 2 classes, labels outside
            [0, num_classes), or (without class names) classes that have
            no examples, as 1-based labels leave class 0.
    """
    x_train = _check_images(x_train, "x_train")
    x_test = _check_images(x_test, "x_test")
    if not len(x_train):
        raise ValueError("x_train holds no images.")
    if x_train.shape[1:] != x_test.shape[1:] and len(x_test):
        raise ValueError(f"x_train images are {x_train.shape[1:]} but x_test "
                         f"images are {x_test.shape[1:]}.")
    y_train = _check_labels(y_train, len(x_train), "y_train", "x_train")
    y_test = _check_labels(y_test, len(x_test), "y_test", "x_test")
    declared = class_names is not None or num_classes is not None
    if class_names is not None:
        class_names = tuple(str(c) for c in np.asarray(class_names).ravel())
        num_classes = num_classes or len(class_names)
    if num_classes is None:
        num_classes = int(max(y_train.max(), y_test.max(initial=-1))) + 1
    for key, labels in (("y_train", y_train), ("y_test", y_test)):
        bad = np.unique(labels[(labels < 0) | (labels >= num_classes)])
        if bad.size:
            raise ValueError(
                f"{key} has labels outside [0, {num_classes}): "
                f"{bad[:10].tolist()} (labels span [{labels.min()}, "
                f"{labels.max()}]; num_classes={num_classes}"
                f"{_one_based_hint(y_train, y_test, num_classes)}).")
    if not declared:
        _check_no_empty_classes(y_train, y_test, num_classes)
    if num_classes < 2:
        raise ValueError(f"{name} has {num_classes} class; a classifier "
                         "needs at least 2.")
    if class_names is None:
        class_names = tuple(str(i) for i in range(num_classes))
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} "
                         f"classes: {class_names}.")
    return ImageDataset(x_train, y_train, x_test, y_test, class_names, name)


def with_validation(dataset, x_val, y_val):
    """`dataset` with its own validation split (images, int64 labels).

    Raises:
        ValueError: validation images of another size than the training
            images.
    """
    if len(x_val) and tuple(x_val.shape[1:]) != dataset.image_shape:
        raise ValueError(
            f"{dataset.name}: the validation images are {x_val.shape[1:]} "
            f"but the training images are {dataset.image_shape}; pass "
            f"{cli_option('image_size', 'N')} to resize them.")
    return dataclasses.replace(dataset, x_val=x_val,
                               y_val=np.asarray(y_val, np.int64))


def _one_based_hint(y_train, y_test, num_classes):
    """A hint for labels that run 1..num_classes: they must start at 0."""
    labels = np.concatenate([y_train, y_test])
    if labels.min() == 1 and labels.max() == num_classes:
        return "; the labels look 1-based: subtract 1 so they run 0.." \
               f"{num_classes - 1}"
    return ""


def _check_no_empty_classes(y_train, y_test, num_classes):
    """Raises ValueError when a class index in [0, num_classes) is unused."""
    empty = np.setdiff1d(np.arange(num_classes),
                         np.concatenate([y_train, y_test]))
    if not empty.size:
        return
    hint = ("; the labels look 1-based: subtract 1 so they start at 0"
            if empty.tolist() == [0] else "")
    raise ValueError(
        f"Labels span [{min(y_train.min(), y_test.min(initial=num_classes))}"
        f", {num_classes - 1}] but classes {empty[:10].tolist()} have no "
        f"image in y_train or y_test{hint}. Labels must be 0..K-1 without "
        "gaps, or give the class names (label_names) to declare K classes.")


def _check_images(x, key):
    """Returns `x` as uint8 (N, H, W, C); raises ValueError if it cannot."""
    if isinstance(x, ImageFiles):  # Decoded by load_image: uint8 already.
        return x
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"{key} must have rank 4 (N, H, W, C) or 3 "
                         f"(N, H, W); got shape {x.shape}.")
    if x.shape[-1] not in (1, 3):
        raise ValueError(f"{key} must have 1 or 3 channels (last axis); got "
                         f"shape {x.shape}"
                         f"{_channels_first_hint(x)}.")
    if x.dtype == np.uint8:
        return x
    if (not np.issubdtype(x.dtype, np.integer) or x.size
            and (x.min() < 0 or x.max() > 255)):
        lo, hi = (x.min(), x.max()) if x.size else (None, None)
        raise ValueError(f"{key} must hold integers 0..255 (uint8); got "
                         f"{x.dtype} with range [{lo}, {hi}]"
                         f"{_float_hint(x)}.")
    return x.astype(np.uint8)


def _channels_first_hint(x):
    """A hint for (N, C, H, W) arrays: channels must come last."""
    if x.shape[1] in (1, 3):
        return ("; it looks channels-first (N, C, H, W): use "
                "x.transpose(0, 2, 3, 1)")
    if x.shape[-1] == 4:
        return "; drop the alpha channel: x[..., :3]"
    return ""


def _float_hint(x):
    """A hint for float images scaled to [0, 1]."""
    if (np.issubdtype(x.dtype, np.floating) and x.size
            and np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
        return "; for images scaled to [0, 1] store np.round(x * 255)" \
               ".astype(np.uint8)"
    return ""


def _check_labels(y, count, key, images_key):
    """Returns `y` as int64 (N,); raises ValueError if it cannot."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        hint = (": these look one-hot, pass class indices y.argmax(1)"
                if y.ndim == 2 and len(y) == count else "")
        raise ValueError(f"{key} must have shape (N,) or (N, 1); got "
                         f"{y.shape}{hint}.")
    if len(y) != count:
        raise ValueError(f"{images_key} has {count} images but {key} has "
                         f"{len(y)} labels.")
    if np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)):
        return y.astype(np.int64)  # Whole-number floats: class indices.
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{key} must hold integer class indices; got "
                         f"{y.dtype}.")
    return y.astype(np.int64)


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
