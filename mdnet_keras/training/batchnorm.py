"""BatchNorm statistics that belong to the averaged weights.

The optimizer's weight average (`use_ema`) averages the trainable weights
only. A BatchNormalization's moving mean and variance are not trainable:
they follow the raw weights, so the averaged model would be evaluated with
statistics of other weights. `reestimate_batchnorm` recomputes them for
the weights in the model, as `torch.optim.swa_utils.update_bn` does for
SWA: the plain average of the batch statistics over a fixed set of
batches, so the result depends on the weights and the batches only, never
on the statistics it replaces (a resumed run recomputes the same values).

`AveragedBatchNormStatistics` does it inside `fit` whenever
`keras.callbacks.SwapEMAWeights` has put the average into the model, and
puts the raw weights' own statistics back when it swaps them back.
"""

import keras
import numpy as np

# The default of `--bn_recalibration_batches`, chosen by the measurement in
# benchmarks/results/recipe/ema_bn_loop/.
DEFAULT_BATCHES = 20


def check_batches(value, name="bn_recalibration_batches"):
    """Raises a clear error unless `value` is a whole number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or value < 0:
        raise ValueError(
            f"--{name} must be a whole number of batches >= 0 (0 turns the "
            f"re-estimation off). Received: {value!r}")


def batchnorm_layers(model):
    """The `BatchNormalization` layers of `model` that training updates."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization)
            and layer.trainable]


def statistics(layers):
    """A copy of every non-trainable variable (the statistics) of `layers`."""
    return [[keras.ops.convert_to_numpy(v).copy()
             for v in layer.non_trainable_variables] for layer in layers]


def assign_statistics(layers, values):
    for layer, layer_values in zip(layers, values):
        for variable, value in zip(layer.non_trainable_variables,
                                   layer_values):
            variable.assign(value)


def training_forward(model):
    """`model(images, training=True)` as one compiled function.

    Run eagerly, the forward pass dispatches op by op, which costs several
    times a compiled training step (on TensorFlow) and far more on an
    accelerator. This traces `model.stateless_call` once (`tf.function` on
    TensorFlow outside a `tf.distribute` strategy, `jax.jit` on JAX;
    PyTorch, and TensorFlow under a strategy, run eagerly) and assigns the
    non-trainable state it returns (BatchNorm statistics, seed generators),
    which is what the eager call does. BatchNorm momentum is read when the
    function is traced: `reestimate_batchnorm` traces it at momentum 0.

    Args:
        model: a built `keras.Model`.

    Returns:
        A function of an image batch that updates `model`'s non-trainable
        variables and returns nothing.
    """
    def updated_state(trainable, non_trainable, images):
        _, state = model.stateless_call(trainable, non_trainable, images,
                                        training=True)
        return state

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        updated_state = jax.jit(updated_state)
    elif backend == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():
            # Mirrored variables are updated through the strategy: the
            # eager call does that.
            return lambda images: model(images, training=True)
        updated_state = tf.function(updated_state)

    def forward(images):
        state = updated_state([v.value for v in model.trainable_variables],
                              [v.value for v in model.non_trainable_variables],
                              images)
        for variable, value in zip(model.non_trainable_variables, state):
            variable.assign(value)

    return forward


def reestimate_batchnorm(model, batches, num_batches=None, forward=None):
    """Sets BatchNorm statistics to their average over `batches`' images.

    Runs the first `num_batches` batches through `model` in training mode
    with momentum 0, so each call leaves one batch's statistics in the
    moving variables, and assigns their average over the batches. Trainable
    weights do not change; a layer that is not trainable is left alone (its
    statistics do not move in training mode either).

    Args:
        model: a built `keras.Model`.
        batches: a sequence of batches (`len` and indexing, such as a
            `keras.utils.PyDataset`); each is an image array or a tuple
            whose first item is.
        num_batches: int, how many of the first batches to use; None for
            all.
        forward: optional `training_forward(model)` made by an earlier
            call (at momentum 0), to reuse its compilation; by default
            one is made for this call.

    Returns:
        int, the number of BatchNormalization layers re-estimated.

    Example:
    >>> model = keras.Sequential([keras.Input((3,)),
    ...                           keras.layers.BatchNormalization()])
    >>> images = np.arange(12, dtype="float32").reshape(4, 3)
    >>> reestimate_batchnorm(model, [images[:2], images[2:]])
    1
    >>> model.layers[0].moving_mean.numpy().tolist()
    [4.5, 5.5, 6.5]
    """
    layers = batchnorm_layers(model)
    count = len(batches) if num_batches is None else min(num_batches,
                                                         len(batches))
    if not layers or not count:
        return len(layers)
    momenta = [layer.momentum for layer in layers]
    totals = None
    try:
        for layer in layers:
            layer.momentum = 0.0
        forward = forward or training_forward(model)
        for index in range(count):
            batch = batches[index]
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            forward(images)
            found = statistics(layers)
            totals = found if totals is None else [
                [total + value for total, value in zip(t, f)]
                for t, f in zip(totals, found)]
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    assign_statistics(layers, [[total / count for total in t]
                               for t in totals])
    return len(layers)


