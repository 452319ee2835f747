"""CIFAR-style `.npz` files that hold JPEG bytes instead of pixel arrays.

Some copies of CIFAR ship as one `.npz` of JPEG files to stay small (for
example `cifar100-jpeg.npz`, CIFAR-100 re-encoded at JPEG quality 75). Such
a file has, per split, the concatenated bytes of its JPEG files
(`train_jpeg`, uint8), where each file starts (`train_offsets`, int64, one
more than there are images) and the labels (`y_train`); the same for
`test_`, and optionally `label_names`. The `.npz` route of `load_dataset`
decodes them with Pillow into the arrays it takes; the pixels are then the
JPEG copy's, not the original data set's.
"""

import io

import numpy as np
from PIL import Image

SPLITS = ("train", "test")


def is_jpeg_packed(files):
    """Whether the key names `files` of an `.npz` are the JPEG layout."""
    return all(f"{split}_{key}" in files for split in SPLITS
               for key in ("jpeg", "offsets"))


def decode_split(data, offsets, key):
    """Decodes one split's JPEG bytes into a uint8 (N, H, W, 3) array.

    Args:
        data: uint8 array, the concatenated JPEG files.
        offsets: int array (N + 1,), where each file starts; the last entry
            is `len(data)`.
        key: str, the split's name, for error messages.

    Raises:
        ValueError: offsets that do not index `data`, or a file that is not
            a decodable image.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    if (offsets.ndim != 1 or len(offsets) < 2 or offsets[0] != 0
            or offsets[-1] != len(data) or np.any(np.diff(offsets) <= 0)):
        raise ValueError(
            f"{key}_offsets must rise from 0 to the length of {key}_jpeg "
            f"({len(data)} bytes); got {len(offsets)} offsets from "
            f"{offsets[:1]} to {offsets[-1:]}.")
    images = []
    for index, (start, end) in enumerate(zip(offsets[:-1], offsets[1:])):
        try:
            with Image.open(io.BytesIO(data[start:end].tobytes())) as image:
                images.append(np.asarray(image.convert("RGB")))
        except (OSError, ValueError) as e:
            raise ValueError(f"{key}_jpeg: image {index} (bytes {start}-"
                             f"{end}) is not a readable JPEG: {e}") from None
    shapes = {image.shape for image in images}
    if len(shapes) != 1:
        raise ValueError(f"{key}_jpeg: images of several sizes {sorted(shapes)}.")
    return np.stack(images)


def decode_arrays(npz):
    """The `x_train, y_train, x_test, y_test` arrays of a JPEG-packed `.npz`.

    Args:
        npz: an open `numpy.lib.npyio.NpzFile` (or a dict of arrays) in the
            JPEG layout (`is_jpeg_packed`).

    Returns:
        dict of the four arrays, images uint8 (N, H, W, 3), labels int64.
    """
    arrays = {}
    for split in SPLITS:
        arrays[f"x_{split}"] = decode_split(npz[f"{split}_jpeg"],
                                            npz[f"{split}_offsets"], split)
        arrays[f"y_{split}"] = np.asarray(npz[f"y_{split}"]).astype(np.int64)
    return arrays
