"""The input pipeline: batches of images for every Keras backend.

`ImageBatches` is a `keras.utils.PyDataset`, so `model.fit` takes it under
TensorFlow, JAX and PyTorch alike (a GPU machine with JAX and no TensorFlow
trains from it). Its images are a uint8 array in memory, or `ImageFiles`
(a streamed folder): then each batch's files are decoded and resized where
the batch is made, in the `PyDataset` workers (threads: Pillow releases the
GIL while it decodes; or processes), and memory holds only the paths and
the queued batches. Augmentation is vectorised NumPy on the uint8 batch: a
random crop from a zero-padded image and a horizontal flip (one gather), and,
when asked, MixUp and CutMix on one-hot labels; `keras.layers.RandAugment`
runs on the batch only when `randaugment=True`.

Every batch is a pure function of (seed, epoch, batch index): the same seed
gives the same batches in any order and with any number of workers. The
epoch advances in `on_epoch_end` (Keras calls it after stopping the
prefetching workers, so they never see a half-updated epoch). `fit` also
calls it once before its first epoch (`EpochIterator.reset`, every backend),
so `fit` epoch k serves `epoch` k + 1 counted from the value set before
`fit`: to resume, set `epoch = initial_epoch` before `fit(initial_epoch=...)`
and the batches match an uninterrupted run. Keras'
`fit(shuffle=True)` also permutes the order of batches with Python's
`random`: pass `shuffle=False` to `fit` (the data set shuffles its examples
itself) or seed Python with `keras.utils.set_random_seed`.
"""

import math
import threading
import time

import keras
import numpy as np

from mdnet_keras.data.images import ImageFiles


