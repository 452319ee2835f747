"""Tests of mdnet_keras.data.pipeline: batches, augmentation, fit."""

import keras
import numpy as np
import pytest

from mdnet_keras.data.pipeline import (
    ImageBatches,
    crop_and_flip,
    cutmix,
    mixup,
    pipeline_throughput,
)


@pytest.fixture(scope="module")
def data():
    """50 distinct random 32x32 RGB images, 5 classes."""
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, (50, 32, 32, 3), dtype=np.uint8)
    return x, np.arange(50) % 5


def test_shapes_dtypes_and_length(data):
    x, y = data
    batches = ImageBatches(x, y, 5, batch_size=16)
    images, labels = batches[0]
    assert images.shape == (16, 32, 32, 3) and images.dtype == np.float32
    assert labels.shape == (16, 5) and labels.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 255
    assert len(batches) == 4 and len(batches[3][0]) == 2
    assert len(ImageBatches(x, y, 5, batch_size=16, drop_remainder=True)) == 3
    sparse = ImageBatches(x, y, 5, batch_size=16, one_hot=False)[0][1]
    assert sparse.dtype == np.int64 and sparse.shape == (16,)
    assert len(ImageBatches(x, None, 5, batch_size=16)[0]) == 1
    with pytest.raises(IndexError):
        batches[4]


def test_each_epoch_serves_every_example_once(data):
    x, y = data
    batches = ImageBatches(x, y, 5, batch_size=16, augment=False, seed=3)
    for _ in range(2):
        seen = np.concatenate([batches[i][0] for i in range(len(batches))])
        np.testing.assert_array_equal(
            np.sort(seen.reshape(50, -1), 0),
            np.sort(x.reshape(50, -1).astype(np.float32), 0))
        batches.on_epoch_end()


def test_same_seed_same_batches(data):
    x, y = data
    a = ImageBatches(x, y, 5, batch_size=16, seed=7, mixup_alpha=0.2)
    b = ImageBatches(x, y, 5, batch_size=16, seed=7, mixup_alpha=0.2)
    c = ImageBatches(x, y, 5, batch_size=16, seed=8, mixup_alpha=0.2)
    for i in (2, 0, 1):  # Any order gives the same batch.
        np.testing.assert_array_equal(a[i][0], b[i][0])
        np.testing.assert_array_equal(a[i][1], b[i][1])
    assert not np.array_equal(a[0][0], c[0][0])
    first = a[0][0]
    a.on_epoch_end()
    assert a.epoch == 1 and not np.array_equal(a[0][0], first)
    a.epoch = 0  # Resuming at an epoch serves that epoch's batches.
    np.testing.assert_array_equal(a[0][0], first)


def test_crop_and_flip_change_images_but_keep_labels(data):
    x, y = data
    plain = ImageBatches(x, y, 5, batch_size=50, shuffle=False, augment=False)
    aug = ImageBatches(x, y, 5, batch_size=50, shuffle=False, seed=1)
    (x0, y0), (x1, y1) = plain[0], aug[0]
    np.testing.assert_array_equal(y0, y1)
    assert np.mean([not np.array_equal(a, b) for a, b in zip(x0, x1)]) > 0.8
    padded = np.pad(x0, ((0, 0), (4, 4), (4, 4), (0, 0)))
    for k in range(5):  # Each output is a flip of a crop of its own image.
        crops = [padded[k, i:i + 32, j:j + 32] for i in range(9)
                 for j in range(9)]
        crops += [c[:, ::-1] for c in crops]
        assert any(np.array_equal(c, x1[k]) for c in crops)


@pytest.mark.parametrize("padding, flip, channels",
                         [(4, True, 3), (2, True, 1), (0, True, 3), (3, False, 3)])
def test_crop_and_flip_is_the_crop_of_each_image_at_its_drawn_offset(
        padding, flip, channels):
    x = np.random.default_rng(5).integers(0, 256, (64, 12, 10, channels),
                                          dtype=np.uint8)
    out = crop_and_flip(x, padding, flip, np.random.default_rng(7))
    # The same draws, in the same order, applied one image at a time.
    rng = np.random.default_rng(7)
    dy = rng.integers(0, 2 * padding + 1, 64)
    dx = rng.integers(0, 2 * padding + 1, 64)
    flipped = rng.random(64) < 0.5 if flip else np.zeros(64, bool)
    padded = np.pad(x, ((0, 0), (padding,) * 2, (padding,) * 2, (0, 0)))
    for k in range(64):
        crop = padded[k, dy[k]:dy[k] + 12, dx[k]:dx[k] + 10]
        np.testing.assert_array_equal(out[k], crop[:, ::-1] if flipped[k]
                                      else crop)
    assert out.dtype == np.uint8 and out.flags.c_contiguous


def test_crop_padding_scales_with_image_size():
    x = np.zeros((2, 64, 64, 1), np.uint8)
    assert ImageBatches(x, np.zeros(2, int), 2).crop_padding == 8
    rng = np.random.default_rng(0)
    ones = np.full((64, 16, 16, 1), 255, np.uint8)
    out = crop_and_flip(ones, 2, False, rng)
    assert out.shape == ones.shape
    zero_rows = (out[..., 0] == 0).all(axis=2).sum(axis=1)
    assert zero_rows.max() == 2  # Shifts reach the padding, never past it.


