"""Tests of mdnet_keras.data.datasets: every loader and every bad input
(the CIFAR loaders behind it: tests/test_cifar.py)."""

import logging
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mdnet_keras.data import datasets
from mdnet_keras.data.datasets import (
    BadImageError,
    DatasetNotFoundError,
    load_dataset,
    load_image,
    to_channels,
)

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
NEU = SHARED / "neu-surface-defects"
CIFAR10_NPZ = SHARED / "cifar10.npz"


def write_image(path, size=(12, 10), mode="RGB", value=0):
    """Writes a small image whose pixels encode `value`; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(pixels, mode).save(path)
    return path


def write_npz(path, **overrides):
    """Writes a valid 3-class npz, with arrays replaced by `overrides`."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8),
        "y_train": np.array([[0], [1], [2], [0], [1], [2]]),
        "x_test": rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8),
        "y_test": np.array([2, 1, 0]),
        "label_names": np.array(["ok", "scratch", "dent"]),
    }
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match=r"'imagenet'.*sample, cifar10"):
        load_dataset("imagenet")


def test_npz_loads_and_flattens_labels(tmp_path):
    ds = load_dataset("npz", write_npz(tmp_path / "d.npz"))
    assert ds.x_train.shape == (6, 8, 8, 3) and ds.x_train.dtype == np.uint8
    assert ds.y_train.tolist() == [0, 1, 2, 0, 1, 2]
    assert ds.y_train.dtype == np.int64
    assert ds.class_names == ("ok", "scratch", "dent")
    assert ds.name == "d" and ds.num_classes == 3


@pytest.mark.parametrize("labels, bad", [([0, 1, 3], "[3]"),
                                         ([0, -1, 2], "[-1]")])
def test_npz_labels_out_of_range(tmp_path, labels, bad):
    path = write_npz(tmp_path / "d.npz", y_test=np.array(labels))
    with pytest.raises(ValueError, match=r"y_test.*\[0, 3\).*" + bad[1:-1]):
        load_dataset("npz", path)


def test_npz_mismatched_counts(tmp_path):
    path = write_npz(tmp_path / "d.npz", y_train=np.zeros(5, np.int64))
    with pytest.raises(ValueError, match="x_train has 6 images but y_train "
                                         "has 5 labels"):
        load_dataset("npz", path)


def test_npz_wrong_rank_and_missing_keys(tmp_path):
    path = write_npz(tmp_path / "a.npz", x_test=np.zeros((3, 8), np.uint8))
    with pytest.raises(ValueError, match=r"x_test must have rank 4.*\(3, 8\)"):
        load_dataset("npz", path)
    path = write_npz(tmp_path / "b.npz", y_test=None)
    with pytest.raises(ValueError, match=r"missing arrays \['y_test'\]"):
        load_dataset("npz", path)
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_dataset("npz", tmp_path / "nope.npz")


def test_npz_float_images_rejected(tmp_path):
    path = write_npz(tmp_path / "d.npz",
                     x_train=np.full((6, 8, 8, 3), 0.5, np.float32))
    with pytest.raises(ValueError, match="uint8.*float32"):
        load_dataset("npz", path)


def test_grey_npz_given_three_channels_is_converted_and_logged(tmp_path,
                                                               caplog):
    grey = np.arange(6 * 64, dtype=np.uint8).reshape(6, 8, 8)
    path = write_npz(tmp_path / "g.npz", x_train=grey,
                     x_test=grey[:3, :, :, None])
    with caplog.at_level(logging.WARNING, logger=datasets.__name__):
        ds = load_dataset("npz", path, channels=3)
    assert ds.x_train.shape == (6, 8, 8, 3)
    np.testing.assert_array_equal(ds.x_train[..., 2], grey)
    assert "converting 1-channel images to 3 channels" in caplog.text


def test_to_channels_matches_pillow():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 9, 7, 3), np.uint8)
    grey = to_channels(rgb, 1)
    expected = [np.asarray(Image.fromarray(im).convert("L")) for im in rgb]
    np.testing.assert_array_equal(grey[..., 0], np.stack(expected))
    np.testing.assert_array_equal(to_channels(grey, 3), np.repeat(grey, 3, -1))
    assert to_channels(rgb, None) is rgb
    with pytest.raises(ValueError, match="4"):
        to_channels(rgb, 4)


