"""`ImageBatches` as a `tf.data` pipeline, for training on TensorFlow.

Keras feeds a `keras.utils.PyDataset` to TensorFlow through a Python
generator: every batch is made under the GIL and copied in, which costs more
per step than a small model's compute, and is what a fast accelerator waits
for (benchmarks/results/host_overhead). `as_tf_dataset` serves the very
batches of an `ImageBatches` (the same examples in the same order, the same
crops and flips, drawn from the same seeds by `ImageBatches.crop_plan`) from
a `tf.data` pipeline whose gathers, crops and flips are TensorFlow ops that
run in parallel outside Python. One Python call per epoch makes the plan.

The epoch served is the `ImageBatches`' `epoch` when Keras starts the
epoch's iterator; `ServeEpoch` sets it to the epoch being trained, as the
training loop's PyDataset path has it.
"""

import keras
import numpy as np
import tensorflow as tf

from mdnet_keras.data.folders import default_memory_budget
from mdnet_keras.data.images import ImageFiles

# Pixels of a padded copy that int32 indices can address.
INT32_PIXEL_INDICES = 2**31 - 1


def crop_padding(batches):
    """The padding of the copy `as_tf_dataset` crops from: the crop's when
    `batches` augments, else none."""
    return batches.crop_padding if batches.augment else 0


def copy_bytes(batches):
    """Bytes of the copy of `batches`' images that `as_tf_dataset` holds."""
    n, height, width, channels = batches.x.shape
    padding = crop_padding(batches)
    return n * (height + 2 * padding) * (width + 2 * padding) * channels


def unsupported_reason(batches):
    """Why `batches` must stay a `PyDataset`, or None when it need not.

    Args:
        batches: an `ImageBatches`.

    Returns:
        str or None.
    """
    if isinstance(batches.x, ImageFiles):
        return "streamed files are decoded in the PyDataset workers"
    # TensorFlow holds its own copy of the images, padded for cropping
    # (gathering from NumPy inside the pipeline would bring the per-batch
    # Python call back), and in-memory data may take up to half of the
    # machine's memory.
    limit = default_memory_budget() // 2
    copy = copy_bytes(batches)
    if copy > limit:
        return (f"TensorFlow's copy of the images ({copy / 2**20:.0f} MiB) "
                f"would take more than a quarter of this machine's memory "
                f"({limit / 2**20:.0f} MiB)")
    if batches.randaugment:
        return "RandAugment runs on NumPy batches"
    if batches.augment and (batches.mixup_alpha or batches.cutmix_alpha):
        return "MixUp and CutMix run on NumPy batches"
    return None


def as_tf_dataset(batches):
    """The batches of `batches` as a `tf.data.Dataset` (module doc).

    Args:
        batches: an `ImageBatches` of in-memory images, at most a quarter of
            the machine's memory (TensorFlow holds a copy), without
            RandAugment, MixUp or CutMix (see `unsupported_reason`).

    Returns:
        A `tf.data.Dataset` of `len(batches)` elements, each equal to
        `batches[i]` of the epoch `batches.epoch` holds when iteration
        starts: `(images, labels)`, or `(images,)` without labels.

    Raises:
        ValueError: `batches` cannot be served this way (the message says
            why).

    Example:

    >>> from mdnet_keras.data import ImageBatches
    >>> x = np.zeros((10, 8, 8, 3), "uint8")
    >>> batches = ImageBatches(x, np.arange(10) % 2, num_classes=2, batch_size=4)
    >>> [tuple(images.shape) for images, _ in as_tf_dataset(batches)]
    [(4, 8, 8, 3), (4, 8, 8, 3), (2, 8, 8, 3)]
    """
    reason = unsupported_reason(batches)
    if reason:
        raise ValueError(f"These batches need the PyDataset path: {reason}.")
    labels = None if batches.y is None else tf.constant(batches.y)
    height, width = batches.x.shape[1:3]
    padding = crop_padding(batches)
    flip = batches.augment and batches.flip
    if padding or flip:
        # Padded once here, and cropped and flipped by one gather of every
        # output pixel: padding each batch, then gathering rows and then
        # columns, cost more per batch (benchmarks/results/host_overhead).
        store = np.pad(batches.x, [(0, 0), (padding, padding),
                                   (padding, padding), (0, 0)])
        padded_height, padded_width = store.shape[1:3]
        pixels = tf.constant(store.reshape(-1, store.shape[-1]))
        index_dtype = (tf.int64 if len(pixels) > INT32_PIXEL_INDICES
                       else tf.int32)
    else:
        images = tf.constant(batches.x)

    def plan():
        indices, dy, dx, flipped = batches.crop_plan()
        yield (indices.astype(np.int32), dy.astype(np.int32),
               dx.astype(np.int32), flipped)

    def crop(indices, dy, dx, flipped):
        rows = tf.range(height)[None]
        cols = tf.range(width)[None]
        if flip:
            # A flipped crop reads its window's columns right to left.
            cols = tf.where(flipped[:, None], width - 1 - cols, cols)
        if padding:
            rows, cols = dy[:, None] + rows, dx[:, None] + cols
        rows, cols, indices = (tf.cast(t, index_dtype)
                               for t in (rows, cols, indices))
        pixel = ((indices[:, None, None] * padded_height + rows[:, :, None])
                 * padded_width + cols[:, None, :])
        return tf.gather(pixels, pixel)

    # XLA fuses the index arithmetic, the gather and the cast into one
    # loop; as separate TensorFlow ops they cost more per batch
    # (benchmarks/results/host_overhead).
    @tf.function(jit_compile=True)
    def make_batch(indices, dy, dx, flipped):
        if padding or flip:
            x = crop(indices, dy, dx, flipped)
        else:
            x = tf.gather(images, indices)
        x = tf.cast(x, tf.float32)
        if labels is None:
            return (x,)
        y = tf.gather(labels, indices)
        if batches.one_hot:
            y = tf.one_hot(y, batches.num_classes, dtype=tf.float32)
        return x, y

    vector = tf.TensorSpec([None], tf.int32)
    dataset = tf.data.Dataset.from_generator(
        plan, output_signature=(vector, vector, vector, tf.TensorSpec([None], tf.bool)))
    dataset = dataset.flat_map(
        lambda *arrays: tf.data.Dataset.from_tensor_slices(arrays).batch(batches.batch_size))
    dataset = dataset.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(batches)))
    return dataset.prefetch(tf.data.AUTOTUNE)


class ServeEpoch(keras.callbacks.Callback):
    """Puts an `ImageBatches` on the epoch `fit` is about to train.

    Keras starts each epoch's iterator after `on_epoch_begin`, so the
    pipeline of `as_tf_dataset` then plans that epoch's batches.

    Args:
        batches: the `ImageBatches` behind the training `tf.data.Dataset`.
    """

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.epoch = epoch