class ImageBatches(keras.utils.PyDataset):
    """Batches of uint8 images as float32 0..255 with one-hot labels.

    Args:
        x: uint8 array (N, H, W, C), the images, or `ImageFiles` (decoded
            batch by batch; use `workers` >= 2 so decoding overlaps
            training).
        y: int array (N,), the labels, or None to yield images only.
        num_classes: int, length of the one-hot labels.
        batch_size: int, images per batch. Defaults to 128.
        shuffle: bool, reshuffle the examples every epoch. Defaults to True.
        augment: bool, master switch of all augmentation (use False for
            evaluation). Defaults to True.
        crop_padding: int, zero padding on each side before the random crop;
            0 turns the crop off. Defaults to None: image height // 8 (4 for
            32x32).
        flip: bool, random horizontal flip. Defaults to True.
        randaugment: bool, apply `keras.layers.RandAugment` (2 ops,
            factor 0.5) to each batch. Defaults to False.
        mixup_alpha: float, Beta(alpha, alpha) of MixUp; 0 turns it off.
        cutmix_alpha: float, Beta(alpha, alpha) of CutMix; 0 turns it off.
            With both on, each batch uses one of the two at random.
        one_hot: bool, yield float32 one-hot labels (needed for label
            smoothing, MixUp and CutMix) instead of int64 class indices.
        drop_remainder: bool, drop the last incomplete batch (keeps batch
            shapes fixed for compiled training). Defaults to False.
        seed: int >= 0, seed of shuffling and augmentation. Defaults to 0.
        workers: int, `PyDataset` workers that prefetch batches.
        use_multiprocessing: bool, workers are processes, not threads.
        max_queue_size: int, batches kept ready by the workers.
    """

    def __init__(self, x, y, num_classes, batch_size=128, shuffle=True,
                 augment=True, crop_padding=None, flip=True,
                 randaugment=False, mixup_alpha=0.0, cutmix_alpha=0.0,
                 one_hot=True, drop_remainder=False, seed=0, workers=1,
                 use_multiprocessing=False, max_queue_size=10):
        super().__init__(workers=workers,
                         use_multiprocessing=use_multiprocessing,
                         max_queue_size=max_queue_size)
        _check_inputs(x, y, num_classes, batch_size)
        if (mixup_alpha or cutmix_alpha) and augment and not one_hot:
            raise ValueError("MixUp and CutMix mix one-hot labels: pass "
                             "one_hot=True.")
        self.x, self.y, self.num_classes = x, y, num_classes
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.crop_padding = (x.shape[1] // 8 if crop_padding is None
                             else crop_padding)
        self.flip, self.one_hot = flip, one_hot
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.drop_remainder, self.seed = drop_remainder, seed
        self._rand_augment = (keras.layers.RandAugment(value_range=(0, 255))
                              if randaugment and augment else None)
        self._lock = threading.Lock()
        self.epoch = 0

    @property
    def randaugment(self):
        """bool, whether batches go through RandAugment (it is on and so is
        `augment`)."""
        return self._rand_augment is not None

    @property
    def epoch(self):
        """int, the epoch whose shuffle and augmentation are served."""
        return self._epoch

    @epoch.setter
    def epoch(self, value):
        self._epoch = int(value)
        n = len(self.x)
        self._order = (np.random.default_rng([self.seed, self._epoch, 0])
                       .permutation(n) if self.shuffle else np.arange(n))

    def __len__(self):
        """Returns the number of batches per epoch."""
        rounding = math.floor if self.drop_remainder else math.ceil
        return rounding(len(self.x) / self.batch_size)

    def on_epoch_end(self):
        """Moves on to the next epoch's shuffle and augmentation."""
        self.epoch += 1

    def __getitem__(self, index):
        """Returns batch `index`: `(images, labels)`, or `(images,)`.

        Args:
            index: int in [0, len(self)).

        Returns:
            float32 images (B, H, W, C) in 0..255 and float32 one-hot (or
            int64) labels (B, ...).
        """
        if not 0 <= index < len(self):
            raise IndexError(f"Batch {index} out of range [0, {len(self)}).")
        idx, rng = self._batch_plan(index)
        x = self.x[idx]
        if self.augment:
            x = crop_and_flip(x, self.crop_padding, self.flip, rng)
        if self._rand_augment is not None:
            x = self._apply_rand_augment(x, rng)
        x = x.astype(np.float32)
        if self.y is None:
            return (x,)
        y = self.y[idx]
        if self.one_hot:
            y = np.eye(self.num_classes, dtype=np.float32)[y]
        if self.augment and (self.mixup_alpha or self.cutmix_alpha):
            x, y = self._mix(x, y, rng)
        return x, y

    def _batch_plan(self, index):
        """Batch `index` of this epoch: its example indices and the
        generator its augmentation draws from."""
        idx = self._order[index * self.batch_size:
                          (index + 1) * self.batch_size]
        return idx, np.random.default_rng([self.seed, self._epoch, index + 1])

    def crop_plan(self):
        """This epoch's batches as flat arrays, for a pipeline that crops
        and flips elsewhere (`mdnet_keras.data.tf_input`).

        Returns:
            `(indices, dy, dx, flipped)`: arrays over the epoch's examples
            in batch order (`len(self) * batch_size` at most): the example
            of each, and the draws of `crop_and_flip_draws` (all offsets
            `crop_padding` and nothing flipped when `augment` is off).
        """
        plans = [self._batch_plan(i) for i in range(len(self))]
        indices = np.concatenate([idx for idx, _ in plans])
        if not self.augment:
            pad = np.full(len(indices), self.crop_padding)
            return indices, pad, pad, np.zeros(len(indices), bool)
        draws = [crop_and_flip_draws(len(idx), self.crop_padding, self.flip, rng)
                 for idx, rng in plans]
        return (indices,) + tuple(np.concatenate(d) for d in zip(*draws))

    def _apply_rand_augment(self, x, rng):
        """Runs RandAugment on a uint8 batch, seeded from `rng`."""
        seed = int(rng.integers(2**31 - 1))
        with self._lock:  # One layer, one seed state: keep calls apart.
            generator = self._rand_augment.generator
            generator.state.assign(
                np.array([seed, 0], dtype=generator.state.dtype))
            out = self._rand_augment(x, training=True)
        return np.clip(keras.ops.convert_to_numpy(out), 0, 255).astype(
            np.uint8)

    def _mix(self, x, y, rng):
        """Applies MixUp or CutMix (one at random when both are on)."""
        use_cutmix = self.cutmix_alpha and (not self.mixup_alpha
                                            or rng.random() < 0.5)
        if use_cutmix:
            return cutmix(x, y, self.cutmix_alpha, rng)
        return mixup(x, y, self.mixup_alpha, rng)


def _check_inputs(x, y, num_classes, batch_size):
    """Raises ValueError for arrays or arguments `ImageBatches` cannot use."""
    if not (isinstance(x, ImageFiles) or isinstance(x, np.ndarray)
            and x.dtype == np.uint8 and x.ndim == 4):
        raise ValueError("x must be a uint8 NumPy array (N, H, W, C) or "
                         "ImageFiles; got "
                         f"{type(x).__name__} {getattr(x, 'dtype', '')} "
                         f"{getattr(x, 'shape', '')}.")
    if batch_size < 1 or len(x) == 0:
        raise ValueError(f"Need batch_size >= 1 and images; got batch_size="
                         f"{batch_size} and {len(x)} images.")
    if y is None:
        return
    if len(y) != len(x) or np.ndim(y) != 1:
        raise ValueError(f"y must have shape ({len(x)},) to match x; got "
                         f"{np.shape(y)}.")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"Labels must be in [0, {num_classes}); got range "
                         f"[{y.min()}, {y.max()}].")


