"""Tests of mdnet_keras.data.images: decoding files as the model sees them."""

import pickle

import numpy as np
import pytest
from PIL import Image

from mdnet_keras.data.images import (
    BadImageError,
    ImageFiles,
    load_image,
    read_image_size,
)

# A 16-bit ramp over the whole range: 0, 257, ..., 65535 (8-bit: 0..255).
RAMP16 = (np.arange(256, dtype=np.uint32) * 257).astype(np.uint16).reshape(
    16, 16)


def test_16_bit_png_is_scaled_to_8_bits_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(RAMP16).save(path)
    assert Image.open(path).mode == "I;16"
    # Pillow's own conversion clips: nearly every pixel becomes 255.
    assert (np.asarray(Image.open(path).convert("L")) == 255).mean() > 0.99
    grey = load_image(path, channels=1)[..., 0]
    np.testing.assert_array_equal(grey.ravel(), np.arange(256))
    rgb = load_image(path, channels=3)
    np.testing.assert_array_equal(rgb[..., 1], grey)


@pytest.mark.parametrize("mode, dtype", [("I;16B", ">u2"), ("I", "<i4")])
def test_big_endian_and_32_bit_integer_tiffs(tmp_path, mode, dtype):
    path = tmp_path / "deep.tif"
    Image.frombytes(mode, (16, 16), RAMP16.astype(dtype).tobytes()).save(path)
    assert Image.open(path).mode == mode
    grey = load_image(path, channels=1)[..., 0]
    np.testing.assert_array_equal(grey.ravel(), np.arange(256))


def test_16_bit_values_round_to_nearest():
    from mdnet_keras.data.images import _to_8_bits

    image = Image.fromarray(np.array([[0, 128, 129, 385, 65534, 65535]],
                                     np.uint16))
    assert np.asarray(_to_8_bits(image, "x")).tolist() == [[0, 0, 1, 1, 255,
                                                            255]]


def test_float_image_is_refused_by_name(tmp_path):
    path = tmp_path / "f.tif"
    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(path)
    with pytest.raises(BadImageError, match=r"f\.tif.*floating-point.*PNG"):
        load_image(path)
    with pytest.raises(BadImageError, match="floating-point"):
        read_image_size(path)


