"""Data flags and their defaults from the model's run folder
(mdnet_keras.cli.data_flags). The command-line side: test_cli_convert,
test_cli_evaluate, test_cli_evaluate_tflite (a folder-trained run)."""

import io
import json

import pytest
from absl import flags
from absl.testing import flagsaver

from mdnet_keras.cli import data_flags

data_flags.define_data_flags()
FLAGS = flags.FLAGS


def write_run(folder, **config):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"config": config, "run": {}}))
    (folder / "labels.txt").write_text("a\nb\n")
    return folder / "best.keras"


def parse(*args):
    FLAGS.unparse_flags()
    FLAGS(["prog", *args], known_only=True)


def test_flags_not_given_take_the_run_values(tmp_path):
    model = write_run(tmp_path / "run", dataset="folder", data="/images",
                      validation_split=0.2, seed=7, data_dir=None,
                      skip_bad_files=False, image_size=64, channels=1)
    with flagsaver.flagsaver():
        parse("--seed=3")
        stream = io.StringIO()
        taken = data_flags.from_run_folder(model, stream=stream)
        assert taken == {"dataset": "folder", "data": "/images",
                         "validation_split": 0.2}
        assert FLAGS.dataset == "folder" and FLAGS.seed == 3  # given: kept
        line = stream.getvalue()
        assert line.count("\n") == 1 and "--dataset=folder" in line
        assert str(tmp_path / "run" / "config.json") in line
        assert data_flags.load_args()["data"] == "/images"


def test_no_run_folder_changes_nothing(tmp_path):
    with flagsaver.flagsaver():
        parse()
        stream = io.StringIO()
        assert data_flags.from_run_folder(tmp_path / "m.keras", stream=stream) == {}
        assert stream.getvalue() == "" and FLAGS.dataset == "sample"


def test_a_broken_config_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        data_flags.read_run_config(tmp_path / "best.keras")
