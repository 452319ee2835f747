"""Image classification data sets as in-memory uint8 arrays.

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
- `"folder"`: `root/<class>/*.jpg|jpeg|png|bmp`, or `root/train/<class>` with
  `root/test/<class>` (or `root/val/<class>`); without a test folder a seeded,
  stratified split holds out `validation_split` of each class.

Only NumPy and Pillow are imported here; TensorFlow Datasets and Keras are
imported inside the CIFAR loaders, so the module works on a machine that has
JAX but no TensorFlow.

Every image read from disk goes through `load_image`, which resizes with
Pillow's bilinear filter (`RESIZE_METHOD`). Training, evaluation, prediction
and the on-device preprocessing should all resize the same way.
"""

import dataclasses
import importlib.resources
import logging
import os
import pathlib
import pickle
import tempfile
import warnings

import numpy as np
from PIL import Image

from mdnet_keras.data import jpeg_npz

logger = logging.getLogger(__name__)

DATASET_NAMES = ("sample", "cifar10", "cifar100", "npz", "folder")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# Pillow's bilinear filter. When it shrinks an image it widens the triangle
# filter by the scale factor (antialiased). Measured on a 200x200 NEU image:
# `tf.image.resize(..., "bilinear", antialias=True)` agrees within 1 grey level
# at 64, 224 and 300 pixels; `antialias=False` differs by up to 37 levels when
# shrinking to 64. Other implementations must shrink with antialiasing too.
RESIZE_METHOD = "bilinear"
SAMPLE_FILE = "cifar10_sample.npz"
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
_SPLIT_DIRS = ("test", "val")


class DatasetNotFoundError(FileNotFoundError):
    """A data set is not on this machine and cannot be downloaded."""


class BadImageError(ValueError):
    """An image file cannot be decoded (corrupt, truncated or not an image)."""


