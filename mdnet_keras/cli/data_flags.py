"""The data flags of `evaluate` and `convert`, and their defaults from the
model's run folder.

A model trained by `python -m mdnet_keras train` sits in a run folder whose
`config.json` records the data it was trained on (data set, path, held-out
split and its seed) and whose `labels.txt` lists the class names. A flag of
`DATA_FLAGS` not given on the command line takes the run's value, so
`convert --model=runs/x/best.keras` finds the training data again; the
command says so in one line. The image size and channels come from the
model's input, which the run's `image_size` and `channels` produced.

Example:

```python
from mdnet_keras.cli import data_flags

data_flags.define_data_flags()
# in main(): values = data_flags.from_run_folder(FLAGS.model)
```
"""

import json
import os
import sys

from absl import flags

from mdnet_keras.cli.flag_util import define

FLAGS = flags.FLAGS

# The flags a run's `config.json` can fill, as `TrainConfig` names them.
DATA_FLAGS = ("dataset", "data", "data_dir", "validation_split", "seed",
              "skip_bad_files")


def define_data_flags():
    """Defines the data flags, shared by `train`, `evaluate` and `convert`.

    Commands that read a model take a flag left unset from the model's run
    folder (`from_run_folder`).
    """
    define(flags.DEFINE_string, "dataset", "sample",
           "Data set: sample (CIFAR-10 images embedded in the package), "
           "cifar10, cifar100, npz or folder. Commands given a trained "
           "model default to its run folder's (config.json).")
    define(flags.DEFINE_string, "data", None,
           "The .npz file (npz; optional for cifar10/cifar100) or the image "
           "folder (folder: root/<class>/*.jpg|png, optionally with train/ "
           "and test/ or val/; with all three, val/ validates). Commands "
           "given a trained model default to "
           "its run folder's.")
    define(flags.DEFINE_string, "data_dir", None,
           "TensorFlow Datasets data folder for cifar10 / cifar100.")
    define(flags.DEFINE_boolean, "download", False,
           "Allow downloading CIFAR when it is not on this machine.")
    define(flags.DEFINE_float, "validation_split", 0.1,
           "Share of each class held out: the test split of a folder "
           "without test/ or val/, and (train) the validation images of the "
           "training images that select best.keras; 0 validates on the test "
           "split, which then also selects.")
    define(flags.DEFINE_integer, "seed", 0,
           "Seed of those splits, and (train) of weights, shuffling and "
           "augmentation (two CPU runs with one seed give the same losses), "
           "(convert) of the calibration images.")
    define(flags.DEFINE_boolean, "skip_bad_files", False,
           "Skip (and count) image files that cannot be decoded instead of "
           "stopping.")


def read_run_config(model_path):
    """The `config` dict of the run folder holding `model_path`, or None.

    Raises:
        ValueError: the folder's `config.json` is not valid JSON.
    """
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)),
                        "config.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); pass the data "
                         "flags on the command line or fix the file.") from e
    config = content.get("config") if isinstance(content, dict) else None
    return config if isinstance(config, dict) else None


def from_run_folder(model_path, names=DATA_FLAGS, stream=None):
    """Sets the flags of `names` not given on the command line from the run.

    Only flags this process defines and the run's `config.json` sets (not
    None) are filled. Prints one line naming what was taken, to `stream`
    (default stdout).

    Args:
        model_path: the `.keras` or `.tflite` model, in its run folder.
        names: the flag names that may be filled.
        stream: where the line goes; None for stdout.

    Returns:
        A dict of the flags set: name -> value (empty when none).
    """
    config = read_run_config(model_path)
    if not config:
        return {}
    taken = {}
    for name in names:
        if name not in FLAGS or FLAGS[name].present:
            continue
        value = config.get(name)
        if value is None or value == FLAGS[name].value:
            continue
        FLAGS[name].value = value
        taken[name] = value
    if taken:
        folder = os.path.dirname(os.path.abspath(model_path))
        settings = ", ".join(f"--{k}={v}" for k, v in taken.items())
        print(f"From the run folder {os.path.join(folder, 'config.json')}: "
              f"{settings} (give a flag to override).",
              file=stream or sys.stdout)
    return taken


def load_args():
    """The keyword arguments of `load_dataset` that the data flags give."""
    return {name: FLAGS[name].value for name in
            ("data", "data_dir", "download", "validation_split", "seed",
             "skip_bad_files") if name in FLAGS}