def calibration_batches(train_data, num_batches):
    """A fixed set of training batches for the re-estimation.

    The images of the first `num_batches` batches of one seeded shuffle of
    `train_data`'s images (at most all of them), with its random crop and
    flip drawn once from the seed: the same images every epoch and after a
    resume. Augmented, because the weights were trained on statistics of
    augmented batches (RandAugment, MixUp and CutMix are left out).

    Args:
        train_data: the training `mdnet_keras.data.ImageBatches`.
        num_batches: int >= 1.

    Returns:
        An `ImageBatches` of `min(num_batches, len(train_data))` batches of
        images only.
    """
    from mdnet_keras.data import ImageBatches
    from mdnet_keras.data import take

    order = np.random.default_rng([train_data.seed, 1]).permutation(
        len(train_data.x))[:num_batches * train_data.batch_size]
    return ImageBatches(take(train_data.x, np.sort(order)), None,
                        train_data.num_classes,
                        batch_size=train_data.batch_size, shuffle=True,
                        augment=True, crop_padding=train_data.crop_padding,
                        flip=train_data.flip, seed=train_data.seed)


class AveragedBatchNormStatistics(keras.callbacks.Callback):
    """Re-estimates BatchNorm statistics whenever the EMA weights are in.

    Placed right after `keras.callbacks.SwapEMAWeights(swap_on_epoch=True)`
    (`swapper`). The swapper puts the averaged weights into the model for
    the validation inside `fit` (`on_test_begin`, before `on_epoch_end`)
    and again at the epoch end for the checkpoints; this callback then
    gives them their own statistics (`reestimate_batchnorm` once an epoch,
    cached) and, when the raw weights come back (`on_test_end`, and
    `use_raw`, which `EmaWeightsRestorer` calls before the backup is
    written), the raw weights' statistics, so the training curve and the
    backup never see the averaged ones. At the last epoch the swapper makes
    raw and average the same, and so does this; `fit` ends with the average
    in the model, so `on_train_end` leaves its statistics in.

    Args:
        batches: the batches to re-estimate on (`calibration_batches`).
    """

    def __init__(self, batches):
        super().__init__()
        self.batches = batches
        self._raw = None
        self._averaged = None
        self._forward = None

    def on_epoch_begin(self, epoch, logs=None):
        self._averaged = None  # The weights change in this epoch.

    def on_test_begin(self, logs=None):
        self.use_averaged()

    def on_test_end(self, logs=None):
        self.use_raw()

    def on_epoch_end(self, epoch, logs=None):
        self.use_averaged()
        if epoch == self.params["epochs"] - 1:
            self._raw = self._averaged

    def on_train_end(self, logs=None):
        if self._averaged is not None:
            assign_statistics(batchnorm_layers(self.model), self._averaged)
            self._raw = None

    def use_averaged(self):
        """Statistics of the averaged weights (now in the model)."""
        if self._raw is not None:
            return
        layers = batchnorm_layers(self.model)
        self._raw = statistics(layers)
        if self._averaged is None:
            # Compiled once a training: traced at the first call, at
            # momentum 0, and the same at every later call.
            self._forward = self._forward or training_forward(self.model)
            reestimate_batchnorm(self.model, self.batches,
                                 forward=self._forward)
            self._averaged = statistics(layers)
        else:
            assign_statistics(layers, self._averaged)

    def use_raw(self):
        """Statistics of the raw weights (swapped back into the model)."""
        if self._raw is not None:
            assign_statistics(batchnorm_layers(self.model), self._raw)
            self._raw = None