@dataclasses.dataclass
class ImageDataset:
    """An image classification data set held in memory.

    Args:
        x_train: uint8 array (N, H, W, C), training images.
        y_train: int64 array (N,), training labels in [0, num_classes).
        x_test: uint8 array (M, H, W, C), test (or validation) images.
        y_test: int64 array (M,), test labels.
        class_names: tuple of str, the name of each class index.
        name: str, the data set's name (e.g. "cifar10" or a folder's name).
        skipped_files: tuple of str, image files left out because they could
            not be decoded (only with `skip_bad_files=True`).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple
    name: str
    skipped_files: tuple = ()

    @property
    def num_classes(self):
        """int, the number of classes."""
        return len(self.class_names)

    @property
    def image_shape(self):
        """tuple (H, W, C) of the images."""
        return tuple(self.x_train.shape[1:])


def load_dataset(name, data=None, image_size=None, channels=None,
                 data_dir=None, download=False, validation_split=0.1, seed=0,
                 skip_bad_files=False):
    """Loads an image classification data set into memory.

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

    Returns:
        An `ImageDataset`.

    Raises:
        ValueError: an unknown `name`, or invalid data (the message says what).
        DatasetNotFoundError: the data set is not on this machine.
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"Unknown dataset {name!r}; choose one of "
                         f"{', '.join(DATASET_NAMES)}.")
    if name == "folder":
        dataset = load_folder(data, image_size, 3 if channels is None
                              else channels, validation_split, seed,
                              skip_bad_files)
    elif name == "sample":
        dataset = load_sample()
    elif name == "npz" or data is not None:
        dataset = load_npz(data, name=None if name == "npz" else name)
    else:
        dataset = load_cifar(name, data_dir=data_dir, download=download)
    return _adapt(dataset, image_size, channels)


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
        FileNotFoundError: no such file.
        ValueError: missing keys or invalid arrays.
    """
    if path is None or not os.path.isfile(path):
        raise FileNotFoundError(f"No .npz file at {path!r}: pass data=PATH to "
                                "a file with x_train, y_train, x_test, "
                                "y_test.")
    with np.load(path, allow_pickle=False) as npz:
        if jpeg_npz.is_jpeg_packed(npz.files):
            arrays = jpeg_npz.decode_arrays(npz)
        else:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test")
                       if k not in npz.files]
            if missing:
                raise ValueError(
                    f"{path}: missing arrays {missing}; it has "
                    f"{sorted(npz.files)}. Give x_train, y_train, x_test, "
                    "y_test, or JPEG bytes as train_jpeg / train_offsets / "
                    "test_jpeg / test_offsets with the labels.")
            arrays = {k: npz[k] for k in ("x_train", "y_train", "x_test",
                                          "y_test")}
        names = next((npz[k] for k in ("label_names", "class_names")
                      if k in npz.files), None)
    if names is None and name == "cifar10":
        names = CIFAR10_CLASS_NAMES
    return make_dataset(**arrays, class_names=names,
                        name=name or pathlib.Path(path).stem,
                        num_classes=NUM_CLASSES.get(name))


def make_dataset(x_train, y_train, x_test, y_test, class_names=None,
                 name="arrays", num_classes=None):
    """Checks arrays and wraps them in an `ImageDataset`.

    Args:
        x_train: array (N, H, W, C) or (N, H, W), images with values 0..255.
        y_train: int array (N,) or (N, 1), labels.
        x_test: array (M, H, W, C) or (M, H, W).
        y_test: int array (M,) or (M, 1).
        class_names: sequence of str, or None for "0", "1", ...
        name: str, the data set's name.
        num_classes: int, the class count labels must fit, or None to take it
            from `class_names` (else the largest label + 1).

    Returns:
        An `ImageDataset` with uint8 images and int64 labels.

    Raises:
        ValueError: wrong rank, dtype or channel count, image and label
            counts that differ, train and test images of different shapes,
            or labels outside [0, num_classes).
    """
    x_train = _check_images(x_train, "x_train")
    x_test = _check_images(x_test, "x_test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"x_train images are {x_train.shape[1:]} but x_test "
                         f"images are {x_test.shape[1:]}.")
    y_train = _check_labels(y_train, len(x_train), "y_train", "x_train")
    y_test = _check_labels(y_test, len(x_test), "y_test", "x_test")
    if class_names is not None:
        class_names = tuple(str(c) for c in np.asarray(class_names).ravel())
        num_classes = num_classes or len(class_names)
    if num_classes is None:
        num_classes = int(max(y_train.max(initial=-1),
                              y_test.max(initial=-1))) + 1
    for key, labels in (("y_train", y_train), ("y_test", y_test)):
        bad = np.unique(labels[(labels < 0) | (labels >= num_classes)])
        if bad.size:
            raise ValueError(f"{key} has labels outside [0, {num_classes}): "
                             f"{bad[:10].tolist()} (num_classes="
                             f"{num_classes}).")
    if class_names is None:
        class_names = tuple(str(i) for i in range(num_classes))
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} "
                         f"classes: {class_names}.")
    return ImageDataset(x_train, y_train, x_test, y_test, class_names, name)


def _check_images(x, key):
    """Returns `x` as uint8 (N, H, W, C); raises ValueError if it cannot."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"{key} must have rank 4 (N, H, W, C) or 3 "
                         f"(N, H, W); got shape {x.shape}.")
    if x.shape[-1] not in (1, 3):
        raise ValueError(f"{key} must have 1 or 3 channels (last axis); got "
                         f"shape {x.shape}.")
    if x.dtype == np.uint8:
        return x
    if (not np.issubdtype(x.dtype, np.integer) or x.size
            and (x.min() < 0 or x.max() > 255)):
        lo, hi = (x.min(), x.max()) if x.size else (None, None)
        raise ValueError(f"{key} must hold integers 0..255 (uint8); got "
                         f"{x.dtype} with range [{lo}, {hi}].")
    return x.astype(np.uint8)


