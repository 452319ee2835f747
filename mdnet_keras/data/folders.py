"""Image folders, one sub-folder per class: in memory or streamed from disk.

`load_folder` decodes a folder into uint8 arrays, or, when the decoded
images would not fit in a memory budget (`streaming`), lists the files as
`ImageFiles` that `ImageBatches` decodes batch by batch in its workers. Both
give the same images, labels and split.

Only NumPy and Pillow are imported here.
"""

import logging
import os
import pathlib
import warnings

import numpy as np

from mdnet_keras.data.images import (
    IMAGE_EXTENSIONS,
    BadImageError,
    ImageFiles,
    image_size_tuple,
    load_image,
    read_image_size,
)

logger = logging.getLogger(__name__)

STREAMING_MODES = ("auto", "always", "never")
# Held-out folders beside train/: test/ reports; val/ (or validation/) with
# test/ selects the best epoch, and alone is the test split.
TEST_DIRS = ("test", "val", "validation")
VALIDATION_DIRS = ("val", "validation")
# Files a folder of images holds besides its images; not worth a warning.
_QUIET_FILES = ("thumbs.db", "desktop.ini")


def cli_option(name, value=True):
    """Names an option as the Python API and the command line spell it.

    `cli_option("skip_bad_files")` is "skip_bad_files=True
    (--skip_bad_files)": messages of the data module reach users of both.
    """
    flag = f"--{name}" if value is True else f"--{name}={value}"
    return f"{name}={value} ({flag})"


def default_memory_budget():
    """Half of this machine's physical memory, in bytes.

    The in-memory path holds the decoded images and, while it reads them, a
    list of them as well; training adds its batches and the model.
    """
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2


