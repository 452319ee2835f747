import os
import pathlib

import pytest

from training_util import TINY
from training_util import subset_npz

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


# The test files that take minutes (benchmark harnesses, subprocess runs,
# firmware builds), first: `pytest -n 2 --dist=loadfile` (the README's test
# command) hands files to its workers in collection order, and one of these
# collected last would leave the other worker idle until it ends.
SLOW_FILES_FIRST = (
    "test_distribution.py", "test_int8_options.py", "test_quantization_benchmark.py",
    "test_notebooks.py", "test_quantization.py", "test_micro_build.py",
    "test_micro_firmware.py", "test_run.py", "test_cli_train.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture
def shared_data():
    """The real data under ../shared/data; skips where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def small_npz(tmp_path_factory):
    """600 train / 100 test images of the sample's 10 classes."""
    return subset_npz(tmp_path_factory.mktemp("data") / "small.npz", 60, 10)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "sample"
    from mdnet_keras.training import run

    config = dict(dataset="sample", model_config=TINY, epochs=4,
                  verbose=0, out=str(out))
    result = run.train(config)
    return config, result