def _check_labels(y, count, key, images_key):
    """Returns `y` as int64 (N,); raises ValueError if it cannot."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{key} must have shape (N,) or (N, 1); got "
                         f"{y.shape}.")
    if len(y) != count:
        raise ValueError(f"{images_key} has {count} images but {key} has "
                         f"{len(y)} labels.")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{key} must hold integer class indices; got "
                         f"{y.dtype}.")
    return y.astype(np.int64)


def to_channels(x, channels):
    """Converts uint8 images between greyscale and RGB.

    Grey to RGB replicates the channel; RGB to grey uses Pillow's "L"
    conversion (ITU-R 601-2 luma, the same integer arithmetic), so arrays and
    files read with `load_image` convert alike.

    Args:
        x: uint8 array (..., H, W, C) with C 1 or 3.
        channels: int, 1 or 3, or None to leave `x` as it is.

    Returns:
        uint8 array (..., H, W, channels); `x` itself when nothing changes.

    Raises:
        ValueError: `channels` or the channel count of `x` is not 1 or 3.
    """
    have = x.shape[-1]
    if channels is None or have == channels:
        return x
    if channels not in (1, 3) or have not in (1, 3):
        raise ValueError(f"Cannot convert images with {have} channels to "
                         f"{channels}; 1 (grey) and 3 (RGB) are supported.")
    if channels == 3:
        return np.repeat(x, 3, axis=-1)
    weights = np.array([19595, 38470, 7471], np.uint32)
    luma = (x.astype(np.uint32) @ weights + 0x8000) >> 16
    return luma.astype(np.uint8)[..., None]


def _size(image_size):
    """Returns `image_size` as (height, width), or None."""
    if image_size is None:
        return None
    if np.ndim(image_size) == 0:
        return int(image_size), int(image_size)
    height, width = image_size
    return int(height), int(width)


def _pil_resize(image, size):
    """Resizes a PIL image to (height, width) `size` with RESIZE_METHOD."""
    if size is None or image.size == (size[1], size[0]):
        return image
    return image.resize((size[1], size[0]), Image.Resampling.BILINEAR)


def load_image(path, image_size=None, channels=3):
    """Reads one image file as the model sees it.

    The one place where files are decoded and resized: Pillow decodes the
    file, converts it to RGB (`channels=3`, greyscale replicated) or to
    greyscale "L" (`channels=1`), and resizes it with `RESIZE_METHOD`.

    Args:
        path: str or path of a JPEG, PNG or BMP file (any size).
        image_size: int or (height, width), or None to keep the size.
        channels: int, 1 or 3.

    Returns:
        uint8 array (height, width, channels).

    Raises:
        BadImageError: the file cannot be decoded (corrupt or truncated).
        ValueError: `channels` is not 1 or 3.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3; got {channels!r}.")
    try:
        with Image.open(path) as image:
            image.load()
            image = image.convert("RGB" if channels == 3 else "L")
    except (OSError, SyntaxError, ValueError) as error:
        raise BadImageError(f"Cannot decode image {path}: {error}") from error
    array = np.asarray(_pil_resize(image, _size(image_size)), np.uint8)
    return array.reshape(array.shape[:2] + (channels,))


def resize_images(x, image_size):
    """Resizes uint8 images (N, H, W, C) as `load_image` does.

    Args:
        x: uint8 array (N, H, W, C) with C 1 or 3.
        image_size: int or (height, width).

    Returns:
        uint8 array (N, height, width, C); `x` itself if already that size.
    """
    size = _size(image_size)
    if size is None or x.shape[1:3] == size:
        return x
    out = np.empty((len(x),) + size + (x.shape[-1],), np.uint8)
    for i, image in enumerate(x):
        pil = Image.fromarray(image[..., 0] if x.shape[-1] == 1 else image)
        out[i] = np.asarray(_pil_resize(pil, size)).reshape(out.shape[1:])
    return out


def _adapt(dataset, image_size, channels):
    """Resizes and converts the channels of a data set's images."""
    have = dataset.x_train.shape[-1]
    if channels is not None and have != channels:
        logger.warning("%s: converting %d-channel images to %d channels.",
                       dataset.name, have, channels)
    x_train, x_test = (resize_images(to_channels(x, channels), image_size)
                       for x in (dataset.x_train, dataset.x_test))
    return dataclasses.replace(dataset, x_train=x_train, x_test=x_test)


