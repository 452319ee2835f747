"""Data sets and the input pipeline of mdnet_keras.

`datasets` (with `cifar` and `image_dataset` behind it), `folders` and
`images` need only NumPy and Pillow; `pipeline`
(imported on first use of `ImageBatches` or `pipeline_throughput`) needs
Keras, under any backend; `tf_input` (`as_tf_dataset`, `ServeEpoch`) needs
TensorFlow.
"""

from mdnet_keras.data.datasets import DATASET_NAMES, load_dataset
from mdnet_keras.data.image_dataset import (
    DatasetNotFoundError,
    ImageDataset,
    make_dataset,
)
from mdnet_keras.data.images import (
    RESIZE_METHOD,
    BadImageError,
    ImageFiles,
    load_image,
    resize_images,
    to_channels,
)
from mdnet_keras.data.folders import STREAMING_MODES, stratified_split, take


def __getattr__(name):
    """Imports the Keras pipeline lazily, keeping `datasets` Keras-free."""
    if name in ("ImageBatches", "pipeline_throughput"):
        from mdnet_keras.data import pipeline

        return getattr(pipeline, name)
    if name in ("as_tf_dataset", "ServeEpoch"):
        from mdnet_keras.data import tf_input

        return getattr(tf_input, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