def list_image_files(root):
    """Finds the classes and image files of a folder in `root/<class>/` form.

    Files with other extensions are left out, with a warning that names them.

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
        loose = [p for p in root.iterdir()
                 if p.suffix.lower() in IMAGE_EXTENSIONS]
        hint = (f" It holds {len(loose)} images directly: move them into "
                "one folder per class." if loose else "")
        others = ", ".join(IMAGE_EXTENSIONS[1:])
        raise ValueError(f"No class folders in {root}: expected "
                         f"{root}/<class>/*.jpg (or {others}), one folder "
                         f"per class.{hint}")
    files, ignored = [], []
    for name in classes:
        entries = sorted((root / name).iterdir())
        files.append([p for p in entries if p.is_file()
                      and p.suffix.lower() in IMAGE_EXTENSIONS])
        ignored += [p for p in entries
                    if p.suffix.lower() not in IMAGE_EXTENSIONS
                    and not p.name.startswith(".")
                    and p.name.lower() not in _QUIET_FILES]
    if ignored:
        logger.warning("%s: ignored %d files that are not images (%s): %s%s",
                       root, len(ignored), ", ".join(IMAGE_EXTENSIONS),
                       ", ".join(str(p) for p in ignored[:5]),
                       " ..." if len(ignored) > 5 else "")
    for name, paths in zip(classes, files):
        if not paths:
            raise ValueError(f"Class folder {root / name} has no images "
                             f"({', '.join(IMAGE_EXTENSIONS)}); add images or "
                             "remove the folder.")
    return classes, files


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
        raise ValueError("validation_split (--validation_split) must be in "
                         f"[0, 1); got {validation_split}.")
    rng = np.random.default_rng(seed)
    train, test = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = int(round(len(idx) * validation_split))
        n = max(n, 1) if validation_split > 0 and len(idx) > 1 else n
        test.append(idx[:n])
        train.append(idx[n:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def take(x, indices):
    """`x[indices]` for arrays; a subset decoding nothing for `ImageFiles`.

    Args:
        x: array (N, ...) or `ImageFiles`.
        indices: int array.

    Returns:
        The same kind as `x`, with the images at `indices`.
    """
    return x.take(indices) if isinstance(x, ImageFiles) else x[indices]


def _list_split(root, class_names):
    """Lists `root/<class>/*` as (paths, labels, class_names)."""
    found, files = list_image_files(root)
    class_names = class_names or found
    unknown = sorted(set(found) - set(class_names))
    if unknown:
        raise ValueError(f"{root} has class folders {unknown} that the "
                         f"training folder lacks (classes: {class_names}).")
    paths = [p for group in files for p in group]
    labels = [class_names.index(name)
              for name, group in zip(found, files) for _ in group]
    return paths, np.asarray(labels, np.int64), class_names


def _readable(root, paths, labels, class_names, read, skip_bad_files,
              skipped):
    """Applies `read` to each path; drops (or raises on) bad files.

    Returns:
        (results, paths, labels) of the files `read` took.

    Raises:
        BadImageError: a bad file, unless `skip_bad_files`.
        ValueError: a class folder left without readable images.
    """
    results, kept = [], []
    for i, path in enumerate(paths):
        try:
            results.append(read(path))
        except BadImageError as error:
            if not skip_bad_files:
                raise BadImageError(
                    f"{error} (pass {cli_option('skip_bad_files')} to skip "
                    "unreadable files).") from error
            skipped.append(str(path))
            continue
        kept.append(i)
    kept_labels = labels[kept]
    lost = sorted(set(labels.tolist()) - set(kept_labels.tolist()))
    if lost:
        raise ValueError(f"Class folder {root / class_names[lost[0]]} has no "
                         "readable images.")
    return results, [paths[i] for i in kept], kept_labels


def _check_sizes(root, sizes):
    """Raises ValueError when images of a split have different sizes."""
    shapes = sorted(set(sizes))
    if len(shapes) > 1:
        raise ValueError(f"Images in {root} have different sizes "
                         f"{shapes[:4]}; pass {cli_option('image_size', 'N')}"
                         " to resize them.")


def _decode_split(root, paths, labels, class_names, image_size, channels,
                  skip_bad_files, skipped):
    """Decodes a split into (uint8 images, labels)."""
    images, _, labels = _readable(
        root, paths, labels, class_names,
        lambda p: load_image(p, image_size, channels), skip_bad_files,
        skipped)
    _check_sizes(root, [image.shape for image in images])
    empty = (0,) + (image_size_tuple(image_size) or (0, 0)) + (channels,)
    return (np.stack(images) if images else np.zeros(empty, np.uint8)), labels


def _stream_split(root, paths, labels, class_names, image_size, channels,
                  skip_bad_files, skipped):
    """Checks every file's header; returns (`ImageFiles`, labels)."""
    sizes, kept, labels = _readable(root, paths, labels, class_names,
                                    read_image_size, skip_bad_files, skipped)
    if image_size is None:
        _check_sizes(root, sizes)
    size = image_size_tuple(image_size) or sizes[0]
    return ImageFiles(kept, size, channels), labels


def _first_size(paths):
    """(height, width) of the first file whose header reads, else (0, 0)."""
    for path in paths:
        try:
            return read_image_size(path)
        except BadImageError:
            continue  # Reported (or skipped) when the split is read.
    return 0, 0


def _choose_streaming(streaming, paths, image_size, channels,
                      max_memory_bytes):
    """Decides whether to stream `paths`.

    Returns:
        (stream, bytes the decoded images take, the budget in bytes).
    """
    if streaming not in STREAMING_MODES:
        raise ValueError(f"streaming (--streaming) must be one of "
                         f"{STREAMING_MODES}; got {streaming!r}.")
    height, width = image_size_tuple(image_size) or _first_size(paths)
    need = len(paths) * height * width * channels
    budget = (default_memory_budget() if max_memory_bytes is None
              else max_memory_bytes)
    return (streaming == "always"
            or streaming == "auto" and need > budget), need, budget