def crop_and_flip_draws(batch_size, padding, flip, rng):
    """The random draws of `crop_and_flip` for a batch, in its order.

    Args:
        batch_size: int, images in the batch.
        padding: int, zeros added on each side.
        flip: bool, whether images may be flipped.
        rng: `np.random.Generator`.

    Returns:
        `(dy, dx, flipped)`: int arrays (B,) of the crop's top and left
        offsets into the padded image, in [0, 2 * padding], and a bool array
        (B,), whether each crop is mirrored left-right.
    """
    dy = rng.integers(0, 2 * padding + 1, batch_size)
    dx = rng.integers(0, 2 * padding + 1, batch_size)
    flipped = (rng.random(batch_size) < 0.5 if flip
               else np.zeros(batch_size, bool))
    return dy, dx, flipped


def crop_and_flip(x, padding, flip, rng):
    """Random crops from zero-padded images, and random horizontal flips.

    Each pixel is handled as one item of C bytes, so a crop is a window of
    whole pixels and a flip reverses whole pixels: block copies, where a
    gather of single bytes would cost several times more per batch.

    Args:
        x: uint8 array (B, H, W, C).
        padding: int, zeros added on each side; the crop keeps (H, W).
        flip: bool, flip each image left-right with probability 0.5.
        rng: `np.random.Generator`.

    Returns:
        uint8 array (B, H, W, C).
    """
    b, h, w, c = x.shape
    dy, dx, flipped = crop_and_flip_draws(b, padding, flip, rng)
    if padding:
        x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    pixels = np.ascontiguousarray(x).view(f"V{c * x.itemsize}")[..., 0]
    out = np.empty((b, h, w), pixels.dtype)
    # A flipped crop is the window at the mirrored offset of the mirrored
    # image.
    for chosen, source, offset in ((~flipped, pixels, dx),
                                   (flipped, pixels[:, :, ::-1],
                                    2 * padding - dx)):
        windows = np.lib.stride_tricks.sliding_window_view(source, (h, w),
                                                           axis=(1, 2))
        out[chosen] = windows[np.flatnonzero(chosen), dy[chosen],
                              offset[chosen]]
    return out.view(x.dtype).reshape(b, h, w, c)


def mixup(x, y, alpha, rng):
    """MixUp (Zhang et al., 2018): blends each example with a shuffled one.

    Args:
        x: float32 array (B, H, W, C).
        y: float32 one-hot labels (B, K).
        alpha: float > 0, the Beta(alpha, alpha) of the mixing weight.
        rng: `np.random.Generator`.

    Returns:
        (x, y) mixed with one weight for the batch; each label sums to 1.
    """
    lam = np.float32(rng.beta(alpha, alpha))
    perm = rng.permutation(len(x))
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]


def cutmix(x, y, alpha, rng):
    """CutMix (Yun et al., 2019): pastes a box from a shuffled example.

    Args:
        x: float32 array (B, H, W, C).
        y: float32 one-hot labels (B, K).
        alpha: float > 0, the Beta(alpha, alpha) of the kept area.
        rng: `np.random.Generator`.

    Returns:
        (x, y): labels weighted by the pasted box's true (clipped) area;
        each sums to 1.
    """
    _, h, w, _ = x.shape
    cut = np.sqrt(1.0 - rng.beta(alpha, alpha))
    cy, cx = rng.integers(h), rng.integers(w)
    y0, y1 = np.clip([cy - int(h * cut) // 2, cy + int(h * cut) // 2], 0, h)
    x0, x1 = np.clip([cx - int(w * cut) // 2, cx + int(w * cut) // 2], 0, w)
    perm = rng.permutation(len(x))
    x = x.copy()
    x[:, y0:y1, x0:x1] = x[perm, y0:y1, x0:x1]
    lam = np.float32(1.0 - (y1 - y0) * (x1 - x0) / (h * w))
    return x, lam * y + (1 - lam) * y[perm]


def pipeline_throughput(dataset, num_batches=50):
    """Measures the pipeline alone: images per second of `dataset[i]`.

    One batch is made first and not timed (RandAugment builds on it).

    Args:
        dataset: an `ImageBatches` (or any indexable batch source).
        num_batches: int, batches to time, cycling through the epoch.

    Returns:
        float, images per second.
    """
    dataset[0]
    images = 0
    start = time.perf_counter()
    for i in range(num_batches):
        images += len(dataset[i % len(dataset)][0])
    return images / (time.perf_counter() - start)
