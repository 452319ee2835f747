"""Data sets and the input pipeline of mdnet_keras.

`datasets` needs only NumPy and Pillow; `pipeline` (imported on first use of
`ImageBatches` or `pipeline_throughput`) needs Keras, under any backend.
"""

from mdnet_keras.data.datasets import (
    DATASET_NAMES,
    RESIZE_METHOD,
    BadImageError,
    DatasetNotFoundError,
    ImageDataset,
    load_dataset,
    load_image,
    make_dataset,
    resize_images,
    stratified_split,
    to_channels,
)


def __getattr__(name):
    """Imports the Keras pipeline lazily, keeping `datasets` Keras-free."""
    if name in ("ImageBatches", "pipeline_throughput"):
        from mdnet_keras.data import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
