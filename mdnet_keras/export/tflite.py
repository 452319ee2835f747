"""The names `micro.py` reads as `tfl.<name>`, from the modules that hold them.

The export path is split into one module per concern (see `__init__.py`);
this module only keeps `from mdnet_keras.export import tflite as tfl` in
`micro.py` working. Import from `mdnet_keras.export` instead.
"""

from mdnet_keras.export.flatbuffer import describe_ops  # noqa: F401
from mdnet_keras.export.flatbuffer import io_details  # noqa: F401
from mdnet_keras.export.keras_model import check_images  # noqa: F401
from mdnet_keras.export.litert_runner import LiteRTRunner  # noqa: F401
from mdnet_keras.export.litert_runner import dequantize_output  # noqa: F401
from mdnet_keras.export.litert_runner import quantize_input  # noqa: F401
from mdnet_keras.export.side_files import find_labels_file  # noqa: F401
from mdnet_keras.export.side_files import read_labels  # noqa: F401
