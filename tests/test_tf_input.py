"""`ImageBatches` as a tf.data pipeline (mdnet_keras.data.tf_input): the very
batches of the PyDataset, epoch by epoch; what it refuses; the training loop
on it against the PyDataset path."""

import json

import numpy as np
import pytest

from mdnet_keras.data import ImageBatches
from mdnet_keras.data import ImageFiles
from mdnet_keras.data import tf_input
from mdnet_keras.training import inputs
from mdnet_keras.training import run
from mdnet_keras.training.config import resolve_config
from training_util import TINY


def images(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, shape).astype(np.uint8),
            rng.integers(0, 5, shape[0]))


@pytest.mark.parametrize("shape, options", [
    ((37, 32, 32, 3), {}),
    ((37, 32, 32, 1), {"flip": False}),
    ((37, 16, 20, 3), {"crop_padding": 0}),
    ((37, 24, 24, 3), {"crop_padding": 5, "flip": False}),
    ((37, 32, 32, 3), {"augment": False}),
    ((37, 32, 32, 3), {"drop_remainder": True, "one_hot": False}),
    ((37, 32, 32, 3), {"shuffle": False, "crop_padding": 0, "flip": False}),
])
def test_the_pipeline_serves_the_pydataset_batches(shape, options):
    x, y = images(shape)
    batches = ImageBatches(x, y, 5, batch_size=8, seed=3, **options)
    dataset = tf_input.as_tf_dataset(batches)
    for epoch in (0, 1, 4):
        batches.epoch = epoch
        served = list(dataset)
        assert len(served) == len(batches) == dataset.cardinality().numpy()
        for index, (x_batch, y_batch) in enumerate(served):
            expected_x, expected_y = batches[index]
            assert x_batch.numpy().dtype == expected_x.dtype
            assert y_batch.numpy().dtype == expected_y.dtype
            np.testing.assert_array_equal(x_batch.numpy(), expected_x)
            np.testing.assert_array_equal(y_batch.numpy(), expected_y)


def test_images_without_labels():
    x, _ = images((10, 32, 32, 3))
    batches = ImageBatches(x, None, 5, batch_size=4)
    served = list(tf_input.as_tf_dataset(batches))
    assert [len(batch) for batch in served] == [1, 1, 1]
    np.testing.assert_array_equal(served[2][0].numpy(), batches[2][0])


def test_what_needs_numpy_is_refused_with_the_reason(tmp_path):
    x, y = images((8, 32, 32, 3))
    for options, reason in (({"randaugment": True}, "RandAugment"),
                            ({"mixup_alpha": 0.2}, "MixUp and CutMix"),
                            ({"cutmix_alpha": 1.0}, "MixUp and CutMix")):
        batches = ImageBatches(x, y, 5, **options)
        assert reason in tf_input.unsupported_reason(batches)
        with pytest.raises(ValueError, match=f"PyDataset path: {reason}"):
            tf_input.as_tf_dataset(batches)
    # Mixing only matters while augmenting.
    assert tf_input.unsupported_reason(
        ImageBatches(x, y, 5, mixup_alpha=0.2, augment=False)) is None
    from PIL import Image

    path = tmp_path / "a.png"
    Image.fromarray(x[0]).save(path)
    files = ImageFiles([str(path)], image_size=32, channels=3)
    assert "streamed" in tf_input.unsupported_reason(
        ImageBatches(files, np.zeros(1, int), 5))


def test_images_too_large_for_a_copy_stay_in_numpy(monkeypatch):
    # TensorFlow copies the images, padded for the crop: data sets may take
    # half of the memory.
    x, y = images((8, 32, 32, 3))
    batches = ImageBatches(x, y, 5, crop_padding=4)
    copy = tf_input.copy_bytes(batches)
    assert copy == 8 * 40 * 40 * 3
    monkeypatch.setattr(tf_input, "default_memory_budget", lambda: 2 * copy)
    assert tf_input.unsupported_reason(batches) is None
    monkeypatch.setattr(tf_input, "default_memory_budget", lambda: 2 * copy - 2)
    assert "quarter of this machine's memory" in tf_input.unsupported_reason(batches)
    # Without augmentation nothing is padded.
    assert tf_input.copy_bytes(ImageBatches(x, y, 5, augment=False)) == x.nbytes


def test_pixel_indices_beyond_int32_are_int64(monkeypatch):
    # A padded copy of more than 2**31 pixels is addressed with int64.
    x, y = images((9, 8, 8, 3))
    batches = ImageBatches(x, y, 5, batch_size=4, crop_padding=2)
    expected = list(tf_input.as_tf_dataset(batches))
    monkeypatch.setattr(tf_input, "INT32_PIXEL_INDICES", 10)
    for (x_served, y_served), (x_expected, y_expected) in zip(
            tf_input.as_tf_dataset(batches), expected, strict=True):
        np.testing.assert_array_equal(x_served.numpy(), x_expected.numpy())
        np.testing.assert_array_equal(y_served.numpy(), y_expected.numpy())


def test_serve_epoch_puts_the_batches_on_the_epoch_being_trained():
    x, y = images((8, 32, 32, 3))
    batches = ImageBatches(x, y, 5)
    tf_input.ServeEpoch(batches).on_epoch_begin(7)
    assert batches.epoch == 7


def test_the_loop_trains_the_same_on_both_pipelines(tmp_path):
    histories = {}
    for pipeline in ("tf_data", "py_dataset"):
        out = tmp_path / pipeline
        result = run.train(dict(dataset="sample", model_config=TINY, epochs=2,
                                input_pipeline=pipeline, verbose=0, out=str(out)))
        facts = json.loads((out / "config.json").read_text())["run"]
        assert facts["input_pipeline"] == pipeline
        histories[pipeline] = result["history"]
    for key in ("loss", "val_loss", "val_top1"):
        np.testing.assert_allclose(histories["tf_data"][key],
                                   histories["py_dataset"][key], rtol=1e-6)


def test_auto_falls_back_and_tf_data_says_why_it_does_not_apply(tmp_path):
    x, y = images((8, 32, 32, 3))
    plain, mixed = ImageBatches(x, y, 5), ImageBatches(x, y, 5, mixup_alpha=0.2)

    def fit_inputs_for(batches, **fields):
        config = resolve_config(dict(dataset="sample", out=str(tmp_path), **fields))
        return inputs.fit_inputs(config, batches, plain)

    assert fit_inputs_for(mixed)[0] is mixed and fit_inputs_for(mixed)[2] == []
    assert fit_inputs_for(plain, input_pipeline="py_dataset")[0] is plain
    assert isinstance(fit_inputs_for(plain)[2][0], tf_input.ServeEpoch)
    with pytest.raises(ValueError, match="tf_data does not apply: MixUp"):
        fit_inputs_for(mixed, input_pipeline="tf_data")
    with pytest.raises(ValueError, match="multi-worker runs read the PyDataset"):
        fit_inputs_for(plain, input_pipeline="tf_data", strategy="multi_worker")
    with pytest.raises(ValueError, match="Unknown input_pipeline 'grain'"):
        resolve_config(dict(dataset="sample", input_pipeline="grain"))
