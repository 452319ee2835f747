"""`ImageDataset`, the arrays every data set comes back as, and the checks
that turn arrays into one (`make_dataset`) with errors that name the
problem.

Only NumPy is imported here.
"""

import dataclasses

import numpy as np

from mdnet_keras.data.folders import cli_option
from mdnet_keras.data.images import ImageFiles


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
