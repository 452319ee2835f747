"""The README's Python example and the docstring examples run as written."""

import doctest
import importlib
import re

import numpy as np
import pytest

from conftest import ROOT

DOCSTRING_MODULES = [
    "mdnet_keras.layers.multi_scale_channel_conv",
    "mdnet_keras.layers.differential_attention",
    "mdnet_keras.layers.standard_attention",
    "mdnet_keras.layers.drop_path",
    "mdnet_keras.layers.pixel_normalization",
    "mdnet_keras.models.mdnet",
    "mdnet_keras.profile",
    "mdnet_keras.training.recipe",
    "mdnet_keras.training.batchnorm",
    "mdnet_keras.export.accuracy_gate",
    "mdnet_keras.export.micro_graph",
    "mdnet_keras.quantization.quantizers",
    "mdnet_keras.quantization.quant_layers",
    "mdnet_keras.quantization.twin",
]


@pytest.mark.parametrize("name", DOCSTRING_MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs={"np": np}, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0


def test_readme_python_example_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks
    exec(compile(blocks[0], "README.md", "exec"), {})
