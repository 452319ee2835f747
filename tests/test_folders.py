"""Tests of mdnet_keras.data.folders: image folders in memory and streamed."""

import json
import logging
import pathlib

import numpy as np
import pytest
from PIL import Image

from mdnet_keras.data import ImageFiles, load_dataset, take
from mdnet_keras.data.folders import (
    cli_option,
    default_memory_budget,
    stratified_split,
)
from mdnet_keras.data.images import BadImageError

NEU = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / (
    "neu-surface-defects")


def write_folder(root, per_class=6, size=(20, 16), classes="abc"):
    """root/<class>/<i>.png (or .jpg for odd i), distinct noise images."""
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i}.{'jpg' if i % 2 else 'png'}")
    return root


@pytest.mark.parametrize("layout", ["plain", "train_test"])
def test_streamed_folder_equals_in_memory(tmp_path, layout):
    if layout == "plain":
        write_folder(tmp_path)
    else:
        write_folder(tmp_path / "train")
        write_folder(tmp_path / "test", per_class=2)
    memory = load_dataset("folder", tmp_path, image_size=12,
                          streaming="never", validation_split=0.25, seed=3)
    stream = load_dataset("folder", tmp_path, image_size=12,
                          streaming="always", validation_split=0.25, seed=3)
    assert not memory.streamed and stream.streamed
    assert isinstance(stream.x_train, ImageFiles)
    assert stream.image_shape == memory.image_shape == (12, 12, 3)
    assert stream.class_names == memory.class_names
    for split in ("train", "test"):
        np.testing.assert_array_equal(getattr(stream, f"y_{split}"),
                                      getattr(memory, f"y_{split}"))
        np.testing.assert_array_equal(np.asarray(getattr(stream, f"x_{split}")),
                                      getattr(memory, f"x_{split}"))


def test_auto_streams_above_the_memory_budget(tmp_path, caplog):
    write_folder(tmp_path, per_class=2)  # 6 images of 8*8*1 = 64 bytes.
    kwargs = dict(image_size=8, channels=1, streaming="auto")
    assert not load_dataset("folder", tmp_path, max_memory_bytes=6 * 64,
                            **kwargs).streamed
    with caplog.at_level(logging.INFO):
        ds = load_dataset("folder", tmp_path, max_memory_bytes=6 * 64 - 1,
                          **kwargs)
    assert ds.streamed and "streaming 6 images from disk" in caplog.text
    # Without image_size, the first file's header gives the size.
    assert load_dataset("folder", tmp_path, streaming="auto",
                        max_memory_bytes=6 * 20 * 16 * 3 - 1).streamed
    assert default_memory_budget() > 2**20
    with pytest.raises(ValueError, match=r"--streaming\) must be one of"):
        load_dataset("folder", tmp_path, streaming="yes")


def test_streaming_checks_headers_up_front(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "b" / "2.png").write_bytes(b"not a png")
    with pytest.raises(BadImageError, match=r"2\.png.*--skip_bad_files"):
        load_dataset("folder", tmp_path, image_size=8, streaming="always")
    with pytest.warns(UserWarning, match="Skipped 1 unreadable"):
        ds = load_dataset("folder", tmp_path, image_size=8,
                          streaming="always", skip_bad_files=True,
                          validation_split=0.0)
    assert len(ds.x_train) == 17 and ds.skipped_files[0].endswith("2.png")
    assert np.bincount(ds.y_train).tolist() == [6, 5, 6]
    assert not any(p.endswith("b/2.png") for p in ds.x_train.paths)


def test_streaming_without_image_size_needs_one_size(tmp_path):
    write_folder(tmp_path)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "a" / "x.png")
    with pytest.raises(ValueError, match="different sizes.*--image_size"):
        load_dataset("folder", tmp_path, streaming="always")
    (tmp_path / "a" / "x.png").unlink()
    ds = load_dataset("folder", tmp_path, streaming="always")
    assert ds.image_shape == (16, 20, 3)


def test_class_folder_left_without_readable_images(tmp_path):
    write_folder(tmp_path, per_class=2)
    for path in (tmp_path / "c").iterdir():
        path.write_bytes(b"broken")
    for streaming in ("never", "always"):
        with pytest.raises(ValueError, match=f"{tmp_path / 'c'} has no "
                                             "readable images"):
            load_dataset("folder", tmp_path, image_size=8,
                         skip_bad_files=True, streaming=streaming)


