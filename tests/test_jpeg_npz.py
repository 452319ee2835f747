"""JPEG-packed CIFAR `.npz` files (`mdnet_keras.data.jpeg_npz`) through the
`.npz` route, on the embedded sample and on the shared CIFAR-100 copy."""

import importlib.util
import io
import pathlib

import numpy as np
import pytest
from PIL import Image

from mdnet_keras.data import load_dataset
from mdnet_keras.data import jpeg_npz

ROOT = pathlib.Path(__file__).resolve().parents[1]
CIFAR100 = ROOT.parent / "shared" / "data" / "cifar100-jpeg.npz"
TOOL = ROOT.parent / "shared" / "tools" / "pack_cifar_jpeg.py"


def pack(images):
    blobs = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=90)
        blobs.append(np.frombuffer(buffer.getvalue(), np.uint8))
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    return np.concatenate(blobs), offsets


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    sample = load_dataset("sample")
    arrays = {}
    for split, x, y in (("train", sample.x_train[:40], sample.y_train[:40]),
                        ("test", sample.x_test[:20], sample.y_test[:20])):
        arrays[f"{split}_jpeg"], arrays[f"{split}_offsets"] = pack(x)
        arrays[f"y_{split}"] = y.astype(np.int16)
    path = tmp_path_factory.mktemp("jpeg") / "packed.npz"
    np.savez(path, label_names=np.array(sample.class_names), **arrays)
    return path, sample


def test_packed_npz_decodes_through_the_npz_route(packed):
    path, sample = packed
    data = load_dataset("npz", data=str(path))
    assert data.x_train.shape == (40, 32, 32, 3)
    assert data.x_train.dtype == np.uint8
    np.testing.assert_array_equal(data.y_test, sample.y_test[:20])
    assert data.class_names == sample.class_names
    # Lossy but close to the originals.
    error = np.abs(data.x_train.astype(int) - sample.x_train[:40]).mean()
    assert 0 < error < 8


def test_bad_offsets_and_bytes_name_the_split():
    data, offsets = pack(np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="train_offsets must rise from 0"):
        jpeg_npz.decode_split(data, offsets[:-1], "train")
    broken = data.copy()
    broken[: offsets[1]] = 0
    with pytest.raises(ValueError, match="test_jpeg: image 0 .*not a readable"):
        jpeg_npz.decode_split(broken, offsets, "test")


@pytest.mark.skipif(not CIFAR100.exists(), reason=f"no {CIFAR100}")
def test_shared_cifar100_copy_matches_the_shared_unpacker():
    spec = importlib.util.spec_from_file_location("pack_cifar_jpeg", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with np.load(CIFAR100) as npz:
        offsets = npz["test_offsets"][:51]
        data = npz["test_jpeg"][: offsets[-1]]
        names = list(npz["label_names"])
    np.testing.assert_array_equal(jpeg_npz.decode_split(data, offsets, "test"),
                                  tool.unpack(data, offsets))
    assert len(names) == 100 and names[:2] == ["apple", "aquarium_fish"]