def load_folder(root, image_size=None, channels=3, validation_split=0.1,
                seed=0, skip_bad_files=False, streaming="auto",
                max_memory_bytes=None):
    """Loads an image folder, one sub-folder per class.

    Layouts: `root/train/<class>/` with `root/test/<class>/` (or `val/` or
    `validation/`: the test split), or `root/<class>/` (or
    `root/train/<class>/` alone), split with `stratified_split`. A folder
    with `train/`, `test/` and `val/` (or `validation/`) has its own
    validation split: `val/` then selects the best epoch and `test/` only
    reports. Class indices follow the sorted folder names.

    Args:
        root: str or path of the folder.
        image_size: int or (height, width); None keeps the files' size,
            which must then be the same for all.
        channels: int, 1 or 3.
        validation_split: float, held-out share when there is no test folder.
        seed: int, seed of that split.
        skip_bad_files: bool, skip undecodable files (warns, and lists them
            in `ImageDataset.skipped_files`) instead of raising.
        streaming: str, "never" decodes every image into memory; "always"
            returns `ImageFiles` (decoded batch by batch by `ImageBatches`);
            "auto" streams when the decoded images would take more than
            `max_memory_bytes`. Streaming reads every file's header at once
            (so bad files, sizes and labels are checked up front); a file
            that is corrupt past its header fails when a batch reads it.
        max_memory_bytes: int, the budget of "auto". Defaults to None: half
            of the machine's memory (`default_memory_budget`).

    Returns:
        (x_train, y_train, x_test, y_test, class_names, skipped_files,
        validation), the images as uint8 arrays or `ImageFiles`;
        `validation` is `(x_val, y_val)` from `val/` beside `test/`, else
        None.

    Raises:
        ValueError: an empty folder, fewer than two classes, a class folder
            without images, or images of different sizes without
            `image_size`.
        BadImageError: an undecodable file, unless `skip_bad_files`.
    """
    if channels not in (1, 3):
        raise ValueError("channels (--channels) must be 1 or 3; got "
                         f"{channels!r}.")
    root = pathlib.Path(root)
    test_dir = next((root / d for d in TEST_DIRS if (root / d).is_dir()),
                    None)
    val_dir = next((root / d for d in VALIDATION_DIRS
                    if (root / d).is_dir() and root / d != test_dir), None)
    train_dir = root / "train" if (root / "train").is_dir() else root
    paths, labels, names = _list_split(train_dir, None)
    if len(names) < 2:
        raise ValueError(
            f"{train_dir} has one class folder ({names[0]!r}); a classifier "
            f"needs at least 2: {train_dir}/<class>/*.jpg, one folder per "
            "class.")
    test = _list_split(test_dir, names)[:2] if test_dir is not None else None
    val = _list_split(val_dir, names)[:2] if val_dir is not None else None
    every_path = paths + (test[0] if test else []) + (val[0] if val else [])
    stream, need, budget = _choose_streaming(
        streaming, every_path, image_size, channels, max_memory_bytes)
    if stream:
        logger.info("%s: streaming %d images from disk (%.2f GiB decoded; "
                    "budget %.2f GiB).", root, len(every_path), need / 2**30,
                    budget / 2**30)
    read = _stream_split if stream else _decode_split
    skipped = []
    args = (names, image_size, channels, skip_bad_files, skipped)
    x, y = read(train_dir, paths, labels, *args)
    if test is not None:
        x_test, y_test = read(test_dir, *test, *args)
        x_train, y_train = x, y
    else:
        train, held_out = stratified_split(y, validation_split, seed)
        x_train, y_train = take(x, train), y[train]
        x_test, y_test = take(x, held_out), y[held_out]
    validation = read(val_dir, *val, *args) if val is not None else None
    if skipped:
        warnings.warn(f"Skipped {len(skipped)} unreadable image files in "
                      f"{root}: {', '.join(skipped[:5])}"
                      f"{' ...' if len(skipped) > 5 else ''}", stacklevel=3)
    return (x_train, y_train, x_test, y_test, names, tuple(skipped),
            validation)
