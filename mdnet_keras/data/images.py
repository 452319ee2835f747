"""Image files as the model sees them: decoding, 8 bits, channels and size.

Every image read from disk goes through `load_image`, which resizes with
Pillow's bilinear filter (`RESIZE_METHOD`). Training, evaluation, prediction
and the on-device preprocessing should all resize the same way.

`ImageFiles` is a list of image files that behaves like the uint8 array
(N, H, W, C) `load_image` would make of them: indexing it decodes only the
images asked for. It lets `ImageBatches` stream a folder that does not fit in
memory, decoding in its workers.

Only NumPy and Pillow are imported here.
"""

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff",
                    ".webp", ".gif")
# Pillow's bilinear filter. When it shrinks an image it widens the triangle
# filter by the scale factor (antialiased). Measured on a 200x200 NEU image:
# `tf.image.resize(..., "bilinear", antialias=True)` agrees within 1 grey level
# at 64, 224 and 300 pixels; `antialias=False` differs by up to 37 levels when
# shrinking to 64. Other implementations must shrink with antialiasing too.
RESIZE_METHOD = "bilinear"
# Modes of greyscale images with more than 8 bits per pixel. Pillow opens a
# 16-bit PNG as "I;16" (older Pillow: "I"), 16-bit TIFFs as "I;16" or
# "I;16B"; `convert("L")` or `convert("RGB")` clips them, so most pixels
# become 255. `load_image` scales them from 0..65535 to 0..255 instead.
HIGH_BIT_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class BadImageError(ValueError):
    """An image file cannot be decoded (corrupt, truncated or not an image)."""


def image_size_tuple(image_size):
    """Returns `image_size` (int or (height, width)) as a tuple, or None."""
    if image_size is None:
        return None
    size = tuple(np.ravel(image_size).tolist())
    size = size * 2 if len(size) == 1 else size
    if (len(size) != 2 or not all(isinstance(v, (int, np.integer))
                                  and v > 0 for v in size)):
        raise ValueError("image_size (--image_size) must be a positive int or "
                         f"(height, width); got {image_size!r}.")
    return int(size[0]), int(size[1])


def _pil_resize(image, size):
    """Resizes a PIL image to (height, width) `size` with RESIZE_METHOD."""
    if size is None or image.size == (size[1], size[0]):
        return image
    return image.resize((size[1], size[0]), Image.Resampling.BILINEAR)


def _to_8_bits(image, path):
    """Scales a 16- or 32-bit integer greyscale image to 8-bit "L".

    "I" holds 32-bit integers, but a 16-bit PNG is what produces it: its
    values are taken as 0..65535 (clipped to that range).
    """
    if image.mode not in HIGH_BIT_DEPTH_MODES:
        if image.mode == "F":
            raise BadImageError(
                f"{path} is a 32-bit floating-point image (mode F) whose "
                "value range is unknown: save it as 8- or 16-bit PNG.")
        return image
    values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
    # Rounded value * 255 / 65535: 0 stays 0, 65535 becomes 255.
    return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8),
                           "L")