def test_alpha_and_palette_images(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png")[0, 0].tolist() == [200, 0, 0]
    rgba[..., 0] = 255  # A colour of Pillow's web palette: kept exactly.
    Image.fromarray(rgba[..., :3]).convert("P").save(tmp_path / "p.gif")
    assert load_image(tmp_path / "p.gif")[0, 0].tolist() == [255, 0, 0]


def test_not_an_image_truncated_and_empty_files(tmp_path):
    (tmp_path / "text.jpg").write_text("hello")
    (tmp_path / "empty.png").write_bytes(b"")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    Image.fromarray(noise).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[:len(data) // 3])
    for name in ("text.jpg", "empty.png", "t.jpg"):
        with pytest.raises(BadImageError, match=f"Cannot decode image .*{name}"):
            load_image(tmp_path / name)
    with pytest.raises(BadImageError, match="text.jpg"):
        read_image_size(tmp_path / "text.jpg")
    assert read_image_size(tmp_path / "t.jpg") == (64, 64)  # Header intact.


def test_bad_channel_count():
    with pytest.raises(ValueError, match="channels must be 1 or 3; got 4"):
        load_image("any.png", channels=4)


def write_files(folder, count, size=(10, 12)):
    paths = []
    for i in range(count):
        path = folder / f"{i}.png"
        Image.fromarray(np.full(size, 20 * i, np.uint8)).save(path)
        paths.append(path)
    return paths


def test_image_files_index_like_the_decoded_array(tmp_path):
    paths = write_files(tmp_path, 5)
    files = ImageFiles(paths, (6, 8), 3)
    array = np.stack([load_image(p, (6, 8), 3) for p in paths])
    assert files.shape == array.shape == (5, 6, 8, 3) and len(files) == 5
    assert files.dtype == np.uint8 and files.nbytes == array.nbytes
    np.testing.assert_array_equal(files[3], array[3])
    np.testing.assert_array_equal(files[1:4], array[1:4])
    np.testing.assert_array_equal(files[[4, 0, 4]], array[[4, 0, 4]])
    mask = np.array([True, False, True, False, False])
    np.testing.assert_array_equal(files[mask], array[mask])
    np.testing.assert_array_equal(np.asarray(files), array)
    assert files.astype("float32").dtype == np.float32
    np.testing.assert_array_equal(files.astype(np.float32), array)
    subset = files.take([2, 0])
    assert isinstance(subset, ImageFiles)
    np.testing.assert_array_equal(subset[:], array[[2, 0]])
    assert files[np.zeros(0, int)].shape == (0, 6, 8, 3)
    clone = pickle.loads(pickle.dumps(files))  # For process workers.
    np.testing.assert_array_equal(clone[:], array)


def test_image_files_name_a_file_that_breaks_after_listing(tmp_path):
    paths = write_files(tmp_path, 2)
    files = ImageFiles(paths, (6, 8), 1)
    paths[1].write_bytes(b"gone bad")
    with pytest.raises(BadImageError, match=r"1\.png.*while streaming"):
        files[[0, 1]]


def test_decompression_bomb_is_a_bad_image(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "big.png")
    # Pillow refuses images over twice MAX_IMAGE_PIXELS.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 // 4)
    for read in (load_image, read_image_size):
        with pytest.raises(BadImageError, match="big.png"):
            read(tmp_path / "big.png")


def test_docstring_examples_run():
    import doctest

    from mdnet_keras.data import datasets, images

    for module in (images, datasets):
        result = doctest.testmod(module, verbose=False)
        assert result.attempted > 0 and result.failed == 0, module.__name__


@pytest.mark.parametrize("size", [0, -3, (8, 0), (1, 2, 3), 2.5])
def test_bad_image_size_names_the_flag(size):
    from mdnet_keras.data.images import image_size_tuple

    with pytest.raises(ValueError, match=r"image_size \(--image_size\) must "
                                         "be a positive int"):
        image_size_tuple(size)


def test_image_size_forms():
    from mdnet_keras.data.images import image_size_tuple

    assert image_size_tuple(None) is None
    assert image_size_tuple(np.int64(7)) == (7, 7)
    assert image_size_tuple([6, 9]) == (6, 9)


def smooth_image(size, channels):
    """A photo-like (smooth) uint8 image: gradients and a soft disc."""
    y, x = np.mgrid[:size, :size] / size
    disc = np.exp(-((x - 0.4) ** 2 + (y - 0.6) ** 2) * 12)
    planes = [x, y, disc][:channels]
    return (np.stack(planes, -1) * 255).astype(np.uint8).squeeze()


@pytest.mark.parametrize("channels", [1, 3])
def test_shrunk_jpeg_is_decoded_at_a_reduced_scale(tmp_path, channels):
    path = tmp_path / "photo.jpg"
    Image.fromarray(smooth_image(200, channels)).save(path, quality=95)
    with Image.open(path) as full:
        full = full.convert("RGB").resize((64, 64),
                                          Image.Resampling.BILINEAR)
    with Image.open(path) as draft:
        draft.draft(draft.mode, (64, 64))
        draft.load()
        assert draft.size == (100, 100)  # 1/2 scale: the target or more.
        expected = np.asarray(draft.convert("RGB").resize(
            (64, 64), Image.Resampling.BILINEAR))
    got = load_image(path, 64, 3)
    np.testing.assert_array_equal(got, expected)
    # Close to a full decode: the same picture, a little smoothed.
    difference = np.abs(got.astype(int) - np.asarray(full))
    assert difference.mean() < 1.5 and difference.max() <= 8
    # Enlarged or kept at its size, a JPEG is decoded whole.
    with Image.open(path) as whole:
        np.testing.assert_array_equal(load_image(path, 200, 3),
                                      np.asarray(whole.convert("RGB")))


def test_grey_png_to_rgb_is_resized_like_three_channels(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(smooth_image(50, 1)).save(path)
    with Image.open(path) as image:
        expected = np.asarray(image.convert("RGB").resize(
            (17, 23), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(load_image(path, (23, 17), 3), expected)