def list_image_files(root):
    """Finds the classes and image files of a folder in `root/<class>/` form.

    Args:
        root: str or path of the folder.

    Returns:
        (class_names, files): sorted class folder names and, for each, the
        sorted list of its image paths.

    Raises:
        ValueError: no class folders, or a class folder without images.
    """
    root = pathlib.Path(root)
    classes = sorted(p.name for p in root.iterdir()
                     if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"No class folders in {root}: expected "
                         f"{root}/<class>/*.jpg (or .jpeg, .png, .bmp), one "
                         "folder per class.")
    files = [sorted(p for p in (root / c).iterdir()
                    if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
             for c in classes]
    for name, paths in zip(classes, files):
        if not paths:
            raise ValueError(f"Class folder {root / name} has no images "
                             f"({', '.join(IMAGE_EXTENSIONS)}); add images or "
                             "remove the folder.")
    return classes, files


def _read_images(paths, image_size, channels, skip_bad_files, skipped):
    """Reads image files with `load_image`; appends bad paths to `skipped`."""
    images = []
    for path in paths:
        try:
            images.append(load_image(path, image_size, channels))
        except BadImageError as error:
            if not skip_bad_files:
                raise BadImageError(f"{error} (pass skip_bad_files=True to "
                                    "skip unreadable files).") from error
            skipped.append(str(path))
    return images


def _read_split(root, class_names, image_size, channels, skip_bad_files,
                skipped):
    """Reads `root/<class>/*` into (images, labels, class_names)."""
    found, files = list_image_files(root)
    class_names = class_names or found
    unknown = sorted(set(found) - set(class_names))
    if unknown:
        raise ValueError(f"{root} has class folders {unknown} that the "
                         f"training folder lacks (classes: {class_names}).")
    images, labels = [], []
    for name, paths in zip(found, files):
        read = _read_images(paths, image_size, channels, skip_bad_files,
                               skipped)
        if not read:
            raise ValueError(f"Class folder {root / name} has no readable "
                             "images.")
        images += read
        labels += [class_names.index(name)] * len(read)
    shapes = sorted({image.shape for image in images})
    if len(shapes) > 1:
        raise ValueError(f"Images in {root} have different sizes "
                         f"{shapes[:4]}; pass image_size to resize them.")
    return np.stack(images), np.asarray(labels, np.int64), class_names


def stratified_split(labels, validation_split, seed):
    """Splits indices so each class keeps the same held-out share.

    Args:
        labels: int array (N,).
        validation_split: float in [0, 1), share of each class held out
            (rounded, at least one image of a class with two or more).
        seed: int, seed of the shuffle.

    Returns:
        (train_indices, test_indices), sorted int64 arrays.
    """
    if not 0 <= validation_split < 1:
        raise ValueError("validation_split must be in [0, 1); got "
                         f"{validation_split}.")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = int(round(len(idx) * validation_split))
        n = max(n, 1) if validation_split > 0 and len(idx) > 1 else n
        test.append(idx[:n])
        train.append(idx[n:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_folder(root, image_size=None, channels=3, validation_split=0.1,
                seed=0, skip_bad_files=False):
    """Loads an image folder, one sub-folder per class.

    Layouts: `root/train/<class>/` with `root/test/<class>/` (or `val/`), or
    `root/<class>/` (or `root/train/<class>/` alone), split with
    `stratified_split`. Class indices follow the sorted folder names.

    Args:
        root: str or path of the folder.
        image_size: int or (height, width); None keeps the files' size,
            which must then be the same for all.
        channels: int, 1 or 3.
        validation_split: float, held-out share when there is no test folder.
        seed: int, seed of that split.
        skip_bad_files: bool, skip undecodable files (warns, and lists them
            in `ImageDataset.skipped_files`) instead of raising.

    Returns:
        An `ImageDataset` named after the folder.

    Raises:
        DatasetNotFoundError: `root` is not a folder.
        ValueError: an empty folder, a class folder without images, or
            images of different sizes without `image_size`.
        BadImageError: an undecodable file, unless `skip_bad_files`.
    """
    if root is None or not os.path.isdir(root):
        raise DatasetNotFoundError(f"No image folder at {root!r}: pass "
                                   "data=PATH to a folder of class folders.")
    root = pathlib.Path(root)
    test_dir = next((root / d for d in _SPLIT_DIRS if (root / d).is_dir()),
                    None)
    train_dir = root / "train" if (root / "train").is_dir() else root
    skipped = []
    args = (image_size, channels, skip_bad_files, skipped)
    x, y, names = _read_split(train_dir, None, *args)
    if test_dir is not None:
        x_test, y_test, _ = _read_split(test_dir, names, *args)
        x_train, y_train = x, y
    else:
        train, test = stratified_split(y, validation_split, seed)
        x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]
    if skipped:
        warnings.warn(f"Skipped {len(skipped)} unreadable image files in "
                      f"{root}: {', '.join(skipped[:5])}"
                      f"{' ...' if len(skipped) > 5 else ''}", stacklevel=2)
    dataset = make_dataset(x_train, y_train, x_test, y_test, names, root.name)
    return dataclasses.replace(dataset, skipped_files=tuple(skipped))


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
        f" here and pass data_dir=DIR (looked in {tfds_dir}).\n"
        f"  2. The original archive for Keras' loader: save "
        f"{_CIFAR_URLS[name]} as {keras_archive_path(name)}.\n"
        "  3. An .npz with x_train, y_train, x_test, y_test (uint8 NHWC "
        f"images, integer labels): pass data=PATH.npz (with {name!r} or "
        "'npz').\n"
        "  4. An image folder, ROOT/<class>/*.png or ROOT/train|test/<class>/"
        ": use dataset 'folder' with data=ROOT.\n"
        "  Or pass download=True on a machine with internet.")
