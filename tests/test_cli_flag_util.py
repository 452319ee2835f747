"""One definition, one default per flag (mdnet_keras.cli.flag_util)."""

import subprocess
import sys

import pytest
from absl import flags

from export_models import ROOT


def test_same_default_is_reused_and_another_raises():
    from mdnet_keras.cli.flag_util import FlagDefaultConflict
    from mdnet_keras.cli.flag_util import define

    define(flags.DEFINE_integer, "test_flag_util_n", 3, "A test flag.")
    define(flags.DEFINE_integer, "test_flag_util_n", 3, "Same default: fine.")
    with pytest.raises(FlagDefaultConflict, match=r"--test_flag_util_n .* default 3; "
                       r"redefining it with default 4"):
        define(flags.DEFINE_integer, "test_flag_util_n", 4, "Another default.")
    # A list flag's default compares after parsing ("a,b" is ["a", "b"]).
    define(flags.DEFINE_list, "test_flag_util_l", ["a", "b"], "A list.")
    define(flags.DEFINE_list, "test_flag_util_l", "a,b", "The same list.")


def test_every_command_module_imports_into_one_process():
    import importlib

    for name in ("train", "evaluate", "evaluate_tflite", "convert", "predict",
                 "profile", "main"):
        importlib.import_module(f"mdnet_keras.cli.{name}")
    assert flags.FLAGS["dataset"].default == "sample"


IMPORT_ORDER = """
import sys
sys.path.insert(0, {root!r})
import importlib
for name in {order!r}:
    importlib.import_module("mdnet_keras.cli." + name)
from absl import flags
print(flags.FLAGS["dataset"].default)
"""


@pytest.mark.slow
def test_evaluate_dataset_default_does_not_depend_on_import_order():
    """The defect: `evaluate --dataset` defaulted to "sample" or "cifar10"
    depending on whether evaluate or evaluate_tflite was imported first."""
    defaults = []
    for order in (["evaluate_tflite", "evaluate"], ["evaluate"]):
        r = subprocess.run([sys.executable, "-c", IMPORT_ORDER.format(
            root=str(ROOT), order=order)], capture_output=True, text=True,
            timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        defaults.append(r.stdout.split()[-1])
    assert defaults == ["sample"] * 2