def test_flip_alone_mirrors(data):
    x, _ = data
    rng = np.random.default_rng(0)
    out = crop_and_flip(x, 0, True, rng)
    flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x)]
    kept = [np.array_equal(o, i) for o, i in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 40


@pytest.mark.parametrize("mix", [mixup, cutmix])
def test_mixed_labels_sum_to_one(data, mix):
    x, y = data
    one_hot = np.eye(5, dtype=np.float32)[y]
    rng = np.random.default_rng(0)
    mixed_x, mixed_y = mix(x.astype(np.float32), one_hot, 1.0, rng)
    np.testing.assert_allclose(mixed_y.sum(1), 1.0, rtol=1e-6)
    assert mixed_x.shape == x.shape and mixed_x.dtype == np.float32
    assert (mixed_y.max(1) < 1).any()  # Labels were really mixed.
    assert ((mixed_y > 0).sum(1) <= 2).all()


def test_cutmix_label_weight_is_pasted_area():
    x = np.zeros((2, 10, 10, 1), np.float32)
    x[1] = 1.0
    y = np.eye(2, dtype=np.float32)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        mixed_x, mixed_y = cutmix(x, y, 1.0, rng)
        for k in range(2):
            from_other = np.mean(mixed_x[k] != x[k])
            np.testing.assert_allclose(mixed_y[k, 1 - k], from_other,
                                       atol=1e-6)


def test_batches_with_mixing_sum_to_one(data):
    x, y = data
    batches = ImageBatches(x, y, 5, batch_size=25, mixup_alpha=0.2,
                           cutmix_alpha=1.0)
    for i in range(len(batches)):
        np.testing.assert_allclose(batches[i][1].sum(1), 1.0, rtol=1e-6)


def test_randaugment_is_seeded_and_changes_images(data):
    x, y = data
    a = ImageBatches(x[:8], y[:8], 5, batch_size=8, randaugment=True,
                     crop_padding=0, flip=False, shuffle=False, seed=4)
    b = ImageBatches(x[:8], y[:8], 5, batch_size=8, randaugment=True,
                     crop_padding=0, flip=False, shuffle=False, seed=4)
    out = a[0][0]
    np.testing.assert_array_equal(out, b[0][0])
    assert not np.array_equal(out, x[:8].astype(np.float32))


def test_randaugment_property_follows_augment(data):
    x, y = data
    assert ImageBatches(x, y, 5, randaugment=True).randaugment
    assert not ImageBatches(x, y, 5, randaugment=True,
                            augment=False).randaugment
    assert not ImageBatches(x, y, 5).randaugment


def test_bad_inputs(data):
    x, y = data
    with pytest.raises(ValueError, match="uint8"):
        ImageBatches(x.astype(np.float32), y, 5)
    with pytest.raises(ValueError, match=r"shape \(50,\)"):
        ImageBatches(x, y[:10], 5)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        ImageBatches(x, y, 4)
    with pytest.raises(ValueError, match="one_hot=True"):
        ImageBatches(x, y, 5, mixup_alpha=0.2, one_hot=False)


def test_prefetch_arguments_pass_through(data):
    x, y = data
    batches = ImageBatches(x, y, 5, workers=2, use_multiprocessing=False,
                           max_queue_size=3)
    assert (batches.workers, batches.use_multiprocessing,
            batches.max_queue_size) == (2, False, 3)


def test_pipeline_throughput_is_positive(data):
    x, y = data
    assert pipeline_throughput(ImageBatches(x, y, 5, batch_size=16), 4) > 0


def test_fit_one_epoch_on_image_batches(data):
    x, y = data
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(4, 3, strides=2),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(5, activation="softmax"),
    ])
    model.compile("adam", keras.losses.CategoricalCrossentropy(
        label_smoothing=0.1), metrics=["accuracy"])
    batches = ImageBatches(x, y, 5, batch_size=25, cutmix_alpha=1.0,
                           workers=2)
    history = model.fit(batches, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # fit calls on_epoch_end once before its first epoch and once after it.
    assert batches.epoch == 2


@pytest.fixture
def files(data, tmp_path):
    """The 50 images of `data` as PNG files, and their `ImageFiles`."""
    from mdnet_keras.data import ImageFiles
    from PIL import Image

    x, _ = data
    paths = []
    for i, image in enumerate(x):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(paths[-1])
    return ImageFiles(paths, (32, 32), 3)


def test_streamed_files_give_the_in_memory_batches(data, files):
    x, y = data
    kwargs = dict(num_classes=5, batch_size=16, seed=4, mixup_alpha=0.2,
                  randaugment=False)
    memory, stream = ImageBatches(x, y, **kwargs), ImageBatches(files, y,
                                                               **kwargs)
    assert len(memory) == len(stream) == 4 and stream.crop_padding == 4
    for _ in range(2):
        for i in range(len(memory)):
            for a, b in zip(memory[i], stream[i]):
                np.testing.assert_array_equal(a, b)
        memory.on_epoch_end()
        stream.on_epoch_end()


def test_fit_streams_files_in_worker_threads(data, files):
    _, y = data
    model = keras.Sequential([keras.Input((32, 32, 3)),
                              keras.layers.Rescaling(1 / 255),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(5, activation="softmax")])
    model.compile("adam", "categorical_crossentropy")
    batches = ImageBatches(files, y, 5, batch_size=10, workers=2)
    history = model.fit(batches, epochs=2, shuffle=False, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert batches.epoch == 3  # fit's first reset plus two epochs.