def load_image(path, image_size=None, channels=3):
    """Reads one image file as the model sees it.

    The one place where files are decoded and resized: Pillow decodes the
    file (a JPEG shrunk 2x or more at a reduced DCT scale, Pillow's `draft`),
    scales 16-bit greyscale to 8 bits (`HIGH_BIT_DEPTH_MODES`), converts
    it to RGB (`channels=3`, greyscale replicated, alpha dropped) or to
    greyscale "L" (`channels=1`), and resizes it with `RESIZE_METHOD`.

    Args:
        path: str or path of an image file Pillow reads (JPEG, PNG, BMP,
            TIFF, WebP, GIF; any size).
        image_size: int or (height, width), or None to keep the size.
        channels: int, 1 or 3.

    Returns:
        uint8 array (height, width, channels).

    Raises:
        BadImageError: the file cannot be decoded (corrupt, truncated, not
            an image, or floating-point pixels).
        ValueError: `channels` is not 1 or 3.

    Example:

    >>> import tempfile, numpy as np
    >>> from PIL import Image
    >>> path = tempfile.mktemp(suffix=".png")
    >>> Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(path)
    >>> load_image(path, image_size=2)[0, 0].tolist()
    [255, 255, 255]
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3; got {channels!r}.")
    size = image_size_tuple(image_size)
    mode = "RGB" if channels == 3 else "L"
    try:
        with Image.open(path) as image:
            if size is not None and image.format == "JPEG":
                # A JPEG shrunk by 2x or more is decoded at 1/2, 1/4 or 1/8
                # scale (libjpeg's DCT scaling), never below the target
                # size, then resized: a fraction of the decoding work, a
                # few grey levels off a full decode (measured in
                # benchmarks/results/streaming/).
                image.draft(image.mode, (size[1], size[0]))
            image.load()
            image = _to_8_bits(image, path)
            if image.mode == "L" and mode == "RGB":
                # Resizing the one grey channel, then replicating it, gives
                # the same pixels as resizing three copies.
                image = _pil_resize(image, size).convert(mode)
            else:
                image = _pil_resize(image if image.mode == mode
                                    else image.convert(mode), size)
    except (OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as error:
        if isinstance(error, BadImageError):
            raise
        raise BadImageError(f"Cannot decode image {path}: {error}") from error
    array = np.asarray(image, np.uint8)
    return array.reshape(array.shape[:2] + (channels,))


def read_image_size(path):
    """Reads an image file's header: (height, width), without decoding.

    Raises:
        BadImageError: Pillow does not recognise the file as an image, or
            its pixels are floating point.
    """
    try:
        with Image.open(path) as image:
            if image.mode == "F":
                _to_8_bits(image, path)
            return image.size[1], image.size[0]
    except (OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as error:
        if isinstance(error, BadImageError):
            raise
        raise BadImageError(f"Cannot decode image {path}: {error}") from error


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


def resize_images(x, image_size):
    """Resizes uint8 images (N, H, W, C) as `load_image` does.

    Args:
        x: uint8 array (N, H, W, C) with C 1 or 3.
        image_size: int or (height, width).

    Returns:
        uint8 array (N, height, width, C); `x` itself if already that size.
    """
    size = image_size_tuple(image_size)
    if size is None or x.shape[1:3] == size:
        return x
    out = np.empty((len(x),) + size + (x.shape[-1],), np.uint8)
    for i, image in enumerate(x):
        pil = Image.fromarray(image[..., 0] if x.shape[-1] == 1 else image)
        out[i] = np.asarray(_pil_resize(pil, size)).reshape(out.shape[1:])
    return out


class ImageFiles:
    """Image files that index like the uint8 array `load_image` makes.

    `files[i]`, `files[2:5]` or `files[[4, 0, 7]]` decode those files (with
    `load_image`) and return uint8 arrays; nothing is kept in memory but the
    paths. `shape`, `dtype`, `len`, `astype` and `np.asarray(files)` (these
    two decode all) work as for an array. `take(indices)` is a subset that decodes nothing.

    Args:
        paths: sequence of str or paths, the image files.
        image_size: (height, width) of every image (each file is resized
            to it).
        channels: int, 1 or 3.

    Example:

    >>> import tempfile, pathlib, numpy as np
    >>> from PIL import Image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for i in range(3):
    ...     image = Image.fromarray(np.full((9, 9), i, np.uint8))
    ...     image.save(folder / f"{i}.png")
    >>> files = ImageFiles(sorted(folder.glob("*.png")), (4, 4), 3)
    >>> files.shape, files[[2, 0]][:, 0, 0, 0].tolist()
    ((3, 4, 4, 3), [2, 0])
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, paths, image_size, channels):
        self.paths = [str(p) for p in paths]
        self.image_size = image_size_tuple(image_size)
        self.channels = channels

    @property
    def shape(self):
        """tuple (N, height, width, channels)."""
        return (len(self.paths),) + self.image_size + (self.channels,)

    @property
    def nbytes(self):
        """int, the bytes the decoded images would take in memory."""
        return int(np.prod(self.shape))

    def __len__(self):
        return len(self.paths)

    def take(self, indices):
        """Returns the `ImageFiles` at `indices` (ints); decodes nothing."""
        return ImageFiles([self.paths[i] for i in np.asarray(indices)],
                          self.image_size, self.channels)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self._load(self.paths[index])
        if isinstance(index, slice):
            index = range(*index.indices(len(self)))
        elif np.asarray(index).dtype == bool:
            index = np.flatnonzero(index)
        out = np.empty((len(index),) + self.shape[1:], np.uint8)
        for i, k in enumerate(np.asarray(index, np.int64).ravel()):
            out[i] = self._load(self.paths[k])
        return out

    def __array__(self, dtype=None, copy=None):
        del copy  # A new array is always made.
        return self.astype(dtype or np.uint8)

    def astype(self, dtype):
        """Decodes every file, as `np.asarray(files).astype(dtype)` would."""
        array = self[:]
        return array if np.dtype(dtype) == np.uint8 else array.astype(dtype)

    def _load(self, path):
        try:
            return load_image(path, self.image_size, self.channels)
        except BadImageError as error:
            raise BadImageError(
                f"{error} (found while streaming the folder: the file passed "
                "the header check when the folder was listed; remove or "
                "replace it)") from error

    def __repr__(self):
        return f"ImageFiles({len(self)} files, shape={self.shape})"