def test_take_and_split_keep_classes():
    labels = np.repeat(np.arange(3), 10)
    train, test = stratified_split(labels, 0.2, seed=0)
    assert np.bincount(labels[test]).tolist() == [2, 2, 2]
    assert not set(train) & set(test)
    x = np.arange(30)
    np.testing.assert_array_equal(take(x, test), test)
    assert stratified_split(np.zeros(0, int), 0.1, 0)[0].shape == (0,)


def test_cli_option_spells_both():
    assert cli_option("skip_bad_files") == "skip_bad_files=True (--skip_bad_files)"
    assert cli_option("image_size", 64) == "image_size=64 (--image_size=64)"


@pytest.mark.skipif(not NEU.is_dir(), reason=f"{NEU} absent (../shared)")
def test_neu_streamed_equals_in_memory():
    stream = load_dataset("folder", NEU, image_size=32, streaming="always")
    memory = load_dataset("folder", NEU, image_size=32, streaming="never")
    assert len(stream.x_train) == 1440 and len(stream.x_test) == 360
    pick = [0, 500, 1439]
    np.testing.assert_array_equal(stream.x_train[pick], memory.x_train[pick])
    np.testing.assert_array_equal(stream.y_test, memory.y_test)


def test_training_streams_a_folder_over_the_memory_budget(tmp_path,
                                                       monkeypatch):
    """`train` as it stands, fed `ImageFiles` because the budget is tiny."""
    from mdnet_keras.data import folders
    from mdnet_keras.training import inputs
    from mdnet_keras.training import run

    write_folder(tmp_path / "data", per_class=8, size=(40, 36), classes="ab")
    monkeypatch.setattr(folders, "default_memory_budget", lambda: 1)
    seen = []
    load = inputs.load_data
    monkeypatch.setattr(inputs, "load_data",
                        lambda config: seen.append(load(config)) or seen[-1])
    tiny = {"stem_channels": 8, "stage_channels": [8, 8, 16, 16],
            "stage_depths": [1, 1, 1, 1], "num_heads": [0, 0, 1, 1],
            "head_channels": 16}
    result = run.train(dataset="folder", data=str(tmp_path / "data"),
                       image_size=32, model_config=tiny, epochs=1,
                       batch_size=4, verbose=0, out=str(tmp_path / "run"))
    assert seen[0].streamed
    assert 0 <= result["metrics"]["top1"] <= 1
    assert result["metrics"]["num_examples"] == len(seen[0].x_test) == 2


def test_bad_validation_split_names_the_flag():
    with pytest.raises(ValueError, match=r"--validation_split\) must be in "
                                         r"\[0, 1\); got 1.5"):
        stratified_split(np.zeros(4, int), 1.5, 0)


def test_auto_skips_a_bad_first_file_when_sizing(tmp_path):
    write_folder(tmp_path, per_class=3)
    (tmp_path / "a" / "0.png").write_bytes(b"broken")
    with pytest.warns(UserWarning, match="Skipped 1"):
        ds = load_dataset("folder", tmp_path, skip_bad_files=True,
                          max_memory_bytes=1, validation_split=0.0)
    assert ds.streamed and ds.image_shape == (16, 20, 3)


def test_evaluation_of_a_streamed_folder_matches_in_memory(tmp_path,
                                                           monkeypatch):
    """`evaluate_keras_model` as it stands, on `ImageFiles` and on arrays."""
    from mdnet_keras import MDNet
    from mdnet_keras.data import folders
    from mdnet_keras.training import evaluation

    write_folder(tmp_path / "data", per_class=5, size=(40, 36), classes="ab")
    model = MDNet(input_shape=(32, 32, 3), num_classes=2,
                  variant="mdnet_micro", stem_channels=8,
                  stage_channels=(8, 8, 16, 16), stage_depths=(1, 1, 1, 1),
                  head_channels=16)
    model.save(tmp_path / "m.keras")
    reports = []
    for budget in (2**40, 1):
        monkeypatch.setattr(folders, "default_memory_budget",
                            lambda budget=budget: budget)
        reports.append(evaluation.evaluate_keras_model(
            tmp_path / "m.keras", "folder", data=str(tmp_path / "data"),
            split="train", out=str(tmp_path / f"eval{budget}")))
    assert reports[0]["num_examples"] == reports[1]["num_examples"] == 8
    assert reports[0]["confusion_matrix"] == reports[1]["confusion_matrix"]


