import os
import pathlib

import pytest

from training_util import TINY
from training_util import subset_npz

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


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