def test_load_image_resizes_bilinear(tmp_path):
    path = write_image(tmp_path / "a.png", size=(40, 30))
    image = load_image(path, image_size=(15, 20), channels=3)
    expected = Image.open(path).convert("RGB").resize(
        (20, 15), Image.Resampling.BILINEAR)
    assert datasets.RESIZE_METHOD == "bilinear"
    np.testing.assert_array_equal(image, np.asarray(expected))
    assert load_image(path, 8, channels=1).shape == (8, 8, 1)


def make_split_folder(root):
    """train/ and test/ with 2 classes, PNG and JPEG, grey and RGB, sizes."""
    for i in range(3):
        write_image(root / "train" / "good" / f"{i}.png", (20, 16), "L", i)
        write_image(root / "train" / "bad" / f"{i}.JPG", (9, 11), "RGB", 9 + i)
    write_image(root / "test" / "good" / "t.jpeg", (30, 30), "L", 20)
    write_image(root / "test" / "bad" / "t.bmp", (8, 8), "RGB", 21)
    (root / "train" / "good" / "notes.txt").write_text("not an image")


def test_folder_train_test_layout(tmp_path):
    make_split_folder(tmp_path)
    ds = load_dataset("folder", tmp_path, image_size=16)
    assert ds.class_names == ("bad", "good")
    assert ds.x_train.shape == (6, 16, 16, 3) and ds.x_test.shape[0] == 2
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1, 1]
    good = ds.x_train[ds.y_train == 1]
    np.testing.assert_array_equal(good[..., 0], good[..., 1])  # Grey -> RGB.
    assert ds.name == tmp_path.name and ds.skipped_files == ()


def test_folder_val_dir_and_one_channel(tmp_path):
    make_split_folder(tmp_path)
    (tmp_path / "test").rename(tmp_path / "val")
    ds = load_dataset("folder", tmp_path, image_size=(6, 8), channels=1)
    assert ds.x_train.shape == (6, 6, 8, 1) and ds.x_test.shape == (2, 6, 8, 1)


def test_folder_plain_layout_seeded_stratified_split(tmp_path):
    for k, c in enumerate("abc"):
        for i in range(10):
            write_image(tmp_path / c / f"{i}.png", (8, 8), "RGB", 10 * k + i)
    ds = load_dataset("folder", tmp_path, validation_split=0.2, seed=1)
    assert np.bincount(ds.y_test).tolist() == [2, 2, 2]
    assert np.bincount(ds.y_train).tolist() == [8, 8, 8]
    same = load_dataset("folder", tmp_path, validation_split=0.2, seed=1)
    other = load_dataset("folder", tmp_path, validation_split=0.2, seed=2)
    np.testing.assert_array_equal(ds.x_test, same.x_test)
    assert not np.array_equal(ds.x_test, other.x_test)
    test_keys = {x.tobytes() for x in ds.x_test}
    assert not test_keys & {x.tobytes() for x in ds.x_train}


def test_folder_sizes_differ_without_image_size(tmp_path):
    make_split_folder(tmp_path)
    with pytest.raises(ValueError, match="different sizes.*image_size"):
        load_dataset("folder", tmp_path)


def test_empty_folder_and_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="No class folders"):
        load_dataset("folder", tmp_path)
    with pytest.raises(DatasetNotFoundError, match="No image folder"):
        load_dataset("folder", tmp_path / "missing")


def test_class_folder_without_images(tmp_path):
    write_image(tmp_path / "a" / "0.png")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=f"{tmp_path / 'b'} has no images"):
        load_dataset("folder", tmp_path)


def test_truncated_jpeg_named_then_skipped(tmp_path):
    for i in range(4):
        write_image(tmp_path / "a" / f"{i}.jpg", (32, 32), "RGB", i)
        write_image(tmp_path / "b" / f"{i}.png", (32, 32), "RGB", 10 + i)
    bad = tmp_path / "a" / "2.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    (tmp_path / "b" / "0.png").write_bytes(b"not a png")
    with pytest.raises(BadImageError, match=r"2\.jpg.*skip_bad_files"):
        load_dataset("folder", tmp_path)
    with pytest.warns(UserWarning, match="Skipped 2 unreadable"):
        ds = load_dataset("folder", tmp_path, skip_bad_files=True,
                          validation_split=0.0)
    assert sorted(pathlib.Path(p).name for p in ds.skipped_files) == [
        "0.png", "2.jpg"]
    assert len(ds.x_train) == 6 and len(ds.x_test) == 0