def test_bad_channels_are_refused_before_reading(tmp_path):
    write_folder(tmp_path, per_class=1)
    for streaming in ("never", "always"):
        with pytest.raises(ValueError, match=r"--channels\) must be 1 or 3"):
            load_dataset("folder", tmp_path, channels=2, streaming=streaming)


def write_sample_splits(root, counts, classes=(0, 1, 2)):
    """root/<split>/<class>/*.png from the embedded CIFAR-10 sample."""
    sample = load_dataset("sample")
    offset = {}
    for split, count in counts.items():
        for c in classes:
            (root / split / sample.class_names[c]).mkdir(parents=True)
            images = sample.x_train[sample.y_train == c]
            start = offset.get(c, 0)
            for i, image in enumerate(images[start:start + count]):
                Image.fromarray(image).save(
                    root / split / sample.class_names[c] / f"{i}.png")
            offset[c] = start + count
    return root


@pytest.mark.parametrize("val_name", ["val", "validation"])
@pytest.mark.parametrize("streaming", ["never", "always"])
def test_folder_with_its_own_val_split(tmp_path, val_name, streaming):
    write_sample_splits(tmp_path, {"train": 8, "test": 2, val_name: 3})
    ds = load_dataset("folder", tmp_path, streaming=streaming, seed=1)
    assert (len(ds.x_train), len(ds.x_test), len(ds.x_val)) == (24, 6, 9)
    np.testing.assert_array_equal(ds.y_val, np.repeat([0, 1, 2], 3))
    assert ds.x_val.shape[1:] == ds.image_shape == (32, 32, 3)
    expected = np.stack([np.asarray(Image.open(
        tmp_path / val_name / ds.class_names[c] / f"{i}.png"))
        for c in range(3) for i in range(3)])
    np.testing.assert_array_equal(np.asarray(ds.x_val), expected)


def test_val_alone_is_still_the_test_split(tmp_path):
    write_sample_splits(tmp_path, {"train": 8, "val": 3})
    ds = load_dataset("folder", tmp_path)
    assert ds.x_val is None and len(ds.x_test) == 9


def test_validation_images_of_another_size_are_refused(tmp_path):
    write_sample_splits(tmp_path, {"train": 2, "test": 1})
    for name in load_dataset("folder", tmp_path).class_names:
        (tmp_path / "val" / name).mkdir(parents=True)
        Image.new("RGB", (20, 20)).save(tmp_path / "val" / name / "0.png")
    with pytest.raises(ValueError, match=r"validation images are \(20, 20"):
        load_dataset("folder", tmp_path)


def test_training_selects_on_val_and_only_reports_test(tmp_path):
    from mdnet_keras.training import TrainConfig
    from mdnet_keras.training import inputs
    from mdnet_keras.training import run

    write_sample_splits(tmp_path / "data", {"train": 8, "test": 2, "val": 3})
    ds = load_dataset("folder", tmp_path / "data")
    config = TrainConfig(dataset="folder", data=str(tmp_path / "data"),
                         batch_size=8, validation_split=0.25)
    train_data, val_data, test_data, source = inputs.make_batches(config, ds, 1)
    np.testing.assert_array_equal(val_data.x, ds.x_val)
    np.testing.assert_array_equal(test_data.x, ds.x_test)
    assert len(train_data.x) == 24 and source == (
        "the data set's own validation split")
    tiny = {"stem_channels": 8, "stage_channels": [8, 8, 16, 16],
            "stage_depths": [1, 1, 1, 1], "num_heads": [0, 0, 1, 1],
            "head_channels": 16}
    result = run.train(dataset="folder", data=str(tmp_path / "data"),
                       model_config=tiny, epochs=1, batch_size=8, verbose=0,
                       out=str(tmp_path / "run"))
    facts = result["metrics"]
    run_facts = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (run_facts["run"]["num_train"], run_facts["run"]["num_validation"],
            run_facts["run"]["num_test"]) == (24, 9, 6)
    assert facts["selection"] == "the data set's own validation split"
    assert facts["num_examples"] == 6
