"""What a training run reads: its data set (`load_data`), the split that
trains and the split that selects the best epoch (`selection_split`), their
`ImageBatches` (`make_batches`), and what `fit` is given for them
(`fit_inputs`: on TensorFlow a `tf.data` pipeline of the same batches).
"""

import logging

import keras
import numpy as np

logger = logging.getLogger(__name__)


def load_data(config):
    """The data set a `TrainConfig` names, loaded (and resized, or
    streamed) as it says; says so when files were skipped or streamed."""
    from mdnet_keras.data import load_dataset

    dataset = load_dataset(
        config.dataset,
        data=config.data,
        image_size=config.image_size,
        channels=config.channels,
        data_dir=config.data_dir,
        download=config.download,
        validation_split=config.validation_split,
        seed=config.seed,
        skip_bad_files=config.skip_bad_files,
        streaming=config.streaming,
        max_memory_bytes=(None if config.max_memory_mb is None
                          else int(config.max_memory_mb * 2**20)),
    )
    if dataset.streamed:
        print(f"{dataset.name}: streamed from disk (decoded in the input "
              "workers), as its decoded images exceed the memory budget "
              "(--streaming, --max_memory_mb).")
    if dataset.skipped_files:
        print(f"Skipped {len(dataset.skipped_files)} unreadable image files.")
    return dataset


def selection_split(dataset, validation_split, seed):
    """The images that train and the images that select the best epoch.

    The data set's own validation split (a folder's `val/` beside `test/`)
    validates where it has one. Else a stratified `validation_split` share
    of each class of the training images is held out for per-epoch
    validation, which picks `best.keras`;
    the test split stays out of training and selection, for the final
    report only. With `validation_split=0` the test split validates (and so
    selects), and the run says so.

    Returns:
        (x_fit, y_fit, x_val, y_val, source): `source` names where the
        validation images come from.

    Raises:
        ValueError: a class with too few training images to hold any out.
    """
    from mdnet_keras.data import stratified_split
    from mdnet_keras.data import take

    if dataset.x_val is not None:
        if validation_split:
            logger.info("The data set has its own validation split; "
                        "--validation_split=%s is not used.",
                        validation_split)
        return (dataset.x_train, dataset.y_train, dataset.x_val,
                dataset.y_val, "the data set's own validation split")
    if not validation_split:
        logger.warning("--validation_split=0: the test split validates and "
                       "selects best.keras, so its test figure is not an "
                       "unseen-data estimate.")
        return (dataset.x_train, dataset.y_train, dataset.x_test,
                dataset.y_test, "test split")
    fit, val = stratified_split(dataset.y_train, validation_split, seed)
    missing = sorted(set(np.unique(dataset.y_train))
                     - set(np.unique(dataset.y_train[fit])))
    if missing:
        names = [dataset.class_names[c] for c in missing]
        raise ValueError(
            f"--validation_split={validation_split} leaves no training image "
            f"of class(es) {names}: add images or lower --validation_split.")
    return (take(dataset.x_train, fit), dataset.y_train[fit],
            take(dataset.x_train, val), dataset.y_train[val],
            f"{validation_split:g} of each class of the training images")


def make_batches(config, dataset, num_replicas, jit_compile=False):
    """Training, validation and test `ImageBatches`.

    Validation uses `selection_split`'s held-out training images. Compiled
    (XLA) and multi-replica training drops the last incomplete batch of each
    (reshuffled) epoch: one batch shape, one compilation.

    Returns:
        (train_data, val_data, test_data, validation_source).
    """
    from mdnet_keras.data import ImageBatches

    x_fit, y_fit, x_val, y_val, source = selection_split(
        dataset, config.validation_split, config.seed)
    # Keras prefetches only with 2 or more workers: a streamed folder's
    # decoding would otherwise add to every step.
    workers = (max(config.workers, 2) if dataset.streamed
               else config.workers)
    common = dict(num_classes=dataset.num_classes,
                  batch_size=config.batch_size, seed=config.seed,
                  workers=workers)
    train_data = ImageBatches(
        x_fit, y_fit, shuffle=True, augment=True,
        crop_padding=config.crop_padding, flip=config.flip,
        randaugment=config.randaugment, mixup_alpha=config.mixup_alpha,
        cutmix_alpha=config.cutmix_alpha,
        drop_remainder=((num_replicas > 1 or jit_compile)
                        and len(x_fit) >= config.batch_size),
        **common)
    val_data = ImageBatches(x_val, y_val, shuffle=False, augment=False,
                            **common)
    test_data = ImageBatches(dataset.x_test, dataset.y_test, shuffle=False,
                             augment=False, **common)
    return train_data, val_data, test_data, source


def fit_inputs(config, train_data, val_data):
    """What `fit` reads, and the callback that goes with it.

    On TensorFlow, `tf.data` pipelines of the same batches (`tf_input`;
    Python then makes one plan per epoch instead of every batch), unless
    `config.input_pipeline` is "py_dataset", the batches need NumPy
    (streamed files, RandAugment, MixUp, CutMix), the images are too large
    for TensorFlow's copy, or the run is multi-worker (whose sharding of a
    `tf.data` input differs); else the `ImageBatches`.

    Returns:
        `(train_input, val_input, callbacks)`.

    Raises:
        ValueError: `input_pipeline="tf_data"` where it does not apply.
    """
    choice = config.input_pipeline
    reason = None
    if keras.backend.backend() != "tensorflow":
        reason = f"it needs the TensorFlow backend (this is {keras.backend.backend()})"
    elif config.strategy == "multi_worker":
        reason = "multi-worker runs read the PyDataset"
    else:
        from mdnet_keras.data import tf_input

        reason = (tf_input.unsupported_reason(train_data)
                  or tf_input.unsupported_reason(val_data))
    if choice == "tf_data" and reason:
        raise ValueError(f"--input_pipeline=tf_data does not apply: {reason}. "
                         "Use --input_pipeline=auto or py_dataset.")
    if choice == "py_dataset" or reason:
        return train_data, val_data, []
    return (tf_input.as_tf_dataset(train_data), tf_input.as_tf_dataset(val_data),
            [tf_input.ServeEpoch(train_data)])