def test_embedded_sample():
    ds = load_dataset("sample")
    assert ds.x_train.shape == (1000, 32, 32, 3)
    assert ds.x_test.shape == (200, 32, 32, 3)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert np.bincount(ds.y_train).tolist() == [100] * 10
    assert np.bincount(ds.y_test).tolist() == [20] * 10
    assert ds.class_names[0] == "airplane" and ds.num_classes == 10
    size = (pathlib.Path(datasets.__file__).parent / "sample" /
            datasets.SAMPLE_FILE).stat().st_size
    assert size <= 5 * 2**20


def test_datasets_module_needs_no_tensorflow_or_keras():
    # Empty parent packages: only the data modules' own imports run.
    package = pathlib.Path(datasets.__file__).parents[1]
    code = ("import sys, types\n"
            "for name, path in (('mdnet_keras', {top!r}), "
            "('mdnet_keras.data', {data!r})):\n"
            "    m = types.ModuleType(name); m.__path__ = [path]\n"
            "    sys.modules[name] = m\n"
            "import mdnet_keras.data.datasets\n"
            "print(sorted({{'tensorflow', 'keras', 'tensorflow_datasets'}} "
            "& set(sys.modules)))").format(top=str(package),
                                          data=str(package / "data"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(not NEU.is_dir(), reason=f"{NEU} absent (../shared)")
def test_neu_surface_defects_folder():
    ds = load_dataset("folder", NEU, image_size=64)
    assert ds.num_classes == 6 and ds.class_names[0] == "crazing"
    assert ds.x_train.shape == (1440, 64, 64, 3)
    assert ds.x_test.shape == (360, 64, 64, 3)
    assert np.bincount(ds.y_train).tolist() == [240] * 6


@pytest.mark.skipif(not CIFAR10_NPZ.is_file(), reason="../shared absent")
def test_cifar10_from_npz():
    ds = load_dataset("cifar10", CIFAR10_NPZ)
    assert ds.x_train.shape == (50000, 32, 32, 3)
    assert ds.x_test.shape == (10000, 32, 32, 3)
    assert ds.class_names[-1] == "truck" and ds.name == "cifar10"
    means = ds.x_train.reshape(-1, 3).mean(0) / 255
    np.testing.assert_allclose(means, [0.4913, 0.4821, 0.4465], atol=1e-4)



@pytest.mark.parametrize("labels", [np.array([1, 2, 3, 1, 2, 3]),
                                    np.array([0, 2, 0, 2, 0, 2])])
def test_npz_labels_with_an_empty_class_are_refused(tmp_path, labels):
    path = write_npz(tmp_path / "d.npz", y_train=labels, y_test=labels[:3],
                     label_names=None)
    hint = "1-based: subtract 1" if labels.min() else "classes \\[1\\]"
    with pytest.raises(ValueError, match=f"d.npz.*{hint}"):
        load_dataset("npz", path)


def test_npz_one_based_labels_with_names_name_file_key_and_range(tmp_path):
    path = write_npz(tmp_path / "d.npz", y_train=np.array([1, 2, 3] * 2),
                     y_test=np.array([3, 2, 1]))
    with pytest.raises(ValueError, match=r"d\.npz: y_train has labels outside "
                       r"\[0, 3\): \[3\] \(labels span \[1, 3\].*1-based"):
        load_dataset("npz", path)


def test_npz_label_outside_cifar10_classes(tmp_path):
    path = write_npz(tmp_path / "c.npz", y_test=np.array([0, 10, 2]),
                     label_names=None)
    with pytest.raises(ValueError, match=r"c\.npz: y_test.*\[0, 10\): \[10\]"):
        load_dataset("cifar10", path)


def test_one_class_npz_is_refused(tmp_path):
    path = write_npz(tmp_path / "one.npz", y_train=np.zeros(6, int),
                     y_test=np.zeros(3, int), label_names=np.array(["ok"]))
    with pytest.raises(ValueError, match="one.npz.*1 class.*at least 2"):
        load_dataset("npz", path)


def test_missing_npz_is_a_dataset_not_found_error_naming_the_flag(tmp_path):
    for name in ("npz", "cifar10"):
        with pytest.raises(DatasetNotFoundError,
                           match=r"nope\.npz.*--data=PATH"):
            load_dataset(name, tmp_path / "nope.npz")
    with pytest.raises(DatasetNotFoundError, match="a folder.*--dataset=folder"):
        load_dataset("npz", tmp_path)


@pytest.mark.parametrize("content, message", [
    (b"hello, not numpy", "not a NumPy archive"),
    (b"\x93NUMPY\x01\x00", "a single .npy array"),
])
def test_npz_that_is_not_an_archive(tmp_path, content, message):
    (tmp_path / "d.npz").write_bytes(content)
    with pytest.raises(ValueError, match=f"d.npz: {message}.*np.savez"):
        load_dataset("npz", tmp_path / "d.npz")


def test_truncated_npz_and_object_arrays(tmp_path):
    data = write_npz(tmp_path / "d.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="cut.npz: cannot read it as an .npz"):
        load_dataset("npz", tmp_path / "cut.npz")
    path = write_npz(tmp_path / "o.npz",
                     label_names=np.array(["a", 1, None], dtype=object))
    with pytest.raises(ValueError, match="o.npz: array 'label_names' holds "
                                         "Python objects"):
        load_dataset("npz", path)


def test_npz_wrong_layouts_get_hints(tmp_path):
    x = np.zeros((6, 8, 8, 3), np.uint8)
    cases = {
        "one_hot": ({"y_train": np.eye(3)[[0, 1, 2, 0, 1, 2]]},
                    r"y_train must have shape.*\(6, 3\).*one-hot.*argmax"),
        "nchw": ({"x_train": x.transpose(0, 3, 1, 2)},
                 "x_train must have 1 or 3 channels.*channels-first"),
        "rgba": ({"x_train": np.zeros((6, 8, 8, 4), np.uint8)},
                 r"x_train.*4\).*alpha channel"),
        "unit": ({"x_train": np.full((6, 8, 8, 3), 0.5)},
                 r"x_train.*uint8.*float64.*\[0, 1\].*x \* 255"),
        "empty": ({"x_train": x[:0], "y_train": np.zeros(0, int)},
                  "x_train holds no images"),
        "nan_labels": ({"y_test": np.array([0, np.nan, 1])},
                       "y_test must hold integer class indices"),
    }
    for name, (arrays, message) in cases.items():
        path = write_npz(tmp_path / f"{name}.npz", **arrays)
        with pytest.raises(ValueError, match=f"{name}.npz: {message}"):
            load_dataset("npz", path)


def test_npz_whole_number_float_labels_are_class_indices(tmp_path):
    path = write_npz(tmp_path / "f.npz", y_test=np.array([2.0, 1.0, 0.0]))
    assert load_dataset("npz", path).y_test.tolist() == [2, 1, 0]


def test_streaming_always_is_for_folders(tmp_path):
    with pytest.raises(ValueError, match="streaming='always' reads image "
                                         "folders.*--streaming=auto"):
        load_dataset("npz", write_npz(tmp_path / "d.npz"), streaming="always")


def test_folder_of_16_bit_pngs_is_not_white(tmp_path):
    ramp = (np.arange(64, dtype=np.uint32) * 1040).astype(np.uint16)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        Image.fromarray(ramp.reshape(8, 8)).save(tmp_path / c / "0.png")
    ds = load_dataset("folder", tmp_path, validation_split=0.0)
    np.testing.assert_array_equal(ds.x_train[0, ..., 0].ravel(),
                                  (np.arange(64) * 1040 * 255 + 32767)
                                  // 65535)


def test_one_class_folder_is_refused(tmp_path):
    for i in range(3):
        write_image(tmp_path / "only" / f"{i}.png")
    with pytest.raises(ValueError, match="one class folder \\('only'\\).*"
                                         "at least 2"):
        load_dataset("folder", tmp_path)


def test_folder_messages_name_the_flags(tmp_path):
    make_split_folder(tmp_path)
    with pytest.raises(ValueError, match="--image_size=N"):
        load_dataset("folder", tmp_path)
    (tmp_path / "train" / "bad" / "0.JPG").write_bytes(b"broken")
    with pytest.raises(BadImageError, match="--skip_bad_files"):
        load_dataset("folder", tmp_path, image_size=8)
    with pytest.raises(DatasetNotFoundError, match="a file there.*"
                                                   "--dataset=npz"):
        load_dataset("folder", write_npz(tmp_path / "d.npz"))


def test_images_without_class_folders_and_ignored_files(tmp_path, caplog):
    write_image(tmp_path / "loose.png")
    with pytest.raises(ValueError, match="1 images directly: move them"):
        load_dataset("folder", tmp_path)
    for c in ("a", "b"):
        write_image(tmp_path / c / "0.png", value=ord(c))
    (tmp_path / "a" / "scan.pdf").write_bytes(b"%PDF")
    (tmp_path / "a" / ".DS_Store").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        load_dataset("folder", tmp_path, validation_split=0.0)
    assert "ignored 1 files that are not images" in caplog.text
    assert "scan.pdf" in caplog.text and "DS_Store" not in caplog.text
